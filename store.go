package simdr

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
	"github.com/simdr-go/simdr/internal/lock"
	"github.com/simdr-go/simdr/internal/mapping"
	"github.com/simdr-go/simdr/internal/vfs"
	"golang.org/x/sys/unix"
)

// Store is an open store file.
//
// Concurrency: every method is safe to call from many goroutines, Close
// included. Reads (Get, GetHash, GetMany, Has, Len, Size, Entries,
// ForEachParallel, Stats) take no lock: they load the current index and
// mapping with atomic operations and check a sequence counter, so that they
// see every write whole (a batch, a Rename, a Move: all of it or none of it,
// and once any read has seen part of it, every later read sees all of it).
// Get, GetHash, Has, Len, Size and Entries never wait for I/O. Writes (Put,
// Apply, Delete, PutReader, Rename, Copy, Move, Compact, Sync, Refresh) are
// serialized by one mutex inside the Store, and across processes by an
// exclusive flock on the file. Calls during or after Close return ErrClosed
// (see Close).
type Store struct {
	path string
	opts Options
	fs   vfs.FS

	cur    atomic.Pointer[gen] // what readers use
	closed atomic.Bool         // set by Close, before it makes seq odd for good
	// seq is odd while a write is being published (the index, tail and
	// counters change) and for good once closed, even otherwise: a seqlock.
	// Every read checks it is even before and unchanged after, so that it sees
	// writes whole (see publish and Get).
	seq atomic.Uint64

	cmu       sync.Mutex            // serializes Compact (and Close with it)
	wmu       sync.Mutex            // serializes writers; guards what follows
	old       []*gen                // generations replaced by Compact or Refresh, unmapped at Close
	buf       []byte                // encoding buffer, reused
	ops       []pending             // index updates of the write in progress, reused
	app       appender              // the write in progress
	chunk     []byte                // PutReader's buffer
	failed    error                 // set when a failed write could not be rolled back
	last      lastEntry             // the writer's last commit, for checkCut
	repaired  *RepairReport         // what Open's repair changed, nil when nothing
	ckWG      sync.WaitGroup        // a background checkpoint in progress
	ckBusy    atomic.Bool           // set while one runs
	ckTail    int64                 // the tail the last background checkpoint covers (guarded by wmu)
	ckGen     *gen                  // the generation it is of
	ckEntries int64                 // the entries it covers
	ckLost    atomic.Bool           // the last background checkpoint failed: it covers nothing
	bgFailed  atomic.Pointer[error] // a failed sync in a background checkpoint, for failure

	sf stateFile // the shared state file beside the store (statefile.go)

	clockMax *atomic.Int64 // the latest time now returned for this path in this process (expiry.go)
}

// gen is one file generation: a file, its mapping and the index into it.
// Compact (and a reader's Refresh after one) moves the Store to a new gen.
type gen struct {
	f    vfs.File
	m    *mapping.Map
	ix   *index.Index
	tail atomic.Int64           // bytes of valid entries; the next entry starts here
	tomb atomic.Int64           // tombstones in the file
	ents atomic.Int64           // value entries in the file, live or not
	fi   os.FileInfo            // identity of the file when opened
	ck   *checkpoint            // the index checkpoint the index was loaded from (its table may hold the index)
	x    atomic.Pointer[expiry] // the expiry index (expiry.go), nil until a record is met
	num  uint64                 // the generation's number (see Generation)
}

