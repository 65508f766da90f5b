package spool

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// A spool leaves no name behind, and maps exactly the bytes written to it.
func TestCreateAndMap(t *testing.T) {
	dir := t.TempDir()
	f, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Fatalf("the spool left %v in its directory", names)
	}
	if _, _, err := Map(f); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Map of an empty spool: %v, want ErrEmpty", err)
	}
	want := bytes.Repeat([]byte("spooled value "), 100000)
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	b, unmap, err := Map(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("mapped %d bytes, not the %d written", len(b), len(want))
	}
	if err := unmap(); err != nil {
		t.Fatal(err)
	}
}

// Create in a directory that does not exist fails, leaving nothing open.
func TestCreateMissingDir(t *testing.T) {
	if f, err := Create(t.TempDir() + "/no/such"); err == nil {
		f.Close()
		t.Fatal("Create in a missing directory succeeded")
	}
}
