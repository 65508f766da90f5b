package simdr

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
)

// Expiring keys (PutTTL). The file format has no field for an expiry, and a
// value must stay the raw bytes its caller stored, so the expiry of a key is
// an entry of its own: an expiry record, written in the same write as the
// value, right before it, under a reserved key hash derived from the value's
// key hash. docs/ttl.md describes it for other readers of the file.
//
// A record is 32 bytes:
//
//	0..8    "simdrTTL"
//	8..16   the key hash it is for (little endian)
//	16..24  where the payload of the value it is for ends in the file
//	24..32  when that value expires, in Unix milliseconds
//
// It is stored under recordHash(key hash). A record binds its key's value at
// that one position: a later value of the key (written by anything: simdr
// without a TTL, or another program that knows nothing of records) is not
// bound by it, so a stale record never makes a value expire. simdr deletes the
// record (a tombstone under its hash) when it writes the key again without a
// TTL or deletes it, so that other readers see records only for keys that
// expire; Compact drops stale ones.
//
// The first record of a file generation comes with a marker entry (a value
// under markerHash), so that Open, which may load the index from a checkpoint
// without walking the file, knows to look for records.

const (
	recordSize  = 32
	recordMagic = "simdrTTL"
	// reservedPrefix starts every key whose hash names a record or the
	// marker: Put and the other writes refuse keys with it (ErrReservedKey).
	reservedPrefix = "\x00simdr.ttl\x00"
	markerValue    = "simdr: this file holds expiry records (docs/ttl.md)"
	// hiddenMark is the expiry index's value for a key that is a record or
	// the marker: it is stored in the file and indexed, but no read shows it.
	hiddenMark = 1 << 62
	// maxExpiry bounds an expiry (Unix ms) below hiddenMark.
	maxExpiry = hiddenMark - 1
)

// NoExpiry is what TTL returns for a key that has a value without an expiry.
const NoExpiry time.Duration = -1

var markerHash = format.Hash([]byte(reservedPrefix))

// recordHash is the key hash under which the expiry record of key hash h is
// stored: the hash of the reserved prefix followed by h (little endian).
func recordHash(h uint64) uint64 {
	var b [len(reservedPrefix) + 8]byte
	copy(b[:], reservedPrefix)
	binary.LittleEndian.PutUint64(b[len(reservedPrefix):], h)
	return format.Hash(b[:])
}

// reserved reports whether key is one of the reserved names.
func reserved(key []byte) bool {
	return len(key) >= len(reservedPrefix) && key[0] == 0 && bytes.HasPrefix(key, []byte(reservedPrefix))
}

// reservedPut reports whether a put of value under hash h would write what
// only the writer may: the marker, or a value that spells a record under the
// hash it names (Open would take it for a record).
func reservedPut(h uint64, value []byte) bool {
	if h == markerHash {
		return true
	}
	_, ok := decodeRecord(h, value)
	return ok
}

// reservedDelete reports whether h is the marker's hash or a record's in g
// (the writer's view): a hash-level delete, or put, of it is refused.
func reservedDelete(g *gen, h uint64) bool {
	if h == markerHash {
		return true
	}
	x := g.x.Load()
	return x != nil && x.state(h) == hiddenMark
}

// IsReservedKey reports whether key starts with the prefix reserved for the
// names of expiry records ("\x00simdr.ttl\x00"), which every write that
// takes a key refuses with ErrReservedKey.
func IsReservedKey(key []byte) bool { return reserved(key) }

// record is a decoded expiry record.
type record struct {
	hash  uint64 // the key hash it is for
	bound int64  // where the payload of the value it binds ends
	exp   int64  // Unix ms
}

func (r record) encode() []byte {
	b := make([]byte, recordSize)
	copy(b, recordMagic)
	binary.LittleEndian.PutUint64(b[8:], r.hash)
	binary.LittleEndian.PutUint64(b[16:], uint64(r.bound))
	binary.LittleEndian.PutUint64(b[24:], uint64(r.exp))
	return b
}

// decodeRecord decodes payload p stored under key hash h; ok is false when p
// is not a record, or not one that belongs under h.
func decodeRecord(h uint64, p []byte) (r record, ok bool) {
	if len(p) != recordSize || string(p[:8]) != recordMagic {
		return r, false
	}
	r = record{
		hash:  binary.LittleEndian.Uint64(p[8:]),
		bound: int64(binary.LittleEndian.Uint64(p[16:])),
		exp:   int64(binary.LittleEndian.Uint64(p[24:])),
	}
	if r.bound <= 0 || r.exp <= 0 || r.exp > maxExpiry || recordHash(r.hash) != h {
		return r, false
	}
	return r, true
}

