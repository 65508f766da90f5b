package mapping

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestReserve(t *testing.T) {
	for _, tc := range []struct{ size, want int64 }{
		{0, MinReserve}, {1, MinReserve}, {MinReserve / 2, MinReserve},
		{MinReserve/2 + 1, 2 * MinReserve}, {MinReserve, 2 * MinReserve},
		{3 << 30, 8 << 30},
	} {
		if tc.size > MaxMap {
			continue // a 32-bit platform: see TestReserveRule
		}
		if got := Reserve(tc.size); got != tc.want {
			t.Errorf("Reserve(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

// TestGrowKeepsOldSlices grows a mapping past its reservation and checks that
// a slice taken from the first mapping still reads the same bytes, and that
// bytes written later show through the new mapping.
func TestGrowKeepsOldSlices(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "m"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := bytes.Repeat([]byte("abcdefgh"), 512)
	if _, err := f.WriteAt(first, 0); err != nil {
		t.Fatal(err)
	}
	m, err := New(f.Fd(), int64(len(first)))
	if err != nil {
		t.Fatal(err)
	}
	old := m.Bytes()[:len(first)]
	if !bytes.Equal(old, first) {
		t.Fatal("first mapping does not show the file")
	}
	reserved := int64(len(m.Bytes()))
	big := reserved + 4096
	if _, err := f.WriteAt([]byte("tail"), big-4); err != nil {
		t.Fatal(err)
	}
	if err := m.Grow(big); err != nil {
		t.Fatal(err)
	}
	if int64(len(m.Bytes())) < big {
		t.Fatalf("grown mapping has %d bytes, want ≥ %d", len(m.Bytes()), big)
	}
	if string(m.Bytes()[big-4:big]) != "tail" {
		t.Fatal("new mapping does not show appended bytes")
	}
	if !bytes.Equal(old, first) {
		t.Fatal("old slice changed after Grow")
	}
	if err := m.Grow(10); err != nil { // smaller: nothing to do
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Grow(2 * big); err == nil {
		t.Fatal("Grow after Close succeeded")
	}
}
