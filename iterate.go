package simdr

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Entries returns every live entry, each key once with its latest value, in
// no particular order. It takes no lock and sees writes whole: each entry is
// read as Get reads it, so once Entries (or any read) has yielded an effect
// of a write, every entry it yields afterwards reflects all of that write.
// It is not one snapshot: a write made while it runs may show in the entries
// yielded after it and not in those before, and a key a write adds may or may
// not be visited. Ranging over it during or after Close stops (or yields
// nothing). A value over 32 KiB whose metadata another process cut off the
// file, or overwrote, is skipped: Get of it fails with ErrCorrupt, and its
// bytes are gone (reading them would fault).
func (s *Store) Entries() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		var (
			q       uint64  // an even seq: the state the reads below are checked against
			g       *gen    // the generation ranged over
			t       uintptr // its table when the range began
			current bool    // g's table t was the current one at q
		)
		// anchor takes q from a state between writes and notes whether t is
		// still the current table then. It returns false once closed.
		anchor := func() bool {
			for try := 0; ; try++ {
				if q = s.seq.Load(); q&1 == 0 {
					cg := s.cur.Load()
					if cg == nil {
						return false
					}
					ct := cg.ix.TableID()
					if s.seq.Load() == q {
						if g == nil {
							g, t = cg, ct
						}
						current = cg == g && ct == t
						return true
					}
				}
				if s.await(try) {
					return false
				}
			}
		}
		if !anchor() {
			return
		}
		g.adviseAll(0, g.tail.Load()) // read-ahead: see readahead.go
		// Every table change on a shared index comes with a seq window (see
		// publish), so a slot read while seq stays q is of the state at q.
		// Once a write was published and the table ranged over is no longer
		// the current one (it grew, or Compact replaced the generation),
		// each key is looked up afresh instead.
		g.ix.Range(func(h, v uint64) bool {
			if current {
				gone := s.expired(g, h)
				if s.seq.Load() == q {
					if gone {
						return true
					}
					e, err := g.entry(h, v)
					if err != nil {
						return true // cut off the file under the Store, as lookup skips it
					}
					return yield(e)
				}
				if !anchor() {
					return false
				}
				// (h, v) was read before that write: read it again below.
			}
			e, err := s.lookup(h)
			switch {
			case errors.Is(err, ErrClosed):
				return false
			case err != nil:
				return true // deleted since
			}
			return yield(e)
		})
	}
}

// lookup is GetHash without checksum verification.
func (s *Store) lookup(h uint64) (Entry, error) {
	for try := 0; ; try++ {
		if q := s.seq.Load(); q&1 == 0 {
			g := s.cur.Load()
			if g == nil {
				return Entry{}, ErrClosed
			}
			v, ok := g.ix.Get(h)
			ok = ok && !s.expired(g, h)
			var (
				e   Entry
				err error
			)
			if ok {
				e, err = g.entry(h, v) // a long value's metadata, guarded
			}
			if s.seq.Load() == q {
				if !ok {
					return Entry{}, ErrNotFound
				}
				if err != nil {
					return Entry{}, fmt.Errorf("simdr: get: %w", err)
				}
				return e, nil
			}
		}
		if s.await(try) {
			return Entry{}, ErrClosed
		}
	}
}

// ForEachParallel calls fn for every live entry, each key once with its
// latest value, spread over workers goroutines (GOMAXPROCS when workers < 1),
// in file order. It stops at the first error fn returns, or when ctx is done,
// and returns that error; when the Store is closed before or while it runs,
// it stops and returns ErrClosed. When another process cut the file under
// the Store, it stops at the first value over 32 KiB whose metadata was cut
// off (or overwritten), with an error matching ErrCorrupt, as Get fails.
//
// The set of entries is taken when the call starts, and writes made meanwhile
// are not visited. It is one snapshot (a state between writes) unless writes
// keep interrupting the scan; then each entry is read whole on its own, as
// Entries reads them. fn must be safe for concurrent use. Entries passed to fn
// stay valid until Close: fn running while Close runs reads zeros, not a
// fault (see Close).
func (s *Store) ForEachParallel(ctx context.Context, workers int, fn func(Entry) error) error {
	positions, ok := s.snapshot()
	if !ok {
		return fmt.Errorf("simdr: for each: %w", ErrClosed)
	}
	if g := s.cur.Load(); g != nil {
		g.adviseAll(0, g.tail.Load()) // read-ahead: see readahead.go
	}
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
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
					if s.closed.Load() {
						// Do not read the mapping long after Close (see Close).
						fail(fmt.Errorf("simdr: for each: %w", ErrClosed))
						return
					}
					select {
					case <-done:
						fail(ctx.Err())
						return
					default:
					}
					e, err := l.g.entry(l.h, l.v)
					if err != nil {
						fail(fmt.Errorf("simdr: for each: %w", err))
						return
					}
					if err := fn(e); err != nil {
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

// visit is a live key, its index value and the generation it is in.
type visit struct {
	g    *gen
	h, v uint64
}

// snapshot returns the live entries, sorted by generation and position in
// the file, each from a state between writes: all from one state when a scan
// of the index runs without a write being published, else each read on its
// own. ok is false when the Store is closed.
func (s *Store) snapshot() (out []visit, ok bool) {
	for try := 0; try < 3; try++ {
		q := s.seq.Load()
		g := s.cur.Load()
		if g == nil {
			return nil, false
		}
		if q&1 == 0 {
			out = out[:0]
			g.ix.Range(func(h, v uint64) bool {
				if !s.expired(g, h) {
					out = append(out, visit{g, h, v})
				}
				return true
			})
			if s.seq.Load() == q {
				sortVisits(out)
				return out, true
			}
		}
		if s.await(try) {
			return nil, false
		}
	}
	// Writes keep coming: read each entry whole on its own.
	g := s.cur.Load()
	if g == nil {
		return nil, false
	}
	out, ok = out[:0], true
	g.ix.Range(func(h, _ uint64) bool {
		for try := 0; ; try++ {
			if q := s.seq.Load(); q&1 == 0 {
				cg := s.cur.Load()
				if cg == nil {
					ok = false
					return false
				}
				v, live := cg.ix.Get(h)
				live = live && !s.expired(cg, h)
				if s.seq.Load() == q {
					if live {
						out = append(out, visit{cg, h, v})
					}
					return true
				}
			}
			if s.await(try) {
				ok = false
				return false
			}
		}
	})
	if !ok {
		return nil, false
	}
	sortVisits(out)
	return out, true
}

// sortVisits sorts by generation, then position: each worker reads a file
// front to back.
func sortVisits(vs []visit) {
	slices.SortFunc(vs, func(a, b visit) int {
		if a.g != b.g {
			return cmp.Compare(uintptr(unsafe.Pointer(a.g)), uintptr(unsafe.Pointer(b.g)))
		}
		return cmp.Compare(endOf(a.v), endOf(b.v))
	})
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
