package faultfs

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCutAfterSize: the armed Size call returns the true size, then the file
// is cut; the cut is one-shot, limited to matching paths, counted as fired,
// and disarmed by Clear. Size itself (vfs.OS's fstat) follows the file.
func TestCutAfterSize(t *testing.T) {
	fs := New(nil)
	dir := t.TempDir()
	open := func(name string) (*file, string) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, make([]byte, 10000), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := fs.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f.(*file), path
	}
	a, pa := open("a.store")
	b, pb := open("b.other")
	size := func(f *file) int64 {
		n, err := f.Size()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	onDisk := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	fs.CutAfterSize(".store", 100)
	if n := size(b); n != 10000 || onDisk(pb) != 10000 {
		t.Fatalf("a file not matching was cut: Size %d, %d on disk", n, onDisk(pb))
	}
	if n := size(a); n != 10000 || onDisk(pa) != 100 || fs.Fired() != 1 {
		t.Fatalf("the armed Size = %d (want the size before the cut, 10000), %d on disk (want 100), fired %d", n, onDisk(pa), fs.Fired())
	}
	if n := size(a); n != 100 || fs.Fired() != 1 {
		t.Fatalf("the next Size = %d, fired %d: the cut is one-shot", n, fs.Fired())
	}
	fs.CutAfterSize("", 1)
	fs.Clear()
	if n := size(b); n != 10000 || onDisk(pb) != 10000 {
		t.Fatalf("Clear did not disarm the cut: %d", onDisk(pb))
	}
}
