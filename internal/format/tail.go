package format

import (
	"encoding/binary"
	"math/bits"
)

// FindTail returns the largest L in [floor, len(data)] at which a valid chain
// ends and steps down to exactly floor (see Chain), walking back from the end of
// data. found is false when data extends past floor but no such L above floor
// exists; L is then floor.
//
// Its cost is linear in len(data)-floor whatever the bytes are, plus the walk
// of the chain beneath the first candidate that reaches one, and its memory is
// bounded (about 2.5 MiB at most, less for a short span): what it learns is
// kept in fixed-size caches, and long checksums are derived (see memo and
// sums). docs/reliability.md ("Recovery cost") has the figures.
func FindTail(data []byte, floor int64) (L int64, found bool) {
	n := int64(len(data))
	if n <= floor {
		return floor, n == floor
	}
	m := memo{floor: floor, span: n - floor, sums: sums{floor: floor}}
	for L = n; L > floor && L > MetaSize; L-- {
		// Most offsets of a torn tail (a long value still being streamed)
		// fail at once on the prev link, and a zero-filled one (a file
		// grown without its data) on its all-zero metadata, which head
		// rejects: check both inline, before the call.
		meta := data[L-MetaSize : L]
		// One unsigned comparison (not two, one of which random bytes make
		// a coin toss): p in [floor, L-MetaSize).
		p := binary.LittleEndian.Uint64(meta[8:16])
		if lim := L - MetaSize - floor; lim <= 0 || p-uint64(floor) >= uint64(lim) {
			continue
		}
		if p == 0 && binary.LittleEndian.Uint64(meta[0:8]) == 0 && binary.LittleEndian.Uint32(meta[16:20]) == 0 {
			// A run of zeros: while the 8 bytes below are zero too, the
			// next 8 windows are all zero as well.
			for L-8 > floor && L-MetaSize-8 >= 0 && binary.LittleEndian.Uint64(data[L-MetaSize-8:L-MetaSize]) == 0 {
				L -= 8
			}
			continue
		}
		if p != uint64(floor) {
			// The entry the head claims to follow must itself end in a
			// link into [floor, p-MetaSize) (step decodes it first)...
			lim := int64(p) - MetaSize - floor
			if p <= MetaSize || lim <= 0 {
				continue
			}
			if q := binary.LittleEndian.Uint64(data[p-12 : p-4]); q-uint64(floor) >= uint64(lim) {
				continue
			}
			// ...and not be known not to lead to floor (repeated words
			// claim the same few links over and over).
			if m.nodes != nil {
				if i, bad := m.slot(int64(p)), (p-uint64(floor)+1)<<1; m.nodes[i] == bad || m.nodes[i+1] == bad {
					continue
				}
			}
		}
		m.scan = L
		// Cheapest first, each check exact: the head's checksum when its
		// payload start has a group (a few bytes to unfeed), else a short
		// walk of the chain beneath (garbage mostly fails in a step or two,
		// and is noted), else the checksum derived from scratch (bounded,
		// while chains can be long: small integers make chains a store's
		// length apart, one every 16 bytes, that no bounded memo holds).
		// Tombstone shapes keep their rules (see try).
		if e := L - MetaSize; e-int64(p) > 1 {
			start := int64(p) + Prepad(int64(p))
			if start >= e {
				continue // Decode fails
			}
			crc := binary.LittleEndian.Uint32(meta[16:20])
			if g := m.group(start); g != nil && g.end >= e {
				if m.payload(data, start, e) != crc {
					continue
				}
			} else if p != uint64(floor) {
				switch m.walk(data, int64(p), probeSteps) {
				case bad:
					continue
				case unknown:
					if m.payload(data, start, e) != crc {
						continue
					}
				}
			}
		}
		if m.try(data, L) {
			return L, true
		}
	}
	return floor, false
}

