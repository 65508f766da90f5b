package index

import (
	"errors"
	"hash/crc32"
	"io"
	"unsafe"
)

// GroupBytes is the size of one group of a shard in a snapshot (and in
// memory): four slots of a key hash and a value, 8 bytes each, in the
// machine's byte order.
const GroupBytes = int(unsafe.Sizeof(group{}))

// snapMagic ends the directory of a snapshot ("SIMDRIXD").
const snapMagic = 0x44584952444d4953

// SnapInfo describes a snapshot written by WriteSnapshot.
type SnapInfo struct {
	Groups int    // groups written: the shards' and the directory's
	Used   int    // claimed slots (live or deleted)
	Live   int    // slots holding a live key
	CRC    uint32 // CRC-32 (IEEE) of the bytes written
}

// A snapshot is a whole number of groups: every shard's groups in hash
// order, as they lie in memory, then the directory, in groups whose four
// values are zero (so no slot of it names a position) and whose keys hold,
// for each shard, the words ld<<56|groups, used and live, zeros, and in the
// last group the words depth, shards, directory groups and snapMagic. A
// snapshot whose last group is not such a group is the single table of
// earlier versions: one shard of depth 0.

// dirGroups returns the groups of the directory of a snapshot of n shards.
func dirGroups(n int) int { return (3*n+3)/4 + 1 }

// WriteSnapshot writes the current shards to w, group after group, as they
// are laid out in memory, then their directory, and returns what it wrote. It
// may run while the writer changes the index (it reads each slot as a reader
// does: value, then key, and the shards of the directory current when it
// starts), so the table written holds, for each key, its state at some moment
// during the call: a caller that noted the file's tail before the call and
// replays every entry after that tail on top of the restored index gets the
// exact index.
//
// WriteQuiet is WriteSnapshot for a caller that keeps the writer out for the
// whole call (no Put or Delete runs meanwhile): it writes the shards straight
// from memory, without copying them.
func (ix *Index) WriteSnapshot(w io.Writer) (SnapInfo, error) {
	d := ix.d.Load()
	ts := d.tables()
	var info SnapInfo
	counts := make([][2]int, len(ts))
	const chunk = 16 << 10 // groups per write: 1 MiB
	buf := make([]group, chunk)
	for k, t := range ts {
		for lo := 0; lo < len(t.groups); lo += chunk {
			hi := min(lo+chunk, len(t.groups))
			out := buf[:hi-lo]
			for i := range out {
				g := &t.groups[lo+i]
				for j := range g {
					v := g[j].val.Load()
					k := g[j].key.Load()
					if v == 0 {
						k = 0
					}
					out[i].store(&out[i][j], k, v)
				}
			}
			for i := range out {
				for j := range out[i] {
					if v := out[i][j].val.Load(); v != 0 {
						counts[k][0]++
						if v&Deleted == 0 {
							counts[k][1]++
						}
					}
				}
			}
			if err := info.write(w, groupBytes(out)); err != nil {
				return SnapInfo{}, err
			}
		}
	}
	return info, info.writeDir(w, d.depth, ts, counts)
}

// WriteQuiet: see WriteSnapshot.
func (ix *Index) WriteQuiet(w io.Writer) (SnapInfo, error) {
	d := ix.d.Load()
	ts := d.tables()
	var info SnapInfo
	counts := make([][2]int, len(ts))
	for k, t := range ts {
		counts[k] = [2]int{t.used, t.live}
		if err := info.write(w, groupBytes(t.groups)); err != nil {
			return SnapInfo{}, err
		}
	}
	return info, info.writeDir(w, d.depth, ts, counts)
}

func groupBytes(gs []group) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(gs))), len(gs)*GroupBytes)
}

// write writes b (whole groups) and accounts for it.
func (info *SnapInfo) write(w io.Writer, b []byte) error {
	info.CRC = crc32.Update(info.CRC, crc32.IEEETable, b)
	info.Groups += len(b) / GroupBytes
	_, err := w.Write(b)
	return err
}

// writeDir writes the directory of shards ts, whose used and live slots are
// counts, and totals them into info.
func (info *SnapInfo) writeDir(w io.Writer, depth uint, ts []*table, counts [][2]int) error {
	dg := dirGroups(len(ts))
	gs := make([]group, dg)
	words := make([]uint64, 4*dg)
	for k, t := range ts {
		words[3*k] = uint64(t.ld)<<56 | uint64(len(t.groups))
		words[3*k+1], words[3*k+2] = uint64(counts[k][0]), uint64(counts[k][1])
		info.Used += counts[k][0]
		info.Live += counts[k][1]
	}
	copy(words[len(words)-4:], []uint64{uint64(depth), uint64(len(ts)), uint64(dg), snapMagic})
	for i, k := range words {
		gs[i/4].store(&gs[i/4][i%4], k, 0)
	}
	return info.write(w, groupBytes(gs))
}

// store fills slot s of group g with plain stores (g is private).
func (g *group) store(s *slot, h, v uint64) {
	*(*uint64)(unsafe.Pointer(&s.key)) = h
	*(*uint64)(unsafe.Pointer(&s.val)) = v
}

