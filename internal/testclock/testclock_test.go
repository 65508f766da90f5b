package testclock

import (
	"testing"
	"time"
)

func TestAdvance(t *testing.T) {
	c := New()
	start := c.Now()
	c.Advance(90 * time.Second)
	if got := c.Now().Sub(start); got != 90*time.Second {
		t.Errorf("advanced %v, want 90s", got)
	}
	c.Advance(-time.Hour)
	if got := c.Now().Sub(start); got != -time.Hour+90*time.Second {
		t.Errorf("after going back: %v", got)
	}
}
