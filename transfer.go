package simdr

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/simdr-go/simdr/internal/format"
)

// Rename moves the value of oldKey to newKey in one atomic write: a new entry
// under newKey with the same bytes and the same checksum, and a tombstone for
// oldKey; a value stored with PutTTL keeps its expiry (an expired oldKey is
// not found). Readers see it whole: once a read has found the value under newKey,
// no later read finds it under oldKey. Any value newKey had is replaced. A
// missing oldKey fails with ErrNotFound; renaming a key to itself (or to a key
// with the same hash) fails with ErrSameKey.
//
// Rename checks the value's stored checksum as it copies the bytes: a damaged
// value is not written under a fresh checksum; Rename fails with an error
// matching ErrChecksum that names the value's offset, and changes nothing.
func (s *Store) Rename(oldKey, newKey []byte) error {
	if reserved(oldKey) || reserved(newKey) {
		return fmt.Errorf("simdr: rename: %w", ErrReservedKey)
	}
	oh, nh := Hash(oldKey), Hash(newKey)
	if oh == nh {
		return fmt.Errorf("simdr: rename: %w", ErrSameKey)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g, err := s.writable()
	if err != nil {
		return fmt.Errorf("simdr: rename: %w", err)
	}
	pos, ok := g.ix.Get(oh)
	if !ok || s.expired(g, oh) {
		return fmt.Errorf("simdr: rename: %w", ErrNotFound)
	}
	a := s.begin(g) // checks first that the file was not cut under the Store
	if a.err != nil {
		return fmt.Errorf("simdr: rename: %w", a.err)
	}
	e, err := g.entry(oh, pos)
	if err != nil {
		return fmt.Errorf("simdr: rename: %w", err)
	}
	crc, err := checkedSum(e)
	if err != nil {
		return fmt.Errorf("simdr: rename: %w", err)
	}
	if exp := g.ttlOf(oh); exp != 0 {
		a.putTTL(nh, e.Bytes(), crc, exp) // the expiry goes with the value
	} else {
		a.store(nh, e.Bytes(), crc)
	}
	a.remove(oh)
	if err := a.commit(); err != nil {
		return fmt.Errorf("simdr: rename: %w", err)
	}
	return nil
}

// checkedSum computes the checksum of e's bytes, which a copy writes, and
// fails with ErrChecksum when it is not the one stored with them.
func checkedSum(e Entry) (uint32, error) {
	var got, want uint32
	if guardFault(func() { got, want = format.Checksum(e.Bytes()), e.Checksum() }) {
		return 0, fmt.Errorf("value at offset %d: reading it faulted: the file was cut under the store: %w", e.Offset(), ErrCorrupt)
	}
	if got != want {
		return 0, fmt.Errorf("value at offset %d: stored crc %08x, computed %08x: not copied: %w", e.Offset(), want, got, ErrChecksum)
	}
	return got, nil
}

// Copy writes the value of key into dst under the same key hash, with the same
// bytes and the same checksum, and the same expiry if it has one (PutTTL; an
// expired key is not found). dst must be another store file: the same file,
// even through another path or a link, fails with ErrSameStore. A missing key
// fails with ErrNotFound. Copy checks the stored checksum as it copies: a
// damaged value fails with an error matching ErrChecksum that names its
// offset, and nothing is written. Copy holds both stores' write locks while it
// writes (see Move for their order).
func (s *Store) Copy(key []byte, dst *Store) error {
	if reserved(key) {
		return fmt.Errorf("simdr: copy: %w", ErrReservedKey)
	}
	if err := s.transfer(Hash(key), dst, false); err != nil {
		return fmt.Errorf("simdr: copy: %w", err)
	}
	return nil
}

// Move copies key into dst (see Copy), makes the copy durable, then deletes
// key from s, and publishes both at once. The value is never lost, nor seen
// in both places in the wrong order:
//
//   - A reader that has found the value in dst finds it gone from s
//     afterwards, and one that has found it gone from s finds it in dst
//     afterwards. (A reader that looks in s first and then in dst may find it
//     in both, if the Move falls between its two reads, and one that looks in
//     dst first and then in s may find it in neither, for the same reason.)
//   - Failures change nothing: if the copy or the tombstone cannot be
//     written, dst is cut back to where it was and s keeps the value. A
//     damaged value fails with ErrChecksum, as in Copy.
//   - A crash leaves the value in s, or in dst, or (between the sync of dst
//     and the tombstone in s) in both; never in neither, whichever of the
//     stores' state files survive (the copy is recorded as committed in
//     dst's before the tombstone is written: followers of dst in other
//     processes may see it before those of s see it gone).
//
// Move holds both stores' write locks, always taken in the same order (by
// the Stores' addresses), so that Move(a→b) and Move(b→a) at once cannot
// deadlock. Readers take no lock and wait for neither.
func (s *Store) Move(key []byte, dst *Store) error {
	if s.opts.ReadOnly {
		// Fail before copying: the key could not be deleted from s.
		return fmt.Errorf("simdr: move: %w", ErrReadOnly)
	}
	if reserved(key) {
		return fmt.Errorf("simdr: move: %w", ErrReservedKey)
	}
	if err := s.transfer(Hash(key), dst, true); err != nil {
		return fmt.Errorf("simdr: move: %w", err)
	}
	return nil
}

// transfer copies s's value for h into dst, and with move deletes it from s,
// publishing both in nested seq windows.
func (s *Store) transfer(h uint64, dst *Store, move bool) error {
	if dst == nil {
		return fmt.Errorf("nil destination: %w", ErrClosed)
	}
	if s == dst {
		return ErrSameStore
	}
	first, second := s, dst
	if uintptr(unsafe.Pointer(dst)) < uintptr(unsafe.Pointer(s)) {
		first, second = dst, s // Go does not move heap objects: a fixed order
	}
	first.wmu.Lock()
	defer first.wmu.Unlock()
	second.wmu.Lock()
	defer second.wmu.Unlock()

	sg := s.cur.Load()
	if sg == nil {
		return ErrClosed
	}
	dg, err := dst.writable()
	if err != nil {
		return err
	}
	if move {
		if sg, err = s.writable(); err != nil {
			return err
		}
	}
	if os.SameFile(sg.fi, dg.fi) {
		return ErrSameStore
	}
	pos, ok := sg.ix.Get(h)
	if !ok || s.expired(sg, h) {
		return ErrNotFound
	}
	if err := s.checkCut(sg, sg.tail.Load()); err != nil {
		return err // the source file was cut under the Store
	}
	e, err := sg.entry(h, pos)
	if err != nil {
		return err
	}
	crc, err := checkedSum(e)
	if err != nil {
		return err
	}
	da := dst.begin(dg)
	if exp := sg.ttlOf(h); exp != 0 {
		da.putTTL(h, e.Bytes(), crc, exp) // the expiry goes with the value
	} else {
		da.store(h, e.Bytes(), crc)
	}
	if !move {
		return da.commit()
	}
	if err := da.finish(); err != nil {
		return err
	}
	// The copy must be durable before the tombstone can be, and committed
	// in dst's state file: a recovery that trusts the state cuts what lies
	// past the committed tail, and the source's, without its state (a cache:
	// deleted, say), keeps the tombstone: the value would be in neither.
	// (Followers of dst in other processes may see the copy before the
	// source's followers see it gone; readers of these Stores see both at
	// once, below.)
	if !dst.opts.SyncWrites {
		if da.err = dg.f.Sync(); da.err != nil {
			dst.syncFailed(da.err)
			da.rollback()
			return fmt.Errorf("sync the copy: %w", da.err)
		}
		if da.err = dst.checkLinked(dg); da.err != nil {
			da.rollback()
			return fmt.Errorf("the copy: %w", da.err)
		}
	}
	dst.noteCommit(dg, da.tail)
	undo := func() {
		da.rollback()
		dst.noteCommit(dg, da.start)
	}
	sa := s.begin(sg)
	sa.remove(h)
	if err := sa.finish(); err != nil {
		da.err = err
		undo()
		return fmt.Errorf("copied, but not deleted from the source (the copy is rolled back): %w", err)
	}
	// Both written: publish both at once, the second store's window inside
	// the first's, so that a reader of either sees the Move whole.
	ready(dg, dst.ops)
	ready(sg, s.ops)
	if !first.open() {
		// Cannot happen (both locks are held and both Stores were open):
		// leave nothing unpublished in the files.
		sa.rollback()
		undo()
		return ErrClosed
	}
	if !second.open() {
		first.seq.Add(1)
		sa.rollback()
		undo()
		return ErrClosed
	}
	apply(dg, dst.ops, da.tail)
	apply(sg, s.ops, sa.tail)
	second.seq.Add(1)
	first.seq.Add(1)
	dst.noteCommit(dg, da.tail)
	s.noteCommit(sg, sa.tail)
	da.published()
	sa.published()
	return nil
}
