package format

import (
	"encoding/binary"
	"hash/crc32"
	"slices"
)

// Damage, as opposed to a torn tail. FindTail finds the longest valid chain
// (ending at L). What lies past L is usually the write a crash left
// unfinished, which recovery cuts off. But when the bytes past L hold whole
// entries that chain down from the top of the file, cutting them loses intact
// data: the chain is damaged below them. ClassifyTail tells the two apart,
// Salvage finds every intact entry of a damaged file for a repair, and Audit
// walks a chain telling damaged entries (tombstones included) apart.

// PageSize is the page size ClassifyTail assumes a power cut loses pages of.
const PageSize = 4096

// sound decodes the entry ending at t and reports whether it can be trusted
// as part of an intact run: a sound structure, metadata that is not all zero
// bytes, and a checksum that holds (for a tombstone, the stored TombstoneCRC:
// a damaged tombstone still deletes its key).
func sound(data []byte, t int64) (Entry, bool) {
	e, ok := Decode(data, t)
	if !ok || allZero(data[e.End:t]) || !e.Valid(data) {
		return Entry{}, false
	}
	return e, true
}

// TailKind is what ClassifyTail found past the end of the longest valid chain.
type TailKind uint8

const (
	// Torn: no intact entry chains down from the top, or the intact entries
	// that do stand above bytes a power cut lost (zero-filled pages): a
	// write left unfinished. Recovery cuts the file back to L; keeping the
	// entries above a lost page would break the order of the writes.
	Torn TailKind = iota
	// Broken: intact entries chain down from the top to Break, where the
	// chain is damaged (a link that does not decode or verify). Cutting the
	// file back to L would lose them.
	Broken
	// FirstDamaged: the chain from the top is intact down to the file's first
	// entry (prev 0), whose value fails its checksum, and no valid chain
	// exists anywhere else (L is 0). The file opens whole; Verify lists the
	// first value.
	FirstDamaged
)

// String names the kind.
func (k TailKind) String() string {
	switch k {
	case Torn:
		return "torn"
	case Broken:
		return "broken"
	case FirstDamaged:
		return "first entry damaged"
	}
	return "unknown"
}

// TailClass is ClassifyTail's verdict.
type TailClass struct {
	Kind TailKind
	// L is the end of the longest valid chain; Top is where the run of
	// intact entries begins (the top asked for, or the highest intact entry
	// below it when the top is torn).
	L, Top int64
	// Break is the lowest offset the run of intact entries from Top reaches:
	// the prev of its lowest entry, where the entry that should end there
	// does not decode or verify (for FirstDamaged: the end of the damaged
	// first entry). Top when the run is empty.
	Break int64
	// Entries is how many intact entries the run holds; Top-Break is how
	// many bytes they take.
	Entries int
}

// ClassifyTail says what lies between L and top (L < top ≤ len(data)), where
// L is FindTail(data, floor) and top is where the entries should end (the
// file's size, or a tail known to have been committed). It walks back from
// top over entries that decode, are not all-zero metadata, verify their
// checksum (tombstones: TombstoneCRC), begin at or above floor and have their
// payload at or above L. Then:
//   - no such entry at top: Torn;
//   - the run ends on a first entry (prev 0) with metadata that is not all
//     zero, a key hash and a stored checksum that are not 0 (what a lost page
//     leaves), whose checksum fails, while floor and L are 0: FirstDamaged;
//   - the bytes where the run breaks (the metadata of the entry that should
//     end at Break, and that entry's payload above L) reach a 4 KiB-aligned
//     page that is zero from L (or the page's start) to its end (to the
//     file's end at most): a power cut lost that page, Torn; unless the
//     evidence says the link, not the page, is damaged: the lowest entry of
//     the run begins exactly where an entry linked to L would and links to
//     an offset that no run of tombstones from L reaches (its prev was
//     damaged in the bits the pre-pad absorbs), or the entry ending at Break
//     verifies when linked to L (its zero bytes are its value);
//   - otherwise Broken.
//
// When no intact entry ends at top (a torn write), the walk is made from
// the highest intact entry below top instead (found by a bounded scan, see
// highestSound), so that a torn write on top of damage does not hide the
// damage; Top is then that entry's end, and the bytes above it are torn.
//
// It reads the run, the bytes at the break and, under a torn top, the bytes
// from top down to the highest intact entry; it does not write.
func ClassifyTail(data []byte, floor, L, top int64) TailClass {
	c := classify(data, floor, L, top)
	if c.Entries == 0 && top <= int64(len(data)) {
		// A torn write may lie on top of damage: walk from the highest
		// intact entry below it.
		if h, ok := highestSound(data, floor, L, top); ok {
			if c2 := classify(data, floor, L, h); c2.Kind != Torn {
				return c2
			}
		}
	}
	return c
}

