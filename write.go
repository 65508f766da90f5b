package simdr

import (
	"fmt"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
)

const (
	// directWrite is the value size from which a value is written straight
	// from the caller's slice instead of being copied into the write buffer.
	directWrite = 256 << 10
	// flushAt is the buffered size at which a long batch is written out early.
	flushAt = 1 << 20
)

// pending is an index update waiting for its write to succeed.
type pending struct {
	hash uint64
	pos  uint64 // where the entry's payload ends (packed with its length, see pack)
	del  bool
	rec  bool // an expiry record (expiry.go)
}

// opFor returns the index update that entry e, found in the file, makes.
func opFor(e format.Entry) pending {
	if e.Tombstone {
		return pending{hash: e.Hash, pos: uint64(e.End), del: true}
	}
	return pending{hash: e.Hash, pos: pack(e.End, e.End-e.Start)}
}

// publish applies ops, oldest first, to g's index and moves g's tail to
// tail, as one step to every reader (the caller holds wmu): readers check
// seq, which is odd while the index, tail and counters change (see Get).
func (s *Store) publish(g *gen, ops []pending, tail int64) {
	ready(g, ops)
	if !s.open() {
		return // closed: nothing is read any more
	}
	apply(g, ops, tail)
	s.seq.Add(1)
	s.noteCommit(g, tail)
	s.maybeCheckpoint(g, tail)
}

// ready prepares g's index for ops outside the seq window: it grows the
// table at most once, and touches every key's home so that the stores in the
// window do not wait on cache misses one after the other.
func ready(g *gen, ops []pending) {
	g.ix.Reserve(len(ops))
	for _, op := range ops {
		g.ix.Touch(op.hash)
	}
}

// open starts a seq window (the caller holds wmu and ends it with
// s.seq.Add(1)). It returns false, starting none, when the Store is closed:
// Close leaves seq odd for good, and nothing may make it even again.
func (s *Store) open() bool {
	if s.closed.Load() {
		return false
	}
	s.seq.Add(1)
	return true
}

// apply makes ops and tail g's state; it runs inside a seq window.
func apply(g *gen, ops []pending, tail int64) {
	var (
		tombs int64
		pend  record // the expiry record just met (see noteExpiry)
	)
	for _, op := range ops {
		var old uint64
		if op.del {
			old = g.ix.Delete(op.hash, op.pos)
			tombs++
		} else {
			old = g.ix.Put(op.hash, op.pos)
		}
		if op.rec || op.hash == markerHash || g.x.Load() != nil {
			g.noteExpiry(op, old, &pend)
		}
	}
	g.tail.Store(tail)
	g.tomb.Add(tombs)
	g.ents.Add(int64(len(ops)) - tombs)
}

// appender writes entries after a generation's tail. Nothing it writes is
// visible until commit publishes it; a failure rolls the file back to where it
// started. The caller holds wmu; one appender (s.app) is reused.
type appender struct {
	s       *Store
	g       *gen
	start   int64 // the tail before the first entry
	tail    int64 // the tail after the entries added so far
	written int64 // the file is written up to here; s.buf holds the rest
	err     error
	meta    [format.MetaSize]byte // the metadata of the last entry written (see lastEntry)
	marked  bool                  // the expiry marker is in the file or this write (expiry.go)
	ttls    map[uint64]bool       // keys whose record this write added (true) or deleted (false)
}

// lastEntry is what the writer last committed: the generation, the tail
// after it (and after the commit before) and the metadata of the entry that
// ends there, for checkCut.
type lastEntry struct {
	g    *gen
	end  int64
	prev int64 // the end of the commit before, in g
	meta [format.MetaSize]byte
}

// checkPage is the granularity at which checkCut assumes the mapping's pages
// are touched (the smallest page size).
const checkPage = 4096

// begin starts a write after g's tail. It first checks that the file still
// holds the entries the writer knows (see checkCut): a write past the end of
// a file cut by another process would extend it with a hole and be lost at
// the next Open, so it must not be acknowledged.
func (s *Store) begin(g *gen) *appender {
	s.buf, s.ops = s.buf[:0], s.ops[:0]
	t := g.tail.Load()
	s.app = appender{s: s, g: g, start: t, tail: t, written: t}
	a := &s.app
	a.err = s.checkCut(g, t)
	return a
}

