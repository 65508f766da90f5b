package simdr

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
	"github.com/simdr-go/simdr/internal/lock"
	"github.com/simdr-go/simdr/internal/mapping"
	"github.com/simdr-go/simdr/internal/vfs"
)

// Store is an open store file.
//
// Concurrency: every method is safe to call from many goroutines. Reads (Get,
// GetHash, GetMany, Has, Len, Size, Entries, Stats) take no lock: they load the
// current index and mapping with atomic operations and never wait for a writer.
// Writes (Put, Apply, Delete, PutReader, Rename, Copy, Move, Compact, Sync,
// Refresh) are serialized by one mutex inside the Store, and across processes
// by an exclusive flock on the file. Close must not run concurrently with other
// calls on the same Store; calls after Close return ErrClosed.
type Store struct {
	path string
	opts Options
	fs   vfs.FS

	cur    atomic.Pointer[gen] // what readers use
	closed atomic.Bool
	// seq is odd while the writer is changing the index, even otherwise: a
	// seqlock for GetMany's consistent snapshots.
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

	sf stateFile // the shared state file beside the store (statefile.go)
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
	s.openState(fi) // before recovery, which asks it (stateHint)
	var c collector
	tail, err := s.recoverTail(g, size, &c)
	if err != nil {
		m.Close()
		return nil, err
	}
	g.tail.Store(tail)
	g.buildIndex(&c)
	s.stateLoaded(g, size)
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

// Get returns the latest value stored under key, or ErrNotFound. It allocates
// nothing and takes no lock; see Entry for how long the value stays valid.
func (s *Store) Get(key []byte) (Entry, error) {
	return s.GetHash(format.Hash(key))
}

// GetHash is Get for a caller that already has the key's hash (see Hash).
func (s *Store) GetHash(h uint64) (Entry, error) {
	g := s.cur.Load()
	if g == nil {
		return Entry{}, ErrClosed
	}
	pos, ok := g.ix.Get(h)
	if !ok {
		return Entry{}, ErrNotFound
	}
	e := g.entryAt(h, pos)
	if s.opts.VerifyChecksums {
		if err := e.Verify(); err != nil {
			return Entry{}, err
		}
	}
	return e, nil
}

// Has reports whether key has a value (false after Close).
func (s *Store) Has(key []byte) bool {
	g := s.cur.Load()
	if g == nil {
		return false
	}
	_, ok := g.ix.Get(format.Hash(key))
	return ok
}

// Len returns the number of live keys (0 after Close).
func (s *Store) Len() int {
	g := s.cur.Load()
	if g == nil {
		return 0
	}
	return g.ix.Len()
}

// Size returns the bytes of valid entries in the file (0 after Close).
func (s *Store) Size() int64 {
	g := s.cur.Load()
	if g == nil {
		return 0
	}
	return g.tail.Load()
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

// Close releases the file, its lock and its mappings. Every Entry and slice
// the Store handed out becomes invalid. Closing twice returns ErrClosed.
func (s *Store) Close() error {
	s.cmu.Lock() // wait for a Compact in progress
	defer s.cmu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g := s.cur.Swap(nil)
	if g == nil {
		return ErrClosed
	}
	s.closed.Store(true)
	errs := []error{s.closeState(g), g.close()}
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
