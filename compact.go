package simdr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
	"github.com/simdr-go/simdr/internal/lock"
	"github.com/simdr-go/simdr/internal/mapping"
	"github.com/simdr-go/simdr/internal/vfs"
)

// ErrHardLinks: Compact was asked to compact a store file that has other hard
// links. Compact replaces the file by renaming a new one over it; the other
// names would go on naming the old file, and a writer opening one of them
// would write a second copy of the store.
var ErrHardLinks = errors.New("simdr: store file has other hard links")

// compactSuffix ends the name of every temporary file Compact writes.
const compactSuffix = ".simdr.compact"

// compactName is the temporary file Compact writes for the store file real
// (its path with symlinks resolved) whose identity is fi: in real's directory,
// ".BASE.INODE.simdr.compact", INODE the file's inode number in hex. Only the
// holder of the store file's lock writes it, and the name ties it to the very
// file being compacted: a file of that name beside the store that is not
// being compacted now is a leftover of an interrupted Compact. Open removes
// it; no other file is ever removed.
func compactName(real string, fi os.FileInfo) string { return tempName(real, fi, compactSuffix) }

// compactPath returns the temporary file a Compact of the store at path would
// write now ("" when path does not name a file).
func compactPath(path string) string {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return ""
	}
	fi, err := os.Stat(real)
	if err != nil {
		return ""
	}
	return compactName(real, fi)
}

// CompactTempPath returns the path of the temporary file Compact writes the
// new file to (beside the file the Store's path resolves to), for a caller
// that shows a Compact's progress by the size of that file. It names no file
// while no Compact runs, and changes after each Compact. "" when the Store's
// path no longer names a file.
func (s *Store) CompactTempPath() string { return compactPath(s.path) }

// removeLeftover removes the temporary files an interrupted Compact or
// Repair of the file fi (open and locked by this writer) left beside it.
// Nothing else is touched: the names carry fi's inode number, and only a
// regular file of such an exact name is removed. A legacy leftover
// "PATH.compact" or "PATH.repair-XXXXXXXXXXXX" of an older simdr is not
// removed: it may as well be a user's file.
func (s *Store) removeLeftover(fi os.FileInfo) {
	real, err := filepath.EvalSymlinks(s.path)
	if err != nil {
		return
	}
	if pi, err := s.fs.Stat(real); err != nil || !os.SameFile(fi, pi) {
		return
	}
	for _, tmp := range []string{compactName(real, fi), repairName(real, fi)} {
		if li, err := os.Lstat(tmp); tmp != "" && err == nil && li.Mode().IsRegular() {
			s.fs.Remove(tmp)
		}
	}
}

// Compact rewrites the live entries (the latest value of each live key, no
// tombstones) into a new file beside the store, makes it durable (fsync of the
// file, rename over the store, fsync of the directory), and carries on with
// the new file.
//
// Other goroutines are not stopped: Gets go on reading the old file, and
// Puts and Deletes go on appending to it while the live entries are copied;
// Compact then takes the write lock only to copy what was written meanwhile
// and switch files. A crash at any point leaves either the old or the new
// file whole under the store's path.
//
// Slices: every Entry handed out before Compact stays valid, because the old
// file stays mapped, and its disk space held, until Close, or until
// ReleaseOld releases it (see there and Generation: a long-running process
// that compacts often must call it, or the space of every replaced file stays
// held).
//
// Damaged values: each value copied is checked against its stored checksum
// (the copy computes the new file's checksum anyway, so this costs no second
// pass). When a live value fails, Compact fails with an error matching
// ErrChecksum (and ErrCorrupt) that names the offsets of the damaged values,
// and changes nothing: a copy never blesses damaged bytes with a fresh
// checksum. Verify lists the damaged values; delete or rewrite their keys
// (or restore the file), then Compact. Overwritten and deleted values are not
// copied, so their damage does not stop Compact (it goes away with them).
//
// The file: Compact works on the file the Store's path resolves to through
// symlinks (the link stays a link). The new file is written beside that file,
// under a name no user picks (see CompactTempPath), with the old file's mode,
// owner and group, and is locked before it is renamed over the old file, so
// the writer lock never leaves the path. A file with other hard links is
// refused with ErrHardLinks (the other names would keep the old file); so is
// a file that is no longer the one the path names. When the owner or group
// cannot be kept (an unprivileged user compacting a file owned by someone
// else), Compact fails and changes nothing.
//
// Errors: another process cutting the file while Compact reads it fails
// Compact with an error matching ErrCorrupt (never a crash), and changes
// nothing. When the fsync of the directory after the rename fails, the new
// file is in place but its name may not survive a power cut: Compact returns
// the error, and the Store refuses writes with ErrFailed until it is reopened
// (after a failed fsync the kernel may have dropped the dirty state).
func (s *Store) Compact() error {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if err := s.compact(); err != nil {
		return fmt.Errorf("simdr: compact: %w", err)
	}
	return nil
}

