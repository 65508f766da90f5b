package simdr

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"

	"github.com/simdr-go/simdr/internal/format"
)

// Refresh brings a read-only Store up to date with what the writer has
// appended since it opened or last refreshed: it walks back from the file's
// new end to the tail it knows (a torn, in-flight append is not seen). When
// the writer has compacted (the path now names a new file), Refresh moves to
// the new file. Slices handed out before stay valid until Close. On a writable
// Store, which is always up to date, Refresh does nothing.
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
	if size == tail {
		return nil
	}
	if err := g.m.Grow(size); err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	data := g.m.Bytes()[:size]
	newTail := tail
	s.ops = s.ops[:0] // a read-only Store has no writes in progress
	if guardFault(func() {
		newTail, _ = format.FindTail(data, tail)
		format.Walk(data, tail, newTail, func(e format.Entry) bool {
			s.ops = append(s.ops, opFor(e))
			return true
		})
	}) {
		// The writer cut the file while we read what follows our tail (a
		// rolled-back write, or a new writer's recovery cutting a torn tail):
		// nothing new is complete yet.
		return nil
	}
	if newTail == tail {
		return nil
	}
	slices.Reverse(s.ops) // walked newest first; applied oldest first
	s.publish(g, s.ops, newTail)
	return nil
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
