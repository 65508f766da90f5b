// Package index is simdr's in-memory key index: a hash table from a key's
// 64-bit hash to where its latest entry ends in the file, written by one
// goroutine at a time and read by any number at once without locks.
//
// The index is a directory of shards (extendible hashing): the top bits of a
// hash pick a directory entry, the entry names the shard that holds every hash
// with that prefix, and several entries may share a shard (a shard of local
// depth ld holds the hashes whose top ld bits are its prefix). Each shard is
// a table of open addressing with linear probing over groups of four 16-byte
// slots (the key hash and a value), one cache line a group, so it costs
// 16/load bytes per key and nothing for the garbage collector to scan.
//
// A shard grows by itself, 1.25× at a time; one that would grow past
// maxGroups (1 MiB) splits in two instead, by the next bit of the hash. So a
// growth step copies one shard, never the whole index, and the index never
// holds more than one shard twice: growing costs a stop of at most about a
// millisecond and about 1 MiB of extra memory at any size.
//
// A slot is claimed once and keeps its key for the life of its shard;
// deleting a key marks its value. Readers load a slot's value before its key
// and the writer stores the key before the value, so a reader that sees a
// value sees the key it belongs to. A grown or split shard is published with
// a copy of the directory naming it (one atomic store); a reader still on an
// old directory or shard sees a consistent state of its key from some moment
// during its call.
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
	maxLoad = 0.85 // grow a shard past this share of used slots
	// fitLoad is the load of a new shard (New, Shrink, growing, splitting):
	// at most 16/0.68 ≈ 23.5 bytes per key at all times. A shard grows
	// 1.25× at a time; growing less often would load faster but hold up to
	// 32 bytes per key.
	fitLoad   = 0.68
	minGroups = 16
	// maxDepth bounds the directory (2^16 entries, 2 MiB). Past it (more
	// than about 3.6 billion keys, or hashes that share their top 16 bits)
	// shards grow past maxGroups instead of splitting.
	maxDepth  = 16
	valueMask = Deleted - 1
)

// maxGroups is the size (1 MiB) past which a shard splits rather than
// grows: the largest copy one insert can cause. (A variable for tests.)
var maxGroups = 1 << 14

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

// table is one shard. groups, ld and prefix never change once the table is
// published; the other fields are the writer's.
type table struct {
	groups []group
	ld     uint   // local depth: the table holds the hashes whose top ld bits are prefix
	prefix uint64 // those bits
	limit  int    // used slots allowed before growing
	used   int    // claimed slots
	live   int    // slots holding a live key
	// Touch counts the keys of the batch epoch that may land here and are
	// not stored yet (pending), so that it grows the shard before the
	// batch fills it.
	epoch   uint64
	pending int
}

// groupsFor returns the groups of a shard made for keys keys.
func groupsFor(keys int) int {
	return max(int(float64(keys)/fitLoad)/len(group{})+1, minGroups)
}

func newTable(keys int, ld uint, prefix uint64) *table {
	gs := alignedGroups(groupsFor(keys))
	adviseHuge(gs)
	return tableOf(gs, ld, prefix)
}

func tableOf(groups []group, ld uint, prefix uint64) *table {
	return &table{groups: groups, ld: ld, prefix: prefix, limit: int(float64(len(groups)*len(group{})) * maxLoad)}
}

// alignedGroups allocates n groups starting on a 64-byte boundary, so that
// each group is one cache line. (Go's allocator does not move objects.)
func alignedGroups(n int) []group {
	buf := make([]group, n+1)
	p := unsafe.Pointer(&buf[0])
	off := (64 - uintptr(p)%64) % 64
	return unsafe.Slice((*group)(unsafe.Add(p, off)), n)
}

// homeShift drops the bits of a hash that may pick its shard (the top
// maxDepth), so that what is left spreads the hashes of any shard over its
// groups. A constant: no shard's local depth is needed to find a home.
const homeShift = maxDepth

