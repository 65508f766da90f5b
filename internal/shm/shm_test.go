package shm

import (
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
