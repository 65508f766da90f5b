package simdr

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/shm"
)

// Refresh brings a read-only Store up to date with what the writer has
// committed since it opened or last refreshed. It learns the writer's
// committed tail from the shared state file beside the store (see
// docs/concurrency.md): it walks the chain from that tail down to the tail it
// knows and never reads a byte past the committed tail, so an append in
// flight (whatever its bytes imitate) is never seen, and a write the writer
// rolls back cannot fault the follower. Without a usable state file (missing,
// unreadable, stale, or the file was appended to by a program that does not
// keep it, such as the Rust original), it falls back to scanning back from
// the file's end to the tail it knows, which cannot tell an entry from a
// value's bytes that imitate one. When the writer has compacted (the path now
// names a new file), Refresh moves to the new file. Slices handed out before
// stay valid until Close. On a writable Store, which is always up to date,
// Refresh does nothing.
func (s *Store) Refresh() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g := s.cur.Load()
	if g == nil {
		return fmt.Errorf("simdr: refresh: %w", ErrClosed)
	}
	if !s.opts.ReadOnly {
		return nil
	}
	if err := s.refresh(g); err != nil {
		return fmt.Errorf("simdr: refresh %s: %w", s.path, err)
	}
	return nil
}

func (s *Store) refresh(g *gen) error {
	pi, err := s.fs.Stat(s.path)
	if err != nil {
		return err
	}
	size, err := g.f.Size()
	if err != nil {
		return err
	}
	tail := g.tail.Load()
	if !os.SameFile(g.fi, pi) || size < tail {
		return s.reload() // replaced by a Compact, or cut back by a repair
	}
	s.sf.seenSize.Store(size)
	if s.sf.f.Load() == nil {
		s.openState(g.fi) // the writer may have made it since
	}
	// The state is read after the size: a byte the size covers was written
	// after the writer raised the inflight bound past it.
	if c, ok := s.vouched(g, size); ok {
		return s.refreshTo(g, c)
	}
	if f := s.sf.f.Load(); f != nil && !f.Is(statePath(s.path)) {
		s.reopenState(g.fi) // a new writer made a new state file
		if size, err = g.f.Size(); err != nil {
			return err
		}
		if c, ok := s.vouched(g, size); ok {
			return s.refreshTo(g, c)
		}
	}
	if size == tail {
		return nil
	}
	// No usable state: scan (see the Refresh comment for what this cannot tell).
	newTail, ok, err := s.scanFrom(g, tail, size)
	if err != nil || !ok {
		return err
	}
	// A writer that started keeping the state for this file while we scanned
	// (its first write after a Compact, say) may have written what we took
	// for entries: the state decides then.
	if size2, err := g.f.Size(); err == nil {
		if c, ok := s.vouched(g, size2); ok {
			return s.refreshTo(g, c)
		}
	}
	if newTail == tail {
		return nil
	}
	slices.Reverse(s.ops) // walked newest first; applied oldest first
	g.markRecords(s.ops)
	s.publish(g, s.ops, newTail)
	return nil
}

// vouched returns the state's committed tail for g when the state describes
// g's file in this boot and nobody but its writer wrote past that tail (the
// file's size, read before the state, is within the writer's inflight bound).
func (s *Store) vouched(g *gen, size int64) (shm.Commit, bool) {
	c, infl, ok := s.stateCommit(g)
	if !ok || size > infl {
		return shm.Commit{}, false
	}
	return c, true
}

// refreshTo moves g to the committed tail c.Tail: the metadata there must be
// the one c records, the chain from it must step down exactly to g's tail,
// and the entry ending there must pass its checksum.
// If it does not (this Store once took uncommitted bytes for entries, in a
// scan without the state; or the writer cut the file back), the file is
// opened again.
func (s *Store) refreshTo(g *gen, c shm.Commit) error {
	T, tail := c.Tail, g.tail.Load()
	switch {
	case T == tail:
		return nil
	case T < tail:
		return s.reload()
	}
	if err := g.m.Grow(T); err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	data := g.m.Bytes()[:T]
	s.ops = s.ops[:0]
	ok := false
	if guardFault(func() {
		ok = metaMatches(data, c) &&
			format.WalkChain(data, tail, T, func(e format.Entry) { s.ops = append(s.ops, opFor(e)) })
	}) {
		return nil // cut meanwhile: the next Refresh sees what is left
	}
	if !ok {
		return s.reload()
	}
	slices.Reverse(s.ops)
	g.markRecords(s.ops)
	s.publish(g, s.ops, T)
	return nil
}

// scanFrom finds, without the state, the highest chain end in g's file of
// size bytes that steps down to tail, and collects its entries in s.ops
// (newest first). ok is false when the writer cut the file meanwhile.
func (s *Store) scanFrom(g *gen, tail, size int64) (newTail int64, ok bool, err error) {
	if err := g.m.Grow(size); err != nil {
		return 0, false, fmt.Errorf("mmap: %w", err)
	}
	data := g.m.Bytes()[:size]
	newTail = tail
	s.ops = s.ops[:0] // a read-only Store has no writes in progress
	var cls format.TailClass
	if guardFault(func() {
		newTail, _ = format.FindTail(data, tail)
		if newTail < size {
			// Damage is not a torn tail: intact entries above a break.
			if cls = format.ClassifyTail(data, tail, newTail, size); cls.Kind == format.Broken {
				return
			}
		}
		format.Walk(data, tail, newTail, func(e format.Entry) bool {
			s.ops = append(s.ops, opFor(e))
			return true
		})
	}) {
		// The writer cut the file while we read what follows our tail (a
		// rolled-back write, or a new writer's recovery cutting a torn tail):
		// nothing new is complete yet.
		return tail, false, nil
	}
	if cls.Kind == format.Broken {
		return tail, false, damageError(cls)
	}
	return newTail, true, nil
}

// reload opens the file the path names now as a new generation.
func (s *Store) reload() error {
	ng, err := s.openGen()
	if err != nil {
		return err
	}
	s.replace(ng)
	return nil
}

// replace makes ng the current generation, as one step to every reader (one
// seq window, as publish), and returns the one it replaces, which stays
// mapped until Close (the caller holds wmu). Readers on the old generation
// that finish inside or after the window retry on ng.
func (s *Store) replace(ng *gen) *gen {
	ng.num = s.cur.Load().num + 1
	if !s.open() {
		ng.close() // closed meanwhile (callers check first): nobody reads ng
		return nil
	}
	old := s.cur.Swap(ng)
	s.seq.Add(1)
	s.old = append(s.old, old)
	s.noteReplace(ng)
	return old
}

// errShrunk: the file got shorter while a read-only Store scanned past its
// known tail.
var errShrunk = errors.New("file cut by the writer while being read")

// guardFault runs fn, which reads the mapping past the tail this Store has
// validated, and reports whether it faulted. Another process (the writer
// rolling back a failed write, or recovering a torn tail) may cut the file
// while a read-only Store scans the bytes it has not validated yet; touching a
// page past the new end of the file raises SIGBUS, which would otherwise kill
// the process.
func guardFault(fn func()) (faulted bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			faulted = true
		}
	}()
	fn()
	return false
}