// compactor writes the new file.
type compactor struct {
	f    vfs.File
	ix   *index.Index
	buf  []byte
	tail int64 // of what is written and buffered
	off  int64 // written up to here
	ents int64
	tomb int64
	err  error
	bad  []int64 // offsets of damaged values (the first few)
	nbad int     // how many damaged values

	// Expiring keys (expiry.go): the new file's expiry index, nil until a
	// record is written, and the key each record written is for.
	x     *expiry
	recOf map[uint64]uint64
}

// keep copies the latest value v of h, stored at off with checksum want,
// with its expiry exp (Unix ms, 0 for none) as of now: an expired value is
// not copied, and replaces (with a tombstone) any copy made of an older one.
func (c *compactor) keep(h uint64, v []byte, want uint32, off, exp, now int64) {
	if exp != 0 && exp <= now {
		if live(c.ix, h) {
			c.dropRecord(h)
			c.del(h)
		}
		return
	}
	if exp != 0 {
		c.putRecord(h, len(v), exp) // replaces any record of h in the new file
	} else {
		c.dropRecord(h)
	}
	c.put(h, v, want, off)
	if exp != 0 {
		c.x.set(h, uint64(exp))
	}
}

// putRecord writes the expiry record of the n-byte value of h written next
// (and the marker before the first record), as the appender does.
func (c *compactor) putRecord(h uint64, n int, exp int64) {
	if c.x == nil {
		c.x = newExpiry()
		c.recOf = make(map[uint64]uint64)
		c.put(markerHash, []byte(markerValue), format.Checksum([]byte(markerValue)), -1)
		c.x.set(markerHash, hiddenMark)
	}
	b := record{hash: h, bound: boundAfterRecord(c.tail, n), exp: exp}.encode()
	rh := recordHash(h)
	c.put(rh, b, format.Checksum(b), -1)
	c.x.set(rh, hiddenMark)
	c.recOf[rh] = h
}

// dropRecord deletes, before h is written again or deleted, the record the
// new file has for h.
func (c *compactor) dropRecord(h uint64) {
	if c.x == nil {
		return
	}
	if rh := recordHash(h); live(c.ix, rh) {
		c.del(rh)
	}
}

// maxBadListed caps the offsets a checksum error names.
const maxBadListed = 16

// put copies value v, stored at off with checksum want, unless its bytes do
// not match want: then it notes the damage and writes nothing more.
func (c *compactor) put(h uint64, v []byte, want uint32, off int64) {
	crc := c.check(v, want, off)
	if c.nbad > 0 || c.err != nil {
		return // the copy is lost anyway: only look for more damage
	}
	end := c.tail + format.Prepad(c.tail) + int64(len(v))
	c.buf = format.AppendPrepad(c.buf, c.tail)
	c.buf = append(c.buf, v...)
	c.buf = format.AppendMeta(c.buf, format.Meta{Hash: h, Prev: c.tail, CRC: crc})
	c.ix.Put(h, pack(end, int64(len(v))))
	c.tail = end + format.MetaSize
	c.ents++
	c.maybeFlush()
}

// check notes value v, stored at off, as damaged unless its bytes match
// want, and returns their checksum.
func (c *compactor) check(v []byte, want uint32, off int64) uint32 {
	crc := format.Checksum(v)
	if crc != want {
		if len(c.bad) < maxBadListed {
			c.bad = append(c.bad, off)
		}
		c.nbad++
	}
	return crc
}

