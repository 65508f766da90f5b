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
	var tombs int64
	for _, op := range ops {
		if op.del {
			g.ix.Delete(op.hash, op.pos)
			tombs++
		} else {
			g.ix.Put(op.hash, op.pos)
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
}

func (s *Store) begin(g *gen) *appender {
	s.buf, s.ops = s.buf[:0], s.ops[:0]
	t := g.tail.Load()
	s.app = appender{s: s, g: g, start: t, tail: t, written: t}
	return &s.app
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

// flush writes the buffered bytes.
func (a *appender) flush() {
	a.writeAt(a.s.buf, a.written)
	a.written += int64(len(a.s.buf))
	a.s.buf = a.s.buf[:0]
}

// commit writes what is buffered, syncs when the Store syncs writes, and
// publishes the new entries to readers. On failure it rolls the file back.
func (a *appender) commit() error {
	if err := a.finish(); err != nil {
		return err
	}
	s := a.s
	s.publish(a.g, s.ops, a.tail)
	if cap(s.buf) > 4*flushAt {
		s.buf = nil // do not keep a huge buffer after a huge write
	}
	return nil
}

// finish is commit without the publish: it writes what is buffered, syncs
// when the Store syncs writes, and maps the new bytes. On failure it rolls
// the file back. (Move finishes two appenders, then publishes both at once.)
func (a *appender) finish() error {
	a.flush()
	if a.err == nil && a.s.opts.SyncWrites {
		a.err = a.g.f.Sync()
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
func (s *Store) Put(key, value []byte) error { return s.putHash(format.Hash(key), value) }

func (s *Store) putHash(h uint64, value []byte) error {
	if !format.ValueOK(value) {
		return fmt.Errorf("simdr: put %d bytes: %w", len(value), ErrInvalidValue)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g, err := s.writable()
	if err != nil {
		return fmt.Errorf("simdr: put: %w", err)
	}
	a := s.begin(g)
	a.put(h, value)
	if err := a.commit(); err != nil {
		return fmt.Errorf("simdr: put: %w", err)
	}
	return nil
}

// Delete removes key by appending a tombstone. Deleting a key that has no
// value writes nothing and returns nil.
func (s *Store) Delete(key []byte) error { return s.DeleteHash(format.Hash(key)) }

// DeleteHash is Delete for a caller that already has the key's hash.
func (s *Store) DeleteHash(h uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g, err := s.writable()
	if err != nil {
		return fmt.Errorf("simdr: delete: %w", err)
	}
	if _, ok := g.ix.Get(h); !ok {
		return nil
	}
	a := s.begin(g)
	a.del(h)
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