// checkCut returns an error when g's file is shorter than tail, the bytes of
// entries the writer has published: another process cut the file. The Store
// then refuses writes (ErrFailed) until reopened. The caller holds wmu.
//
// When the writer's last commit ended on the same 4 KiB page as the one
// before it (small entries), the check costs no system call: the last
// entry's metadata, read through the mapping (at most one page fault per
// page), still holds what was written unless the file was cut (a page past
// the new end faults, the rest of the last page reads as zeros).
// Otherwise (the first write after Open or Compact, entries of a page or
// more, which would cost a page fault to read) it costs one fstat.
//
// A cut made after the check (during the write, or after it returns) is not
// seen until the next write or Sync: a Store cannot stop other processes from
// damaging its file, only refuse to build on what they cut.
func (s *Store) checkCut(g *gen, tail int64) error {
	compared := false
	if l := &s.last; l.g == g && l.end == tail && (tail-1)/checkPage == (l.prev-1)/checkPage {
		data := g.m.Bytes()
		same := false
		if !guardFault(func() { same = string(data[tail-format.MetaSize:tail]) == string(l.meta[:]) }) && same {
			return nil
		}
		compared = true // cut, or its last entry overwritten: fstat tells which
	}
	size, err := g.f.Size()
	if err != nil {
		return fmt.Errorf("stat before writing: %w", err)
	}
	if size < tail {
		err := fmt.Errorf("the file is %d bytes, shorter than the %d bytes of entries written to it: another process cut it: %w", size, tail, ErrCorrupt)
		s.failed = err
		return err
	}
	if compared {
		err := fmt.Errorf("the metadata of the last entry, at offset %d, was overwritten under the store: %w", tail-format.MetaSize, ErrCorrupt)
		s.failed = err
		return err
	}
	return nil
}

// put adds a value entry.
func (a *appender) put(h uint64, value []byte) { a.putSum(h, value, format.Checksum(value)) }

// putSum is put for a value whose checksum the caller computed (a copy,
// which checks the stored one).
func (a *appender) putSum(h uint64, value []byte, crc uint32) {
	if a.err != nil {
		return
	}
	pad := format.Prepad(a.tail)
	end := a.tail + pad + int64(len(value))
	if len(value) >= directWrite {
		a.s.buf = format.AppendPrepad(a.s.buf, a.tail)
		a.flush()
		a.writeAt(value, a.tail+pad)
		a.written = end
	} else {
		a.s.buf = format.AppendPrepad(a.s.buf, a.tail)
		a.s.buf = append(a.s.buf, value...)
	}
	a.s.buf = format.AppendMeta(a.s.buf, format.Meta{Hash: h, Prev: a.tail, CRC: crc})
	a.s.ops = append(a.s.ops, pending{hash: h, pos: pack(end, int64(len(value)))})
	a.tail = end + format.MetaSize
	if len(a.s.buf) >= flushAt {
		a.flush()
	}
}

// store adds a value written by a caller, without an expiry, then deletes
// any expiry record the key has (see dropRecord). In that order: a crash
// that keeps only a prefix of the write leaves the old value with its
// expiry, or the new value, never the old one without its expiry.
func (a *appender) store(h uint64, value []byte, crc uint32) {
	a.putSum(h, value, crc)
	a.dropRecord(h)
}

// remove adds a tombstone written by a caller, then one for the key's
// expiry record if it has one (in that order, as for store).
func (a *appender) remove(h uint64) {
	a.del(h)
	a.dropRecord(h)
}

// del adds a tombstone.
func (a *appender) del(h uint64) {
	if a.err != nil {
		return
	}
	a.s.buf = format.AppendTombstone(a.s.buf, a.tail, h)
	a.s.ops = append(a.s.ops, pending{hash: h, pos: uint64(a.tail + 1), del: true})
	a.tail += format.TombstoneSize
}

func (a *appender) writeAt(p []byte, off int64) {
	if a.err != nil || len(p) == 0 {
		return
	}
	if off+int64(len(p)) > format.MaxOffset {
		a.err = fmt.Errorf("file would exceed %d bytes", int64(format.MaxOffset))
		return
	}
	a.s.noteInflight(a.g, off+int64(len(p)))
	_, a.err = a.g.f.WriteAt(p, off)
}

// flush writes the buffered bytes. After a failure it only drops them: the
// file is written up to a.written at most (what rollback cuts back).
func (a *appender) flush() {
	if a.err == nil {
		if n := len(a.s.buf); n >= format.MetaSize && a.written+int64(n) == a.tail {
			// It ends with the metadata of the last entry so far.
			copy(a.meta[:], a.s.buf[n-format.MetaSize:])
		}
		a.writeAt(a.s.buf, a.written)
		a.written += int64(len(a.s.buf)) // all of it may be in the file, even on failure
	}
	a.s.buf = a.s.buf[:0]
}

// commit writes what is buffered, syncs when the Store syncs writes, and
// publishes the new entries to readers. On failure it rolls the file back; a
// failed sync also fails the Store (see syncFailed).
func (a *appender) commit() error {
	if err := a.finish(); err != nil {
		return err
	}
	s := a.s
	s.publish(a.g, s.ops, a.tail)
	a.published()
	return nil
}

