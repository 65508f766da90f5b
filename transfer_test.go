package simdr

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestNamespaceKey(t *testing.T) {
	got := hex.EncodeToString(NamespaceKey([]byte("namespace1"), []byte("key1")))
	if got != "7c066c9df2e6eccbe229d8d50c074d38" {
		t.Fatalf("NamespaceKey = %s", got)
	}
}

func TestHashCalls(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "k", "v")
	h := Hash([]byte("k"))
	if e, err := s.GetHash(h); err != nil || string(e.Bytes()) != "v" || e.KeyHash() != h {
		t.Fatalf("GetHash: %v", err)
	}
	if err := s.DeleteHash(h); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetHash(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetHash after DeleteHash = %v", err)
	}
}

func TestGetMany(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "a", "1")
	putT(t, s, "c", "3")
	es, err := s.GetMany([][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("a")})
	if err != nil || len(es) != 4 {
		t.Fatal(err)
	}
	want := []string{"1", "", "3", "1"}
	for i, e := range es {
		if string(e.Bytes()) != want[i] || e.Exists() != (want[i] != "") {
			t.Fatalf("slot %d: %q exists=%v", i, e.Bytes(), e.Exists())
		}
	}
	if es, err := s.GetMany(nil); err != nil || len(es) != 0 {
		t.Fatal(err)
	}
}

func TestRename(t *testing.T) {
	s, path := openT(t, nil)
	putT(t, s, "old", "value")
	putT(t, s, "new", "replaced")
	e0, _ := s.Get([]byte("old"))
	if err := s.Rename([]byte("old"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	e1, _ := s.Get([]byte("new"))
	if e1.Checksum() != e0.Checksum() {
		t.Fatal("checksum changed")
	}
	model := map[string]string{"new": "value"}
	checkModel(t, s, model)
	if err := s.Rename([]byte("new"), []byte("new")); !errors.Is(err, ErrSameKey) {
		t.Fatalf("rename to itself = %v", err)
	}
	if err := s.Rename([]byte("gone"), []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rename missing = %v", err)
	}
	s.Close()
	checkModel(t, reopenT(t, path, nil), model)
}

func TestCopyMove(t *testing.T) {
	dir := t.TempDir()
	src := reopenT(t, filepath.Join(dir, "src"), nil)
	dst := reopenT(t, filepath.Join(dir, "dst"), nil)
	zeros := make([]byte, 4096) // all-zero values work (the original fails on them)
	for k, v := range map[string][]byte{"z": zeros, "z2": {0, 0}, "t": []byte("text")} {
		if err := src.Put([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Copy([]byte("z"), dst); err != nil {
		t.Fatal(err)
	}
	if err := src.Move([]byte("z2"), dst); err != nil {
		t.Fatal(err)
	}
	if err := src.Move([]byte("t"), dst); err != nil {
		t.Fatal(err)
	}
	checkModel(t, src, map[string]string{"z": string(zeros)})
	checkModel(t, dst, map[string]string{"z": string(zeros), "z2": "\x00\x00", "t": "text"})
	a, _ := src.Get([]byte("z"))
	b, _ := dst.Get([]byte("z"))
	if a.Checksum() != b.Checksum() || a.KeyHash() != b.KeyHash() {
		t.Fatal("copy changed checksum or hash")
	}
	if err := src.Copy([]byte("missing"), dst); !errors.Is(err, ErrNotFound) {
		t.Fatalf("copy missing = %v", err)
	}
	if err := src.Move([]byte("missing"), dst); !errors.Is(err, ErrNotFound) {
		t.Fatalf("move missing = %v", err)
	}
	// The same file, as itself, through a symlink, and through a hard link.
	if err := src.Copy([]byte("z"), src); !errors.Is(err, ErrSameStore) {
		t.Fatalf("copy to itself = %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "dst"), link); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	viaLink := reopenT(t, link, &Options{ReadOnly: true})
	if err := viaLink.Copy([]byte("z"), reopenT(t, filepath.Join(dir, "dst"), nil)); !errors.Is(err, ErrSameStore) {
		t.Fatalf("copy through a symlink = %v", err)
	}
}

// TestMoveKeepsValueOnFailure: a Move into a store that cannot take the value
// (read-only here) fails and leaves the source with its value.
func TestMoveKeepsValueOnFailure(t *testing.T) {
	dir := t.TempDir()
	src := reopenT(t, filepath.Join(dir, "src"), nil)
	other := reopenT(t, filepath.Join(dir, "ro"), nil)
	putT(t, other, "x", "y")
	other.Close()
	ro := reopenT(t, filepath.Join(dir, "ro"), &Options{ReadOnly: true})
	putT(t, src, "k", "precious")
	if err := src.Move([]byte("k"), ro); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("move into read-only = %v", err)
	}
	if getT(t, src, "k") != "precious" {
		t.Fatal("move lost the value")
	}
	closed := reopenT(t, filepath.Join(dir, "c"), nil)
	closed.Close()
	if err := src.Move([]byte("k"), closed); err == nil {
		t.Fatal("move into a closed store succeeded")
	}
	if !bytes.Equal([]byte(getT(t, src, "k")), []byte("precious")) {
		t.Fatal("move lost the value")
	}
}
