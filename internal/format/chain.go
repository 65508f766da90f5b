package format

import (
	"encoding/binary"
	"hash/crc32"
)

// The chain: every entry's Prev is where it begins, the end of the entry before
// it. Walking the Prev links back from a tail visits every entry, newest first.

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// head decodes the entry that would end a chain at tail, with the cheap checks
// that make a torn or garbage tail fail: a sound structure, and metadata that
// is not all zero bytes (a file grown without its data). Its checksum (which
// also fails a torn all-zero payload) is left to the caller.
func head(data []byte, floor, tail int64) (Entry, bool) {
	e, ok := Decode(data, tail)
	if !ok || e.Prev < floor || allZero(data[e.End:tail]) {
		return Entry{}, false
	}
	return e, true
}

// step checks one link of a chain: the entry ending at t decodes, begins at or
// after floor, and where it is cheap to tell, its checksum holds (tombstones,
// and the first entry of the file, whose metadata a lost write can zero).
func step(data []byte, floor, t int64, m *memo) (Entry, bool) {
	e, ok := Decode(data, t)
	if !ok || e.Prev < floor {
		return Entry{}, false
	}
	switch {
	case e.Tombstone:
		ok = e.Valid(data)
	case e.Prev == 0 && m != nil:
		// Garbage can hold many "first entries" (prev 0): all start at 0.
		ok = m.sums.checksum(data, e.Start, e.End) == e.CRC
	case e.Prev == 0:
		ok = e.Valid(data)
	}
	if !ok {
		return Entry{}, false
	}
	return e, true
}

// Chain reports whether a valid chain ends at tail and steps strictly down to
// exactly floor. The entry ending at tail must also pass its checksum.
func Chain(data []byte, floor, tail int64) bool {
	return chain(data, floor, tail, nil, nil)
}

// WalkChain is Chain calling fn for every entry of the chain as it checks it,
// newest first: one pass where Chain and then Walk take two. When it returns
// false, fn may have been called for entries of a chain that is not valid.
func WalkChain(data []byte, floor, tail int64, fn func(Entry)) bool {
	return chain(data, floor, tail, nil, fn)
}

// memo is what FindTail learns while it tries candidate tails: offsets known
// not to lead to floor (bad), offsets known to lead to it (good, noted only
// when a candidate above them failed its checksum), and the running checksums
// of long candidate payloads (sums).
type memo struct {
	bad, good map[int64]struct{}
	sums      sums
}

// chain is Chain remembering what it learns in m (when m is not nil), and
// calling visit (when not nil, and only without m) for every entry. The
// chain beneath the candidate head is walked before the head's checksum is
// computed: most garbage fails the walk at once, while the checksum of a
// candidate can cover the whole file.
func chain(data []byte, floor, tail int64, m *memo, visit func(Entry)) bool {
	if tail == floor {
		return true
	}
	first, ok := head(data, floor, tail)
	if !ok {
		return false
	}
	if visit != nil {
		visit(first)
	}
	t := first.Prev
	for t > floor {
		if m != nil {
			if _, known := m.good[t]; known {
				t = floor
				break
			}
			if _, known := m.bad[t]; known {
				break
			}
		}
		e, ok := step(data, floor, t, m)
		if !ok {
			break
		}
		if visit != nil {
			visit(e)
		}
		t = e.Prev
	}
	if t != floor {
		if m != nil {
			// Every offset from first.Prev down to the failure leads to it.
			for u := first.Prev; u > t; {
				m.bad[u] = struct{}{}
				e, _ := Decode(data, u)
				u = e.Prev
			}
			m.bad[t] = struct{}{}
		}
		return false
	}
	if first.Tombstone {
		return first.Valid(data)
	}
	var sum uint32
	if m != nil {
		sum = m.sums.checksum(data, first.Start, first.End)
	} else {
		sum = Checksum(data[first.Start:first.End])
	}
	if sum == first.CRC {
		return true
	}
	if m != nil {
		// The chain beneath is sound: the next candidates claiming it need
		// not walk it again.
		for u := first.Prev; u > floor; {
			if _, known := m.good[u]; known {
				break
			}
			m.good[u] = struct{}{}
			e, _ := Decode(data, u)
			u = e.Prev
		}
	}
	return false
}

// sums computes the checksums of long candidate payloads for FindTail. A torn
// tail can hold a great many positions whose 20 bytes read as metadata: a
// payload of small integers reads as prev 0 (a payload as long as the whole
// file) again and again, as a head or as a first entry beneath one. Checking
// each from scratch is quadratic. So sums keeps the running CRC of the data
// from floor, every step bytes (one pass, extended as needed), and derives the
// CRC of any range from the two running CRCs at its ends: each check costs at
// most two steps of data and a few hundred word operations.
type sums struct {
	floor int64
	step  int64
	marks []uint32 // marks[i]: checksum of data[floor : floor+i*step]
}

