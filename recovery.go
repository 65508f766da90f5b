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
//
// A whole file (the usual case) is checked and collected into c in one walk;
// otherwise c is left empty and buildIndex walks the chain found.
func (s *Store) recoverTail(g *gen, size, floor int64, c *collector) (int64, error) {
	data := g.m.Bytes()[:size]
	var (
		tail  int64
		found bool
	)
	find := func() {
		if format.WalkChain(data, floor, size, c.add) {
			tail, found, c.done = size, true, true
			return
		}
		c.reset()
		tail, found = format.FindTail(data, floor)
	}
	if guardFault(find) {
		if s.opts.ReadOnly {
			// The writer cut the file while we scanned its end: try again.
			return 0, errShrunk
		}
		// We hold the lock: another process cut the file, or its storage
		// cannot supply its pages (a sparse file on a full tmpfs).
		return 0, fmt.Errorf("reading the file's %d bytes faulted (SIGBUS): it was cut by another process, or its pages cannot be read (a sparse file on a full tmpfs?): %w", size, ErrCorrupt)
	}
	if !found && s.opts.ReadOnly && !s.opts.Repair {
		// A writer may be writing the file's first entry: while one holds
		// the lock, a follower sees an empty store until Refresh.
		if held, _ := lock.Held(g.f.Fd()); held {
			return 0, nil
		}
	}
	if !found && floor > 0 {
		found, tail = true, floor // the checkpoint's tail is a sound chain end
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
// collector gathers a chain's entries, newest first, for buildIndex: 16 bytes
// each, for the length of the build, so that the index is made at its final
// size and loaded in batches whose cache misses overlap. It fills fixed-size
// blocks rather than growing one slice, so nothing is copied as it grows.
type collector struct {
	blocks []*block
	n      int // entries in the last block
	tombs  int64
	done   bool // holds the whole chain
}

// block holds 4,096 entries: their key hashes and index values.
type block struct{ hs, vs [4096]uint64 }

func (c *collector) add(e format.Entry) {
	if len(c.blocks) == 0 || c.n == len(block{}.hs) {
		c.blocks = append(c.blocks, new(block))
		c.n = 0
	}
	b := c.blocks[len(c.blocks)-1]
	op := opFor(e)
	b.hs[c.n], b.vs[c.n] = op.hash, op.pos
	if op.del {
		c.tombs++
		b.vs[c.n] |= index.Deleted
	}
	c.n++
}

// len returns how many entries c holds.
func (c *collector) len() int {
	if len(c.blocks) == 0 {
		return 0
	}
	return (len(c.blocks)-1)*len(block{}.hs) + c.n
}

func (c *collector) reset() { *c = collector{} }

// collect fills c with the chain from g's tail down to floor, unless the
// recovery walk already did.
func (g *gen) collect(c *collector, floor int64) {
	if !c.done {
		format.Walk(g.m.Bytes(), floor, g.tail.Load(), func(e format.Entry) bool {
			c.add(e)
			return true
		})
		c.done = true
	}
}

func (g *gen) buildIndex(c *collector) {
	n := c.len()
	ix := index.New(n)
	const batch = 256
	for i, b := range c.blocks {
		m := len(b.hs)
		if i == len(c.blocks)-1 {
			m = c.n
		}
		for lo := 0; lo < m; lo += batch {
			hi := min(lo+batch, m)
			ix.Load(b.hs[lo:hi], b.vs[lo:hi]) // keeps the first (newest) state met of each key
		}
		c.blocks[i] = nil // done with it
	}
	tombs := c.tombs
	ents := int64(n) - tombs
	if ix.Bytes() > 24*ix.Len()+1024 {
		ix.Shrink() // many overwritten or deleted keys: fit the table to the live ones
	}
	g.ix = ix
	g.tomb.Store(tombs)
	g.ents.Store(ents)
}
