package format

import (
	"math/rand/v2"
	"testing"
)

// TestSums checks the derived checksums FindTail uses for long payloads
// against plain ones, for ranges asked in any order and from a floor.
func TestSums(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 3<<20+123)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for _, floor := range []int64{0, 1, 4095, 100000} {
		c := &sums{floor: floor}
		for range 300 {
			start := floor + r.Int64N(int64(len(data))-floor)
			end := start + r.Int64N(int64(len(data))-start+1)
			if r.IntN(4) == 0 {
				start = floor
			}
			if got, want := c.checksum(data, start, end), Checksum(data[start:end]); got != want {
				t.Fatalf("floor %d: checksum(%d, %d) = %08x, want %08x", floor, start, end, got, want)
			}
		}
	}
	if got := crcShift(Checksum([]byte("hello")), 0); got != Checksum([]byte("hello")) {
		t.Fatalf("crcShift by 0 = %08x", got)
	}
}