// expiry is a generation's expiry index: the key hashes whose current value
// has an expiry (value: the expiry, Unix ms) and the hashes of the records
// and the marker (value: hiddenMark). It is nil in a generation that never
// met a record. The writer changes it inside the seq window (apply), with
// the main index; readers read it lock-free like the main index.
type expiry struct {
	ix     *index.Index
	counts // what Len needs, kept by set and clear (expirycount.go)
}

func newExpiry() *expiry { return &expiry{ix: index.New(0)} }

// state returns what x holds for h: 0 (no expiry), hiddenMark, or an expiry.
func (x *expiry) state(h uint64) uint64 {
	v, ok := x.ix.Get(h)
	if !ok {
		return 0
	}
	return v
}

// set makes v (hiddenMark or an expiry) h's state (writer only, in the seq
// window or before x is shared).
func (x *expiry) set(h, v uint64) {
	if old := x.ix.Put(h, v); old&index.Deleted == 0 {
		x.forget(old) // 0 (none) changes nothing
	}
	x.note(v)
}

// clear removes h's state (writer only, as set).
func (x *expiry) clear(h uint64) {
	if v, ok := x.ix.Get(h); ok {
		x.ix.Delete(h, 1)
		x.forget(v)
	}
}

// clocks holds, for each store path opened in this process, the latest time
// (Unix ms) a Store of it used (see now): one for the Stores on the system
// clock, one for those given Options.Clock (a caller that writes a store on a
// clock of its own, behind, say, is not moved to the system's time).
var clocks sync.Map // clockKey → *atomic.Int64

type clockKey struct {
	path  string // absolute
	given bool   // Options.Clock
}