// Open opens the store file at path, creating it when it is missing (unless
// opts.ReadOnly). A nil opts means the defaults.
//
// Opening walks the entry chain back from the end of the file and builds the
// in-memory index. A torn tail (a crash mid-write) or bytes appended after the
// last entry are cut off (ignored when read-only), so the store opens at its
// last complete entry. A damaged chain (intact entries above a link that does
// not hold, which cutting would lose) and a non-empty file with no valid
// chain fail with ErrCorrupt, naming the damaged offset, and leave the file
// untouched, unless opts.Repair is set (see Options.Repair). A damaged first
// value under a sound chain does not stop the open (Verify lists it).
// Another writer holding the file fails the open with ErrLocked (see
// Options.LockTimeout). A path that names no regular file (a FIFO, a
// device, a directory) fails at once with an error matching fs.ErrInvalid.
func Open(path string, opts *Options) (*Store, error) {
	s := &Store{path: path}
	if opts != nil {
		s.opts = *opts
	}
	s.clockMax = clockOf(path, s.opts.Clock != nil)
	s.fs = s.opts.fsys()
	g, err := s.openGen()
	if err != nil {
		s.closeState(nil)
		return nil, fmt.Errorf("simdr: open %s: %w", path, err)
	}
	s.cur.Store(g)
	return s, nil
}

// openGen opens, locks, maps and indexes the file at s.path.
func (s *Store) openGen() (*gen, error) {
	for attempt := 0; ; attempt++ {
		g, retry, err := s.tryOpenGen()
		if !retry || attempt == 10 {
			return g, err
		}
	}
}

// tryOpenGen opens the file once; retry is true when the file was replaced
// (by another writer's Compact) between opening and locking it.
func (s *Store) tryOpenGen() (_ *gen, retry bool, err error) {
	f, created, err := s.openFile()
	if err != nil {
		return nil, false, err
	}
	ok, remove := false, false
	defer func() {
		if !ok {
			if remove {
				s.fs.Remove(s.path) // ours, under our lock: an opener waiting for it retries
			}
			f.Close()
		}
	}()
	if !s.opts.ReadOnly {
		if err := lock.Exclusive(f.Fd(), s.opts.LockTimeout); err != nil {
			if isLocked(err) {
				return nil, false, ErrLocked
			}
			return nil, false, fmt.Errorf("lock: %w", err)
		}
		// A Compact elsewhere may have renamed a new file over the path after
		// we opened the old one: make sure we locked what the path names now.
		fi, err1 := f.Stat()
		pi, err2 := s.fs.Stat(s.path)
		if err1 != nil || err2 != nil || !os.SameFile(fi, pi) {
			return nil, true, errors.Join(err1, err2, errors.New("file replaced while opening"))
		}
		s.removeLeftover(fi) // a leftover of an interrupted Compact: never reused
		if created {
			// The new file's name must survive a power cut as its entries
			// will. If it cannot be made durable, the file is removed, so
			// that the next Open creates it again and retries.
			remove = true
			if err := s.fs.SyncDir(filepath.Dir(realPath(s.path))); err != nil {
				return nil, false, fmt.Errorf("sync directory after creating the file: %w", err)
			}
		}
	}
	g, err := s.load(f)
	if err != nil {
		return nil, errors.Is(err, errShrunk), err
	}
	ok = true
	return g, false, nil
}

// openFile opens s.path for the Store, creating it when it is missing and the
// Store writes; created reports whether this call created it (O_EXCL), so
// that only then the directory is synced.
func (s *Store) openFile() (f vfs.File, created bool, err error) {
	if s.opts.ReadOnly {
		// O_NONBLOCK: a FIFO at the path must not block the open until a
		// writer comes (load refuses what is not a regular file); it changes
		// nothing for a regular file.
		f, err = s.fs.OpenFile(s.path, os.O_RDONLY|unix.O_NONBLOCK, 0)
		return f, false, err
	}
	for attempt := 0; ; attempt++ {
		f, err = s.fs.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			return f, true, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, false, err
		}
		f, err = s.fs.OpenFile(s.path, os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			if fi, lerr := os.Lstat(s.path); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
				// A symlink to a file not made yet (O_EXCL never follows
				// one): create the target through it.
				f, err = s.fs.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o644)
				return f, err == nil, err
			}
		}
		if !errors.Is(err, os.ErrNotExist) || attempt == 3 {
			return f, false, err // removed between the two calls: create it again
		}
	}
}

