// Package index is simdr's in-memory key index: a hash table from a key's
// 64-bit hash to where its latest entry ends in the file, written by one
// goroutine at a time and read by any number at once without locks.
//
// The table is open addressing with linear probing over 16-byte slots (the key
// hash and a value), so it costs 16/load bytes per key and nothing for the
// garbage collector to scan. A slot is claimed once and keeps its key for the
// life of the table; deleting a key marks its value. Readers load a slot's value
// before its key and the writer stores the key before the value, so a reader
// that sees a value sees the key it belongs to. Growing builds a new table from
// the live keys and publishes it with one atomic store; a reader still on the old
// table sees a consistent, slightly older state.
package index

import (
	"iter"
	"math/bits"
	"sync/atomic"
)

// Deleted marks a slot whose key was deleted; the rest of the value is the
// position of the tombstone.
const Deleted = 1 << 63

const (
	maxLoad   = 0.85 // grow past this share of used slots
	growLoad  = 0.68 // load right after growing: 16/0.68 ≈ 23.5 bytes per key
	minSlots  = 64
	valueMask = Deleted - 1
)

type slot struct {
	key atomic.Uint64
	val atomic.Uint64 // 0: empty; Deleted|pos: deleted; pos: live
}

type table struct {
	slots []slot
	limit int // used slots allowed before growing
}

func newTable(keys int) *table {
	n := int(float64(keys)/growLoad) + 1
	if n < minSlots {
		n = minSlots
	}
	return &table{slots: make([]slot, n), limit: int(float64(n) * maxLoad)}
}

// home is the first slot a hash probes: the high bits of h scaled to the table size.
func (t *table) home(h uint64) uint64 {
	hi, _ := bits.Mul64(h, uint64(len(t.slots)))
	return hi
}

// find returns the value stored for h, or 0.
func (t *table) find(h uint64) uint64 {
	n := uint64(len(t.slots))
	for i := t.home(h); ; {
		s := &t.slots[i]
		v := s.val.Load()
		if v == 0 {
			return 0
		}
		if s.key.Load() == h {
			return v
		}
		if i++; i == n {
			i = 0
		}
	}
}

// slotFor returns the slot holding h, or the empty slot where h would go.
func (t *table) slotFor(h uint64) *slot {
	n := uint64(len(t.slots))
	for i := t.home(h); ; {
		s := &t.slots[i]
		if s.val.Load() == 0 || s.key.Load() == h {
			return s
		}
		if i++; i == n {
			i = 0
		}
	}
}

// Index maps key hashes to positions (values below 2^63, never 0).
// Get, Len and Range may be called from any goroutine; Put, Delete and Reset
// only by one goroutine at a time (the store's writer).
type Index struct {
	t    atomic.Pointer[table]
	live atomic.Int64
	used int // claimed slots in the current table (writer only)
	sink uint64
}

// New returns an index sized for about keys keys.
func New(keys int) *Index {
	ix := &Index{}
	ix.t.Store(newTable(keys))
	return ix
}

// Get returns the position stored for h; ok is false when h is absent or deleted.
func (ix *Index) Get(h uint64) (pos uint64, ok bool) {
	v := ix.t.Load().find(h)
	return v, v != 0 && v&Deleted == 0
}

// Lookup returns the raw value for h: 0 when absent, Deleted|pos when deleted.
func (ix *Index) Lookup(h uint64) uint64 { return ix.t.Load().find(h) }

// Len returns the number of live keys.
func (ix *Index) Len() int { return int(ix.live.Load()) }

// Put stores pos for h and returns the value it replaces (0 when new).
func (ix *Index) Put(h, pos uint64) (old uint64) {
	return ix.set(h, pos&valueMask)
}

// Delete marks h deleted with its tombstone at pos, and returns the value it
// replaces. A key never seen is recorded too, so that walking a file newest
// first can tell deleted keys from ones not yet met.
func (ix *Index) Delete(h, pos uint64) (old uint64) {
	return ix.set(h, Deleted|pos&valueMask)
}

func (ix *Index) set(h, v uint64) uint64 {
	t := ix.t.Load()
	s := t.slotFor(h)
	old := s.val.Load()
	if old == 0 {
		if ix.used+1 > t.limit {
			t = ix.grow(1)
			s = t.slotFor(h)
		}
		ix.used++
		s.key.Store(h)
	}
	s.val.Store(v)
	switch {
	case old&Deleted == 0 && old != 0 && v&Deleted != 0:
		ix.live.Add(-1)
	case (old == 0 || old&Deleted != 0) && v&Deleted == 0:
		ix.live.Add(1)
	}
	return old
}

// Load stores vs[i] for hs[i] (a value with Deleted set marks a deleted key),
// in order, skipping keys already present: fed newest first, it keeps each
// key's latest state. It touches every home slot of the batch before
// inserting, so that the cache misses of a batch overlap instead of queueing
// one after the other: building an index this way is several times faster
// than one Put after another. Writer only; the table must have room for
// every key (New sized for them), since growing would drop deleted keys.
func (ix *Index) Load(hs, vs []uint64) {
	t := ix.t.Load()
	var sink uint64
	for _, h := range hs {
		sink += t.slots[t.home(h)].val.Load()
	}
	ix.sink += sink
	for i, h := range hs {
		s := t.slotFor(h)
		if s.val.Load() != 0 {
			continue // a newer state of h was loaded already
		}
		ix.set(h, vs[i])
	}
}

// grow publishes a new table with the live keys of the current one, sized so
// that they fill it to growLoad (deleted keys are dropped), and returns it.
func (ix *Index) grow(extra int) *table {
	old := ix.t.Load()
	live := int(ix.live.Load())
	nt := newTable(live + extra)
	used := 0
	for i := range old.slots {
		s := &old.slots[i]
		v := s.val.Load()
		if v == 0 || v&Deleted != 0 {
			continue
		}
		d := nt.slotFor(s.key.Load())
		d.key.Store(s.key.Load())
		d.val.Store(v)
		used++
	}
	ix.used = used
	ix.t.Store(nt)
	return nt
}

// Shrink drops deleted keys and resizes the table to fit the live keys
// (writer only). Readers on the old table carry on undisturbed.
func (ix *Index) Shrink() { ix.grow(0) }

// Prepare readies the index for n more keys, the batch hs (writer only): it
// grows the table now if the batch could outgrow it, then touches the home
// slot of every hash so that the cache misses overlap, instead of queueing
// one after the other in the Puts and Deletes that follow.
func (ix *Index) Prepare(hs iter.Seq[uint64], n int) {
	t := ix.t.Load()
	if ix.used+n > t.limit {
		t = ix.grow(n)
	}
	var sink uint64
	for h := range hs {
		sink += t.slots[t.home(h)].val.Load()
	}
	ix.sink += sink
}

// Range calls fn for every live key and its position until fn returns false.
// It reads one table: keys added while it runs may or may not be visited, and
// each key is visited at most once, with its position when visited.
func (ix *Index) Range(fn func(h, pos uint64) bool) {
	t := ix.t.Load()
	for i := range t.slots {
		s := &t.slots[i]
		v := s.val.Load()
		if v == 0 || v&Deleted != 0 {
			continue
		}
		if !fn(s.key.Load(), v) {
			return
		}
	}
}

// Bytes returns the memory the current table holds.
func (ix *Index) Bytes() int { return len(ix.t.Load().slots) * 16 }
