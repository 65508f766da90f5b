package simdr

import (
	"fmt"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
	"github.com/simdr-go/simdr/internal/lock"
)

// recoverTail finds where the valid entries of a file of size bytes end (see
// format.FindTail) and, for a writer, cuts off whatever follows: a torn write
// or garbage. A non-empty file with no valid chain is ErrCorrupt unless
// Options.Repair allows cutting it to empty. A read-only Store never writes:
// it ignores what follows the tail.
func (s *Store) recoverTail(g *gen, size int64) (int64, error) {
	data := g.m.Bytes()[:size]
	var (
		tail  int64
		found bool
	)
	if s.opts.ReadOnly {
		// The writer may cut the file while we scan its end (see guardFault).
		if guardFault(func() { tail, found = format.FindTail(data, 0) }) {
			return 0, errShrunk
		}
	} else {
		tail, found = format.FindTail(data, 0)
	}
	if !found && s.opts.ReadOnly && !s.opts.Repair {
		// A writer may be writing the file's first entry: while one holds
		// the lock, a follower sees an empty store until Refresh.
		if held, _ := lock.Held(g.f.Fd()); held {
			return 0, nil
		}
	}
	if !found && !s.opts.Repair {
		return 0, fmt.Errorf("no valid entry chain in %d bytes: %w", size, ErrCorrupt)
	}
	if tail < size && !s.opts.ReadOnly {
		if err := g.f.Truncate(tail); err != nil {
			return 0, fmt.Errorf("cut torn tail at %d: %w", tail, err)
		}
		if err := g.f.Sync(); err != nil {
			return 0, fmt.Errorf("cut torn tail at %d: %w", tail, err)
		}
	}
	return tail, nil
}

// buildIndex walks g's chain newest first: the first time a key hash is met
// is its latest version; a tombstone met first means the key is deleted.
func (g *gen) buildIndex() {
	data := g.m.Bytes()
	tail := g.tail.Load()
	// One walk collects every entry (16 bytes each, for the length of the
	// build), so that the index is made at its final size, and loaded in
	// batches whose cache misses overlap.
	var hs, vs []uint64
	var tombs int64
	format.Walk(data, 0, tail, func(e format.Entry) bool {
		hs = append(hs, e.Hash)
		if e.Tombstone {
			tombs++
			vs = append(vs, index.Deleted|uint64(e.End))
		} else {
			vs = append(vs, pack(e.End, e.End-e.Start))
		}
		return true
	})
	ents := int64(len(hs)) - tombs
	ix := index.New(len(hs))
	const batch = 256
	for i := 0; i < len(hs); i += batch {
		j := min(i+batch, len(hs))
		ix.Load(hs[i:j], vs[i:j]) // keeps the first (newest) state met of each key
	}
	if ix.Bytes() > 24*ix.Len()+1024 {
		ix.Shrink() // many overwritten or deleted keys: fit the table to the live ones
	}
	g.ix = ix
	g.tomb.Store(tombs)
	g.ents.Store(ents)
}
