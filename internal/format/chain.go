package format

import "hash/crc32"

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
func step(data []byte, floor, t int64) (Entry, bool) {
	e, ok := Decode(data, t)
	if !ok || e.Prev < floor {
		return Entry{}, false
	}
	if (e.Tombstone || e.Prev == 0) && !e.Valid(data) {
		return Entry{}, false
	}
	return e, true
}

// Chain reports whether a valid chain ends at tail and steps strictly down to
// exactly floor. The entry ending at tail must also pass its checksum.
func Chain(data []byte, floor, tail int64) bool {
	return chain(data, floor, tail, nil)
}

// memo is what FindTail learns while it tries candidate tails: offsets known
// not to lead to floor (bad), offsets known to lead to it (good, noted only
// when a candidate above them failed its checksum), and the running checksums
// of long candidate payloads (sums).
type memo struct {
	bad, good map[int64]struct{}
	sums      sums
}

// chain is Chain remembering what it learns in m (when m is not nil). The
// chain beneath the candidate head is walked before the head's checksum is
// computed: most garbage fails the walk at once, while the checksum of a
// candidate can cover the whole file.
func chain(data []byte, floor, tail int64, m *memo) bool {
	if tail == floor {
		return true
	}
	first, ok := head(data, floor, tail)
	if !ok {
		return false
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
		e, ok := step(data, floor, t)
		if !ok {
			break
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
// tail can hold a great many positions whose 20 bytes read as metadata
// claiming the same start: a payload of small integers reads as prev 0 (the
// whole file) again and again. Checking each from scratch is quadratic, so for
// a long payload sums keeps, per start, the running CRC every step bytes up to
// the highest end asked; FindTail asks for lower ends afterwards, and each
// costs at most step bytes.
type sums struct {
	starts map[int64]*marks
}

type marks struct {
	step int64
	end  int64    // covered up to here
	crc  []uint32 // crc[i]: checksum of data[start : start+i*step]
}

const (
	sumsFrom      = 64 << 10 // shorter payloads are checked directly
	sumsStep      = 4 << 10  // the smallest step
	sumsMaxMarks  = 1 << 16  // marks per start at most
	sumsMaxStarts = 16       // starts remembered at most
)

func (c *sums) checksum(data []byte, start, end int64) uint32 {
	n := end - start
	if n < sumsFrom {
		return Checksum(data[start:end])
	}
	m := c.starts[start]
	if m == nil || m.end < end {
		if c.starts == nil || len(c.starts) >= sumsMaxStarts {
			c.starts = make(map[int64]*marks)
		}
		step := max(sumsStep, n/sumsMaxMarks+1)
		m = &marks{step: step, end: end, crc: make([]uint32, n/step+1)}
		var crc uint32
		for i := 1; i < len(m.crc); i++ {
			p := start + int64(i-1)*step
			crc = crc32.Update(crc, crc32.IEEETable, data[p:p+step])
			m.crc[i] = crc
		}
		c.starts[start] = m
	}
	i := n / m.step
	return crc32.Update(m.crc[i], crc32.IEEETable, data[start+i*m.step:end])
}

// FindTail returns the largest L in [floor, len(data)] at which a valid chain
// ends and steps down to exactly floor (see Chain), walking back from the end of
// data. found is false when data extends past floor but no such L above floor
// exists; L is then floor. The work is linear in len(data)-floor plus one
// checksum of each distinct start the candidate heads claim (see sums).
func FindTail(data []byte, floor int64) (L int64, found bool) {
	n := int64(len(data))
	if n <= floor {
		return floor, n == floor
	}
	m := &memo{bad: make(map[int64]struct{}), good: make(map[int64]struct{})}
	for L = n; L > floor; L-- {
		if chain(data, floor, L, m) {
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
