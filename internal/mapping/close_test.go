package mapping

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"
)

// mapped returns the address ranges of /proc/self/maps that overlap [lo, hi).
func mapped(t *testing.T, lo, hi uintptr) [][2]uintptr {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skip("no /proc/self/maps:", err)
	}
	defer f.Close()
	var out [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var a, b uintptr
		if _, err := fmt.Sscanf(sc.Text(), "%x-%x", &a, &b); err == nil && a < hi && b > lo {
			out = append(out, [2]uintptr{max(a, lo), min(b, hi)})
		}
	}
	return out
}

func newMap(t *testing.T, content []byte) (*Map, *os.File) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "m"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	m, err := New(f.Fd(), int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	return m, f
}

// TestCloseLeavesZeros: after Close, a slice into the mapping reads zeros,
// not a fault, and Bytes still has its length; the reservation past the
// file is unmapped at once, the zero pages after Grace.
func TestCloseLeavesZeros(t *testing.T) {
	defer func(g time.Duration) { Grace = g }(Grace)
	Grace = 50 * time.Millisecond
	content := bytes.Repeat([]byte("x"), 3*4096+5)
	m, _ := newMap(t, content)
	b := m.Bytes()
	old := b[:len(content)]
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	hi := lo + uintptr(len(b))
	keep := lo + 4*4096 // the file's size, page-rounded
	before := Retired()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(old, make([]byte, len(content))) {
		t.Fatal("a slice read after Close does not read zeros")
	}
	if len(m.Bytes()) != len(b) {
		t.Fatalf("Bytes after Close has %d bytes, want %d", len(m.Bytes()), len(b))
	}
	if got := mapped(t, lo, hi); len(got) != 1 || got[0] != [2]uintptr{lo, keep} {
		t.Fatalf("after Close, mapped %x, want only [%x %x)", got, lo, keep)
	}
	if Retired() != before+1 {
		t.Fatalf("%d regions wait, want %d", Retired(), before+1)
	}
	if err := m.Grow(10); err != ErrClosed {
		t.Fatalf("Grow after Close = %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	// After the grace period, the zero pages go too.
	for i := 0; len(mapped(t, lo, keep)) != 0; i++ {
		if i == 1000 {
			t.Fatalf("zero pages still mapped 10 s after a grace of %v", Grace)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMaxRetired: more closed Maps than MaxRetired in the grace period do not
// hold more than MaxRetired regions.
func TestMaxRetired(t *testing.T) {
	defer func(n int) { MaxRetired = n }(MaxRetired)
	MaxRetired = 3
	for range 6 {
		m, _ := newMap(t, []byte("some bytes"))
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if n := Retired(); n > MaxRetired {
			t.Fatalf("%d regions wait, more than MaxRetired %d", n, MaxRetired)
		}
	}
}

// TestCloseEmptyFile: an empty file leaves no zero pages (no slice can
// point into it).
func TestCloseEmptyFile(t *testing.T) {
	m, _ := newMap(t, nil)
	b := m.Bytes()
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	before := Retired()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mapped(t, lo, lo+uintptr(len(b))); len(got) != 0 || Retired() != before {
		t.Fatalf("an empty file's Close left %x mapped", got)
	}
}
