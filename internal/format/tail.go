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
// Its memory is bounded (about 3 MiB at most, less for a short span; the
// tables of crcShift, 256 KiB, are shared) and its work is linear in
// len(data)-floor, whatever the bytes: each offset costs at most a bounded
// number of checks (the head's checksum is derived from running checksums,
// see sums, in a bounded number of steps) before any chain beneath it is
// walked in full. Only candidates whose checksum holds are walked in full:
// the answer (its chain is walked once), and bytes crafted to hold entries
// with valid checksums over chains that fail, whose walks a fixed-size memo
// shortens without bounding. docs/reliability.md ("Recovery cost") has the
// figures.
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
		p := binary.LittleEndian.Uint64(meta[8:16])
		if p == 0 && binary.LittleEndian.Uint64(meta[0:8]) == 0 && binary.LittleEndian.Uint32(meta[16:20]) == 0 {
			// A run of zeros: while the 8 bytes below are zero too, the
			// next 8 windows are all zero as well.
			for L-8 > floor && L-MetaSize-8 >= 0 && binary.LittleEndian.Uint64(data[L-MetaSize-8:L-MetaSize]) == 0 {
				L -= 8
			}
			continue
		}
		// One unsigned comparison (not two, one of which random bytes make
		// a coin toss): p in [floor, L-MetaSize).
		if lim := L - MetaSize - floor; lim <= 0 || p-uint64(floor) >= uint64(lim) {
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
				if i, rel := m.slot(int64(p)), p-uint64(floor)+1; m.nodes[i] == rel || m.nodes[i+1] == rel {
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
			if g := m.last; g != nil && g.start == start && g.end >= e && g.end-e <= 8 {
				// The same start as the last candidate's, a few bytes
				// below (one word repeated, a run of zeros under prev):
				// inline.
				if g.end-e < 8 {
					r := ^g.crc
					for i := g.end - 1; i >= e; i-- {
						r = unstep(r, data[i])
					}
					g.crc = ^r
				} else {
					g.crc = unfeed(g.crc, data[e:g.end])
				}
				if g.end = e; g.crc != crc {
					continue
				}
			} else if g := m.group(start); g != nil && g.end >= e {
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
//   - nodes: offsets whose chain does not step down to floor (bad), in sets
//     of two: the highest live offset noted in the set, and the latest other
//     one. FindTail walks down, so offsets at or above the candidate it tries
//     (scan) are never asked again, and candidates a little below it tend to
//     claim the offsets just beneath; chains that many walks meet, far
//     below, stay in the second slot.
//   - bad: per block of offsets, the highest offset of the block known bad.
//     A walk that enters a block along a chain already walked meets that
//     chain's highest offset in the block first, and stops there.
//   - groups: per payload start, the checksum of the payload of the last
//     candidate with that start (and the running checksum up to the start).
//     Candidates of a repeated word share a start and end a word apart: the
//     next checksum is the last one with a few bytes removed (unfeed).
//   - sums: running checksums (see sums), also used by step for first
//     entries.
//
// Good chains are not noted: a candidate's chain is walked in full only once
// its checksum holds, and when the chain is good too the scan ends.
type memo struct {
	floor, span int64
	scan        int64 // the candidate being tried: offsets ≥ scan are dead
	sums        sums

	nodes     []uint64 // t-floor+1 of bad offsets; 0: empty
	nodeShift uint     // set = hash(t) >> nodeShift
	bad       []uint32 // per block: the highest bad offset known, as (t-floor)%block + 1; 0: none
	blockBits uint     // block = (t-floor) >> blockBits

	groups []group
	last   *group // the group of the last payload asked
}

// group is one entry of memo.groups.
type group struct {
	start, end int64  // the payload data[start:end]; start -1: empty
	crc        uint32 // its checksum
	us         uint32 // the checksum of data[floor:start]
	sh         uint32 // crcShift(us, shEnd-start)
	shEnd      int64
}

const (
	memoNodeBits  = 15 // at most 2^15 sets of 2 nodes (512 KiB)
	memoBlockBits = 16 // at most 2^16 blocks (256 KiB)
	memoGroupBits = 10
	memoGroups    = 1 << memoGroupBits
	groupUnfeed   = 256 // a group's checksum is moved at most this far (bytes)
)

// try reports whether a valid chain ends at L: Chain(data, m.floor, L). The
// head's checksum is checked before the chain beneath is walked (see
// FindTail).
func (m *memo) try(data []byte, L int64) bool {
	first, ok := head(data, m.floor, L)
	if !ok {
		return false
	}
	if first.Tombstone {
		if !first.Valid(data) {
			return false
		}
	} else if m.payload(data, first.Start, first.End) != first.CRC {
		return false
	}
	return m.walk(data, first.Prev, -1) == good
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
const probeSteps = 1

// walk reports whether the chain from t steps down to exactly floor, every
// step() check holding, within limit steps (any number when negative:
// unknown otherwise). What it learns of a bad chain is noted.
func (m *memo) walk(data []byte, t int64, limit int) status {
	u := t
	for ; u > m.floor; limit-- {
		if m.known(u) {
			m.notePath(data, t, u)
			return bad
		}
		if limit == 0 {
			return unknown
		}
		e, ok := step(data, m.floor, u, m)
		if !ok {
			m.notePath(data, t, u)
			m.note(u)
			return bad
		}
		u = e.Prev
	}
	return good // step keeps every link ≥ floor
}

// notePath notes bad every offset of the chain from t down to (not
// including) stop, all of whose steps hold.
func (m *memo) notePath(data []byte, t, stop int64) {
	for t > stop {
		m.note(t)
		e, ok := Decode(data, t)
		if !ok {
			return
		}
		t = e.Prev
	}
}

// known reports whether t (floor < t) is known bad.
func (m *memo) known(t int64) bool {
	if m.nodes == nil {
		return false
	}
	rel := uint64(t - m.floor)
	if i := m.slot(t); m.nodes[i] == rel+1 || m.nodes[i+1] == rel+1 {
		return true
	}
	return m.bad[rel>>m.blockBits] == uint32(rel&(1<<m.blockBits-1))+1
}

// note records that the chain from t does not step down to floor.
func (m *memo) note(t int64) {
	if m.nodes == nil {
		m.alloc()
	}
	rel := uint64(t - m.floor)
	live := uint64(m.scan - m.floor) // rel ≥ live: dead
	i := m.slot(t)
	if old := m.nodes[i]; old == rel+1 {
		// already there
	} else if old == 0 || old-1 >= live || rel >= old-1 {
		m.nodes[i+1], m.nodes[i] = old, rel+1
	} else {
		m.nodes[i+1] = rel + 1
	}
	b, in := rel>>m.blockBits, uint32(rel&(1<<m.blockBits-1))+1
	if old := m.bad[b]; old == 0 || in >= old || b<<m.blockBits+uint64(old-1) >= live {
		m.bad[b] = in
	}
}

// slot returns the first of the two slots of t's set.
func (m *memo) slot(t int64) uint64 {
	return uint64(t) * 0x9E3779B97F4A7C15 >> m.nodeShift << 1
}

// alloc sizes the caches to the span (a follower's Refresh over a few new
// entries allocates little).
func (m *memo) alloc() {
	nb := max(6, min(memoNodeBits, bits.Len64(uint64(m.span)/32)))
	m.nodes, m.nodeShift = make([]uint64, 2<<nb), uint(64-nb)
	m.blockBits = uint(max(6, bits.Len64(uint64(m.span-1))-memoBlockBits))
	m.bad = make([]uint32, (m.span-1)>>m.blockBits+1)
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
	m.last = g
	if g.start == start && g.end >= end && g.end-end <= groupUnfeed {
		g.crc, g.end = unfeed(g.crc, data[end:g.end]), end
		return g.crc
	}
	// crc(floor:end) = crc(floor:start) shifted over end-start bytes, xor
	// crc(start:end). The shift of the group's last end is shifted back.
	var us, sh uint32
	if g.start == start && g.shEnd >= end && g.shEnd-end < 1<<32 {
		us, sh = g.us, crcUnshift(g.sh, g.shEnd-end)
	} else {
		us = m.sums.fromMarks(data, start)
		sh = crcShift(us, end-start)
	}
	sum := m.sums.upto(data, end) ^ sh
	*g = group{start: start, end: end, crc: sum, us: us, sh: sh, shEnd: end}
	return sum
}