// classify is ClassifyTail walking from top only.
func classify(data []byte, floor, L, top int64) TailClass {
	c := TailClass{Kind: Torn, L: L, Top: top, Break: top}
	if top <= L || top > int64(len(data)) {
		return c
	}
	t := top
	var low Entry // the lowest entry of the run
	for t > floor {
		e, ok := sound(data, t)
		if !ok || e.Prev < floor || e.Start < L {
			break
		}
		c.Entries++
		low, t = e, e.Prev
	}
	c.Break = t
	if c.Entries == 0 {
		return c
	}
	if t <= floor {
		// A sound chain from top to floor: FindTail should have found it.
		// Never cut what verifies.
		c.Kind = Broken
		return c
	}
	f, fok := Decode(data, t)
	if fok && floor == 0 && L == 0 && f.Prev == 0 && !f.Tombstone && f.Hash != 0 && f.CRC != 0 {
		c.Kind = FirstDamaged
		return c
	}
	if floor == 0 && L == 0 && damagedFirstBelow(data, t) {
		// Values below the run fail their checksums, but the links hold
		// down to a first entry that is damaged too: as any Open, keep the
		// chain (it does not check the values below its top), and Verify
		// lists them.
		c.Kind = FirstDamaged
		return c
	}
	// The bytes of the entry that should end at t: its metadata, and when
	// it decodes, its payload above L (from an aligned start: not the
	// zero pre-pad after L).
	lo := max(t-MetaSize, 0)
	if fok {
		lo = min(lo, max(f.Start, L+Prepad(L)))
	}
	// Two kinds of evidence that the link, not a page, is damaged:
	//   - the lowest entry's payload starts where an entry linked to L
	//     would, and its prev is not L plus a whole number of tombstones
	//     (the only entries that could lie between without moving its
	//     start): its prev was damaged in the bits the pre-pad absorbs, and
	//     the zero bytes there are pre-pad;
	//   - the entry ending at t verifies when linked to L: it is intact with
	//     a damaged prev (the payload checksum tells which boundary below is
	//     the right one), and its zero bytes are its value.
	prepadFlip := !low.Tombstone && low.Start == L+Prepad(L) && (t-L)%TombstoneSize != 0
	relink := fok && !f.Tombstone && L+Prepad(L) < f.End && Checksum(data[L+Prepad(L):f.End]) == f.CRC
	if !prepadFlip && !relink && lostPage(data, L, lo, t) {
		return c
	}
	c.Kind = Broken
	return c
}

// damagedFirstBelow reports whether the links from t step strictly down to
// exactly 0 (the entries decode; their checksums are not asked) and end in a
// first entry whose checksum fails but whose metadata is not a zeroed one
// (a lost write that zeroes metadata reads as a first entry of hash 0).
func damagedFirstBelow(data []byte, t int64) bool {
	var last Entry
	for t > 0 {
		e, ok := Decode(data, t)
		if !ok || e.Prev >= t {
			return false
		}
		last, t = e, e.Prev
	}
	return t == 0 && last.End > 0 && !last.Tombstone && last.Hash != 0 && last.CRC != 0 && !last.Valid(data)
}

// maxCandidates bounds the checksums highestSound computes.
const maxCandidates = 4096

