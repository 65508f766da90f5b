package format

// The FindTail of commit 8c0d3ba, kept as the baseline of the benchmark in
// tail_bench_test.go (unbounded maps, sums from floor, a bitwise crcShift).

import (
	"encoding/binary"
	"hash/crc32"
)

type oldMemo struct {
	bad, good map[int64]struct{}
	sums      oldSums
}

func oldStep(data []byte, floor, t int64, m *oldMemo) (Entry, bool) {
	e, ok := Decode(data, t)
	if !ok || e.Prev < floor {
		return Entry{}, false
	}
	switch {
	case e.Tombstone:
		ok = e.Valid(data)
	case e.Prev == 0:
		ok = m.sums.checksum(data, e.Start, e.End) == e.CRC
	}
	if !ok {
		return Entry{}, false
	}
	return e, true
}

func oldHead(data []byte, floor, tail int64) (Entry, bool) {
	e, ok := Decode(data, tail)
	if !ok || e.Prev < floor || allZero(data[e.End:tail]) {
		return Entry{}, false
	}
	return e, true
}

func oldChain(data []byte, floor, tail int64, m *oldMemo) bool {
	if tail == floor {
		return true
	}
	first, ok := oldHead(data, floor, tail)
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
		e, ok := oldStep(data, floor, t, m)
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

type oldSums struct {
	floor int64
	step  int64
	marks []uint32 // marks[i]: checksum of data[floor : floor+i*step]
}

const (
	oldSumsFrom     = 64 << 10 // shorter payloads are checked directly
	oldSumsStep     = 4 << 10  // the smallest step
	oldSumsMaxMarks = 1 << 18  // the step grows so that marks stay below this
)

// upto returns the checksum of data[c.floor:x].
func (c *oldSums) upto(data []byte, x int64) uint32 {
	if c.marks == nil {
		c.step = max(oldSumsStep, (int64(len(data))-c.floor)/oldSumsMaxMarks+1)
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
func (c *oldSums) checksum(data []byte, start, end int64) uint32 {
	if end-start < oldSumsFrom {
		return Checksum(data[start:end])
	}
	if start == c.floor {
		return c.upto(data, end)
	}
	// crc(floor:end) = crc(floor:start) shifted over end-start bytes, xor crc(start:end).
	return c.upto(data, end) ^ oldShift(c.upto(data, start), end-start)
}

func oldFindTail(data []byte, floor int64) (L int64, found bool) {
	n := int64(len(data))
	if n <= floor {
		return floor, n == floor
	}
	m := &oldMemo{bad: make(map[int64]struct{}), good: make(map[int64]struct{}), sums: oldSums{floor: floor}}
	for L = n; L > floor; L-- {
		// Most offsets of a torn tail (a long value still being streamed)
		// fail at once on the prev link: check it inline, before the call.
		if L < MetaSize+1 {
			continue
		}
		if p := int64(binary.LittleEndian.Uint64(data[L-12 : L-4])); p < floor || p >= L-MetaSize {
			continue
		}
		if oldChain(data, floor, L, m) {
			return L, true
		}
	}
	return floor, false
}
