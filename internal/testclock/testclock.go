// Package testclock is a clock that tests move by hand, to give a store as
// Options.Clock: expiring keys are tested on it, never with sleeps.
package testclock

import (
	"sync/atomic"
	"time"
)

// Clock is a time in whole milliseconds, safe for concurrent use.
type Clock struct{ ms atomic.Int64 }

// New returns a clock at 2026-12-01 12:00:00 UTC.
func New() *Clock {
	c := &Clock{}
	c.ms.Store(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).UnixMilli())
	return c
}

// Now is the clock's time (the function to give as Options.Clock).
func (c *Clock) Now() time.Time { return time.UnixMilli(c.ms.Load()) }

// Advance moves the clock d forward (back, for a negative d), in whole
// milliseconds.
func (c *Clock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }
