package simdr

import (
	"bufio"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"sync"
	"time"
	"unsafe"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
	"github.com/simdr-go/simdr/internal/mapping"
	"golang.org/x/sys/unix"
)

// The index checkpoint: a copy of the in-memory index beside the store file
// (<path>-simdr-index), so that Open loads the index instead of walking every
// entry of the file. It is a disposable cache: one that is missing, damaged,
// or does not match the store file is ignored (and rewritten later); the
// store file stays the only data. docs/checkpoint.md has the layout.

const (
	ckSuffix     = "-simdr-index"
	ckMagic      = "SIMDRIX1"
	ckVersion    = 2    // the index's shards and their directory (index.WriteSnapshot)
	ckHeaderSize = 4096 // the table starts page-aligned, so it can be mapped
	ckFields     = 108  // header bytes covered by the header's own CRC
	// ckMinEntries: below this many entries in the file, the walk is cheap
	// and no checkpoint is written.
	ckMinEntries = 1 << 16
)

// ckVersionSingle is the checkpoint of earlier versions, whose table is one
// single table: still restored (index.Restore tells the two apart). A binary
// that knows only it refuses version 2, whose shards it would probe in the
// wrong places.
const ckVersionSingle = 1

// checkpointPath is where the index checkpoint of the store at path lives.
func checkpointPath(path string) string { return path + ckSuffix }

// ckHeader is the decoded header of a checkpoint file.
type ckHeader struct {
	dev, ino   uint64
	tail       int64                 // every entry below tail is in the table
	meta       [format.MetaSize]byte // the metadata that ends at tail (zeros when tail is 0)
	groups     int64
	used, live int64
	ents, tomb int64 // value entries and tombstones below tail
	tableCRC   uint32
}

// byteOrder is the native order the table is written in (the slots are
// copied as they lie in memory).
var byteOrder = binary.NativeEndian

func (h *ckHeader) encode() []byte {
	b := make([]byte, ckHeaderSize)
	copy(b, ckMagic)
	byteOrder.PutUint32(b[8:], ckVersion)
	byteOrder.PutUint32(b[12:], ckHeaderSize)
	byteOrder.PutUint64(b[16:], h.dev)
	byteOrder.PutUint64(b[24:], h.ino)
	byteOrder.PutUint64(b[32:], uint64(h.tail))
	copy(b[40:60], h.meta[:])
	byteOrder.PutUint64(b[64:], uint64(h.groups))
	byteOrder.PutUint64(b[72:], uint64(h.used))
	byteOrder.PutUint64(b[80:], uint64(h.live))
	byteOrder.PutUint64(b[88:], uint64(h.ents))
	byteOrder.PutUint64(b[96:], uint64(h.tomb))
	byteOrder.PutUint32(b[104:], h.tableCRC)
	byteOrder.PutUint32(b[ckFields:], crc32.ChecksumIEEE(b[:ckFields]))
	return b
}

func decodeCkHeader(b []byte) (ckHeader, bool) {
	var h ckHeader
	if len(b) < ckHeaderSize || string(b[:8]) != ckMagic ||
		(byteOrder.Uint32(b[8:]) != ckVersion && byteOrder.Uint32(b[8:]) != ckVersionSingle) || byteOrder.Uint32(b[12:]) != ckHeaderSize ||
		byteOrder.Uint32(b[ckFields:]) != crc32.ChecksumIEEE(b[:ckFields]) {
		return h, false
	}
	h.dev, h.ino = byteOrder.Uint64(b[16:]), byteOrder.Uint64(b[24:])
	h.tail = int64(byteOrder.Uint64(b[32:]))
	copy(h.meta[:], b[40:60])
	h.groups = int64(byteOrder.Uint64(b[64:]))
	h.used, h.live = int64(byteOrder.Uint64(b[72:])), int64(byteOrder.Uint64(b[80:]))
	h.ents, h.tomb = int64(byteOrder.Uint64(b[88:])), int64(byteOrder.Uint64(b[96:]))
	h.tableCRC = byteOrder.Uint32(b[104:])
	return h, h.tail >= 0 && h.groups > 0 && h.used >= h.live && h.live >= 0 && h.ents >= 0 && h.tomb >= 0
}

// metaAt returns the 20 bytes of metadata that end at tail in data (zeros
// for tail 0).
func metaAt(data []byte, tail int64) (m [format.MetaSize]byte) {
	if tail >= format.MetaSize && tail <= int64(len(data)) {
		copy(m[:], data[tail-format.MetaSize:tail])
	}
	return m
}

// checkpoint is a loaded checkpoint: its header and its table, mapped
// privately (copy on write) so that the index can live in it.
type checkpoint struct {
	h     ckHeader
	table []byte // the mapping; unmapped when the Store closes
	top   int64  // the highest payload end a slot names (a background checkpoint may name entries above h.tail)
}