// highestSound returns the end of the highest sound entry in (L, top) whose
// payload lies above L and floor, scanning down from top. Most offsets fail
// on the prev link at once; it gives up after maxCandidates checksums (a
// crafted tail), so that its cost stays linear in top-L with a small
// constant: each long checksum is derived from running ones (see sums).
func highestSound(data []byte, floor, L, top int64) (int64, bool) {
	pc := sums{floor: L}
	lo := max(L, floor)
	checks := 0
	for t := top - 1; t >= lo+TombstoneSize; t-- {
		if data[t-5] != 0 { // the top byte of prev: offsets stay below 2^48
			continue
		}
		p := int64(binary.LittleEndian.Uint64(data[t-12 : t-4]))
		if p < lo || p >= t-MetaSize {
			continue
		}
		if p == 0 && binary.LittleEndian.Uint64(data[t-20:t-12]) == 0 && binary.LittleEndian.Uint32(data[t-4:t]) == 0 {
			// All-zero metadata (a file grown without its data): skip to
			// the first window below that holds a nonzero byte.
			j := t - MetaSize
			for j >= 8 && binary.LittleEndian.Uint64(data[j-8:j]) == 0 {
				j -= 8
			}
			for j > 0 && data[j-1] == 0 {
				j--
			}
			t = j + MetaSize // the loop's t-- takes in data[j-1]
			continue
		}
		e, ok := Decode(data, t)
		if !ok || e.Start < lo || allZero(data[e.End:t]) {
			continue
		}
		if checks++; checks > maxCandidates {
			return 0, false
		}
		if e.Tombstone {
			if e.CRC == TombstoneCRC {
				return t, true
			}
			continue
		}
		var sum uint32
		if e.End-e.Start < 64<<10 {
			sum = Checksum(data[e.Start:e.End])
		} else {
			sum = pc.checksum(data, e.Start, e.End)
		}
		if sum == e.CRC {
			return t, true
		}
	}
	return 0, false
}

// lostPage reports whether a page overlapping [lo, hi) is zero from L (or
// its start) to its end (or the end of data): what a power cut leaves of a
// page written since the last sync, which was at or below L (the bytes
// synced are a valid chain).
func lostPage(data []byte, L, lo, hi int64) bool {
	n := int64(len(data))
	for p := lo &^ (PageSize - 1); p < hi; p += PageSize {
		if allZero(data[max(p, L):min(p+PageSize, n)]) {
			return true
		}
	}
	return false
}

// Audit walks every entry of the chain that ends at tail, newest first, down
// to the start of the file, calling fn with each entry and whether it is
// Intact (a damaged tombstone, which Valid accepts, is reported). It returns
// -1 when the walk reaches the start, or the tail below which the chain
// cannot be followed.
func Audit(data []byte, tail int64, fn func(e Entry, intact bool)) (brokenAt int64) {
	for t := tail; t > 0; {
		e, ok := Decode(data, t)
		if !ok {
			return t
		}
		fn(e, e.Intact(data))
		t = e.Prev
	}
	return -1
}

// Kept is an entry Salvage keeps, as it lies in the damaged file.
type Kept struct {
	Entry // where it lies, and its metadata as stored
	// Link is the end of the entry kept before it (0 for the first): its
	// prev once repaired.
	Link int64
	// Relink: the stored prev is not Link (a damaged link, or entries
	// dropped below it).
	Relink bool
	// Damaged: a value whose checksum fails, kept with its stored checksum
	// because its links on both sides are sound (Verify still lists it).
	Damaged bool
	// Heal: a tombstone whose byte or checksum is damaged, to be written
	// whole (it carries nothing but its key hash).
	Heal bool
}

// Span is a byte range [Off, Off+Len) of a file.
type Span struct{ Off, Len int64 }

// Salvaged is what Salvage found.
type Salvaged struct {
	Kept    []Kept // every entry kept, in file order
	Dropped []Span // the ranges that hold no kept entry, in file order
	End     int64  // the end of the last kept entry; 0 when none
}

// InPlace reports whether rewriting prev fields and healing tombstones in
// place, then cutting the file at End, repairs it: no range below End is
// dropped, so every kept entry stays where it is.
func (s *Salvaged) InPlace() bool {
	return len(s.Dropped) == 0 || (len(s.Dropped) == 1 && s.Dropped[0].Off == s.End)
}