// load maps f, recovers its tail and builds the index.
func (s *Store) load(f vfs.File) (*gen, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): %w", s.path, fi.Mode().Type(), fs.ErrInvalid)
	}
	m, err := mapping.New(f.Fd(), size)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	g := &gen{f: f, m: m, fi: fi}
	s.openState(fi) // before recovery, which asks it (stateHint)
	if f := s.sf.f.Load(); f != nil && s.opts.ReadOnly && !f.Is(statePath(s.path)) {
		// A follower moving to a new file (the writer compacted) holds the
		// state file of an earlier writer, removed since: the writer now
		// keeps another, without which recovery would scan the new file and
		// could take the first entries of a batch in flight for its end.
		s.reopenState(fi)
	}
	// With a checkpoint of the index, only what was written after it is walked.
	var ck *checkpoint
	if !s.opts.Repair { // a repair reads the whole file
		ck = s.openCheckpoint(g, size)
	}
	var floor int64
	if ck != nil {
		floor = ck.h.tail
	}
	var c collector
	tail, err := s.recoverTail(g, size, floor, &c)
	if err != nil && ck != nil {
		// Nothing sound above the checkpoint: recover without it.
		ck.close()
		ck, floor = nil, 0
		c.reset()
		tail, err = s.recoverTail(g, size, 0, &c)
	}
	if err == nil {
		var t int64
		if t, err = s.cutUnfinished(g, floor, tail); err == nil && t != tail {
			tail = t
			c.reset() // it holds the records cut off
		}
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	g.tail.Store(tail)
	g.collect(&c, floor)
	if ck != nil {
		// A slot naming an entry above the recovered tail (a cut that
		// recovery made below what a background checkpoint saw) rules it out.
		if ck.top <= tail-format.MetaSize && ck.restore(g, &c) == nil {
			g.ck = ck
			g.loadExpiry()
			// As below: without it the writer's commits would carry counts
			// from 1, below the last writer's, whose stale commit followers
			// would then take for the newest.
			s.stateLoaded(g, size)
			return g, nil
		}
		ck.close()
		c.reset()
		g.collect(&c, 0)
	}
	g.buildIndex(&c)
	g.loadExpiry()
	s.stateLoaded(g, size)
	return g, nil
}

// closeGen releases a generation's mapping and file.
func (g *gen) close() error {
	return errors.Join(g.m.Close(), g.f.Close(), g.ck.retire()) // readers may still probe the table
}

// entryAt returns the entry whose payload ends where index value v says, of
// the length v packs (the caller checks that it packs one: v>>lenShift is not
// 0), without reading the mapping. The index only holds positions of entries
// the chain walk validated.
func (g *gen) entryAt(h, v uint64) Entry {
	data := g.m.Bytes()
	end := endOf(v)
	start := end - int64(v>>lenShift)
	// The capacity reaches over the metadata, for Checksum; Bytes cuts it off.
	return Entry{b: data[start : end : end+format.MetaSize], hash: h, off: start}
}

// entry is the entry at index value v, for the reads that must not fault: a value
// whose length is packed in the index costs no read of the mapping; for a
// longer one the metadata is read under guardFault and checked against the
// index, so that a file cut under the Store (by another process) gives an
// error matching ErrCorrupt instead of SIGBUS or a wrong slice.
func (g *gen) entry(h, v uint64) (Entry, error) {
	if v>>lenShift == 0 {
		return g.longEntry(h, v)
	}
	return g.entryAt(h, v), nil
}

// longEntry is entry for a value whose length is not packed.
func (g *gen) longEntry(h, v uint64) (Entry, error) {
	data := g.m.Bytes()
	end := endOf(v)
	var m format.Meta
	if end+format.MetaSize > int64(len(data)) || guardFault(func() { m = format.ReadMeta(data[end : end+format.MetaSize]) }) {
		return Entry{}, fmt.Errorf("value ending at offset %d: its metadata cannot be read: the file was cut under the store: %w", end, ErrCorrupt)
	}
	if m.Hash != h || m.Prev >= end || m.Prev+format.Prepad(m.Prev) >= end {
		return Entry{}, fmt.Errorf("value ending at offset %d: its metadata no longer matches (key hash %016x, prev %d): the file was changed under the store: %w", end, m.Hash, m.Prev, ErrCorrupt)
	}
	start := m.Prev + format.Prepad(m.Prev)
	return Entry{b: data[start : end : end+format.MetaSize], hash: h, off: start}, nil
}

