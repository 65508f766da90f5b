// Package index is simdr's in-memory key index: a hash table from a key's
// 64-bit hash to where its latest entry ends in the file, written by one
// goroutine at a time and read by any number at once without locks.
//
// The table is open addressing with linear probing over groups of four
// 16-byte slots (the key hash and a value), one cache line a group, so it
// costs 16/load bytes per key and nothing for the
// garbage collector to scan. A slot is claimed once and keeps its key for the
// life of the table; deleting a key marks its value. Readers load a slot's value
// before its key and the writer stores the key before the value, so a reader
// that sees a value sees the key it belongs to. Growing builds a new table from
// the live keys and publishes it with one atomic store; a reader still on the old
// table sees a consistent, slightly older state.
package index

import (
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Deleted marks a slot whose key was deleted; the rest of the value is the
// position of the tombstone.
const Deleted = 1 << 63

const (
	maxLoad = 0.85 // grow past this share of used slots
	// fitLoad is the load of a new table (New, Shrink, growing): at most
	// 16/0.68 ≈ 23.5 bytes per key at all times. A table grows 1.25× at a
	// time; growing less often would load faster but hold up to 32 bytes
	// per key.
	fitLoad   = 0.68
	minGroups = 16
	valueMask = Deleted - 1
)

type slot struct {
	key atomic.Uint64
	val atomic.Uint64 // 0: empty; Deleted|pos: deleted; pos: live
}

// A group is the four slots of one 64-byte cache line. A hash probes groups,
// not slots: its home group first, then the next ones. Within a group, slots
// are claimed in order, so a group whose last slot is empty ends a probe.
// Reading a whole group without branching on each slot keeps a lookup to one
// cache line and (almost) no mispredicted branch, so the lookups of a loop
// overlap their cache misses.
type group [4]slot

type table struct {
	groups []group
	limit  int // used slots allowed before growing
}

func newTable(keys int) *table {
	n := int(float64(keys)/fitLoad)/len(group{}) + 1
	if n < minGroups {
		n = minGroups
	}
	return &table{groups: alignedGroups(n), limit: int(float64(n*len(group{})) * maxLoad)}
}

// alignedGroups allocates n groups starting on a 64-byte boundary, so that
// each group is one cache line. (Go's allocator does not move objects.)
func alignedGroups(n int) []group {
	buf := make([]group, n+1)
	p := unsafe.Pointer(&buf[0])
	off := (64 - uintptr(p)%64) % 64
	return unsafe.Slice((*group)(unsafe.Add(p, off)), n)
}

// home is the first group h probes: the high bits of h scaled to the table.
func (t *table) home(h uint64) uint64 {
	hi, _ := bits.Mul64(h, uint64(len(t.groups)))
	return hi
}

// pick returns v when eq, else 0, without a branch.
func pick(v uint64, eq bool) uint64 {
	var m uint64
	if eq {
		m = ^uint64(0)
	}
	return v & m
}

// find returns the value stored for h, or 0.
func (t *table) find(h uint64) uint64 {
	n := uint64(len(t.groups))
	for i := t.home(h); ; {
		g := &t.groups[i]
		// Values before keys: a value seen non-zero has its key stored.
		v0, v1, v2, v3 := g[0].val.Load(), g[1].val.Load(), g[2].val.Load(), g[3].val.Load()
		r := pick(v0, g[0].key.Load() == h) | pick(v1, g[1].key.Load() == h) |
			pick(v2, g[2].key.Load() == h) | pick(v3, g[3].key.Load() == h)
		if r != 0 || v3 == 0 {
			return r
		}
		if i++; i == n {
			i = 0
		}
	}
}

// slotFor returns the slot holding h, or the empty slot where h would go
// (writer only).
func (t *table) slotFor(h uint64) *slot {
	n := uint64(len(t.groups))
	for i := t.home(h); ; {
		g := &t.groups[i]
		for j := range g {
			s := &g[j]
			if s.val.Load() == 0 || s.key.Load() == h {
				return s
			}
		}
		if i++; i == n {
			i = 0
		}
	}
}

// each calls fn for every slot of t until it returns false.
func (t *table) each(fn func(s *slot) bool) {
	for i := range t.groups {
		for j := range t.groups[i] {
			if !fn(&t.groups[i][j]) {
				return
			}
		}
	}
}

// Index maps key hashes to positions (values below 2^63, never 0).
// Get, Len and Range may be called from any goroutine; Put, Delete and Reset
// only by one goroutine at a time (the store's writer).
type Index struct {
	t    atomic.Pointer[table]
	live atomic.Int64
	used int    // claimed slots in the current table (writer only)
	sink uint64 // what Touch reads, so that the reads are not optimized away
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
// one after the other, and it writes slots with plain stores: building an
// index this way is several times faster than one Put after another.
//
// Load is for building an index before it is shared: no other goroutine may
// use ix until the caller publishes it (an atomic store or a lock gives the
// readers the happens-before they need). It is fastest when the table has
// room for every key (New sized for them). Given more keys than that, it
// grows the table keeping the deleted keys it holds, so that an older value
// of a deleted key met later is still skipped (Shrink drops them).
func (ix *Index) Load(hs, vs []uint64) {
	for _, h := range hs {
		ix.Touch(h)
	}
	t := ix.t.Load()
	live := 0
	for i, h := range hs {
		s := t.slotFor(h)
		if s.val.Load() != 0 {
			continue // a newer state of h was loaded already
		}
		if ix.used+1 > t.limit { // more keys than New was told
			t = ix.growKeepingDeleted(len(hs) - i)
			s = t.slotFor(h)
		}
		ix.used++
		t.store(s, h, vs[i]) // not shared yet
		if vs[i]&Deleted == 0 {
			live++
		}
	}
	ix.live.Add(int64(live))
}

// growKeepingDeleted is grow for Load: the new table holds every claimed slot
// of the current one, deleted keys included, with room for extra more.
func (ix *Index) growKeepingDeleted(extra int) *table {
	old := ix.t.Load()
	nt := newTable(ix.used + extra)
	used := 0
	old.each(func(s *slot) bool {
		if v := s.val.Load(); v != 0 {
			nt.store(nt.slotFor(s.key.Load()), s.key.Load(), v)
			used++
		}
		return true
	})
	ix.used = used
	ix.t.Store(nt)
	return nt
}

// grow publishes a new table with the live keys of the current one, sized so
// that they and extra more fill it to fitLoad (deleted keys are dropped), and
// returns it.
func (ix *Index) grow(extra int) *table {
	old := ix.t.Load()
	live := int(ix.live.Load())
	nt := newTable(live + extra)
	used := 0
	for i := range old.groups {
		for j := range old.groups[i] {
			s := &old.groups[i][j]
			if v := s.val.Load(); v != 0 && v&Deleted == 0 {
				nt.store(nt.slotFor(s.key.Load()), s.key.Load(), v)
				used++
			}
		}
	}
	ix.used = used
	ix.t.Store(nt) // publishes the plain stores above
	return nt
}

// store fills slot s of a table no reader can see yet: plain stores, without
// the fence an atomic store costs.
func (t *table) store(s *slot, h, v uint64) {
	*(*uint64)(unsafe.Pointer(&s.key)) = h
	*(*uint64)(unsafe.Pointer(&s.val)) = v
}

// Shrink drops deleted keys and resizes the table to fit the live keys
// (writer only). Readers on the old table carry on undisturbed.
func (ix *Index) Shrink() { ix.grow(0) }

// Reserve grows the table now if n more keys could outgrow it (writer only),
// so that a batch grows it at most once, before its Touch calls.
func (ix *Index) Reserve(n int) {
	if ix.used+n > ix.t.Load().limit {
		ix.grow(n)
	}
}

// Touch reads h's home group (writer only). Touching every key of a batch
// before storing any lets their cache misses overlap, instead of queueing
// one after the other in the Puts and Deletes that follow.
func (ix *Index) Touch(h uint64) {
	t := ix.t.Load()
	ix.sink += t.groups[t.home(h)][0].val.Load()
}

// Range calls fn for every live key and its position until fn returns false.
// It reads one table: keys added while it runs may or may not be visited, and
// each key is visited at most once, with its position when visited.
func (ix *Index) Range(fn func(h, pos uint64) bool) {
	ix.t.Load().each(func(s *slot) bool {
		v := s.val.Load()
		return v == 0 || v&Deleted != 0 || fn(s.key.Load(), v)
	})
}

// TableID identifies the current table: it changes whenever a new table is
// published (growing, Shrink), and a table replaced never comes back. Range
// reads the table current when it starts; a caller that read TableID just
// before can tell later whether that table is still the current one.
func (ix *Index) TableID() uintptr { return uintptr(unsafe.Pointer(ix.t.Load())) }

// Bytes returns the memory the current table holds.
func (ix *Index) Bytes() int { return len(ix.t.Load().groups) * int(unsafe.Sizeof(group{})) }
