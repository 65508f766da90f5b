package simdr

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
	"github.com/simdr-go/simdr/internal/lock"
	"github.com/simdr-go/simdr/internal/mapping"
	"github.com/simdr-go/simdr/internal/vfs"
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

	cmu      sync.Mutex    // serializes Compact (and Close with it)
	wmu      sync.Mutex    // serializes writers; guards what follows
	old      []*gen        // generations replaced by Compact or Refresh, unmapped at Close
	buf      []byte        // encoding buffer, reused
	ops      []pending     // index updates of the write in progress, reused
	app      appender      // the write in progress
	chunk    []byte        // PutReader's buffer
	failed   error         // set when a failed write could not be rolled back
	repaired *RepairReport // what Open's repair changed, nil when nothing
}

// gen is one file generation: a file, its mapping and the index into it.
// Compact (and a reader's Refresh after one) moves the Store to a new gen.
type gen struct {
	f    vfs.File
	m    *mapping.Map
	ix   *index.Index
	tail atomic.Int64 // bytes of valid entries; the next entry starts here
	tomb atomic.Int64 // tombstones in the file
	ents atomic.Int64 // value entries in the file, live or not
	fi   os.FileInfo  // identity of the file when opened
}

// Open opens the store file at path, creating it when it is missing (unless
// opts.ReadOnly). A nil opts means the defaults.
//
// Opening walks the entry chain back from the end of the file and builds the
// in-memory index. A torn tail (a crash mid-write) or bytes appended after the
// last entry are cut off (ignored when read-only), so the store opens at its
// last complete entry. A non-empty file with no valid chain fails with
// ErrCorrupt and is left untouched, unless opts.Repair is set. Another writer
// holding the file fails the open with ErrLocked (see Options.LockTimeout).
func Open(path string, opts *Options) (*Store, error) {
	s := &Store{path: path}
	if opts != nil {
		s.opts = *opts
	}
	s.fs = s.opts.fsys()
	g, err := s.openGen()
	if err != nil {
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
	flag := os.O_RDWR | os.O_CREATE
	if s.opts.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := s.fs.OpenFile(s.path, flag, 0o644)
	if err != nil {
		return nil, false, err
	}
	ok := false
	defer func() {
		if !ok {
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
		s.fs.Remove(compactPath(s.path)) // a leftover of an interrupted Compact: never reused
	}
	g, err := s.load(f)
	if err != nil {
		return nil, errors.Is(err, errShrunk), err
	}
	ok = true
	return g, false, nil
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
	m, err := mapping.New(f.Fd(), size)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	g := &gen{f: f, m: m, fi: fi}
	var c collector
	tail, err := s.recoverTail(g, size, &c)
	if err != nil {
		m.Close()
		return nil, err
	}
	g.tail.Store(tail)
	g.buildIndex(&c)
	return g, nil
}

// closeGen releases a generation's mapping and file.
func (g *gen) close() error {
	return errors.Join(g.m.Close(), g.f.Close())
}

// entryAt decodes the entry whose payload ends at pos in g. The index only
// holds positions of entries the chain walk validated.
func (g *gen) entryAt(h, v uint64) Entry {
	data := g.m.Bytes()
	end := endOf(v)
	start := end - int64(v>>lenShift)
	if start == end { // too long to pack: the metadata says where it starts
		prev := format.ReadMeta(data[end : end+format.MetaSize]).Prev
		start = prev + format.Prepad(prev)
	}
	// The capacity reaches over the metadata, for Checksum; Bytes cuts it off.
	return Entry{b: data[start : end : end+format.MetaSize], hash: h, off: start}
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
	q := s.seq.Load()
	if g := s.cur.Load(); q&1 == 0 && g != nil && !s.opts.VerifyChecksums {
		if v, ok := g.ix.Get(h); ok {
			e := g.entryAt(h, v)
			if s.seq.Load() == q {
				return e, nil
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
	if err := e.Verify(); err != nil {
		if s.closed.Load() {
			return Entry{}, ErrClosed
		}
		return Entry{}, err
	}
	return e, nil
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
	for try := 0; ; try++ {
		if q := s.seq.Load(); q&1 == 0 {
			g := s.cur.Load()
			if g == nil {
				return false
			}
			_, ok := g.ix.Get(h)
			if s.seq.Load() == q {
				return ok
			}
		}
		if s.await(try) {
			return false
		}
	}
}

// Len returns the number of live keys (0 during and after Close). Like Get,
// it sees writes whole: never a count from the middle of a batch.
func (s *Store) Len() int {
	for try := 0; ; try++ {
		if q := s.seq.Load(); q&1 == 0 {
			g := s.cur.Load()
			if g == nil {
				return 0
			}
			n := g.ix.Len()
			if s.seq.Load() == q {
				return n
			}
		}
		if s.await(try) {
			return 0
		}
	}
}

// Size returns the bytes of valid entries in the file (0 during and after
// Close), as of a state between writes.
func (s *Store) Size() int64 {
	for try := 0; ; try++ {
		if q := s.seq.Load(); q&1 == 0 {
			g := s.cur.Load()
			if g == nil {
				return 0
			}
			n := g.tail.Load()
			if s.seq.Load() == q {
				return n
			}
		}
		if s.await(try) {
			return 0
		}
	}
}

// Path returns the path the Store was opened with.
func (s *Store) Path() string { return s.path }

// Hash returns the 64-bit hash simdr (and the Rust original) stores for key:
// XXH3-64 with seed 0. Keys with the same hash are the same key to the store.
func Hash(key []byte) uint64 { return format.Hash(key) }

// Sync makes every write so far durable on disk (fdatasync).
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
	if err := g.f.Sync(); err != nil {
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
func (s *Store) Close() error {
	s.cmu.Lock() // wait for a Compact in progress
	defer s.cmu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g := s.cur.Load()
	if g == nil {
		return ErrClosed
	}
	// Closed for good: readers that see seq odd and closed set return
	// ErrClosed, and every read in flight fails its seq check and retries.
	// (No write can reopen the window: they all hold wmu and check cur.)
	s.closed.Store(true)
	s.seq.Add(1)
	s.cur.Store(nil)
	errs := []error{g.close()}
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
	case s.failed != nil:
		return nil, fmt.Errorf("%w: %w", ErrFailed, s.failed)
	}
	return g, nil
}