// memo is what FindTail learns while it tries candidate tails, in caches of
// a fixed size (a result never depends on what they hold, only its cost):
//
//   - nodes: whether the chain from an offset steps down to floor (good) or
//     not (bad); direct-mapped, keeping the higher live offset of two that
//     collide: FindTail walks down, so offsets at or above the candidate it
//     tries (scan) are never asked again, and candidates a little below it
//     tend to claim the offsets just beneath.
//   - good, bad: per block of offsets, the highest offset of the block known
//     good (bad). A walk that enters a block along a chain already walked
//     meets that chain's highest offset in the block first, and stops there:
//     a walk costs at most the offsets of one block not yet known, even when
//     a great many candidates claim distinct entries of a long chain.
//   - groups: per payload start, the checksum of the payload of the last
//     candidate with that start (and the running checksum up to the start).
//     Candidates of a repeated word share a start and end a word apart: the
//     next checksum is the last one with a few bytes removed (unfeed).
//   - sums: running checksums (see sums), also used by step for first
//     entries.
type memo struct {
	floor, span int64
	scan        int64 // the candidate being tried: offsets ≥ scan are dead
	sums        sums

	nodes     []uint64 // (t-floor+1)<<1 | good; 0: empty
	nodeShift uint     // slot = hash(t) >> nodeShift
	good, bad []uint32 // per block: the highest offset known, as (t-floor)%block + 1; 0: none
	blockBits uint     // block = (t-floor) >> blockBits

	groups []group
}

// group is one entry of memo.groups.
type group struct {
	start, end int64  // the payload data[start:end]; start -1: empty
	crc        uint32 // its checksum
	us         uint32 // the checksum of data[floor:start]
}

const (
	memoNodeBits  = 15 // at most 2^15 sets of 2 nodes (512 KiB)
	memoBlockBits = 16 // at most 2^16 blocks (2 × 256 KiB)
	memoGroupBits = 10
	memoGroups    = 1 << memoGroupBits
	groupUnfeed   = 256 // a group's checksum is moved at most this far (bytes)
)

// try reports whether a valid chain ends at L: Chain(data, m.floor, L).
func (m *memo) try(data []byte, L int64) bool {
	first, ok := head(data, m.floor, L)
	if !ok {
		return false
	}
	st, stop := m.walkTo(data, first.Prev, -1)
	if st != good {
		return false
	}
	var sum uint32
	if first.Tombstone {
		if first.Valid(data) {
			return true
		}
	} else if sum = m.payload(data, first.Start, first.End); sum == first.CRC {
		return true
	}
	// The chain beneath is sound: the next candidates claiming it need not
	// walk it again. (Not noted before: the first candidate is most often
	// the answer.)
	m.notePath(data, first.Prev, stop, true)
	return false
}

// status is what a walk learnt of a chain.
type status uint8

const (
	unknown status = iota
	good           // it steps down to exactly floor
	bad            // it does not
)

// probeSteps is how many steps a walk takes before FindTail checks the
// head's checksum instead (see FindTail).
const probeSteps = 3

// walk is walkTo without the stop.
func (m *memo) walk(data []byte, t int64, limit int) status {
	st, _ := m.walkTo(data, t, limit)
	return st
}

// walkTo reports whether the chain from t steps down to exactly floor, every
// step() check holding, within limit steps (any number when negative:
// unknown otherwise); stop is where it stopped: floor, or an offset whose
// answer was known. What it learns of a bad chain is noted at once, of a
// good one only by the caller (notePath).
func (m *memo) walkTo(data []byte, t int64, limit int) (st status, stop int64) {
	u := t
	for ; u > m.floor; limit-- {
		if g, known := m.known(u); known {
			if !g {
				m.notePath(data, t, u, false)
				return bad, u
			}
			return good, u
		}
		if limit == 0 {
			return unknown, u
		}
		e, ok := step(data, m.floor, u, m)
		if !ok {
			m.notePath(data, t, u, false)
			m.note(u, false)
			return bad, u
		}
		u = e.Prev
	}
	return good, u // step keeps every link ≥ floor
}

// notePath notes every offset of the chain from t down to (not including)
// stop, all of whose steps hold.
func (m *memo) notePath(data []byte, t, stop int64, good bool) {
	for t > stop {
		m.note(t, good)
		e, ok := Decode(data, t)
		if !ok {
			return
		}
		t = e.Prev
	}
}

