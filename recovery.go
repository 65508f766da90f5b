package simdr

import (
	"fmt"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
	"github.com/simdr-go/simdr/internal/lock"
)

// recoverTail finds where the valid entries of a file of size bytes end and
// decides what to do with the bytes past that point (see classifyTail):
//   - a torn tail (the write a crash left unfinished, junk, or pages a power
//     cut lost): a writer cuts it off, a read-only Store ignores it;
//   - a damaged chain (intact entries above the break that cutting would
//     lose): Open fails with ErrCorrupt and the file is left byte for byte as
//     it was, unless Options.Repair salvages them (see repair);
//   - a damaged first value under a sound chain: the file opens whole.
//
// A non-empty file with no valid chain is ErrCorrupt unless Options.Repair
// salvages what it can (possibly nothing: the file becomes empty).
//
// A whole file (the usual case) is checked and collected into c in one walk;
// otherwise c is left empty and buildIndex walks the chain found.
func (s *Store) recoverTail(g *gen, size, floor int64, c *collector) (int64, error) {
	data := g.m.Bytes()[:size]
	var (
		L     int64
		found bool
		cls   format.TailClass
		// behind: a read-only Store read the size before the writer's
		// latest commit, which lies past it
		behind bool
	)
	find := func() {
		committed, own, hinted := s.stateHint(g, size)
		hinted = hinted && committed >= floor // stateHint keeps committed ≤ size
		if !hinted && s.opts.ReadOnly {
			if c, _, ok := s.stateCommit(g); ok && c.Tail > size {
				// The writer committed past the size we read (after it):
				// what lies below that size may be a prefix of its write,
				// which a scan would take for the end. Open again, unless
				// the file is still shorter than the commit (cut back).
				if now, err := g.f.Size(); err == nil && now >= c.Tail {
					behind = true
					return
				}
			}
		}
		// The state file, when it vouches that every byte past the writer's
		// committed tail is its own unfinished write, decides first: those
		// bytes may hold records a value forged, even a whole chain.
		if hinted && own && committed < size {
			if format.WalkChain(data, floor, committed, c.add) {
				L, found, c.done = committed, true, true
				cls = format.TailClass{Kind: format.Torn, L: committed, Top: size, Break: size}
				return
			}
			c.reset()
		}
		ra := g.newReadAhead(floor, size, false) // read-ahead: see readahead.go
		if format.WalkChain(data, floor, size, func(e format.Entry) { ra.at(e.Start); c.add(e) }) {
			L, found, c.done = size, true, true
			return
		}
		c.reset()
		// When own, the chain up to committed failed above (committed <
		// size) or is the whole file's, which failed too.
		if hinted && !own && format.Chain(data, floor, committed) {
			floor = committed // a sound chain end: nothing below it to doubt
			hinted = false
		}
		L, found, cls = classifyTail(data, floor, committed, hinted)
	}
	if guardFault(find) || behind {
		if s.opts.ReadOnly {
			// The writer cut the file while we scanned its end: try again.
			return 0, errShrunk
		}
		// We hold the lock: another process cut the file, or its storage
		// cannot supply its pages (a sparse file on a full tmpfs).
		return 0, fmt.Errorf("reading the file's %d bytes faulted (SIGBUS): it was cut by another process, or its pages cannot be read (a sparse file on a full tmpfs?): %w", size, ErrCorrupt)
	}
	if s.opts.Repair && !s.opts.ReadOnly {
		if L == size && !damaged(data) {
			return size, nil
		}
		c.reset()
		return s.repair(g, data, L)
	}
	if L == size {
		return size, nil
	}
	switch cls.Kind {
	case format.FirstDamaged:
		// The chain holds but for the first value: the tail is the top of
		// the run (below a torn write, if any, cut as below).
		L, found = cls.Top, true
	case format.Broken:
		return 0, damageError(cls)
	}
	if !found && s.opts.ReadOnly && !s.opts.Repair {
		// A writer may be writing the file's first entry: while one holds
		// the lock, a follower sees an empty store until Refresh.
		if held, _ := lock.Held(g.f.Fd()); held {
			return 0, nil
		}
	}
	if !found && floor > 0 {
		found, L = true, floor // the checkpoint's tail is a sound chain end
	}
	if !found && !s.opts.Repair {
		return 0, fmt.Errorf("no valid entry chain in %d bytes: %w", size, ErrCorrupt)
	}
	if L < size && !s.opts.ReadOnly {
		if err := g.f.Truncate(L); err != nil {
			return 0, fmt.Errorf("cut torn tail at %d: %w", L, err)
		}
		if err := g.f.Sync(); err != nil {
			return 0, fmt.Errorf("cut torn tail at %d: %w", L, err)
		}
	}
	return L, nil
}

// classifyTail finds the end L of the longest valid chain of data (the
// whole file, which does not end in one) and classifies the bytes past it
// (format.ClassifyTail). found is false when no valid chain exists (L is 0).
//
// floor, when not 0, is a chain end known to be sound (the tail an index
// checkpoint covers, or the writer's committed tail when the chain below it
// holds), below which nothing is examined. hinted says the state file names
// committed as the writer's committed tail but the chain up to it does not
// hold: the scan is the plain one, but bytes up to that tail were committed,
// so a sound run of entries ending there is damage below it even when the
// end of the file is torn. (recoverTail consults the state file first: when
// every byte past a sound committed tail is the writer's own uncommitted
// write, that is the tail, with no scan.)
func classifyTail(data []byte, floor, committed int64, hinted bool) (L int64, found bool, cls format.TailClass) {
	size := int64(len(data))
	L, found = format.FindTail(data, floor)
	if !found && floor > 0 {
		found = true // floor itself is a sound chain end (L == floor)
	}
	cls = format.ClassifyTail(data, floor, L, size)
	if cls.Kind == format.Torn && hinted && committed > L {
		if c2 := format.ClassifyTail(data, floor, L, committed); c2.Kind != format.Torn {
			cls = c2
		}
	}
	return L, found, cls
}

// damaged reports whether an entry of the valid chain that ends data fails
// its checksum (a tombstone: its byte). Open does not read the values below
// the newest entry; Repair does, because a damaged prev can link to another
// entry's end below and hide the entries between (the chain still holds).
func damaged(data []byte) bool {
	bad := false
	format.Audit(data, int64(len(data)), func(_ format.Entry, intact bool) { bad = bad || !intact })
	return bad
}

// damageError describes a damaged chain that Open refuses to cut.
func damageError(c format.TailClass) error {
	return fmt.Errorf("chain damaged at offset %d: the entry that should end there does not decode or verify, "+
		"yet %d intact entries (%d bytes, offsets %d to %d) chain down to it; the longest valid chain ends at %d, "+
		"and cutting the file back to it would lose them, so the file is left as it was: "+
		"open with Options.Repair (`simdr FILE repair`) to keep every intact entry: %w",
		c.Break, c.Entries, c.Top-c.Break, c.Break, c.Top, c.L, ErrCorrupt)
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
		ra := g.newReadAhead(floor, g.tail.Load(), false) // read-ahead: see readahead.go
		format.Walk(g.m.Bytes(), floor, g.tail.Load(), func(e format.Entry) bool {
			ra.at(e.Start)
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
