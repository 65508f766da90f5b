package ttlms

import (
	"math"
	"testing"
	"time"
)

func TestDurationAndMs(t *testing.T) {
	for _, c := range []struct {
		ms int64
		d  time.Duration
	}{
		{1, time.Millisecond},
		{600000, 10 * time.Minute},
		{maxMs, time.Duration(maxMs) * time.Millisecond},
		{maxMs + 1, math.MaxInt64},
		{math.MaxInt64, math.MaxInt64},
	} {
		if got := Duration(c.ms); got != c.d {
			t.Errorf("Duration(%d) = %v, want %v", c.ms, got, c.d)
		}
	}
	for _, c := range []struct {
		d  time.Duration
		ms int64
	}{
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{90 * time.Second, 90000},
		{math.MaxInt64, maxMs + 1},
		{0, 0},
	} {
		if got := Ms(c.d); got != c.ms {
			t.Errorf("Ms(%v) = %d, want %d", c.d, got, c.ms)
		}
	}
	// Ms then Duration never shortens a ttl.
	for _, d := range []time.Duration{1, time.Millisecond - 1, 1500 * time.Microsecond, math.MaxInt64} {
		if got := Duration(Ms(d)); got < d {
			t.Errorf("Duration(Ms(%v)) = %v, shorter", d, got)
		}
	}
}
