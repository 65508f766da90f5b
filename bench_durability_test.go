package simdr

import (
	"bytes"
	"path/filepath"
	"testing"
)

// BenchmarkPutSmall is one Put of a 100-byte value at a time (no sync): the
// write path's fixed cost, which the check for a file cut under the writer
// (one fstat per write) adds to.
func BenchmarkPutSmall(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "p"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	v := bytes.Repeat([]byte("v"), 100)
	k := make([]byte, 8)
	for i := 0; b.Loop(); i++ {
		if err := s.Put(benchKey(k, i), v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteCheck is the check begin makes before every write for a file
// cut under the writer: after the writer's own commit, a compare of the last
// metadata through the mapping ("mapping"); otherwise one fstat ("fstat").
func BenchmarkWriteCheck(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "c"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Put([]byte("k"), []byte("v")); err != nil {
		b.Fatal(err)
	}
	g := s.cur.Load()
	for _, tc := range []struct {
		name string
		tail int64
	}{{"mapping", s.Size()}, {"fstat", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if err := s.checkCut(g, tc.tail); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
