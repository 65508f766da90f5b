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
