package simdr

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// Entries returns every live entry, each key once with its latest value, in
// no particular order. It reads the index without locks: writes made while it
// runs may or may not be seen. Ranging over it after Close yields nothing.
func (s *Store) Entries() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		g := s.cur.Load()
		if g == nil {
			return
		}
		g.ix.Range(func(h, v uint64) bool {
			return yield(g.entryAt(h, v))
		})
	}
}

// ForEachParallel calls fn for every live entry, each key once with its
// latest value, spread over workers goroutines (GOMAXPROCS when workers < 1).
// It stops at the first error fn returns, or when ctx is done, and returns
// that error. The set of entries is taken when the call starts; writes made
// meanwhile are not visited. fn must be safe for concurrent use.
func (s *Store) ForEachParallel(ctx context.Context, workers int, fn func(Entry) error) error {
	g := s.cur.Load()
	if g == nil {
		return fmt.Errorf("simdr: for each: %w", ErrClosed)
	}
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	positions := g.live(g.tail.Load()) // each worker reads the file front to back
	const chunk = 256
	var (
		next    atomic.Int64
		errOnce sync.Once
		first   error
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err })
		stop.Store(true)
	}
	// A non-blocking receive from Done costs no lock, unlike ctx.Err.
	done := ctx.Done()
	for range min(workers, max(1, len(positions)/chunk+1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= len(positions) {
					return
				}
				for _, l := range positions[lo:min(lo+chunk, len(positions))] {
					if stop.Load() { // checked per entry: fn may be slow
						return
					}
					select {
					case <-done:
						fail(ctx.Err())
						return
					default:
					}
					if err := fn(g.entryAt(l.h, l.v)); err != nil {
						fail(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// located is a live key and its index value.
type located struct{ h, v uint64 }

// live returns the live keys whose payloads end before below, sorted by
// their position in the file.
func (g *gen) live(below int64) []located {
	out := make([]located, 0, g.ix.Len())
	g.ix.Range(func(h, v uint64) bool {
		if endOf(v) < below {
			out = append(out, located{h, v})
		}
		return true
	})
	slices.SortFunc(out, func(a, b located) int { return cmp.Compare(endOf(a.v), endOf(b.v)) })
	return out
}