// ErrSnapshot is returned by Restore for memory that cannot be a snapshot.
var ErrSnapshot = errors.New("index: not a snapshot table")

// Restore returns an index whose shards live in mem: a snapshot written by
// WriteSnapshot (used and live as it reported). mem must be 64-byte aligned,
// a whole number of groups, writable, and stay valid for as long as the
// index or any reader of it may use it (a shard replaced by growth is still
// read by readers that loaded it before). Restore does not copy mem, but
// reads all of it once: it counts each shard's slots itself. A directory that
// does not add up (sizes, prefixes, counts), or a shard where no group's last
// slot is empty (a lookup of an absent key would probe it forever), is
// ErrSnapshot.
//
// mem may also be the single table of earlier versions (no directory), whose
// homes are not a shard's: Restore then copies its live keys into an index of
// its own, and does not use mem once it returns.
func Restore(mem []byte, used, live int) (*Index, error) {
	n := len(mem) / GroupBytes
	if n < 1 || len(mem)%GroupBytes != 0 || uintptr(unsafe.Pointer(unsafe.SliceData(mem)))%64 != 0 ||
		used < live || live < 0 {
		return nil, ErrSnapshot
	}
	all := unsafe.Slice((*group)(unsafe.Pointer(unsafe.SliceData(mem))), n)
	if last := &all[n-1]; last[0].val.Load()|last[1].val.Load()|last[2].val.Load()|last[3].val.Load() != 0 || last[3].key.Load() != snapMagic {
		t := tableOf(all, 0, 0)
		if !t.count() || t.used != used || t.live != live {
			return nil, ErrSnapshot
		}
		return fromSingle(t), nil
	}
	d, err := restoreDir(all, used, live)
	if err != nil {
		return nil, err
	}
	ix := &Index{}
	ix.live.Store(int64(live))
	ix.store(d)
	for _, t := range d.tables() {
		if t.used >= t.limit {
			// A shard restored full: give the next insert room at once.
			ix.grow(t, 1, false)
		}
	}
	return ix, nil
}

// fromSingle returns a new index holding the live keys of t, the single table
// of an earlier version.
func fromSingle(t *table) *Index {
	ix := New(t.live)
	const batch = 256
	var hs, vs [batch]uint64
	n := 0
	for i := range t.groups {
		g := &t.groups[i]
		for j := range g {
			if v := g[j].val.Load(); v != 0 && v&Deleted == 0 {
				hs[n], vs[n] = g[j].key.Load(), v
				if n++; n == batch {
					ix.Load(hs[:], vs[:])
					n = 0
				}
			}
		}
	}
	ix.Load(hs[:n], vs[:n])
	return ix
}

// count sets t's used and live slots from its groups, and reports whether
// a lookup in t ends: some group's last slot is empty.
func (t *table) count() bool {
	var used, live, ends uint64
	for i := range t.groups {
		g := &t.groups[i]
		for j := range g {
			v := g[j].val.Load()
			nz := (v | -v) >> 63 // 1 when the slot is used
			used += nz
			live += nz &^ (v >> 63)
		}
		ends |= ^(g[3].val.Load() | -g[3].val.Load()) >> 63
	}
	t.used, t.live = int(used), int(live)
	return ends != 0
}

// restoreDir reads the directory that ends all and checks it.
func restoreDir(all []group, used, live int) (*dir, error) {
	n := len(all)
	last := &all[n-1]
	depth, ns, dg := last[0].key.Load(), last[1].key.Load(), last[2].key.Load()
	if depth > maxDepth || ns < 1 || ns > 1<<depth || dg != uint64(dirGroups(int(ns))) || dg > uint64(n) {
		return nil, ErrSnapshot
	}
	dir0 := n - int(dg) // the directory's first group
	word := func(i int) uint64 { return all[dir0+i/4][i%4].key.Load() }
	for i := 0; i < 4*int(dg); i++ {
		if all[dir0+i/4][i%4].val.Load() != 0 {
			return nil, ErrSnapshot
		}
	}
	d := newDir(uint(depth))
	off, entry := 0, 0 // groups and directory entries used so far
	sumUsed, sumLive := 0, 0
	for k := 0; k < int(ns); k++ {
		w, u, l := word(3*k), word(3*k+1), word(3*k+2)
		ld, g := uint(w>>56), int(w&(1<<56-1))
		if ld > uint(depth) || g < 1 || g > dir0-off {
			return nil, ErrSnapshot
		}
		span := 1 << (uint(depth) - ld)
		if entry%span != 0 || entry+span > len(d.tabs) {
			return nil, ErrSnapshot
		}
		t := tableOf(all[off:off+g:off+g], ld, uint64(entry/span))
		if !t.count() || uint64(t.used) != u || uint64(t.live) != l {
			return nil, ErrSnapshot
		}
		d.set(entry, entry+span, t)
		off, entry = off+g, entry+span
		sumUsed, sumLive = sumUsed+t.used, sumLive+t.live
	}
	if off != dir0 || entry != len(d.tabs) || sumUsed != used || sumLive != live {
		return nil, ErrSnapshot
	}
	return d, nil
}