// home is the first group h probes: the bits of h below the directory's,
// scaled to the table.
func (t *table) home(h uint64) uint64 {
	hi, _ := bits.Mul64(h<<homeShift, uint64(len(t.groups)))
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

// each calls fn for every slot of t until it returns false, and reports
// whether fn always returned true.
func (t *table) each(fn func(s *slot) bool) bool {
	for i := range t.groups {
		for j := range t.groups[i] {
			if !fn(&t.groups[i][j]) {
				return false
			}
		}
	}
	return true
}

// store fills slot s of a table no reader can see yet: plain stores, without
// the fence an atomic store costs.
func (t *table) store(s *slot, h, v uint64) {
	*(*uint64)(unsafe.Pointer(&s.key)) = h
	*(*uint64)(unsafe.Pointer(&s.val)) = v
}

// insert adds h (absent from t) with value v to a table no reader can see
// yet.
func (t *table) insert(h, v uint64) {
	t.put(h, v)
	t.used++
	t.live += int(^v >> 63) // 1 unless v is Deleted
}

// put stores h (absent from t) with value v in a table no reader can see
// yet, leaving the counts to the caller. It looks only for the first free
// slot from h's home, with plain loads: a group's used slots are always its
// first ones, so its last slot tells whether it has room and the used ones
// before it where that is.
func (t *table) put(h, v uint64) {
	n := uint64(len(t.groups))
	base := unsafe.Pointer(unsafe.SliceData(t.groups))
	for i := t.home(h); ; {
		w := (*[8]uint64)(unsafe.Add(base, i*uint64(unsafe.Sizeof(group{}))))
		if w[7] == 0 {
			j := (w[1]|-w[1])>>63 + (w[3]|-w[3])>>63 + (w[5]|-w[5])>>63
			w[2*j&7], w[(2*j+1)&7] = h, v
			return
		}
		if i++; i == n {
			i = 0
		}
	}
}

// kept reports whether growing keeps a slot holding v: a live key always, a
// deleted one when keep.
func kept(v uint64, keep bool) bool { return v != 0 && (keep || v&Deleted == 0) }

// words returns group i of t as its eight words (key, value, ...), for the
// writer, which reads its own tables with plain loads.
func (t *table) words(i int) *[8]uint64 {
	return (*[8]uint64)(unsafe.Pointer(&t.groups[i]))
}

// copyFrom inserts the live keys of src (and its deleted ones when keep)
// into t, which no reader can see yet. (Source groups in order: their keys'
// homes in t come in order too, so the stores stream through t.)
func (t *table) copyFrom(src *table, keep bool) {
	var del uint64 // a slot's value is kept when it is non-zero and v&^del has bit 63 clear
	if !keep {
		del = Deleted
	}
	used, live := 0, 0
	for i := range src.groups {
		w := src.words(i)
		for j := 0; j < 8; j += 2 {
			if v := w[j+1]; v != 0 && v&del == 0 {
				t.put(w[j], v)
				used++
				live += int(^v >> 63)
			}
		}
	}
	t.used += used
	t.live += live
}

// dir is the directory: entry i names the shard of the hashes whose top depth
// bits are i. A published dir never changes: the writer publishes a copy to
// replace a shard, or one of twice the entries to deepen it. refs is what
// readers use, tabs the writer's view of the same shards.
type dir struct {
	depth uint
	shift uint  // 63 - depth: h>>1>>shift is h's entry (see entry)
	refs  []ref // placed so that their address holds depth (see tagged)
	tabs  []*table
}

// ref is what a reader needs of a shard, inline in the directory: where its
// groups start, and how many.
type ref struct {
	groups *group // the first of n
	n      uint64
}

func newDir(depth uint) *dir {
	// The refs start where bits 4-9 of their address are 63-depth, so that
	// a reader's pointer to the first one (see tagged) also says how deep
	// the directory is: 63 refs of slack at most.
	n := 1 << depth
	buf := make([]ref, n+63)
	k := (uintptr(63-depth) - uintptr(unsafe.Pointer(&buf[0]))>>4) & 63
	return &dir{depth: depth, shift: 63 - depth, refs: buf[k : k+uintptr(n) : k+uintptr(n)], tabs: make([]*table, n)}
}

// tagged returns what readers load to find d's refs: a pointer to the first
// one, whose address bits 4-9 are d.shift (a ref is 16 bytes, and the
// garbage collector sees the pointer: it keeps the refs alive). So a lookup
// needs no load of d itself.
func (d *dir) tagged() *ref { return unsafe.SliceData(d.refs) }

// refAt returns the ref for h from a pointer tagged returned, without a
// bounds check: h's entry (its top depth bits) is below 2^depth, the
// number of refs, by construction. (Two constant-bounded shifts, so that
// depth 0 needs no shift by 64, which Go would guard with a compare and a
// mask on every lookup.)
func refAt(p *ref, h uint64) *ref {
	e := uintptr(h >> 1 >> (uintptr(unsafe.Pointer(p)) >> 4 & 63))
	return (*ref)(unsafe.Add(unsafe.Pointer(p), e*unsafe.Sizeof(ref{})))
}

// entry returns the index of h's entry in d: its top depth bits.
func (d *dir) entry(h uint64) uint64 { return h >> 1 >> (d.shift & 63) }

// homeGroup returns h's home group in the shard r names.
func (r *ref) homeGroup(h uint64) *group {
	i, _ := bits.Mul64(h<<homeShift, r.n)
	return (*group)(unsafe.Add(unsafe.Pointer(r.groups), i*uint64(unsafe.Sizeof(group{}))))
}

// set makes entries [lo, hi) of d (not yet published) name t.
func (d *dir) set(lo, hi int, t *table) {
	r := ref{groups: unsafe.SliceData(t.groups), n: uint64(len(t.groups))}
	for i := lo; i < hi; i++ {
		d.refs[i], d.tabs[i] = r, t
	}
}

// clone returns an unpublished copy of d.
func (d *dir) clone() *dir {
	nd := newDir(d.depth)
	copy(nd.refs, d.refs)
	copy(nd.tabs, d.tabs)
	return nd
}

// span returns the entries of d that name t: [lo, hi).
func (d *dir) span(t *table) (lo, hi int) {
	w := d.depth - t.ld
	return int(t.prefix << w), int((t.prefix + 1) << w)
}

// tables returns the distinct shards of d in hash order.
func (d *dir) tables() []*table {
	var ts []*table
	for i := 0; i < len(d.tabs); {
		t := d.tabs[i]
		ts = append(ts, t)
		_, i = d.span(t)
	}
	return ts
}

// find returns the value stored for h in the shard r names, or 0.
// Values are loaded before keys: a value seen non-zero has its key stored.
func (r *ref) find(h uint64) uint64 {
	n := r.n
	i, _ := bits.Mul64(h<<homeShift, n)
	for {
		g := (*group)(unsafe.Add(unsafe.Pointer(r.groups), i*uint64(unsafe.Sizeof(group{}))))
		v0, v1, v2, v3 := g[0].val.Load(), g[1].val.Load(), g[2].val.Load(), g[3].val.Load()
		v := pick(v0, g[0].key.Load() == h) | pick(v1, g[1].key.Load() == h) |
			pick(v2, g[2].key.Load() == h) | pick(v3, g[3].key.Load() == h)
		if v != 0 || v3 == 0 {
			return v
		}
		if i++; i == n {
			i = 0
		}
	}
}

// Index maps key hashes to positions (values below 2^63, never 0).
// Get, Lookup, Len, Range, TableID, Bytes, Shards and WriteSnapshot may be
// called from any goroutine; Put, Delete, Load, Shrink, Reserve, Touch and
// WriteQuiet only by one goroutine at a time (the store's writer).
type Index struct {
	// rp is the current directory's tagged pointer (dir.tagged), what Get
	// loads; d is the directory itself, for everything else. The writer
	// stores d, then rp: each is consistent on its own.
	rp    atomic.Pointer[ref]
	d     atomic.Pointer[dir]
	live  atomic.Int64
	sink  uint64 // what Touch reads, so that the reads are not optimized away
	epoch uint64 // the batch Reserve began (see Touch)
	// The home groups Touch noted and has not read yet (touchAll).
	touched [64]*group
	nt      int
}

// New returns an index sized for about keys keys: shards of at most
// maxGroups each, so that loading that many keys grows nothing.
func New(keys int) *Index {
	keys = max(keys, 0)
	depth := uint(0)
	for depth < maxDepth && groupsFor(keys>>depth) > maxGroups {
		depth++
	}
	d := newDir(depth)
	for i := range d.tabs {
		d.set(i, i+1, newTable(keys>>depth, depth, uint64(i)))
	}
	ix := &Index{}
	ix.store(d)
	return ix
}

// store publishes d (writer only).
func (ix *Index) store(d *dir) {
	ix.d.Store(d)
	ix.rp.Store(d.tagged())
}

// tab returns the shard that holds h (writer only).
func (ix *Index) tab(h uint64) *table {
	d := ix.d.Load()
	return d.tabs[d.entry(h)]
}

// Get returns the position stored for h; ok is false when h is absent or deleted.
func (ix *Index) Get(h uint64) (pos uint64, ok bool) {
	v := refAt(ix.rp.Load(), h).find(h)
	return v, v-1 < valueMask // v != 0 && v&Deleted == 0, in one compare
}

// Lookup returns the raw value for h: 0 when absent, Deleted|pos when deleted.
func (ix *Index) Lookup(h uint64) uint64 {
	return refAt(ix.rp.Load(), h).find(h)
}

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
	if ix.nt != 0 {
		ix.touchAll() // the batch's last touches
	}
	t := ix.tab(h)
	if t.pending > 0 {
		t.pending-- // a touched key stored (see Touch)
	}
	s := t.slotFor(h)
	old := s.val.Load()
	if old == 0 {
		if t.used+1 > t.limit {
			ix.grow(t, 1, false)
			t = ix.tab(h)
			s = t.slotFor(h)
		}
		t.used++
		s.claim(h)
	}
	s.val.Store(v)
	switch {
	case old&Deleted == 0 && old != 0 && v&Deleted != 0:
		t.live--
		ix.addLive(-1)
	case (old == 0 || old&Deleted != 0) && v&Deleted == 0:
		t.live++
		ix.addLive(1)
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
// readers the happens-before they need). It is fastest when the shards have
// room for every key (New sized for them). Given more keys than that, a
// shard that fills grows (or splits) keeping the deleted keys it holds, so
// that an older value of a deleted key met later is still skipped (Shrink
// drops them).
func (ix *Index) Load(hs, vs []uint64) {
	const batch = 256
	var (
		tabs [batch]*table // each key's shard and home group, found once
		home [batch]*group
	)
	for lo := 0; lo < len(hs); lo += batch {
		hi := min(lo+batch, len(hs))
		d := ix.d.Load()
		for i, h := range hs[lo:hi] {
			e := d.entry(h)
			tabs[i] = d.tabs[e]
			home[i] = d.refs[e].homeGroup(h)
		}
		// The touches alone, in a loop of a few instructions each, so that
		// as many cache misses as the core can hold are in flight at once.
		var sink uint64
		for _, g := range home[:hi-lo] {
			sink += g[0].val.Load()
		}
		ix.sink += sink
		live := 0
		grown := false // a shard grew: tabs may name replaced shards
		for i, h := range hs[lo:hi] {
			t := tabs[i]
			if grown {
				t = ix.tab(h)
			}
			s := t.slotFor(h)
			if s.val.Load() != 0 {
				continue // a newer state of h was loaded already
			}
			if t.used+1 > t.limit { // more keys than New was told
				ix.grow(t, hi-lo-i, true)
				grown = true
				t = ix.tab(h)
				s = t.slotFor(h)
			}
			v := vs[lo+i]
			t.used++
			t.store(s, h, v) // not shared yet
			if v&Deleted == 0 {
				t.live++
				live++
			}
		}
		ix.addLive(int64(live))
	}
}

// grow replaces the full shard t by one with room for extra more keys than
// it keeps (its live keys, and its deleted ones when keep), or by two halves
// split on the next bit of the hash when one would be larger than maxGroups
// (writer only).
func (ix *Index) grow(t *table, extra int, keep bool) {
	keys := t.live
	if keep {
		keys = t.used
	}
	if groupsFor(keys+extra) <= maxGroups || t.ld >= maxDepth {
		nt := newTable(keys+extra, t.ld, t.prefix)
		nt.copyFrom(t, keep)
		nt.epoch, nt.pending = t.epoch, t.pending
		ix.publish(t, nt)
		return
	}
	d := ix.d.Load()
	if t.ld == d.depth {
		d = ix.deepen()
	}
	bit := (63 - t.ld) & 63
	n1 := 0 // the kept keys whose next bit is 1
	for i := range t.groups {
		w := t.words(i)
		for j := 0; j < 8; j += 2 {
			if kept(w[j+1], keep) {
				n1 += int(w[j] >> bit & 1)
			}
		}
	}
	a := newTable(keys-n1+extra/2+1, t.ld+1, t.prefix<<1)
	b := newTable(n1+extra/2+1, t.ld+1, t.prefix<<1|1)
	halves := [2]*table{a, b}
	for i := range t.groups {
		w := t.words(i)
		for j := 0; j < 8; j += 2 {
			if v := w[j+1]; kept(v, keep) {
				halves[w[j]>>bit&1].insert(w[j], v)
			}
		}
	}
	a.epoch, a.pending = t.epoch, t.pending/2
	b.epoch, b.pending = t.epoch, t.pending/2
	// Publish: the plain stores above happen before the atomic store.
	nd := d.clone()
	lo, hi := d.span(t)
	nd.set(lo, lo+(hi-lo)/2, a)
	nd.set(lo+(hi-lo)/2, hi, b)
	ix.store(nd)
}

// publish publishes a copy of the directory whose entries that named old name
// nt (which covers the same hashes, or more).
func (ix *Index) publish(old, nt *table) {
	nd := ix.d.Load().clone()
	lo, hi := nd.span(old)
	nd.set(lo, hi, nt)
	ix.store(nd)
}

// deepen publishes a directory of twice the entries, naming the same shards,
// and returns it (writer only). Readers of the old one see its shards as they
// were when it was replaced, or newer.
func (ix *Index) deepen() *dir {
	d := ix.d.Load()
	nd := newDir(d.depth + 1)
	for i := range nd.tabs {
		nd.refs[i], nd.tabs[i] = d.refs[i>>1], d.tabs[i>>1]
	}
	ix.store(nd)
	return nd
}

// Shrink drops deleted keys, resizes every shard to fit its live keys and
// merges neighbouring shards that fit in one (writer only). It works a shard
// at a time: it never holds more than one extra shard. Readers on old shards
// carry on undisturbed.
func (ix *Index) Shrink() {
	for _, t := range ix.d.Load().tables() {
		nt := newTable(t.live, t.ld, t.prefix)
		nt.copyFrom(t, false)
		ix.publish(t, nt)
	}
	for merged := true; merged; {
		merged = false
		d := ix.d.Load()
		for _, t := range d.tables() {
			lo, hi := d.span(t)
			if t.ld == 0 || d.tabs[lo] != t {
				continue // the whole index, or merged already in this pass
			}
			var b *table
			if t.prefix&1 == 0 {
				b = d.tabs[hi]
			} else {
				b = d.tabs[lo-1]
			}
			if b.ld != t.ld || groupsFor(t.live+b.live) > maxGroups/2 {
				continue
			}
			nt := newTable(t.live+b.live, t.ld-1, t.prefix>>1)
			nt.copyFrom(t, false)
			nt.copyFrom(b, false)
			ix.publish(nt, nt) // nt's span covers both
			merged = true
			d = ix.d.Load()
		}
	}
}

// Reserve begins a batch of n Puts and Deletes (writer only): the Touch
// calls that follow, one for each key of the batch, count the keys each
// shard may receive and grow a shard they could fill before touching it,
// so that the stores of the batch neither grow a shard nor find their
// touched cache lines replaced. Without Touch calls, Put still grows a shard
// that fills.
func (ix *Index) Reserve(n int) { ix.epoch++ }

// Touch reads h's home group (writer only), or notes it to read with the
// next touches: by the next Put or Delete, every group touched has been
// read. Touching every key of a batch before storing any lets their cache
// misses overlap, instead of queueing one after the other in the Puts and
// Deletes that follow. After Reserve, it also grows h's shard when the
// batch's keys so far could fill it.
func (ix *Index) Touch(h uint64) {
	d := ix.d.Load()
	e := d.entry(h)
	t := d.tabs[e]
	if t.epoch != ix.epoch {
		t.epoch, t.pending = ix.epoch, 0
	}
	t.pending++
	if t.used+t.pending > t.limit {
		ix.grow(t, t.pending, false)
		d = ix.d.Load()
		e = d.entry(h)
	}
	ix.touched[ix.nt] = d.refs[e].homeGroup(h)
	if ix.nt++; ix.nt == len(ix.touched) {
		ix.touchAll()
	}
}

// touchAll reads the home groups Touch noted, in a loop of a few
// instructions each, so that as many of their cache misses as the core can
// hold are in flight at once (with the bookkeeping of each Touch between
// them, about three times fewer).
func (ix *Index) touchAll() {
	var sink uint64
	for _, g := range ix.touched[:ix.nt] {
		sink += g[0].val.Load()
	}
	ix.sink += sink
	ix.nt = 0
}

// Range calls fn for every live key and its position until fn returns false.
// It reads the shards of one directory, each once: keys added while it runs
// may or may not be visited, and each key is visited at most once, with its
// position when visited.
func (ix *Index) Range(fn func(h, pos uint64) bool) {
	d := ix.d.Load()
	for i := 0; i < len(d.tabs); {
		t := d.tabs[i]
		if !t.each(func(s *slot) bool {
			v := s.val.Load()
			return v == 0 || v&Deleted != 0 || fn(s.key.Load(), v)
		}) {
			return
		}
		_, i = d.span(t)
	}
}

// TableID identifies the current directory: it changes whenever a shard is
// replaced (growing, splitting, Shrink) or the directory deepens, and a
// directory replaced never comes back. Range reads the directory current
// when it starts; a caller that read TableID just before can tell later
// whether every shard Range reads is still a current one.
func (ix *Index) TableID() uintptr { return uintptr(unsafe.Pointer(ix.d.Load())) }

// Bytes returns the memory the current shards hold.
func (ix *Index) Bytes() int {
	n := 0
	for _, t := range ix.d.Load().tables() {
		n += len(t.groups) * int(unsafe.Sizeof(group{}))
	}
	return n
}

// Shards returns the number of shards and the size in bytes of the largest:
// the most one growth step copies.
func (ix *Index) Shards() (n, largest int) {
	for _, t := range ix.d.Load().tables() {
		n++
		largest = max(largest, len(t.groups)*int(unsafe.Sizeof(group{})))
	}
	return n, largest
}
