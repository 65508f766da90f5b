package simdr

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/simdr-go/simdr/internal/mapping"
)

// TestReadAhead walks ranges down and up in steps of various sizes: at
// every position the walk reaches, the bytes from there on (half a window
// ahead at least) have been requested, and nothing outside [lo, hi) is.
func TestReadAhead(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := mapping.New(f.Fd(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	g := &gen{m: m}
	for _, tc := range []struct {
		lo, hi, step int64
	}{
		{0, 0, 1}, {0, 100 << 20, 4096}, {5, 3*raWindow + 7, 1 << 20}, {1000, 1000 + raWindow/3, 100}, {0, 40 << 20, 9 << 20},
	} {
		for _, up := range []bool{false, true} {
			r := g.newReadAhead(tc.lo, tc.hi, up)
			check := func(pos int64) {
				if r.edge < tc.lo || r.edge > tc.hi {
					t.Fatalf("%+v up=%v: edge %d outside the walk", tc, up, r.edge)
				}
				ahead := min(raWindow/2, tc.hi-pos)
				if up {
					ahead = min(raWindow/2, pos-tc.lo)
				}
				if up && r.edge < min(pos+raWindow/2, tc.hi) || !up && r.edge > max(pos-raWindow/2, tc.lo) {
					t.Fatalf("%+v up=%v: at %d only up to %d requested (%d ahead wanted)", tc, up, pos, r.edge, ahead)
				}
			}
			if up {
				for pos := tc.lo; pos < tc.hi; pos += tc.step {
					r.at(pos)
					check(pos)
				}
			} else {
				for pos := tc.hi; pos > tc.lo; pos -= tc.step {
					r.at(pos)
					check(pos)
				}
			}
		}
	}
	var none *readAhead
	none.at(5) // a nil readAhead does nothing
}