// An index value packs where a payload ends (48 bits) with its length when
// that fits in the 15 bits above (0 otherwise), so that Get finds the value
// without reading its metadata: one memory access fewer on the read path.
// Bit 63 is the index's Deleted mark.
const (
	lenShift  = 48
	maxPacked = 1<<15 - 1
	endMask   = 1<<lenShift - 1
)

// pack returns the index value for a payload of n bytes ending at end.
func pack(end int64, n int64) uint64 {
	if n > maxPacked {
		n = 0
	}
	return uint64(end) | uint64(n)<<lenShift
}

// endOf returns where the payload of index value v ends in the file.
func endOf(v uint64) int64 { return int64(v & endMask) }

// Get returns the latest value stored under key, or ErrNotFound (ErrClosed
// during or after Close). It allocates nothing, takes no lock and never waits
// for I/O; see Entry for how long the value stays valid.
//
// Get sees writes whole: once any read, in any goroutine, has seen an effect
// of a Put, Apply, Delete, Rename or Move, every later Get sees all of it.
// While a write's index updates are being published (after its bytes are in
// the file), Get spins, then yields, until they are: it waits for memory
// stores, never for the disk.
func (s *Store) Get(key []byte) (Entry, error) {
	return s.GetHash(format.Hash(key))
}

// GetHash is Get for a caller that already has the key's hash (see Hash).
func (s *Store) GetHash(h uint64) (Entry, error) {
	// The fast path, straight-line: seq even before and unchanged after.
	// Values whose length the index packs need no read of the mapping.
	q := s.seq.Load()
	if g := s.cur.Load(); q&1 == 0 && g != nil && !s.opts.VerifyChecksums {
		if v, ok := g.ix.Get(h); ok {
			// A key with an expiry (or a record) takes the slow path.
			if x := g.x.Load(); v>>lenShift != 0 && (x == nil || x.state(h) == 0) {
				e := g.entryAt(h, v)
				if s.seq.Load() == q {
					return e, nil
				}
			}
		} else if s.seq.Load() == q {
			return Entry{}, ErrNotFound
		}
	}
	return s.getSlow(h)
}

// getSlow is GetHash when a write was being published, the Store is closed,
// or values are verified.
func (s *Store) getSlow(h uint64) (Entry, error) {
	e, err := s.lookup(h)
	if err == nil && s.opts.VerifyChecksums {
		return s.verified(e)
	}
	return e, err
}

// verified returns e, or why its bytes do not match their checksum. Bytes
// that read as zeros because Close ran meanwhile give ErrClosed.
func (s *Store) verified(e Entry) (Entry, error) {
	if err := verifyGuarded(e); err != nil {
		if s.closed.Load() {
			return Entry{}, ErrClosed
		}
		return Entry{}, err
	}
	return e, nil
}

// verifyGuarded is e.Verify for the Store's own read of the value: a fault
// (the file cut under the Store) is an error matching ErrCorrupt.
func verifyGuarded(e Entry) error {
	var err error
	if guardFault(func() { err = e.Verify() }) {
		return fmt.Errorf("value at offset %d: reading it faulted: the file was cut under the store: %w", e.off, ErrCorrupt)
	}
	return err
}