func (c *compactor) del(h uint64) {
	if c.nbad > 0 || c.err != nil {
		return
	}
	c.buf = format.AppendTombstone(c.buf, c.tail, h)
	c.ix.Delete(h, uint64(c.tail+1))
	if c.x != nil {
		if k, ok := c.recOf[h]; ok { // a record: its key no longer expires
			delete(c.recOf, h)
			c.x.clear(k)
		}
		c.x.clear(h)
	}
	c.tail += format.TombstoneSize
	c.tomb++
	c.maybeFlush()
}

func (c *compactor) maybeFlush() {
	if len(c.buf) >= 4*flushAt {
		c.flush()
	}
}

func (c *compactor) flush() {
	if c.err == nil && len(c.buf) > 0 {
		_, c.err = c.f.WriteAt(c.buf, c.off)
		c.off += int64(len(c.buf))
	}
	c.buf = c.buf[:0]
}

// failure returns why the copy failed, if it did.
func (c *compactor) failure() error {
	if c.nbad > 0 {
		offs := make([]string, len(c.bad))
		for i, o := range c.bad {
			offs[i] = strconv.FormatInt(o, 10)
		}
		more := ""
		if c.nbad > len(c.bad) {
			more = fmt.Sprintf(" and %d more", c.nbad-len(c.bad))
		}
		return fmt.Errorf("%d live value(s) fail their checksum, at offset(s) %s%s; nothing was changed (Verify lists them; delete or rewrite those keys, then compact): %w",
			c.nbad, strings.Join(offs, ", "), more, errDamaged)
	}
	return c.err
}

// errDamaged reads as ErrChecksum and matches ErrCorrupt too (a damaged
// entry).
var errDamaged error = damagedErr{}

type damagedErr struct{}

func (damagedErr) Error() string   { return ErrChecksum.Error() }
func (damagedErr) Unwrap() []error { return []error{ErrChecksum, ErrCorrupt} }

// errCut: the store file got shorter than the Store's tail while Compact read it.
var errCut = fmt.Errorf("%w: the store file was cut (by another process?) while Compact read it; nothing was changed", ErrCorrupt)

// target checks that Compact may replace g's file and returns the path it
// resolves to and the file's current description.
func (s *Store) target(g *gen) (real string, fi os.FileInfo, err error) {
	if fi, err = g.f.Stat(); err != nil {
		return "", nil, err
	}
	if real, err = filepath.EvalSymlinks(s.path); err != nil {
		return "", nil, fmt.Errorf("resolve %s: %w", s.path, err)
	}
	pi, err := s.fs.Stat(real)
	if err != nil {
		return "", nil, err
	}
	if !os.SameFile(fi, pi) {
		return "", nil, fmt.Errorf("%s no longer names the file this Store has open (moved or replaced); reopen it", s.path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		return "", nil, fmt.Errorf("%s has %d names (hard links): Compact would replace only one: %w", real, st.Nlink, ErrHardLinks)
	}
	return real, fi, nil
}

// replacement creates, locks and gives the mode, owner and group of g's
// file to the file that is to replace it (Compact, Repair): beside the file
// the path resolves to, named by name(real path, file info). A file of that
// name is removed first: the names are made from the file we hold locked, so
// such a file is a leftover of ours. The caller removes it unless it renames
// it over the store.
func (s *Store) replacement(g *gen, name func(real string, fi os.FileInfo) string) (*replacing, error) {
	real, fi, err := s.target(g)
	if err != nil {
		return nil, err
	}
	tmp := name(real, fi)
	s.fs.Remove(tmp)
	f, err := s.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return nil, err
	}
	if err = lock.Exclusive(f.Fd(), 0); err != nil {
		err = fmt.Errorf("lock new file: %w", err)
	} else {
		err = keepOwner(f, fi)
	}
	if err != nil {
		f.Close()
		s.fs.Remove(tmp)
		return nil, err
	}
	return &replacing{s: s, f: f, tmp: tmp, target: real}, nil
}

// replacing is a new file written beside the store (Compact, Repair) to be
// renamed over it.
type replacing struct {
	s       *Store
	f       vfs.File
	tmp     string // its name
	target  string // the path it replaces (symlinks resolved)
	renamed bool
}

