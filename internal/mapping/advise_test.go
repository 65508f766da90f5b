package mapping

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

// TestAdviseRandom: every mapping is made MADV_RANDOM (the kernel shows
// "rr" in its VmFlags), so that a cold fault reads one page, and WillNeed
// leaves that advice alone.
func TestAdviseRandom(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	m, err := New(f.Fd(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	flags := func() string {
		smaps, err := os.ReadFile("/proc/self/smaps")
		if err != nil {
			t.Skipf("no /proc/self/smaps: %v", err)
		}
		start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&m.Bytes()[0])))
		in := false
		for _, line := range strings.Split(string(smaps), "\n") {
			if strings.HasPrefix(line, start) {
				in = true
			}
			if in && strings.HasPrefix(line, "VmFlags:") {
				return line
			}
		}
		t.Fatalf("mapping at %s not in smaps", start)
		return ""
	}
	if fl := flags(); !strings.Contains(fl, " rr") {
		t.Fatalf("mapping not advised random: %s", fl)
	}
	m.WillNeed(0, 1<<20, true)
	m.WillNeed(0, 1<<20, false)
	if fl := flags(); !strings.Contains(fl, " rr") {
		t.Fatalf("WillNeed changed the advice: %s", fl)
	}
	// A grown mapping is advised too.
	if err := m.Grow(MinReserve + 1); err != nil {
		t.Fatal(err)
	}
	if fl := flags(); !strings.Contains(fl, " rr") {
		t.Fatalf("grown mapping not advised random: %s", fl)
	}
}