// await is what a reader does when the index it read changed under it, or
// is changing (try counts the attempts so far): it reports whether the Store
// is closed (Close leaves seq odd for good), else it waits a little before
// the caller reads again. A window lasts as long as the index updates of one
// write, in memory: well under a microsecond for a Put, 150-450 ns a key for
// a batch of a million keys over a large index (0.15-0.45 s measured): the
// reader retries at once a few times, then yields its thread (on a
// 2-core machine the writer may need it), and after many tries sleeps a
// little between reads, so that readers waiting out a huge batch do not take
// the cores from the writer publishing it.
//
//go:noinline
func (s *Store) await(try int) (closed bool) {
	switch {
	case s.closed.Load():
		return true
	case try < 4:
	case try < 64:
		runtime.Gosched()
	default:
		time.Sleep(20 * time.Microsecond)
	}
	return false
}

// consistent returns read(g) for the current generation g, read while no
// write was being published and unchanged after (see publish): the reads of
// Has, Len and Size. ok is false, with the zero T, once the Store is closed.
func consistent[T any](s *Store, read func(g *gen) T) (v T, ok bool) {
	for try := 0; ; try++ {
		if q := s.seq.Load(); q&1 == 0 {
			g := s.cur.Load()
			if g == nil {
				return v, false
			}
			r := read(g)
			if s.seq.Load() == q {
				return r, true
			}
		}
		if s.await(try) {
			return v, false
		}
	}
}

// stable runs read, which must only read g, until it ran on a state between
// writes: with no write published while it ran. It returns false, without
// running read to completion on a valid state, when the Store is closed.
// After a few attempts spoiled by writes it takes the write lock, so that a
// long read (Stats, a snapshot of every key) cannot starve under a stream of
// writes: such a read may wait for a write in progress, I/O included.
func (s *Store) stable(read func(g *gen)) bool {
	for try := 0; ; try++ {
		if try == 8 {
			s.wmu.Lock()
			defer s.wmu.Unlock()
			g := s.cur.Load()
			if g == nil {
				return false
			}
			read(g)
			return true
		}
		if q := s.seq.Load(); q&1 == 0 {
			g := s.cur.Load()
			if g == nil {
				return false
			}
			read(g)
			if s.seq.Load() == q {
				return true
			}
		}
		if s.await(try) {
			return false
		}
	}
}

// Has reports whether key has a value (false during and after Close). Like
// Get, it sees writes whole and never waits for I/O.
func (s *Store) Has(key []byte) bool {
	h := format.Hash(key)
	ok, _ := consistent(s, func(g *gen) bool { _, ok := g.ix.Get(h); return ok && !s.expired(g, h) })
	return ok
}

// Len returns the number of live keys (0 during and after Close), expired
// keys not counted. Like Get, it sees writes whole: never a count from the
// middle of a batch. It takes constant time and no lock, except after keys
// expired since the last count (or a key was written with an expiry earlier
// than every counted one): then it takes the write lock and walks the expiry
// index once, in time proportional to the keys that have a TTL (tens of
// milliseconds a million); see expirycount.go.
func (s *Store) Len() int {
	return s.liveCount()
}

// Size returns the bytes of valid entries in the file (0 during and after
// Close), as of a state between writes.
func (s *Store) Size() int64 {
	n, _ := consistent(s, func(g *gen) int64 { return g.tail.Load() })
	return n
}

// Path returns the path the Store was opened with.
func (s *Store) Path() string { return s.path }

// Hash returns the 64-bit hash simdr (and the Rust original) stores for key:
// XXH3-64 with seed 0. Keys with the same hash are the same key to the store.
func Hash(key []byte) uint64 { return format.Hash(key) }

