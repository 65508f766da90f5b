package mapping

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestReserveRule: the reservation is the next power of two at or above twice
// the size, at least MinReserve, and never over what the platform maps: on a
// 32-bit platform 1 GiB (a 2 GiB int(length) overflowed mmap's length and
// failed with EINVAL for any file over 512 MiB), with 0 for a larger file.
func TestReserveRule(t *testing.T) {
	const M, G = 1 << 20, 1 << 30
	for _, tc := range []struct {
		size    int64
		intSize int
		want    int64
	}{
		{0, 64, MinReserve}, {1, 64, MinReserve}, {32 * M, 64, MinReserve}, {32*M + 1, 64, 128 * M},
		{512 * M, 64, G}, {512*M + 1, 64, 2 * G}, {3 * G, 64, 8 * G}, {1 << 47, 64, 1 << 48}, {1<<48 + 1, 64, 0},
		{0, 32, MinReserve}, {32*M + 1, 32, 128 * M}, {256 * M, 32, 512 * M}, {512 * M, 32, G},
		{512*M + 1, 32, G}, {G - 1, 32, G}, {G, 32, G}, {G + 1, 32, 0}, {4 * G, 32, 0},
	} {
		got := reserve(tc.size, tc.intSize)
		if got != tc.want {
			t.Errorf("reserve(%d, %d-bit) = %d, want %d", tc.size, tc.intSize, got, tc.want)
		}
		if got != 0 && (got < tc.size || got > maxMap(tc.intSize)) {
			t.Errorf("reserve(%d, %d-bit) = %d: outside [size, %d]", tc.size, tc.intSize, got, maxMap(tc.intSize))
		}
		if tc.intSize == 32 && got > 1<<31-1 {
			t.Errorf("reserve(%d, 32-bit) = %d does not fit a 32-bit int", tc.size, got)
		}
	}
	if maxMap(strconv.IntSize) != MaxMap || Reserve(100) != reserve(100, strconv.IntSize) {
		t.Fatalf("MaxMap %d / Reserve disagree with the rule for %d-bit ints", int64(MaxMap), strconv.IntSize)
	}
}

// TestGrowPastMaxMap: asking for more than the platform maps fails with
// ErrTooLarge, naming the limit, and maps nothing.
func TestGrowPastMaxMap(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := New(f.Fd(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	err = m.Grow(MaxMap + 1)
	if !errors.Is(err, ErrTooLarge) || !contains(err.Error(), strconv.FormatInt(MaxMap, 10)) {
		t.Fatalf("Grow(MaxMap+1) = %v, want ErrTooLarge naming %d", err, int64(MaxMap))
	}
	if _, err := New(f.Fd(), MaxMap+1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("New(MaxMap+1) = %v, want ErrTooLarge", err)
	}
	if len(m.Bytes()) != MinReserve {
		t.Fatalf("mapping is %d bytes after the failed Grow", len(m.Bytes()))
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestMapOver512MiB maps a (sparse) file of 600 MiB, which on a 32-bit
// platform used to fail with "mmap: invalid argument" (a 2 GiB reservation
// overflowed int), and reads its last byte.
func TestMapOver512MiB(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 600 << 20
	if err := f.Truncate(size); err != nil {
		t.Skip("cannot make a sparse file:", err)
	}
	m, err := New(f.Fd(), size)
	if err != nil {
		t.Fatalf("New(%d) on %d-bit: %v", size, strconv.IntSize, err)
	}
	defer m.Close()
	if b := m.Bytes(); int64(len(b)) < size || b[size-1] != 0 {
		t.Fatalf("mapping of %d bytes", len(b))
	}
}
