package index

import (
	"errors"
	"hash/crc32"
	"io"
	"unsafe"
)

// GroupBytes is the size of one group of the table in a snapshot (and in
// memory): four slots of a key hash and a value, 8 bytes each, in the
// machine's byte order.
const GroupBytes = int(unsafe.Sizeof(group{}))

// SnapInfo describes a snapshot written by WriteSnapshot.
type SnapInfo struct {
	Groups int    // groups in the table
	Used   int    // claimed slots (live or deleted)
	Live   int    // slots holding a live key
	CRC    uint32 // CRC-32 (IEEE) of the table bytes
}

// WriteSnapshot writes the current table to w, group after group, as it is
// laid out in memory, and returns what it wrote. It may run while the writer
// changes the index (it reads each slot as a reader does: value, then key), so
// the table written holds, for each key, its state at some moment during the
// call: a caller that noted the file's tail before the call and replays every
// entry after that tail on top of the restored table gets the exact index.
//
// WriteQuiet is WriteSnapshot for a caller that keeps the writer out for the
// whole call (no Put or Delete runs meanwhile): it writes the table straight
// from memory, without copying it.
func (ix *Index) WriteSnapshot(w io.Writer) (SnapInfo, error) {
	t := ix.t.Load()
	info := SnapInfo{Groups: len(t.groups)}
	const chunk = 16 << 10 // groups per write: 1 MiB
	buf := make([]group, min(chunk, len(t.groups)))
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
				if v != 0 {
					info.Used++
					if v&Deleted == 0 {
						info.Live++
					}
				}
			}
		}
		b := unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), len(out)*GroupBytes)
		info.CRC = crc32.Update(info.CRC, crc32.IEEETable, b)
		if _, err := w.Write(b); err != nil {
			return SnapInfo{}, err
		}
	}
	return info, nil
}

// WriteQuiet: see WriteSnapshot.
func (ix *Index) WriteQuiet(w io.Writer) (SnapInfo, error) {
	t := ix.t.Load()
	b := unsafe.Slice((*byte)(unsafe.Pointer(&t.groups[0])), len(t.groups)*GroupBytes)
	info := SnapInfo{Groups: len(t.groups), Used: ix.used, Live: ix.Len(), CRC: crc32.ChecksumIEEE(b)}
	if _, err := w.Write(b); err != nil {
		return SnapInfo{}, err
	}
	return info, nil
}

// store fills slot s of group g with plain stores (g is private).
func (g *group) store(s *slot, h, v uint64) {
	*(*uint64)(unsafe.Pointer(&s.key)) = h
	*(*uint64)(unsafe.Pointer(&s.val)) = v
}

// ErrSnapshot is returned by Restore for memory that cannot be a table.
var ErrSnapshot = errors.New("index: not a snapshot table")

// Restore returns an index whose table is mem: a snapshot written by
// WriteSnapshot (used and live as it reported). mem must be 64-byte aligned,
// a whole number of groups, writable, and stay valid for as long as the index
// or any reader of it may use it (a table replaced by growth is still read by
// readers that loaded it before). Restore does not copy mem.
func Restore(mem []byte, used, live int) (*Index, error) {
	n := len(mem) / GroupBytes
	if n < 1 || len(mem)%GroupBytes != 0 || uintptr(unsafe.Pointer(unsafe.SliceData(mem)))%64 != 0 ||
		used < live || live < 0 || used > n*len(group{}) {
		return nil, ErrSnapshot
	}
	t := &table{
		groups: unsafe.Slice((*group)(unsafe.Pointer(unsafe.SliceData(mem))), n),
		limit:  int(float64(n*len(group{})) * maxLoad),
	}
	ix := &Index{used: used}
	ix.live.Store(int64(live))
	ix.t.Store(t)
	if used >= t.limit {
		// A table restored full: give the next insert room at once.
		ix.grow(0)
	}
	return ix, nil
}
