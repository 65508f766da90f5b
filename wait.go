package simdr

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/simdr-go/simdr/internal/format"
)

// How long Wait sleeps between checks when nothing will wake it: without a
// state file (waitPoll), and as a backstop while the writer would wake it
// (waitBackstop).
const (
	waitPoll     = 20 * time.Millisecond
	waitBackstop = time.Second
)

// Wait blocks until the writer has committed beyond what this Store has seen
// (Refresh then brings a read-only Store up to date), and returns nil; or
// until ctx is done (it returns ctx.Err()), or the Store is closed (ErrClosed).
// It returns at once if such a commit is already there, or if this Store's
// file was replaced by a Compact. It may return early, with nothing new to
// see: callers loop on Wait and Refresh.
//
// Across processes it sleeps on the commit counter in the state file beside
// the store (a futex): the writer wakes it at its next commit (about 0.1 ms
// here), and it uses no CPU while idle. Without a usable state file (see
// Refresh) it checks the file's size every 20 ms instead, and a follower that
// may only read the state file (another user's) sleeps on it 20 ms at a time.
// On a writable Store it waits for another goroutine's write after the call
// (a loop that must not miss one compares Cursor with where it stands before
// calling Wait).
func (s *Store) Wait(ctx context.Context) error {
	g := s.cur.Load()
	if g == nil {
		return fmt.Errorf("simdr: wait: %w", ErrClosed)
	}
	seen := g.tail.Load()
	var wake func() bool // stops the ctx hook
	defer func() {
		if wake != nil {
			wake()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.closed.Load() {
			return fmt.Errorf("simdr: wait: %w", ErrClosed)
		}
		if s.cur.Load() != g || g.tail.Load() != seen {
			return nil
		}
		f := s.sf.f.Load()
		if f == nil && s.opts.ReadOnly {
			s.openState(g.fi) // the writer may have made it since
			f = s.sf.f.Load()
		}
		if f == nil {
			if s.waitChanged(g) {
				return nil
			}
			t := time.NewTimer(waitPoll)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		if wake == nil {
			wake = context.AfterFunc(ctx, f.Wake)
		}
		word := f.Word() // before the check: a commit after it changes the word
		timeout := waitPoll
		if c, ok := s.waitState(g); ok {
			if c != seen || s.waitReplaced(g) {
				return nil
			}
			if f.Writable() {
				timeout = waitBackstop
			}
		} else if s.waitChanged(g) {
			return nil
		}
		f.Sleep(word, timeout)
	}
}

// waitState returns the writer's committed tail when the state vouches for
// g's file (see vouched).
func (s *Store) waitState(g *gen) (int64, bool) {
	if !s.opts.ReadOnly {
		c, _, ok := s.stateCommit(g)
		return c.Tail, ok
	}
	size, err := g.f.Size()
	if err != nil {
		return 0, false
	}
	c, ok := s.vouched(g, size)
	return c.Tail, ok
}

// waitReplaced reports whether a follower's path names another file than
// g's (a Compact).
func (s *Store) waitReplaced(g *gen) bool {
	if !s.opts.ReadOnly {
		return false // the writer moves itself
	}
	pi, err := s.fs.Stat(s.path)
	return err != nil || !os.SameFile(pi, g.fi)
}

// waitChanged is Wait's check without the state: the path names another
// file, or the file's size differs from what the last Refresh saw.
func (s *Store) waitChanged(g *gen) bool {
	if !s.opts.ReadOnly {
		return false // a writer's commits move g's tail
	}
	if s.waitReplaced(g) {
		return true
	}
	size, err := g.f.Size()
	return err != nil || size != s.sf.seenSize.Load()
}

// Change is one entry committed to the store: a value stored under a key
// hash, or a deletion of one. The expiry records of PutTTL are not shown.
type Change struct {
	KeyHash uint64
	Deleted bool  // a tombstone
	Len     int   // the value's length (0 for a deletion)
	Offset  int64 // where the value starts in the file (the tombstone's byte for a deletion)
}

// Cursor marks a point in a Store's history, for Changes: a tail of the
// file the Store had open. The zero Cursor marks no point.
type Cursor struct {
	g    *gen
	tail int64
}

// Tail returns the file offset the cursor marks (a Size the Store had).
func (c Cursor) Tail() int64 { return c.tail }

// Cursor returns the point this Store is at now (its Size, in its current
// file). It is the zero Cursor after Close.
func (s *Store) Cursor() Cursor {
	g := s.cur.Load()
	if g == nil {
		return Cursor{}
	}
	return Cursor{g: g, tail: g.tail.Load()}
}

// Changes returns the entries committed after cursor from, oldest first, and
// the cursor they end at (where the Store is now). A follower calls Refresh
// first. When the Store has moved to another file since from was taken (a
// Compact, a reopen after the file was cut back), or from is the zero
// Cursor, Changes fails with an error matching ErrNotFound: the caller starts
// again from Cursor(). When another process cut the file under the Store, or
// overwrote its entries' metadata, it fails with ErrCorrupt (never a fault).
// The slice is the caller's.
func (s *Store) Changes(from Cursor) ([]Change, Cursor, error) {
	g := s.cur.Load()
	if g == nil {
		return nil, Cursor{}, fmt.Errorf("simdr: changes: %w", ErrClosed)
	}
	to := Cursor{g: g, tail: g.tail.Load()}
	if from.g != g {
		return nil, to, fmt.Errorf("simdr: changes: the store is on another file than the cursor: %w", ErrNotFound)
	}
	data := g.m.Bytes()[:to.tail]
	var out []Change
	t := to.tail
	// Another process may have cut the file: its pages past the new end
	// fault, and a cut in the middle of a page reads as zeros.
	if guardFault(func() {
		for t > from.tail {
			e, ok := format.Decode(data, t)
			if !ok {
				break
			}
			c := Change{KeyHash: e.Hash, Deleted: e.Tombstone, Offset: e.Start}
			if !e.Tombstone {
				c.Len = int(e.End - e.Start)
			}
			if !hiddenChange(data, e) {
				out = append(out, c)
			}
			t = e.Prev
		}
	}) || fileCut(g, to.tail) {
		return nil, to, fmt.Errorf("simdr: changes: the store file is shorter than the %d bytes of entries this Store read (another process cut it): %w", to.tail, ErrCorrupt)
	}
	if t != from.tail { // cannot happen: the chain holds every tail g had
		return nil, to, fmt.Errorf("simdr: changes since %d: not an entry boundary: %w", from.tail, ErrCorrupt)
	}
	slices.Reverse(out)
	// A record's tombstone comes right after the entry of its key (store,
	// remove).
	kept := out[:0]
	for i, c := range out {
		if c.Deleted && i > 0 && recordHash(out[i-1].KeyHash) == c.KeyHash {
			continue
		}
		kept = append(kept, c)
	}
	return kept, to, nil
}

// hiddenChange reports whether e is an expiry record or the marker, which
// Changes does not show (expiry.go).
func hiddenChange(data []byte, e format.Entry) bool {
	if e.Tombstone {
		return false
	}
	if e.Hash == markerHash {
		return true
	}
	_, ok := decodeRecord(e.Hash, data[e.Start:e.End])
	return ok
}