// published notes, once a's entries are published, the writer's last
// commit (for checkCut) and lets go of a huge buffer.
func (a *appender) published() {
	s := a.s
	if a.tail > a.start {
		prev := int64(-1 << 40)
		if s.last.g == a.g {
			prev = s.last.end
		}
		s.last = lastEntry{g: a.g, end: a.tail, prev: prev, meta: a.meta}
		a.writeback()
	}
	if cap(s.buf) > 4*flushAt {
		s.buf = nil // do not keep a huge buffer after a huge write
	}
}

// finish is commit without the publish: it writes what is buffered, syncs
// when the Store syncs writes, and maps the new bytes. On failure it rolls
// the file back. (Move finishes two appenders, then publishes both at once.)
func (a *appender) finish() error {
	a.flush()
	if a.err == nil && a.s.opts.SyncWrites {
		if err := a.g.f.Sync(); err != nil {
			a.err = err
			a.s.syncFailed(err)
		} else if err := a.s.checkLinked(a.g); err != nil {
			a.err = err
		}
	}
	if a.err == nil {
		a.err = a.g.m.Grow(a.tail)
	}
	if a.err != nil {
		a.rollback()
		return a.err
	}
	return nil
}

// syncFailed makes a failed fdatasync (or directory fsync) sticky: after one,
// the kernel may have dropped dirty pages it could not write, and a later
// sync can report success for data that never reached the disk (PostgreSQL
// and pebble stop there too since "fsyncgate"). The Store refuses writes and
// Sync with ErrFailed until it is reopened, which recovers from what the
// file really holds. The caller holds wmu.
func (s *Store) syncFailed(err error) {
	if s.failed == nil {
		s.failed = fmt.Errorf("an fsync failed, written data may not be on disk: %w", err)
	}
}

// rollback cuts off whatever a failed write left after the tail, so that no
// part of it can be taken for an entry later. If even that fails, the Store
// refuses writes until reopened (Open recovers the file).
func (a *appender) rollback() {
	if a.written > a.start || a.tail > a.start {
		if err := a.g.f.Truncate(a.start); err != nil {
			a.s.failed = fmt.Errorf("roll back to %d after %v: %w", a.start, a.err, err)
		}
	}
}

// Put stores value under key, replacing any value it had. The bytes are in
// the operating system when Put returns (on disk with Options.SyncWrites). A
// value that is empty or the single byte 0x00 fails with ErrInvalidValue.
// value is copied into the file; the caller may reuse it.
// A key starting with the reserved prefix "\x00simdr.ttl\x00" fails with
// ErrReservedKey (see PutTTL).
func (s *Store) Put(key, value []byte) error {
	if reserved(key) {
		return fmt.Errorf("simdr: put: %w", ErrReservedKey)
	}
	return s.putHash(format.Hash(key), value)
}

func (s *Store) putHash(h uint64, value []byte) error {
	if !format.ValueOK(value) {
		return fmt.Errorf("simdr: put %d bytes: %w", len(value), ErrInvalidValue)
	}
	if reservedPut(h, value) {
		return fmt.Errorf("simdr: put: %w", ErrReservedKey)
	}
	return s.write("put", func(a *appender) { a.store(h, value, format.Checksum(value)) })
}

// write runs add on an appender after the current tail and commits it, under
// the write lock; errors say what (op) failed.
func (s *Store) write(op string, add func(a *appender)) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g, err := s.writable()
	if err != nil {
		return fmt.Errorf("simdr: %s: %w", op, err)
	}
	a := s.begin(g)
	add(a)
	if err := a.commit(); err != nil {
		return fmt.Errorf("simdr: %s: %w", op, err)
	}
	return nil
}

// Delete removes key by appending a tombstone (and one for its expiry
// record, if it has one). Deleting a key that has no value writes nothing and
// returns nil. A key starting with the reserved prefix fails with
// ErrReservedKey.
func (s *Store) Delete(key []byte) error {
	if reserved(key) {
		return fmt.Errorf("simdr: delete: %w", ErrReservedKey)
	}
	return s.DeleteHash(format.Hash(key))
}

// DeleteHash is Delete for a caller that already has the key's hash. The
// hash of an expiry record or of the marker (see PutTTL) fails with
// ErrReservedKey: deleting a key deletes its record.
func (s *Store) DeleteHash(h uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g, err := s.writable()
	if err != nil {
		return fmt.Errorf("simdr: delete: %w", err)
	}
	if reservedDelete(g, h) {
		return fmt.Errorf("simdr: delete of hash %016x: %w", h, ErrReservedKey)
	}
	if _, ok := g.ix.Get(h); !ok {
		return nil
	}
	a := s.begin(g)
	a.remove(h)
	if err := a.commit(); err != nil {
		return fmt.Errorf("simdr: delete: %w", err)
	}
	return nil
}

// live reports whether h has a value in g, for the writer.
func live(ix *index.Index, h uint64) bool {
	_, ok := ix.Get(h)
	return ok
}
