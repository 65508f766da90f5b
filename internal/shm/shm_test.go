package shm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func BenchmarkCommit(b *testing.B) {
	f, err := Create(filepath.Join(b.TempDir(), "s"), 0o644, uint32(os.Getuid()))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	c := Commit{Dev: 1, Ino: 2, Boot: BootID(), Tail: 100, Hash: 5, Prev: 50, CRC: 7}
	f.Init(c)
	for i := 0; b.Loop(); i++ {
		c.Tail += 120
		c.Count++
		f.SetInflight(c.Tail + 120)
		f.Store(c)
		f.SetInflight(c.Tail)
		f.Bump()
	}
}

// TestSlots: a commit stored is the one loaded; the newer slot wins; a slot
// torn by a dead writer (odd sequence) or damaged (checksum) leaves the
// other; a torn inflight pair is reported; garbage and zeros load nothing.
func TestSlots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	f, err := Create(path, 0o644, uint32(os.Getuid()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.Load(); ok {
		t.Fatal("a new file holds a commit")
	}
	c := Commit{Dev: 1, Ino: 2, Boot: [2]uint64{3, 4}, Tail: 100, Hash: 5, Prev: 40, CRC: 6}
	c.Count = f.Init(c)
	if got, ok := f.Load(); !ok || got != c {
		t.Fatalf("Load after Init: %+v %v, want %+v", got, ok, c)
	}
	c2 := c
	c2.Tail, c2.Count = 200, c.Count+1
	f.Store(c2)
	if got, _ := f.Load(); got != c2 {
		t.Fatalf("newest: %+v", got)
	}
	// Slot 1 holds c2 now. Tear it: odd sequence.
	*f.slot(1, wSeq) |= 1
	if got, _ := f.Load(); got != c {
		t.Fatalf("with the newest slot torn: %+v, want %+v", got, c)
	}
	*f.slot(1, wSeq) += 1
	f.b[offSlot0+slotSize+5*8] ^= 1 // damage its tail
	if got, _ := f.Load(); got != c {
		t.Fatalf("with the newest slot damaged: %+v, want %+v", got, c)
	}
	f.SetInflight(300)
	if v, ok := f.Inflight(); !ok || v != 300 {
		t.Fatalf("inflight %d %v", v, ok)
	}
	*f.word(offInflight + 8) = 0
	if _, ok := f.Inflight(); ok {
		t.Fatal("a torn inflight pair is ok")
	}
	for i := range f.b {
		f.b[i] = byte(i*131 + 7)
	}
	if _, ok := f.Load(); ok {
		t.Fatal("garbage loads a commit")
	}
	c3 := c
	c3.Count = 0
	if n := f.Init(c3); n != 1 {
		t.Fatalf("Init over garbage: count %d", n)
	}
	if got, ok := f.Load(); !ok || got.Tail != c.Tail {
		t.Fatalf("after Init over garbage: %+v %v", got, ok)
	}
}

// TestOpenChecks: a symbolic link, a file with two links or a short file is
// unusable; a missing file is not created by a follower.
func TestOpenChecks(t *testing.T) {
	dir := t.TempDir()
	uid := uint32(os.Getuid())
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("precious"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	if _, err := Create(link, 0o644, uid); err == nil {
		t.Fatal("Create followed a symbolic link")
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatal("the link's target changed")
	}
	hard := filepath.Join(dir, "hard")
	os.Link(target, hard)
	if _, err := Create(hard, 0o644, uid); !errors.Is(err, ErrUnusable) {
		t.Fatalf("Create on a file with two links: %v", err)
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, make([]byte, 100), 0o644)
	if _, err := Open(short, uid); !errors.Is(err, ErrUnusable) {
		t.Fatalf("Open of a short file: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing"), uid); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Open created the file")
	}
	if _, err := Create(filepath.Join(dir, "x"), 0o644, uid+1); !errors.Is(err, ErrUnusable) {
		t.Fatalf("Create for another owner: %v", err)
	}
}