// abandon removes the file unless install renamed it (deferred by callers).
func (r *replacing) abandon() {
	if !r.renamed {
		r.f.Close()
		r.s.fs.Remove(r.tmp)
	}
}

// install syncs the file, which holds size bytes of entries, maps it, and
// renames it over the store's path. The caller syncs the directory.
func (r *replacing) install(size int64) (*mapping.Map, os.FileInfo, error) {
	if err := r.f.Sync(); err != nil {
		return nil, nil, err
	}
	fi, err := r.f.Stat()
	if err != nil {
		return nil, nil, err
	}
	m, err := mapping.New(r.f.Fd(), size)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	if err := r.s.fs.Rename(r.tmp, r.target); err != nil {
		m.Close()
		return nil, nil, err
	}
	r.renamed = true
	return m, fi, nil
}

// keepOwner gives f the mode, owner and group of the file fi describes.
func keepOwner(f vfs.File, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	nfi, err := f.Stat()
	if err != nil {
		return err
	}
	nst, ok := nfi.Sys().(*syscall.Stat_t)
	if !ok || nst.Uid != st.Uid || nst.Gid != st.Gid {
		if err := unix.Fchown(int(f.Fd()), int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("keep the file's owner %d and group %d: %w", st.Uid, st.Gid, err)
		}
	}
	// After the chown, which may clear set-id bits.
	if err := unix.Fchmod(int(f.Fd()), uint32(st.Mode)&0o7777); err != nil {
		return fmt.Errorf("keep the file's mode %o: %w", st.Mode&0o7777, err)
	}
	return nil
}

// compactHook, when set (by tests), runs between Compact's two phases.
var compactHook func()

func (s *Store) compact() (err error) {
	// Phase 1: note where the file ends now, then copy, without the write
	// lock, every live entry that ends before that point.
	s.wmu.Lock()
	g, err := s.writable()
	var t0 int64
	if err == nil {
		t0 = g.tail.Load()
	}
	s.wmu.Unlock()
	if err != nil {
		return err
	}
	r, err := s.replacement(g, compactName)
	if err != nil {
		return err
	}
	defer r.abandon()
	f := r.f
	old := g.live(t0) // sorted: read the old file front to back
	c := &compactor{f: f, ix: index.New(len(old))}
	now := s.now() // a key that expired by now is dropped
	// Reads of the mapping fault (SIGBUS) when another process cut the file.
	ra := g.newReadAhead(0, t0, true) // read-ahead: see readahead.go
	if guardFault(func() {
		for _, l := range old {
			var exp int64
			if x := g.x.Load(); x != nil {
				// Read without the write lock: a key written since t0 is
				// written again from phase 2, with its expiry then.
				if exp = int64(x.state(l.h)); exp == hiddenMark {
					// A record (written again with its value) or the marker;
					// a damaged one fails the copy as a damaged value does.
					e, err := g.entry(l.h, l.v)
					if err != nil {
						c.err = err
						return
					}
					c.check(e.Bytes(), e.Checksum(), e.Offset())
					continue
				}
			}
			ra.at(endOf(l.v))
			// A long value's metadata says where it starts; another
			// process may have overwritten it (entry checks it).
			e, err := g.entry(l.h, l.v)
			if err != nil {
				c.err = err
				return
			}
			c.keep(l.h, e.Bytes(), e.Checksum(), e.Offset(), exp, now)
			if c.err != nil {
				return
			}
		}
	}) {
		return errCut
	}
	old = nil
	if err := c.failure(); err != nil {
		if size, serr := g.f.Size(); serr == nil && size < t0 {
			return errCut // zeros read past the new end of the file, not damage
		}
		return err
	}
	// Make the bulk durable now, so that the sync under the write lock below
	// only has what was written meanwhile to flush.
	c.flush()
	if c.err == nil {
		c.err = f.Sync()
	}
	if c.err != nil {
		return c.err
	}

	if compactHook != nil {
		compactHook()
	}
	// Phase 2: with the write lock, copy what was written since t0, make the
	// new file durable, and switch to it.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if g, err = s.writable(); err != nil {
		return err
	}
	tail := g.tail.Load()
	if size, err := g.f.Size(); err != nil {
		return err
	} else if size < tail {
		return errCut
	}
	if guardFault(func() {
		data := g.m.Bytes()
		// Walk goes newest first: the first entry seen of a key is its
		// latest; older ones are not copied.
		var delta []format.Entry
		seen := map[uint64]bool{}
		format.Walk(data, t0, tail, func(e format.Entry) bool {
			if !seen[e.Hash] {
				seen[e.Hash] = true
				delta = append(delta, e)
			}
			return true
		})
		for i := len(delta) - 1; i >= 0; i-- {
			e := delta[i]
			switch {
			case !e.Tombstone:
				if hiddenChange(data, e) {
					continue // records are written again with their values
				}
				c.keep(e.Hash, data[e.Start:e.End], e.CRC, e.Start, g.ttlOf(e.Hash), now)
			case live(c.ix, e.Hash):
				c.dropRecord(e.Hash)
				c.del(e.Hash)
			}
		}
	}) {
		return errCut
	}
	if err := c.failure(); err != nil {
		return err
	}
	c.flush()
	if c.err != nil {
		return c.err
	}
	m, nfi, err := r.install(c.tail)
	if err != nil {
		return err
	}
	ng := &gen{f: f, m: m, ix: c.ix, fi: nfi}
	if c.x != nil {
		ng.x.Store(c.x)
	}
	ng.tail.Store(c.tail)
	ng.ents.Store(c.ents)
	ng.tomb.Store(c.tomb)
	s.replace(ng)
	// The old file's lock no longer guards the path; its mapping stays until
	// Close or ReleaseOld.
	lock.Unlock(g.f.Fd())
	if err := s.fs.SyncDir(filepath.Dir(r.target)); err != nil {
		err = fmt.Errorf("compacted, but the fsync of the directory after the rename failed (the new name may not survive a power cut; reopen the store): %w", err)
		s.failed = err
		return err
	}
	return nil
}

