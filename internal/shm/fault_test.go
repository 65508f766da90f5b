package shm

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCutFile: every method of a File whose file another process cut to
// nothing returns (no SIGBUS): Load and Inflight report nothing, stores are
// lost, Sleep sleeps instead of spinning, and Faulted says so. Once the file
// is sized again, a new Init works through the same mapping.
func TestCutFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	f, err := Create(path, 0o644, uint32(os.Getuid()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := Commit{Dev: 1, Ino: 2, Boot: BootID(), Tail: 100, Hash: 5, Prev: 50, CRC: 7}
	f.Init(c)
	if f.Faulted() {
		t.Fatal("Faulted before any cut")
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() bool{
		"Valid":       func() bool { return !f.Valid() },
		"Load":        func() bool { _, ok := f.Load(); return !ok },
		"Inflight":    func() bool { _, ok := f.Inflight(); return !ok },
		"Store":       func() bool { f.Store(c); return true },
		"SetInflight": func() bool { f.SetInflight(200); return true },
		"Bump":        func() bool { f.Bump(); return true },
		"Word":        func() bool { return f.Word() == 0 },
		"Init":        func() bool { return f.Init(c) == 0 },
		"Sleep":       func() bool { f.Sleep(0, time.Millisecond); return true },
		"Wake":        func() bool { f.Wake(); return true },
	} {
		if !op() {
			t.Errorf("%s on a cut file returned as if it were whole", name)
		}
	}
	if !f.Faulted() {
		t.Fatal("Faulted is false after the cut")
	}
	if err := os.Truncate(path, Size); err != nil {
		t.Fatal(err)
	}
	c.Count = 0
	if n := f.Init(c); n == 0 {
		t.Fatal("Init after the file was sized again failed")
	}
	if got, ok := f.Load(); !ok || got.Tail != c.Tail {
		t.Fatalf("Load after the new Init = %+v, %v", got, ok)
	}
}
