package simdr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

	cmu       sync.Mutex     // serializes Compact (and Close with it)
	wmu       sync.Mutex     // serializes writers; guards what follows
	old       []*gen         // generations replaced by Compact or Refresh, unmapped at Close
	buf       []byte         // encoding buffer, reused
	ops       []pending      // index updates of the write in progress, reused
	app       appender       // the write in progress
	chunk     []byte         // PutReader's buffer
	failed    error          // set when a failed write could not be rolled back
	last      lastEntry      // the writer's last commit, for checkCut
	repaired  *RepairReport  // what Open's repair changed, nil when nothing
	ckWG      sync.WaitGroup // a background checkpoint in progress
	ckBusy    atomic.Bool    // set while one runs
	ckTail    int64          // the tail the last background checkpoint covers (guarded by wmu)
	ckGen     *gen           // the generation it is of
	ckEntries int64          // the entries it covers
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
	ck   *checkpoint  // the index checkpoint the index was loaded from (its table may hold the index)
	num  uint64       // the generation's number (see Generation)
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
		f, err = s.fs.OpenFile(s.path, os.O_RDONLY, 0)
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
	m, err := mapping.New(f.Fd(), size)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	g := &gen{f: f, m: m, fi: fi}
	// With a checkpoint of the index, only what was written after it is walked.
	ck := s.openCheckpoint(g, size)
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
			return g, nil
		}
		ck.close()
		c.reset()
		g.collect(&c, 0)
	}
	g.buildIndex(&c)
	return g, nil
}

// closeGen releases a generation's mapping and file.
func (g *gen) close() error {
	return errors.Join(g.m.Close(), g.f.Close(), g.ck.close())
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

// entry is entryAt for the Store's own reads that must not fault: a value
// whose length is packed in the index costs no read of the mapping; for a
// longer one the metadata is read under guardFault and checked against the
// index, so that a file cut under the Store (by another process) gives an
// error matching ErrCorrupt instead of SIGBUS or a wrong slice.
func (g *gen) entry(h, v uint64) (Entry, error) {
	n := int64(v >> lenShift)
	if n == 0 {
		return g.longEntry(h, v)
	}
	data := g.m.Bytes()
	end := endOf(v)
	start := end - n
	return Entry{b: data[start : end : end+format.MetaSize], hash: h, off: start}, nil
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
	e, err := g.entry(h, pos)
	if err != nil {
		return Entry{}, fmt.Errorf("simdr: get: %w", err)
	}
	if s.opts.VerifyChecksums {
		if err := verifyGuarded(e); err != nil {
			return Entry{}, err
		}
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

// Sync makes every write so far durable on disk (fdatasync). A read-only
// Store has nothing to sync: Sync returns nil.
//
// A failed Sync is final: the kernel may have dropped the pages it could not
// write, so a retry could report success for data that is not on disk. After
// one, Sync and every write fail with an error matching ErrFailed until the
// Store is reopened (reads go on). Sync also fails, with ErrCorrupt, when
// another process has cut the file below the entries written to it.
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
	if s.failed != nil {
		return fmt.Errorf("simdr: sync: %w: %w", ErrFailed, s.failed)
	}
	if err := s.checkCut(g, g.tail.Load()); err != nil {
		return fmt.Errorf("simdr: sync: %w", err)
	}
	if err := g.f.Sync(); err != nil {
		s.syncFailed(err)
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
	s.ckWG.Wait() // a background checkpoint reads the index
	g := s.cur.Load()
	if g == nil {
		return ErrClosed
	}
	var errs []error
	if s.checkpointPays(g, true) {
		// A failed checkpoint costs the next Open time, never data.
		_ = s.writeCheckpoint(g, g.tail.Load(), g.ents.Load(), g.tomb.Load(), true)
	}
	s.cur.Store(nil)
	s.closed.Store(true)
	errs = append(errs, g.close())
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

// realPath is path with its symlinks resolved where they resolve (the
// directory a created file's name lives in is the target's).
func realPath(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	return path
}