// clockOf returns the latest time mark of the store at path for Stores with
// (given) or without Options.Clock.
func clockOf(path string, given bool) *atomic.Int64 {
	if p, err := filepath.Abs(path); err == nil {
		path = p
	}
	v, _ := clocks.LoadOrStore(clockKey{path, given}, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// now returns the Store's clock in Unix milliseconds, never less than a time
// any Store of the same path (on the same kind of clock, see clocks) returned
// before in this process: a clock that goes back does not bring back a key
// this process already reported expired, even across Close and Open, or in a
// follower opened later.
func (s *Store) now() int64 {
	var t int64
	if s.opts.Clock != nil {
		t = s.opts.Clock().UnixMilli()
	} else {
		t = time.Now().UnixMilli()
	}
	for {
		seen := s.clockMax.Load()
		if t <= seen {
			return seen
		}
		if s.clockMax.CompareAndSwap(seen, t) {
			return t
		}
	}
}

// expiresAt returns the expiry, in Unix ms, of a value written now with ttl.
// A ttl that is not positive fails with ErrInvalidTTL.
func (s *Store) expiresAt(ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("ttl %v: %w", ttl, ErrInvalidTTL)
	}
	ms := int64(ttl / time.Millisecond)
	if ttl%time.Millisecond != 0 {
		ms++ // round up: a key never expires before its ttl
	}
	now := s.now()
	if ms > maxExpiry-now {
		return maxExpiry, nil
	}
	return now + ms, nil
}

// expired reports whether key hash h, live in g's index, is hidden or
// expired (the reads' check; false when g has no expiry index).
func (s *Store) expired(g *gen, h uint64) bool {
	x := g.x.Load()
	if x == nil {
		return false
	}
	v := x.state(h)
	return v != 0 && (v == hiddenMark || int64(v) <= s.now())
}

// noteExpiry keeps g's expiry index in step with one index update op, just
// applied to g.ix (apply, inside the seq window). old is the main index's
// value op replaced. A record precedes the value it binds: apply passes the
// last record met in pend, for the value op that follows it.
func (g *gen) noteExpiry(op pending, old uint64, pend *record) {
	x := g.x.Load()
	if x == nil && (op.rec || op.hash == markerHash && !op.del) {
		// The first record, or the marker written before it: a follower
		// may stop between the two (the record would end the file, see
		// unfinished) and must not show the marker as a key meanwhile.
		x = newExpiry()
		if _, ok := g.ix.Get(markerHash); ok {
			x.set(markerHash, hiddenMark)
		}
		g.x.Store(x)
	}
	if op.rec {
		r, ok := g.recordEntry(op.hash, op.pos)
		if !ok {
			return // cannot happen: the writer or Refresh checked its shape
		}
		x.set(op.hash, hiddenMark)
		*pend = r
		return
	}
	if x == nil {
		return
	}
	if op.hash == markerHash && !op.del {
		x.set(op.hash, hiddenMark)
		return
	}
	if x.state(op.hash) == hiddenMark && old != 0 && old&index.Deleted == 0 {
		// A record replaced or deleted: its key no longer expires.
		if r, ok := g.recordEntry(op.hash, old); ok {
			x.clear(r.hash)
		}
	}
	x.clear(op.hash) // a new value, or a tombstone: no expiry unless its record came just before
	if !op.del && pend.hash == op.hash && pend.binds(op.pos) {
		x.set(op.hash, uint64(pend.exp))
	}
	*pend = record{}
}

// recordAt decodes the record stored under h whose payload ends where index
// value v says (reading the mapping, guarded); ok is false for a damaged
// one (see recordEntry).
func (g *gen) recordAt(h, v uint64) (r record, ok bool) {
	r, ok = g.recordEntry(h, v)
	return r, ok && r.bound > 0
}

// damagedBound is the bound of a damaged record (see recordEntry).
const damagedBound = -1

// recordEntry is recordAt that also takes a damaged record: one whose
// checksum fails but whose hash field names the key it is for (h is that
// key's record hash), whatever else the damage hit (the magic, the bound, the
// expiry). Its expiry cannot be trusted, so it binds the key's value whatever
// its end and makes it expired: a key reads as missing rather than outlive
// its ttl, or live for good (Verify names the damaged record; a write of the
// key replaces or deletes it).
func (g *gen) recordEntry(h, v uint64) (r record, ok bool) {
	end := endOf(v)
	data := g.m.Bytes()
	if v>>lenShift != recordSize || end+format.MetaSize > int64(len(data)) {
		return r, false
	}
	if guardFault(func() {
		p := data[end-recordSize : end]
		if format.Checksum(p) == format.ReadMeta(data[end:end+format.MetaSize]).CRC {
			r, ok = decodeRecord(h, p)
			return
		}
		r.hash = binary.LittleEndian.Uint64(p[8:])
		r.bound, r.exp = damagedBound, 1
		ok = recordHash(r.hash) == h
	}) {
		return r, false
	}
	return r, ok
}

// binds reports whether r applies to its key's value at index value v.
func (r record) binds(v uint64) bool { return r.bound == damagedBound || endOf(v) == r.bound }

// loadExpiry builds g's expiry index from its main index after Open (walked
// or loaded from a checkpoint): only when the file has the marker, by one
// pass over the index that reads each 32-byte value.
func (g *gen) loadExpiry() {
	if _, ok := g.ix.Get(markerHash); !ok {
		return
	}
	var (
		recs   []record
		hidden []uint64        // their hashes
		lost   map[uint64]bool // damaged records whose hash field is damaged too
	)
	g.ix.Range(func(h, v uint64) bool {
		if r, ok := g.recordEntry(h, v); ok {
			hidden = append(hidden, h)
			recs = append(recs, r)
		} else if g.lostRecord(v) {
			if lost == nil {
				lost = map[uint64]bool{}
			}
			lost[h] = true
		}
		return true
	})
	if lost != nil {
		// Find their keys: the live keys whose record hash they are under.
		g.ix.Range(func(h, _ uint64) bool {
			if rh := recordHash(h); lost[rh] {
				hidden = append(hidden, rh)
				recs = append(recs, record{hash: h, bound: damagedBound, exp: 1})
			}
			return true
		})
	}
	// Sized for all it will hold: the hashes come in the index's order
	// (sorted by where they go), which piles them into one run of slots, a
	// probe of them all for each insert, in a table that grows as they come.
	x := &expiry{ix: index.New(1 + len(hidden) + len(recs))}
	x.set(markerHash, hiddenMark)
	for _, h := range hidden {
		x.set(h, hiddenMark)
	}
	for _, r := range recs {
		if v, live := g.ix.Get(r.hash); live && r.binds(v) && x.state(r.hash) != hiddenMark {
			x.set(r.hash, uint64(r.exp))
		}
	}
	g.x.Store(x)
}

// lostRecord reports whether the value at index value v looks like a
// damaged record whose hash field is damaged too: 32 bytes that start with
// the magic and fail their checksum.
func (g *gen) lostRecord(v uint64) (lost bool) {
	end := endOf(v)
	data := g.m.Bytes()
	if v>>lenShift != recordSize || end+format.MetaSize > int64(len(data)) {
		return false
	}
	guardFault(func() {
		p := data[end-recordSize : end]
		lost = string(p[:8]) == recordMagic && format.Checksum(p) != format.ReadMeta(data[end:end+format.MetaSize]).CRC
	})
	return lost
}

// unfinished returns tail less the expiry records that end the chain there
// (down to floor at most). A record is written before its value, and every
// write that has one ends with a value or a tombstone, so a record that ends
// the file is the start of a write cut between the two: by a crash, or still
// being written as a follower without the state file sees it. Taken alone it
// would replace the record of the key's current value (which would lose its
// expiry) and bind nothing; it goes with the torn tail.
func unfinished(data []byte, floor, tail int64) int64 {
	for tail > floor {
		e, ok := format.Decode(data, tail)
		if !ok || e.Tombstone || e.End-e.Start != recordSize || e.Prev < floor {
			break
		}
		if _, ok := decodeRecord(e.Hash, data[e.Start:e.End]); !ok {
			break
		}
		tail = e.Prev
	}
	return tail
}

// cutUnfinished applies unfinished to g's recovered tail: a writer cuts the
// records off the file, a read-only Store leaves them. It returns the tail.
func (s *Store) cutUnfinished(g *gen, floor, tail int64) (int64, error) {
	t := tail
	if guardFault(func() { t = unfinished(g.m.Bytes()[:tail], floor, tail) }) || t == tail {
		return tail, nil // a fault: the read-only Store's next Refresh sees what is left
	}
	if !s.opts.ReadOnly {
		if err := g.f.Truncate(t); err != nil {
			return 0, fmt.Errorf("cut an unfinished write at %d: %w", t, err)
		}
		if err := g.f.Sync(); err != nil {
			return 0, fmt.Errorf("cut an unfinished write at %d: %w", t, err)
		}
	}
	return t, nil
}

// markRecords flags, in ops that Refresh found in g's file, the values that
// are expiry records, so that apply keeps the expiry index.
func (g *gen) markRecords(ops []pending) {
	for i := range ops {
		if op := &ops[i]; !op.del && op.pos>>lenShift == recordSize {
			_, op.rec = g.recordEntry(op.hash, op.pos)
		}
	}
}

// putRecord adds the expiry record of key hash h for an n-byte value that
// the caller adds right after it (and the marker first when g has none yet).
// The record comes first so that a crash between the two (a batch is not
// atomic across a crash) leaves a record that binds nothing, never a value
// without its expiry.
func (a *appender) putRecord(h uint64, n int, exp int64) {
	if a.err != nil {
		return
	}
	if !a.marked {
		if _, ok := a.g.ix.Get(markerHash); !ok {
			a.put(markerHash, []byte(markerValue))
		}
		a.marked = true
	}
	a.put(recordHash(h), record{hash: h, bound: boundAfterRecord(a.tail, n), exp: exp}.encode())
	if a.err == nil {
		a.s.ops[len(a.s.ops)-1].rec = true
	}
	a.setTTL(h, true)
}

// boundAfterRecord returns where the payload of an n-byte value ends when it
// follows a record written at tail.
func boundAfterRecord(tail int64, n int) int64 {
	next := payloadEnd(tail, recordSize) + format.MetaSize
	return payloadEnd(next, n)
}

// payloadEnd returns where the payload of an n-byte value written at tail
// ends (after the padding that aligns it).
func payloadEnd(tail int64, n int) int64 { return tail + format.Prepad(tail) + int64(n) }

// setTTL notes whether key hash h has a record written by this write.
func (a *appender) setTTL(h uint64, has bool) {
	if a.ttls == nil {
		a.ttls = make(map[uint64]bool)
	}
	a.ttls[h] = has
}

// dropRecord adds, before a value of h without a TTL or a tombstone of h, a
// tombstone for h's record when h has one (live in the file, or written
// earlier in this write), so that other readers of the file see records only
// for keys that expire.
func (a *appender) dropRecord(h uint64) {
	if a.err != nil {
		return
	}
	var has, seen bool
	if a.ttls != nil {
		has, seen = a.ttls[h]
	}
	rh := recordHash(h)
	if !seen {
		if a.g.x.Load() == nil {
			return // no record in the file
		}
		has = live(a.g.ix, rh)
	}
	if has {
		a.del(rh)
		a.setTTL(h, false)
	}
}

// putTTL adds the record of a value of h expiring at exp (Unix ms), then the value.
func (a *appender) putTTL(h uint64, value []byte, crc uint32, exp int64) {
	a.putRecord(h, len(value), exp)
	a.putSum(h, value, crc)
}

// ttlOf returns the expiry (Unix ms) of h's current value in g, 0 when it has
// none (the writer's view: the caller holds wmu).
func (g *gen) ttlOf(h uint64) int64 {
	x := g.x.Load()
	if x == nil {
		return 0
	}
	if v := x.state(h); v != hiddenMark {
		return int64(v)
	}
	return 0
}

// PutTTL stores value under key, as Put does, to expire ttl from now (by the
// Store's clock, Options.Clock, in whole milliseconds rounded up). From then on
// Get, GetHash, Has and GetMany find no value for key, Entries,
// ForEachParallel and Len skip it, and Compact drops it; until then it reads
// as any value, zero-copy, the bytes stored. A later Put (or PutTTL) of key
// replaces the expiry with the new value's; Delete removes both. The expiry is
// in the file, so it survives Close, a crash, Compact, Rename, Copy and Move.
//
// A ttl that is not positive fails with ErrInvalidTTL; a key starting with the
// reserved prefix "\x00simdr.ttl\x00" fails with ErrReservedKey.
func (s *Store) PutTTL(key, value []byte, ttl time.Duration) error {
	if reserved(key) {
		return fmt.Errorf("simdr: put: %w", ErrReservedKey)
	}
	if !format.ValueOK(value) {
		return fmt.Errorf("simdr: put %d bytes: %w", len(value), ErrInvalidValue)
	}
	exp, err := s.expiresAt(ttl)
	if err != nil {
		return fmt.Errorf("simdr: put: %w", err)
	}
	h := format.Hash(key)
	return s.write("put", func(a *appender) { a.putTTL(h, value, format.Checksum(value), exp) })
}

// ExpiresAt returns when key's value expires (by the Store's clock, to the
// millisecond), or the zero Time when it has no expiry. A key with no value,
// or an expired one, fails with ErrNotFound (ErrClosed during or after
// Close). With Batch.PutExpiresAt it copies an expiry exactly, as a replica
// or a migration needs.
func (s *Store) ExpiresAt(key []byte) (time.Time, error) {
	return s.ExpiresAtHash(format.Hash(key))
}

// ExpiresAtHash is ExpiresAt for a caller that already has the key's hash.
func (s *Store) ExpiresAtHash(h uint64) (time.Time, error) {
	exp, err := s.expiryOf(h)
	if err != nil {
		return time.Time{}, fmt.Errorf("simdr: expires at: %w", err)
	}
	if exp == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(exp), nil
}

// expiryOf returns the expiry (Unix ms, 0 for none) of h's live value, or
// ErrNotFound (or ErrClosed).
func (s *Store) expiryOf(h uint64) (int64, error) {
	type res struct {
		exp  int64
		live bool
	}
	r, ok := consistent(s, func(g *gen) res {
		if _, live := g.ix.Get(h); !live {
			return res{}
		}
		x := g.x.Load()
		if x == nil {
			return res{live: true}
		}
		v := x.state(h)
		return res{exp: int64(v), live: v != hiddenMark}
	})
	switch {
	case !ok:
		return 0, ErrClosed
	case !r.live || (r.exp != 0 && r.exp <= s.now()):
		return 0, ErrNotFound
	}
	return r.exp, nil
}

// TTL returns how long key's value has left before it expires, in whole
// milliseconds (at least one while it lives), or NoExpiry when the value
// has no expiry. A key with no value, or an expired one, fails with
// ErrNotFound (ErrClosed during or after Close).
func (s *Store) TTL(key []byte) (time.Duration, error) {
	exp, err := s.expiryOf(format.Hash(key))
	if err != nil {
		return 0, fmt.Errorf("simdr: ttl: %w", err)
	}
	if exp == 0 {
		return NoExpiry, nil
	}
	left := max(exp-s.now(), 1) // the clock may have moved since expiryOf
	if left > math.MaxInt64/int64(time.Millisecond) {
		return time.Duration(math.MaxInt64), nil
	}
	return time.Duration(left) * time.Millisecond, nil
}