const (
	sumsFrom     = 64 << 10 // shorter payloads are checked directly
	sumsStep     = 4 << 10  // the smallest step
	sumsMaxMarks = 1 << 18  // the step grows so that marks stay below this
)

// upto returns the checksum of data[c.floor:x].
func (c *sums) upto(data []byte, x int64) uint32 {
	if c.marks == nil {
		c.step = max(sumsStep, (int64(len(data))-c.floor)/sumsMaxMarks+1)
		c.marks = []uint32{0}
	}
	for i := int64(len(c.marks)); i <= (x-c.floor)/c.step; i++ {
		p := c.floor + (i-1)*c.step
		c.marks = append(c.marks, crc32.Update(c.marks[i-1], crc32.IEEETable, data[p:p+c.step]))
	}
	i := (x - c.floor) / c.step
	return crc32.Update(c.marks[i], crc32.IEEETable, data[c.floor+i*c.step:x])
}

// checksum returns Checksum(data[start:end]), start ≥ c.floor.
func (c *sums) checksum(data []byte, start, end int64) uint32 {
	if end-start < sumsFrom {
		return Checksum(data[start:end])
	}
	if start == c.floor {
		return c.upto(data, end)
	}
	// crc(floor:end) = crc(floor:start) shifted over end-start bytes, xor crc(start:end).
	return c.upto(data, end) ^ crcShift(c.upto(data, start), end-start)
}

// crcShift returns the CRC-32 (IEEE) of a message with checksum crc followed
// by n zero bytes, minus the checksum of those n zero bytes alone: crc
// multiplied by x^(8n) modulo the polynomial (zlib's crc32_combine).
func crcShift(crc uint32, n int64) uint32 {
	p := uint32(1) << 31 // x^0
	for k := 3; n != 0; n, k = n>>1, k+1 {
		if n&1 != 0 {
			p = multModP(x2n[k&31], p)
		}
	}
	return multModP(p, crc)
}

// x2n[k] is x^(2^k) modulo the reflected IEEE polynomial.
var x2n = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for k := 1; k < 32; k++ {
		p = multModP(p, p)
		t[k] = p
	}
	return t
}()

// multModP multiplies a and b modulo the reflected IEEE polynomial.
func multModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crc32.IEEE
		} else {
			b >>= 1
		}
	}
	return p
}

// FindTail returns the largest L in [floor, len(data)] at which a valid chain
// ends and steps down to exactly floor (see Chain), walking back from the end of
// data. found is false when data extends past floor but no such L above floor
// exists; L is then floor. The work is linear in len(data)-floor: what it
// learns is kept in a memo, and long checksums are derived (see sums).
func FindTail(data []byte, floor int64) (L int64, found bool) {
	n := int64(len(data))
	if n <= floor {
		return floor, n == floor
	}
	m := &memo{bad: make(map[int64]struct{}), good: make(map[int64]struct{}), sums: sums{floor: floor}}
	for L = n; L > floor; L-- {
		// Most offsets of a torn tail (a long value still being streamed)
		// fail at once on the prev link: check it inline, before the call.
		if L < MetaSize+1 {
			continue
		}
		if p := int64(binary.LittleEndian.Uint64(data[L-12 : L-4])); p < floor || p >= L-MetaSize {
			continue
		}
		if chain(data, floor, L, m, nil) {
			return L, true
		}
	}
	return floor, false
}

// Walk visits every entry of the chain that ends at tail, newest first, down to
// floor. The chain must be valid (see Chain); Walk stops early when fn returns false
// or a link does not decode.
func Walk(data []byte, floor, tail int64, fn func(Entry) bool) {
	for t := tail; t > floor; {
		e, ok := Decode(data, t)
		if !ok || !fn(e) {
			return
		}
		t = e.Prev
	}
}

// Check walks every entry of the chain that ends at tail, newest first, down
// to the start of the file, calling fn with each entry and whether its
// checksum holds. It returns -1 when the walk reaches the start, or the tail
// below which the chain cannot be followed.
func Check(data []byte, tail int64, fn func(e Entry, valid bool)) (brokenAt int64) {
	for t := tail; t > 0; {
		e, ok := Decode(data, t)
		if !ok {
			return t
		}
		fn(e, e.Valid(data))
		t = e.Prev
	}
	return -1
}
