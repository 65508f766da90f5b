// Package ttlms converts between a ttl as a time.Duration and as the whole
// milliseconds the server's batch ops (ttl_ms, the binary 'T' record) and
// expiry header carry.
package ttlms

import (
	"math"
	"time"
)

// maxMs is the largest number of milliseconds a time.Duration holds.
const maxMs = math.MaxInt64 / int64(time.Millisecond)

// Duration is ms milliseconds (ms > 0) as a time.Duration, capped at the
// longest one (about 292 years).
func Duration(ms int64) time.Duration {
	if ms > maxMs {
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// Ms is d in whole milliseconds, rounded up (as the library rounds a
// ttl): a positive d is at least 1.
func Ms(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond > 0 {
		ms++
	}
	return ms
}