// Salvage finds every intact entry of a damaged file, in order. It trusts
// no link it has not checked: it scans forward from byte 0, and from each
// known boundary T (the end of the last entry kept) takes
//   - a run of entries whose checksums all hold and whose links land exactly
//     on one another, when one begins at T: the run that ends the file,
//     walked down from its top as far as it holds, and the stretches of the
//     chain that ends at L (L = FindTail(data, 0), the longest valid chain)
//     between entries that fail their checksum;
//   - otherwise a tombstone at T: metadata at T+1 storing TombstoneCRC, and
//     either the zero byte at T or a link to T (only the byte is damaged);
//     or the zero byte, a link to T and a checksum that is not one a
//     one-byte value could have (only the checksum is damaged);
//   - otherwise the first metadata above T that stores the checksum of the
//     bytes from T's aligned payload start up to it: the entry that begins
//     at T, its payload intact whatever its stored prev says (the payload
//     checksum tells which boundary below is the right one);
//   - or, met first, metadata linking to a boundary p above T whose entry
//     verifies: the next intact entry (looked for from T on: a tombstone is
//     not aligned, so one may lie below the aligned start of T's payload,
//     and one at that start is not taken for a one-byte value 0x00, which
//     cannot be stored). The bytes from T to p are kept when
//     they are entries linked from p down to exactly T (damaged values whose
//     links on both sides hold, and tombstones as above: dropping them would
//     bring back an older value of their key), and dropped otherwise.
//
// What follows the last entry found is dropped. The work is linear in the
// bytes scanned (a table CRC per byte outside the runs), plus a bounded cost
// per candidate link. Damaged tombstones are kept and marked Heal. Limit: a
// value that itself holds store entries at matching offsets can be taken
// apart into them where the chain around it is damaged.
func Salvage(data []byte, L int64) Salvaged {
	n := int64(len(data))
	var out Salvaged
	type at struct {
		run []Entry
		i   int
	}
	runAt := map[int64]at{}
	add := func(run []Entry) {
		slices.Reverse(run)
		for i, e := range run {
			if _, dup := runAt[e.Prev]; !dup {
				runAt[e.Prev] = at{run, i}
			}
		}
	}
	// The runs: from the top of the file as far as it holds, and the chain
	// from L cut into its sound stretches (an entry that fails its checksum
	// ends one; its links are followed, not trusted).
	var run []Entry
	for t := n; t > 0; {
		e, ok := sound(data, t)
		if !ok {
			break
		}
		run = append(run, e)
		t = e.Prev
	}
	add(run)
	run = nil
	for t := L; t > 0; {
		e, ok := Decode(data, t)
		if !ok || allZero(data[e.End:t]) {
			break
		}
		if e.Valid(data) {
			run = append(run, e)
		} else {
			add(run)
			run = nil
		}
		t = e.Prev
	}
	add(run)
	sc := scanner{data: data}
	T := int64(0)
	for T+TombstoneSize <= n {
		if r, ok := runAt[T]; ok {
			for _, e := range r.run[r.i:] {
				out.keep(data, e)
			}
			T = out.End
			continue
		}
		e, p, ok := sc.next(T)
		if !ok {
			break
		}
		if p > T {
			if ds := linked(data, T, p); ds != nil {
				for _, d := range ds {
					out.keep(data, d)
				}
			} else {
				out.Dropped = append(out.Dropped, Span{T, p - T})
			}
		}
		out.keep(data, e)
		T = out.End
	}
	if T < n {
		out.Dropped = append(out.Dropped, Span{T, n - T})
	}
	return out
}

// keep appends e to what s keeps.
func (s *Salvaged) keep(data []byte, e Entry) {
	k := Kept{Entry: e, Link: s.End}
	k.Relink = e.Prev != k.Link
	if e.Tombstone {
		k.Heal = !e.Intact(data)
	} else {
		k.Damaged = !e.Intact(data)
	}
	s.Kept = append(s.Kept, k)
	s.End = e.Next()
}

