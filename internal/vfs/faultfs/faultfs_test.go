package faultfs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestFaults(t *testing.T) {
	fs := New(nil)
	path := filepath.Join(t.TempDir(), "f")
	f, err := fs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	// The 2nd WriteAt fails after writing 3 bytes.
	fs.Inject(Rule{Op: WriteAt, Nth: 2, Err: syscall.ENOSPC, Keep: 3})
	if _, err := f.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	n, err := f.WriteAt([]byte("world"), 5)
	if n != 3 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteAt = %d, %v; want 3, ENOSPC", n, err)
	}
	if _, err := f.WriteAt([]byte("!"), 8); err != nil {
		t.Fatalf("a one-shot rule fired twice: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "hellowor!" {
		t.Fatalf("file = %q", b)
	}

	// Sticky: every call from the first on.
	fs.Inject(Rule{Op: Sync, Sticky: true})
	for range 3 {
		if err := f.Sync(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("Sync = %v, want EIO", err)
		}
	}
	fs.Clear()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}

	// Match limits a rule to some paths.
	fs.Inject(Rule{Op: Truncate, Match: ".other"})
	if err := f.Truncate(2); err != nil {
		t.Fatal(err)
	}
	fs.Fail(Truncate, 1, syscall.EIO)
	if err := f.Truncate(1); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Truncate = %v, want EIO", err)
	}
	if sz, _ := f.Size(); sz != 2 {
		t.Fatalf("size %d after a failed Truncate, want 2", sz)
	}

	// A size limit: a disk of 6 bytes.
	fs.Clear()
	fs.SetLimit(6)
	n, err = f.WriteAt([]byte("abcdef"), 2)
	if n != 4 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteAt past the limit = %d, %v; want 4, ENOSPC", n, err)
	}
	if got := fs.Calls(WriteAt); got != 4 {
		t.Fatalf("Calls(WriteAt) = %d, want 4", got)
	}
	if fs.Fired() != 6 {
		t.Fatalf("Fired = %d, want 6", fs.Fired())
	}

	// OpenFile, Rename and SyncDir.
	fs.Clear()
	fs.Fail(OpenFile, 1, syscall.EMFILE)
	if _, err := fs.OpenFile(path, os.O_RDWR, 0); !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("OpenFile = %v", err)
	}
	fs.Fail(Rename, 1, nil)
	if err := fs.Rename(path, path+".x"); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Rename = %v", err)
	}
	fs.Fail(SyncDir, 1, nil)
	if err := fs.SyncDir(filepath.Dir(path)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("SyncDir = %v", err)
	}
	if err := fs.SyncDir(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
}
