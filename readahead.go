package simdr

import (
	"github.com/simdr-go/simdr/internal/mapping"
	"golang.org/x/sys/unix"
)

// The store's mapping is advised MADV_RANDOM (see internal/mapping), so that
// a cold Get reads one page. Readers that walk the file (Open's recovery
// walk, Verify, Compact, Backup, Entries, ForEachParallel) ask for the range
// ahead of them instead, a window at a time, with a readAhead: the advice
// other goroutines rely on never changes.

// raWindow is how far ahead a walker has the page cache read: a few times
// the usual device read-ahead, so that the disk streams.
const raWindow = 16 << 20

// readAhead keeps the bytes ahead of a cursor walking [lo, hi) of a file
// requested: upward when up, else downward (the chain is walked from the
// tail back). at costs one comparison per call between windows.
type readAhead struct {
	m      *mapping.Map
	lo, hi int64 // the walk's bounds
	edge   int64 // requested up to here (from hi down to edge, or lo up to edge)
	up     bool
}

// newReadAhead starts the read-ahead of a walk over [lo, hi) of g's file
// (best effort; nothing for an empty range).
func (g *gen) newReadAhead(lo, hi int64, up bool) *readAhead {
	r := &readAhead{m: g.m, lo: lo, hi: hi, up: up, edge: hi}
	if up {
		r.edge = lo
	}
	r.at(r.edge)
	return r
}

// at notes that the walk is at pos, and requests the next window when pos
// comes within half a window of what was requested.
func (r *readAhead) at(pos int64) {
	if r == nil {
		return
	}
	if r.up {
		for pos+raWindow/2 >= r.edge && r.edge < r.hi {
			n := min(raWindow, r.hi-r.edge)
			r.m.WillNeed(r.edge, n, false)
			r.edge += n
		}
		return
	}
	for pos-raWindow/2 <= r.edge && r.edge > r.lo {
		n := min(raWindow, r.edge-r.lo)
		r.m.WillNeed(r.edge-n, n, true)
		r.edge -= n
	}
}

// adviseAll requests the whole of [lo, hi) of g's file at once, for a reader
// that visits it in no order (Entries walks the index, not the file), unless
// it is more than a quarter of the machine's memory: then the reader pays a
// page read per page it meets first, as a cold Get does.
func (g *gen) adviseAll(lo, hi int64) {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil || uint64(hi-lo) > uint64(si.Totalram)*uint64(si.Unit)/4 {
		return
	}
	g.m.WillNeed(lo, hi-lo, false)
}