// openCheckpoint returns the checkpoint beside the store if it matches the
// store file of g, whose first size bytes are mapped: same file identity,
// a tail within the file with the same metadata ending there, and its own
// checksums. It returns nil otherwise (no error: a checkpoint is a cache).
func (s *Store) openCheckpoint(g *gen, size int64) *checkpoint {
	if s.opts.fs != nil {
		return nil // fault-injection tests see only the store file
	}
	// O_NONBLOCK: a FIFO under the name must not block Open (it is then
	// refused as not a regular file).
	f, err := os.OpenFile(checkpointPath(s.path), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	hb := make([]byte, ckHeaderSize)
	if _, err := f.ReadAt(hb, 0); err != nil {
		return nil
	}
	h, ok := decodeCkHeader(hb)
	dev, ino, _, _ := fileID(g.fi)
	if !ok || h.dev != dev || h.ino != ino || h.tail > size ||
		metaAt(g.m.Bytes()[:size], h.tail) != h.meta {
		return nil
	}
	n := h.groups * int64(index.GroupBytes)
	fi, err := f.Stat()
	if err != nil || fi.Size() != ckHeaderSize+n || n > 1<<46 {
		return nil
	}
	// The table is read into memory of the Store's own (anonymous pages),
	// not mapped from the file: the pages of a file mapping, even a private
	// one, are the page cache's until written, and another process that
	// cut the checkpoint file (a cache anyone may remove or empty) would
	// make them fault (SIGBUS in Get; a truncate unmaps even private copies
	// of its pages), one that rewrote it in place (cp over it keeps the
	// inode) would change the index under the Store after the checks below.
	table, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	// The restored index lives in this memory: huge pages spare its lookups
	// most TLB misses, as for the shards the index allocates (see
	// internal/index adviseHuge). Asked for before the read faults it in;
	// best effort.
	_ = unix.Madvise(table, unix.MADV_HUGEPAGE)
	if _, err := f.ReadAt(table, ckHeaderSize); err != nil { // cut meanwhile: short
		unix.Munmap(table)
		return nil
	}
	// One pass, a chunk at a time while it is in cache, checks the table's
	// CRC, notes the highest position it names (so that even a forged
	// checkpoint cannot send a Get outside the file) and brings the pages in.
	// It also counts the used and live slots: a table whose header
	// understates them is refused, and so is one where no group's last slot
	// is empty (a Get of an absent key would probe forever) or a group holds
	// a key twice (a lookup ORs the values of a group's matching slots, so
	// it would read a position no slot names, even outside the file). And it samples a used
	// slot of each chunk: the store's metadata where the slot says the
	// entry ends must name the slot's key, so that a file replaced by
	// another of the same size and tail (cp over it, or deleted and written
	// again at a reused inode) is not read through the old file's index.
	const chunk = 64 << 10
	nch := (len(table) + chunk - 1) / chunk
	scans := make([]tableScan, nch)
	var crc uint32
	var wg sync.WaitGroup
	// The checksum and the scan run beside each other (the scan on two
	// goroutines, chunk by chunk): the table is tens of MiB per million keys.
	wg.Go(func() { crc = crc32.ChecksumIEEE(table) })
	scan := func(from int) {
		for i := from; i < nch; i += 2 {
			scans[i] = scanTable(table[i*chunk : min((i+1)*chunk, len(table))])
		}
	}
	wg.Go(func() { scan(1) })
	scan(0)
	wg.Wait()
	var top int64
	var used, live, ends int
	bad := false
	var samples []int // byte offsets in table of sampled slots
	for i, r := range scans {
		top, used, live, ends, bad = max(top, r.top), used+r.used, live+r.live, ends+r.ends, bad || r.bad
		if r.first >= 0 {
			samples = append(samples, i*chunk+r.first)
		}
	}
	if bad || ends == 0 || crc != h.tableCRC || top > size-format.MetaSize || int64(used) != h.used || int64(live) != h.live ||
		!sampleMatches(g.m.Bytes()[:size], table, samples) {
		unix.Munmap(table)
		return nil
	}
	return &checkpoint{h: h, table: table, top: top}
}

// close unmaps the checkpoint's table (one no reader can be using).
func (ck *checkpoint) close() error {
	if ck == nil || ck.table == nil {
		return nil
	}
	err := unix.Munmap(ck.table)
	ck.table = nil
	return err
}

// retire releases the table of a checkpoint whose index readers may still
// be probing (a Get racing Close): as mapping.Map.Close does for the file,
// it swaps read-only zero pages in (a probe there ends at once: every slot
// is empty) and unmaps them mapping.Grace later, instead of unmapping the
// pages under the readers, which would fault.
func (ck *checkpoint) retire() error {
	if ck == nil || ck.table == nil {
		return nil
	}
	p, n := unsafe.Pointer(unsafe.SliceData(ck.table)), uintptr(len(ck.table))
	if _, err := unix.MmapPtr(-1, 0, p, n, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED); err != nil {
		return ck.close()
	}
	ck.table = nil
	time.AfterFunc(mapping.Grace, func() { unix.MunmapPtr(p, n) })
	return nil
}

// restore builds g's index from the checkpoint, then applies the entries
// of c (the ones above the checkpoint's tail, newest first).
func (ck *checkpoint) restore(g *gen, c *collector) error {
	ix, err := index.Restore(ck.table, int(ck.h.used), int(ck.h.live))
	if err != nil {
		return err
	}
	var tombs int64
	for i := len(c.blocks) - 1; i >= 0; i-- {
		b := c.blocks[i]
		m := len(b.hs)
		if i == len(c.blocks)-1 {
			m = c.n
		}
		for j := m - 1; j >= 0; j-- { // oldest first
			if v := b.vs[j]; v&index.Deleted != 0 {
				ix.Delete(b.hs[j], v)
				tombs++
			} else {
				ix.Put(b.hs[j], v)
			}
		}
		c.blocks[i] = nil
	}
	g.ix = ix
	g.tomb.Store(ck.h.tomb + tombs)
	g.ents.Store(ck.h.ents + int64(c.len()) - tombs)
	return nil
}

// writeCheckpoint writes the index of g, which covers at least every entry
// below tail (ents value entries and tomb tombstones), to the checkpoint
// file: into a temporary file first, renamed over the old one once whole.
// The store file is synced first, so that a checkpoint never names bytes the
// disk does not hold. It may run while the writer goes on (see
// index.WriteSnapshot), unless quiet: the caller holds wmu for the whole call.
func (s *Store) writeCheckpoint(g *gen, tail, ents, tomb int64, quiet bool) (err error) {
	if err := g.f.Sync(); err != nil {
		return errSyncFailed{err}
	}
	dev, ino, _, _ := fileID(g.fi)
	h := ckHeader{dev: dev, ino: ino, tail: tail, meta: metaAt(g.m.Bytes(), tail), ents: ents, tomb: tomb}
	path := checkpointPath(s.path)
	tmp := path + ".tmp"
	// A leftover (a crash while writing one) is removed, and the new one
	// made with O_EXCL, which never follows a symlink: one planted there
	// cannot make the writer overwrite the file it names.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(make([]byte, ckHeaderSize)); err != nil {
		return err
	}
	var info index.SnapInfo
	if quiet {
		info, err = g.ix.WriteQuiet(f)
	} else {
		w := bufio.NewWriterSize(f, 1<<20)
		if info, err = g.ix.WriteSnapshot(w); err == nil {
			err = w.Flush()
		}
	}
	if err != nil {
		return err
	}
	h.groups, h.used, h.live, h.tableCRC = int64(info.Groups), int64(info.Used), int64(info.Live), info.CRC
	if _, err := f.WriteAt(h.encode(), 0); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// covered returns the tail and the entries that the newest checkpoint of g
// covers: the one g was loaded from, or a later one this Store wrote in the
// background (0, 0: none). The caller holds wmu.
func (s *Store) covered(g *gen) (tail, entries int64) {
	if g.ck != nil {
		tail, entries = g.ck.h.tail, g.ck.h.ents+g.ck.h.tomb
	}
	if s.ckGen == g && s.ckTail > tail {
		tail, entries = s.ckTail, s.ckEntries
	}
	return tail, entries
}

// checkpointPays reports whether Close should write a checkpoint of g: the
// file holds enough entries, and enough of them came after the newest
// checkpoint.
func (s *Store) checkpointPays(g *gen) bool {
	// failure, not failed: a background checkpoint's failed sync not yet
	// taken up by a write counts too (the next sync would succeed, the
	// kernel reports a writeback error once, and the checkpoint would name
	// bytes the disk may not hold).
	if s.opts.ReadOnly || s.failure() != nil || s.opts.fs != nil {
		return false
	}
	total := g.ents.Load() + g.tomb.Load()
	_, covered := s.covered(g)
	if s.ckLost.Load() && g.ck != nil {
		// The last background checkpoint failed: only the one loaded exists.
		covered = g.ck.h.ents + g.ck.h.tomb
	} else if s.ckLost.Load() {
		covered = 0
	}
	return total >= ckMinEntries && total-covered >= max(ckMinEntries/4, total/8)
}

// maybeCheckpoint starts a background checkpoint when Options.CheckpointBytes
// of new data were appended since the last one (the caller holds wmu).
func (s *Store) maybeCheckpoint(g *gen, tail int64) {
	every := s.opts.CheckpointBytes
	if every < 0 || s.opts.ReadOnly || s.opts.fs != nil {
		return
	}
	if every == 0 {
		every = 1 << 30
	}
	base, _ := s.covered(g)
	if tail-base < every || g.ents.Load()+g.tomb.Load() < ckMinEntries || !s.ckBusy.CompareAndSwap(false, true) {
		return
	}
	ents, tomb := g.ents.Load(), g.tomb.Load()
	// The next one is spaced from this one even if it fails (a full disk
	// is not tried again at every write), but Close does not count a failed
	// one as written (ckLost).
	s.ckTail, s.ckGen, s.ckEntries = tail, g, ents+tomb
	s.ckLost.Store(false)
	s.ckWG.Add(1)
	go func() {
		defer s.ckWG.Done()
		defer s.ckBusy.Store(false)
		err := s.writeCheckpoint(g, tail, ents, tomb, false)
		if err != nil {
			s.ckLost.Store(true)
		}
		if errors.As(err, new(errSyncFailed)) {
			// A failed fdatasync is sticky, wherever it happens: the next
			// write or Sync (which hold wmu) takes it up (see failure).
			s.bgFailed.CompareAndSwap(nil, &err)
		}
	}()
}

// tableScan is what scanTable finds in whole groups of a table.
type tableScan struct {
	top        int64 // the highest payload end a used slot names
	used, live int
	first      int  // byte offset of the first used slot (-1: none)
	ends       int  // groups whose last slot is empty: where a probe ends
	bad        bool // a value that cannot be a position, or a key held twice in a group
}

// scanTable scans b, whole groups of a table. A real table never holds a
// key in two slots of a group (a lookup would OR their values), and a
// lookup of an absent key ends only at a group whose last slot is empty.
func scanTable(b []byte) tableScan {
	words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/8)
	r := tableScan{first: -1}
	var hi, used, live, bad uint64
	for g := 0; g+8 <= len(words); g += 8 {
		grp := (*[8]uint64)(words[g : g+8])
		k0, w0, k1, w1, k2, w2, k3, w3 := grp[0], grp[1], grp[2], grp[3], grp[4], grp[5], grp[6], grp[7]
		if w3 == 0 {
			r.ends++
		}
		if w0|w1|w2|w3 == 0 {
			continue
		}
		// A key twice among the used slots of the group.
		// (Keys compared first: they almost never match.)
		if (k1 == k0 && w1 != 0 && w0 != 0) || (k2 == k0 && w2 != 0 && w0 != 0) ||
			(k2 == k1 && w2 != 0 && w1 != 0) || (k3 == k0 && w3 != 0 && w0 != 0) ||
			(k3 == k1 && w3 != 0 && w1 != 0) || (k3 == k2 && w3 != 0 && w2 != 0) {
			r.bad = true
			return r
		}
		if r.first < 0 {
			for j, w := range [4]uint64{w0, w1, w2, w3} {
				if w != 0 {
					r.first = (g + 2*j) * 8
					break
				}
			}
		}
		// Branch-free over the four slots (about two thirds are used, in no
		// predictable order): counts, the highest end, and a length above
		// its end (which a real table never holds).
		for _, w := range [4]uint64{w0, w1, w2, w3} {
			nz := (w | -w) >> 63 // 1 when the slot is used
			used += nz
			live += nz &^ (w >> 63)
			v := w &^ index.Deleted
			end := v & endMask
			bad |= (end - v>>lenShift) >> 63 // the length exceeds the end
			hi = max(hi, end)
		}
	}
	if bad != 0 {
		r.bad = true
		return r
	}
	r.used, r.live = int(used), int(live)
	r.top = int64(hi)
	return r
}

// sampleMatches reports whether, for each sampled slot (a byte offset in
// table), the metadata in data where the slot's entry ends holds the slot's
// key hash. Every position is below len(data)-MetaSize (checked before); a
// fault (the file cut meanwhile by another process) is a mismatch.
func sampleMatches(data, table []byte, samples []int) bool {
	ok := true
	if guardFault(func() {
		for _, off := range samples {
			key := byteOrder.Uint64(table[off:])
			end := int64(byteOrder.Uint64(table[off+8:]) & endMask)
			if format.ReadMeta(data[end:end+format.MetaSize]).Hash != key {
				ok = false
				return
			}
		}
	}) {
		return false
	}
	return ok
}

// errSyncFailed is a checkpoint's failed sync of the store file.
type errSyncFailed struct{ err error }

func (e errSyncFailed) Error() string { return "sync the store file: " + e.err.Error() }
func (e errSyncFailed) Unwrap() error { return e.err }