// linked returns the entries from T up to p when they chain from p down to
// exactly T (each decoding, with metadata not all zero), oldest first; nil
// otherwise.
func linked(data []byte, T, p int64) []Entry {
	var ds []Entry
	u := p
	for u > T {
		d, ok := Decode(data, u)
		if !ok || d.Prev < T || allZero(data[d.End:u]) || d.Tombstone && d.CRC != TombstoneCRC && !tombCRCDamaged(d.CRC) {
			return nil
		}
		ds = append(ds, d)
		u = d.Prev
	}
	slices.Reverse(ds)
	return ds
}

// oneByteCRCs holds the checksums of the 255 one-byte values.
var oneByteCRCs = func() map[uint32]bool {
	m := make(map[uint32]bool, 255)
	for b := 1; b < 256; b++ {
		m[Checksum([]byte{byte(b)})] = true
	}
	return m
}()

// tombCRCDamaged reports whether a one-byte entry holding 0x00 and storing
// crc (not TombstoneCRC) is a tombstone whose checksum is damaged rather
// than a one-byte value whose byte became 0x00 (its checksum would be that
// of its one nonzero byte) or a lost page (a zero checksum).
func tombCRCDamaged(crc uint32) bool { return crc != 0 && !oneByteCRCs[crc] }

// scanner finds, for Salvage, the next intact entry at or above a boundary.
type scanner struct {
	data []byte
	pre  sums
}

var ieee = crc32.MakeTable(crc32.IEEE)

// next returns the entry Salvage keeps next above boundary T (see Salvage)
// and the boundary it begins at: T for a tombstone or an entry whose
// payload checksum holds from T's aligned start, p > T for a resync.
func (sc *scanner) next(T int64) (Entry, int64, bool) {
	data := sc.data
	n := int64(len(data))
	if T+TombstoneSize <= n {
		m, b := ReadMeta(data[T+1:T+TombstoneSize]), data[T]
		if m.CRC == TombstoneCRC && (m.Prev == T || b == 0) || m.Prev == T && b == 0 && tombCRCDamaged(m.CRC) {
			return Entry{Meta: m, Start: T, End: T + 1, Tombstone: true}, T, true
		}
	}
	S := T + Prepad(T)
	// A tombstone is not aligned: intact ones may lie between T and the
	// aligned start S, where no value's metadata can (a value beginning
	// above T has its payload at S or later). Taking the bytes up to S for
	// the padding of the value whose checksum holds from S would lose them,
	// and bring back the values they deleted.
	for e := T + 1; e <= S && e+MetaSize <= n; e++ {
		if d, p, ok := sc.resync(T, e); ok {
			return d, p, true
		}
	}
	r := ^uint32(0) // the CRC register over data[S:e]
	for e := S; e+MetaSize <= n; e++ {
		if e > S {
			meta := data[e : e+MetaSize]
			m := ReadMeta(meta)
			if m.CRC == ^r && !allZero(meta) {
				if e == S+1 && data[S] == 0 {
					// The byte 0x00 is never a value: a tombstone at S,
					// after bytes that hold no entry.
					return Entry{Meta: m, Start: S, End: e, Tombstone: true}, S, true
				}
				return Entry{Meta: m, Start: S, End: e}, T, true
			}
			if d, p, ok := sc.resync(T, e); ok {
				return d, p, true
			}
		}
		r = ieee[byte(r)^data[e]] ^ r>>8
	}
	return Entry{}, 0, false
}

// resync returns the entry whose metadata begins at e when it links to a
// boundary p above T and verifies: the next intact entry after bytes that
// hold none (see Salvage).
func (sc *scanner) resync(T, e int64) (Entry, int64, bool) {
	meta := sc.data[e : e+MetaSize]
	if p := ReadMeta(meta).Prev; p > T && p < e {
		if d, ok := Decode(sc.data, e+MetaSize); ok && !allZero(meta) && sc.valid(d) {
			return d, p, true
		}
	}
	return Entry{}, 0, false
}

// valid is Entry.Valid with long checksums derived from running ones.
func (sc *scanner) valid(e Entry) bool {
	if e.Tombstone {
		return e.CRC == TombstoneCRC
	}
	if e.End-e.Start < 64<<10 {
		return Checksum(sc.data[e.Start:e.End]) == e.CRC
	}
	return sc.pre.checksum(sc.data, e.Start, e.End) == e.CRC
}
