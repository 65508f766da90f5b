package simdr

import (
	"math"
	"slices"
	"sync/atomic"
)

// Len's count in a store with expiring keys: live keys in the main index,
// less the records and the marker (hidden), less the keys whose expiry has
// passed. Counting those by walking the expiry index would cost time in
// proportion to the keys with a ttl, and a count retried until no write
// lands while it runs would never end under a steady stream of writes. So
// the expiry index keeps counts that make Len constant time:
//
//   - hidden: the entries holding hiddenMark;
//   - past: the keys whose expiry is at or before mark, a time;
//   - soon: the expiries after mark, ascending, of the keys that had one
//     below limit when they were counted.
//
// For a clock reading now with mark <= now < limit, the expired keys are
// past plus the expiries of soon at or before now. set and clear keep that
// true: a state removed or added at or before mark moves past; one after
// mark and below limit lowers limit to itself (soon, which is immutable,
// may name it or miss it: the counts stop holding at that time, not
// before). When they do not hold, Len recounts under the write lock with
// one walk of the expiry index, at most once per call; how often depends on
// how many keys expire (at most once each soonKeep expiries when nothing
// is rewritten) and on writes of expiries earlier than every counted one.
type counts struct {
	hidden atomic.Int64
	mark   atomic.Int64
	past   atomic.Int64
	limit  atomic.Int64 // 0 until the first count: nothing holds
	soon   atomic.Pointer[[]int64]
}

// soonKeep is how many upcoming expiries a count keeps (8 bytes each; a
// variable for tests).
var soonKeep = 4096

// note adds state v (0, hiddenMark or an expiry) to the counts.
func (c *counts) note(v uint64) { c.move(v, 1) }

// forget removes state v from the counts.
func (c *counts) forget(v uint64) { c.move(v, -1) }

func (c *counts) move(v uint64, d int64) {
	switch {
	case v == 0:
	case v == hiddenMark:
		c.hidden.Add(d)
	case int64(v) <= c.mark.Load():
		c.past.Add(d)
	case int64(v) < c.limit.Load():
		c.limit.Store(int64(v)) // soon may or may not name it: holds until then
	}
}

// expired returns the number of keys expired at now, and false when the
// counts do not hold for now (a recount is needed).
func (c *counts) expired(now int64) (int64, bool) {
	if now < c.mark.Load() || now >= c.limit.Load() {
		return 0, false
	}
	n := c.past.Load()
	if p := c.soon.Load(); p != nil {
		i, _ := slices.BinarySearch(*p, now+1) // the expiries at or before now
		n += int64(i)
	}
	return n, true
}

// recount counts x's states again for now (the caller holds the write lock,
// so nothing changes them meanwhile) and returns the new counts, to
// publish with publish.
func (x *expiry) recount(now int64) (hidden, past int64, soon []int64, limit int64) {
	// The soonKeep+1 smallest expiries after now: gathered, sorted and cut
	// back each time twice as many are held, so that memory stays bounded
	// and most expiries are passed over with one compare (against top, the
	// largest kept once a cut has filled the slice).
	keep := soonKeep + 1
	top := int64(math.MaxInt64)
	cut := func() {
		slices.Sort(soon)
		if len(soon) >= keep {
			soon, top = soon[:keep], soon[keep-1]
		}
	}
	x.ix.Range(func(_, v uint64) bool {
		switch {
		case v == hiddenMark:
			hidden++
		case int64(v) <= now:
			past++
		case int64(v) < top:
			if soon = append(soon, int64(v)); len(soon) == 2*keep {
				cut()
			}
		}
		return true
	})
	cut()
	limit = math.MaxInt64
	if len(soon) > soonKeep {
		limit, soon = soon[soonKeep], soon[:soonKeep]
	}
	return hidden, past, soon, limit
}

// publish stores a recount (the caller holds the write lock and has
// opened a seq window, so that readers see all of it or none).
func (c *counts) publish(now, hidden, past int64, soon []int64, limit int64) {
	c.hidden.Store(hidden)
	c.mark.Store(now)
	c.past.Store(past)
	c.soon.Store(&soon)
	c.limit.Store(limit)
}

// liveCount is Len: live keys, less records, the marker and expired keys,
// from the counts when they hold (constant time, lock-free), else counted
// again under the write lock.
func (s *Store) liveCount() int {
	type res struct {
		n  int64
		ok bool
	}
	r, open := consistent(s, func(g *gen) res {
		n := int64(g.ix.Len())
		x := g.x.Load()
		if x == nil {
			return res{n, true}
		}
		e, ok := x.expired(s.now())
		return res{n - x.hidden.Load() - e, ok}
	})
	switch {
	case !open:
		return 0
	case r.ok:
		return int(max(r.n, 0))
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g := s.cur.Load()
	if g == nil {
		return 0
	}
	n := int64(g.ix.Len())
	x := g.x.Load()
	if x == nil {
		return int(n)
	}
	now := s.now()
	e, ok := x.expired(now)
	if !ok {
		hidden, past, soon, limit := x.recount(now)
		if !s.open() {
			return 0 // closed meanwhile (Close leaves seq odd)
		}
		x.publish(now, hidden, past, soon, limit)
		s.seq.Add(1)
		e = past
	}
	return int(max(n-x.hidden.Load()-e, 0))
}