// known returns what is known of the chain from t, floor < t.
func (m *memo) known(t int64) (good, ok bool) {
	if m.nodes == nil {
		return false, false
	}
	rel := uint64(t - m.floor)
	i := m.slot(t)
	if v := m.nodes[i]; v>>1 == rel+1 {
		return v&1 != 0, true
	}
	if v := m.nodes[i+1]; v>>1 == rel+1 {
		return v&1 != 0, true
	}
	b, in := rel>>m.blockBits, uint32(rel&(1<<m.blockBits-1))+1
	if m.good[b] == in {
		return true, true
	}
	if m.bad[b] == in {
		return false, true
	}
	return false, false
}

// note records what is known of the chain from t, keeping the higher live
// offset of two that share a slot.
func (m *memo) note(t int64, good bool) {
	if m.nodes == nil {
		m.alloc()
	}
	rel := uint64(t - m.floor)
	live := uint64(m.scan - m.floor) // rel ≥ live: dead
	v := (rel + 1) << 1
	if good {
		v |= 1
	}
	i := m.slot(t)
	if old := m.nodes[i]>>1 - 1; m.nodes[i] == 0 || old >= live || rel >= old {
		if m.nodes[i]>>1 != rel+1 {
			m.nodes[i+1] = m.nodes[i]
		}
		m.nodes[i] = v
	} else {
		m.nodes[i+1] = v
	}
	blocks := m.bad
	if good {
		blocks = m.good
	}
	b, in := rel>>m.blockBits, uint32(rel&(1<<m.blockBits-1))+1
	if old := blocks[b]; old == 0 || in >= old || b<<m.blockBits+uint64(old-1) >= live {
		blocks[b] = in
	}
}

// slot returns the first of the two slots of t's set: the highest live
// offset noted in the set, then the latest other one (chains of a torn tail
// that many walks meet, far below the candidates, stay there).
func (m *memo) slot(t int64) uint64 {
	return uint64(t) * 0x9E3779B97F4A7C15 >> m.nodeShift << 1
}

// alloc sizes the caches to the span (a follower's Refresh over a few new
// entries allocates little).
func (m *memo) alloc() {
	nb := max(6, min(memoNodeBits, bits.Len64(uint64(m.span)/32)))
	m.nodes, m.nodeShift = make([]uint64, 2<<nb), uint(64-nb)
	m.blockBits = uint(max(6, bits.Len64(uint64(m.span-1))-memoBlockBits))
	nblocks := (m.span-1)>>m.blockBits + 1
	m.good, m.bad = make([]uint32, nblocks), make([]uint32, nblocks)
}

// group returns the checksum group of start, nil if none.
func (m *memo) group(start int64) *group {
	if m.groups == nil {
		return nil
	}
	if g := &m.groups[uint64(start)*0x9E3779B97F4A7C15>>(64-memoGroupBits)]; g.start == start {
		return g
	}
	return nil
}

// payload returns Checksum(data[start:end]), start ≥ floor, for a candidate
// head; candidates come at descending ends.
func (m *memo) payload(data []byte, start, end int64) uint32 {
	if end-start < sumsFrom {
		return Checksum(data[start:end])
	}
	if m.groups == nil {
		m.groups = make([]group, memoGroups)
		for i := range m.groups {
			m.groups[i].start = -1
		}
	}
	g := &m.groups[uint64(start)*0x9E3779B97F4A7C15>>(64-memoGroupBits)]
	if g.start == start && g.end >= end && g.end-end <= groupUnfeed {
		g.crc, g.end = unfeed(g.crc, data[end:g.end]), end
		return g.crc
	}
	var us uint32
	if g.start == start {
		us = g.us
	} else {
		us = m.sums.fromMarks(data, start)
	}
	// crc(floor:end) = crc(floor:start) shifted over end-start bytes, xor crc(start:end).
	sum := m.sums.upto(data, end) ^ crcShift(us, end-start)
	*g = group{start: start, end: end, crc: sum, us: us}
	return sum
}