// Sync makes every write so far durable on disk (fdatasync). A read-only
// Store has nothing to sync: Sync returns nil.
//
// A failed Sync is final: the kernel may have dropped the pages it could not
// write, so a retry could report success for data that is not on disk. After
// one, Sync and every write fail with an error matching ErrFailed until the
// Store is reopened (reads go on). Sync also fails, with ErrCorrupt, when
// another process has cut the file below the entries written to it, or left
// it without a name (removed it, or renamed another file over its path: what
// is written to it is lost at Close); then the Store fails as above.
func (s *Store) Sync() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g := s.cur.Load()
	if g == nil {
		return ErrClosed
	}
	if s.opts.ReadOnly {
		return nil
	}
	if s.failure() != nil {
		return fmt.Errorf("simdr: sync: %w: %w", ErrFailed, s.failed)
	}
	if err := s.checkCut(g, g.tail.Load()); err != nil {
		return fmt.Errorf("simdr: sync: %w", err)
	}
	if err := s.checkLinked(g); err != nil {
		return fmt.Errorf("simdr: sync: %w", err)
	}
	if err := g.f.Sync(); err != nil {
		s.syncFailed(err)
		return fmt.Errorf("simdr: sync: %w", err)
	}
	return nil
}

// Close releases the file, its lock and its mappings. Closing twice returns
// ErrClosed. Close may run while other goroutines call the Store: it waits
// for a write or Compact in progress, and every call that starts after it,
// or that a read in flight finishes after it, returns ErrClosed (false for
// Has, 0 for Len and Size, zero Stats, nothing from Entries), never a panic.
//
// Every Entry and slice the Store handed out becomes invalid. So that a read
// racing Close, or a stale slice used just after it, cannot crash the
// process, Close does not punch holes where the file was mapped: it replaces
// those pages in place with read-only zero pages, which a stale slice reads as
// zeros (Verify fails on them with ErrChecksum), and unmaps them about two
// seconds later (mapping.Grace). This costs Close one mmap call per mapping
// and holds address space, not memory, for that while; only after that does
// a stale slice fault.
//
// When an fdatasync of the store file in a background checkpoint failed and
// no write or Sync has reported it since, Close reports it (an error wrapping
// ErrFailed and the sync's error) after closing the Store all the same; it
// then writes no checkpoint.
func (s *Store) Close() error {
	s.cmu.Lock() // wait for a Compact in progress
	defer s.cmu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.ckWG.Wait() // a background checkpoint reads the index
	g := s.cur.Load()
	if g == nil {
		return ErrClosed
	}
	// A failed fdatasync in a background checkpoint that no write or Sync
	// has reported yet is reported here (checkpointPays takes it up, so no
	// checkpoint names the bytes it may have lost).
	var unreported error
	if s.failed == nil && s.bgFailed.Load() != nil && s.failure() != nil {
		unreported = fmt.Errorf("%w: %w", ErrFailed, s.failed)
	}
	if s.checkpointPays(g) {
		// A failed checkpoint costs the next Open time, never data.
		_ = s.writeCheckpoint(g, g.tail.Load(), g.ents.Load(), g.tomb.Load(), true)
	}
	// Closed for good: readers that see seq odd and closed set return
	// ErrClosed, and every read in flight fails its seq check and retries.
	// (No write can reopen the window: they all hold wmu and check cur.)
	s.closed.Store(true)
	s.seq.Add(1)
	s.cur.Store(nil)
	errs := []error{unreported, s.closeState(g), g.close()}
	for _, o := range s.old {
		errs = append(errs, o.close())
	}
	s.old = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("simdr: close: %w", err)
	}
	return nil
}

// writable returns the current generation for a write, or why there is none.
// The caller holds wmu.
func (s *Store) writable() (*gen, error) {
	g := s.cur.Load()
	switch {
	case g == nil:
		return nil, ErrClosed
	case s.opts.ReadOnly:
		return nil, ErrReadOnly
	case s.failure() != nil:
		return nil, fmt.Errorf("%w: %w", ErrFailed, s.failed)
	}
	return g, nil
}

// failure returns why the Store refuses writes (nil when it does not),
// taking up a failed sync that a background checkpoint met. The caller holds
// wmu.
func (s *Store) failure() error {
	if e := s.bgFailed.Load(); e != nil {
		s.syncFailed(*e)
	}
	return s.failed
}

// realPath is path with its symlinks resolved where they resolve (the
// directory a created file's name lives in is the target's).
func realPath(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	return path
}