// Generation returns the number of the file generation that reads use now: 0
// at Open, one more each time Compact (or, on a read-only Store, a Refresh
// that finds the writer compacted) moves the Store to a new file. It takes no
// lock. After Close it returns 0.
//
// With ReleaseOld it lets a long-running process give back the disk space
// of the files Compact replaced: note g := Generation() after Compact
// returns; once every read call that started before that point has returned
// and no slice from before it is in use, ReleaseOld(g).
func (s *Store) Generation() uint64 {
	g := s.cur.Load()
	if g == nil {
		return 0
	}
	return g.num
}

// ReleaseOld unmaps and closes the files of the generations numbered below
// (see Generation) that the Store still holds, so that their disk space, held
// while they are open, comes back. It returns how many it released. The
// current generation is never released, whatever below is; ReleaseOld(
// Generation()) releases every replaced one. After Close it returns ErrClosed.
//
// Reads take no lock, so the Store cannot tell whether a reader still uses
// an old file: the caller promises it. Every Entry, slice and iterator
// obtained from the released generations must no longer be used (using one
// is a fault, as after Close), and no read call (Get, GetHash, GetMany, Has,
// Entries, ForEachParallel, Stats, ...) that started before Generation
// reached below may still be running: such a call may have loaded an old
// generation just before Compact switched files. A server, for example,
// notes Generation after its Compact, waits for the requests that were in
// flight at that moment to finish, then calls ReleaseOld (simdr serve does
// this after POST /v1/compact).
//
// A Store that never calls ReleaseOld keeps every replaced file until Close,
// and every slice it handed out valid until then.
func (s *Store) ReleaseOld(below uint64) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.cur.Load() == nil {
		return 0, fmt.Errorf("simdr: release old generations: %w", ErrClosed)
	}
	var errs []error
	n := 0
	keep := s.old[:0]
	for _, o := range s.old {
		if o.num < below {
			errs = append(errs, o.close())
			n++
		} else {
			keep = append(keep, o)
		}
	}
	clear(s.old[len(keep):])
	s.old = keep
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("simdr: release old generations: %w", err)
	}
	return n, nil
}
