package simdr

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/shm"
)

// The shared state file beside the store (issue 14; layout in
// docs/statefile.md, design in docs/concurrency.md): the writer's committed
// tail, the bound of its write in flight, and a commit counter that followers
// read instead of scanning the bytes past their tail, and sleep on (Wait).
// It is a disposable cache: when it is missing, garbage, stale or names
// another file, recovery and Refresh fall back to scanning the store file.

// StateSuffix is appended to a store's path to name its state file.
const StateSuffix = "-simdr-shm"

func statePath(path string) string { return path + StateSuffix }

// stateFile is the Store's side of the state file.
type stateFile struct {
	f atomic.Pointer[shm.File] // nil: none (yet)

	// The writer's view (guarded by wmu).
	g     *gen  // the generation the state names; nil: not written yet
	tail  int64 // the committed tail last stored
	infl  int64 // the inflight bound last stored
	count uint64

	// A follower's view, for Wait's fallback (guarded by wmu when written).
	seenSize atomic.Int64

	mu  sync.Mutex
	all []*shm.File // every state file opened, closed at Close

	hints atomic.Int64 // stateHint calls, for tests
}

// fileID returns the device, inode and owner of fi.
func fileID(fi os.FileInfo) (dev, ino uint64, uid uint32, ok bool) {
	if fi == nil {
		return 0, 0, 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, false
	}
	return uint64(st.Dev), st.Ino, st.Uid, true
}

// openState opens the state file if none is open yet: the writer creates it,
// a follower only opens an existing one. Failing costs only the fast paths.
// fi describes the store file.
func (s *Store) openState(fi os.FileInfo) {
	if s.sf.f.Load() != nil {
		return
	}
	s.reopenState(fi)
}

// reopenState opens the state file the path names now, replacing the one
// open (which stays mapped until Close: a Wait may be sleeping on it).
func (s *Store) reopenState(fi os.FileInfo) {
	_, _, uid, ok := fileID(fi)
	if !ok {
		return
	}
	var (
		f   *shm.File
		err error
	)
	if s.opts.ReadOnly {
		f, err = shm.Open(statePath(s.path), uid)
	} else {
		f, err = shm.Create(statePath(s.path), fi.Mode().Perm()&0o666, uid)
	}
	if err != nil {
		return
	}
	s.sf.mu.Lock()
	s.sf.all = append(s.sf.all, f)
	s.sf.mu.Unlock()
	s.sf.f.Store(f)
	if !s.opts.ReadOnly {
		s.sf.g = nil // written afresh by stateLoaded
	}
}

// stateLoaded is called when load has recovered and indexed g, of size
// bytes: the writer makes the state describe g afresh (whatever it held);
// a follower notes the size it saw.
func (s *Store) stateLoaded(g *gen, size int64) {
	s.sf.seenSize.Store(size)
	if s.opts.ReadOnly {
		return
	}
	f := s.sf.f.Load()
	if f == nil {
		return
	}
	c, ok := s.commitOf(g, g.tail.Load())
	if !ok {
		return
	}
	c.Count = s.sf.count + 1
	s.sf.count = f.Init(c)
	s.sf.g, s.sf.tail, s.sf.infl = g, c.Tail, c.Tail
	f.Bump() // followers asleep on an earlier writer's state re-check
	s.stateCut(f)
}

// stateCut stops the writer using f when a store into it faulted: another
// process cut the state file (shm.File.Faulted). Its stores would be lost,
// and no follower can read the page either; recovery and followers fall
// back to scanning, as without a state file. The caller holds wmu.
func (s *Store) stateCut(f *shm.File) {
	if f.Faulted() {
		s.sf.f.CompareAndSwap(f, nil)
	}
}

// closeState releases the state files (at Close, g the current generation,
// or when Open fails, g nil). The writer leaves the
// state naming its last commit, with nothing in flight.
func (s *Store) closeState(g *gen) error {
	// (After a failed rollback the bytes past the tail are still the
	// writer's own: the bound stays.)
	if f := s.sf.f.Load(); f != nil && !s.opts.ReadOnly && g != nil && s.sf.g == g && s.failed == nil {
		f.SetInflight(s.sf.tail)
	}
	s.sf.f.Store(nil)
	s.sf.mu.Lock()
	defer s.sf.mu.Unlock()
	var first error
	for _, f := range s.sf.all {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	s.sf.all = nil
	return first
}

// commitOf describes g at tail: its identity, this boot, and the metadata of
// the entry ending at tail (read from the mapping, which covers tail).
func (s *Store) commitOf(g *gen, tail int64) (shm.Commit, bool) {
	dev, ino, _, ok := fileID(g.fi)
	if !ok {
		return shm.Commit{}, false
	}
	c := shm.Commit{Dev: dev, Ino: ino, Boot: shm.BootID(), Tail: tail}
	if tail > 0 {
		data := g.m.Bytes()
		if int64(len(data)) < tail || tail < format.MetaSize {
			return shm.Commit{}, false
		}
		m := format.ReadMeta(data[tail-format.MetaSize : tail])
		c.Hash, c.Prev, c.CRC = m.Hash, m.Prev, m.CRC
	}
	return c, true
}

// switchState makes the state describe g (a generation Compact made) at its
// current tail, before anything is written to it.
func (s *Store) switchState(f *shm.File, g *gen) {
	c, ok := s.commitOf(g, g.tail.Load())
	if !ok {
		s.sf.f.Store(nil) // cannot describe g: no state rather than a wrong one
		return
	}
	s.sf.count++
	c.Count = s.sf.count
	f.Store(c)
	f.SetInflight(c.Tail)
	s.sf.g, s.sf.tail, s.sf.infl = g, c.Tail, c.Tail
	s.stateCut(f)
}

// noteReplace is called when ng replaces the current generation (the
// caller holds wmu): after a Compact, the writer's state names the new file
// and followers asleep in Wait wake up to move to it.
func (s *Store) noteReplace(ng *gen) {
	f := s.sf.f.Load()
	if f == nil || s.opts.ReadOnly {
		return
	}
	s.switchState(f, ng)
	if f = s.sf.f.Load(); f != nil {
		f.Bump()
	}
}

// noteInflight records, before the writer writes bytes up to upto past its
// committed tail, that the bytes below upto may hold its uncommitted write.
// The caller holds wmu.
func (s *Store) noteInflight(g *gen, upto int64) {
	f := s.sf.f.Load()
	if f == nil {
		return
	}
	if g != s.sf.g {
		s.switchState(f, g)
		if f = s.sf.f.Load(); f == nil {
			return
		}
	}
	if upto > s.sf.infl {
		f.SetInflight(upto)
		s.sf.infl = upto
		s.stateCut(f)
	}
}

// noteCommit records that the writer's committed tail is now tail (after
// publish), and wakes the followers waiting for it. The caller holds wmu.
func (s *Store) noteCommit(g *gen, tail int64) {
	f := s.sf.f.Load()
	if f == nil || s.opts.ReadOnly {
		return
	}
	if g != s.sf.g {
		s.switchState(f, g)
		if f = s.sf.f.Load(); f == nil {
			return
		}
	} else if tail == s.sf.tail {
		return // nothing new (an empty batch)
	}
	if tail != s.sf.tail {
		c, ok := s.commitOf(g, tail)
		if !ok {
			s.sf.f.Store(nil)
			return
		}
		s.sf.count++
		c.Count = s.sf.count
		f.Store(c) // first the commit, then the bound: a crash between leaves both true
		s.sf.tail = tail
	}
	if s.sf.infl != tail { // a write that ended at its tail (most) left it there
		f.SetInflight(tail)
		s.sf.infl = tail
	}
	f.Bump()
	s.stateCut(f)
}

// stateCommit returns the state's newest commit when it describes g's file
// in this boot (Count 0 and false otherwise), and the inflight bound.
func (s *Store) stateCommit(g *gen) (c shm.Commit, infl int64, ok bool) {
	f := s.sf.f.Load()
	if f == nil {
		return shm.Commit{}, 0, false
	}
	faulted := guardFault(func() { // an outsider may have cut the state file
		c, ok = f.Load()
		var iok bool
		infl, iok = f.Inflight()
		ok = ok && iok
	})
	if faulted || !ok {
		return shm.Commit{}, 0, false
	}
	dev, ino, _, idok := fileID(g.fi)
	boot := shm.BootID()
	if !idok || c.Dev != dev || c.Ino != ino || c.Boot != boot || boot == [2]uint64{} || infl < c.Tail {
		return shm.Commit{}, 0, false
	}
	return c, infl, true
}

// metaMatches reports whether the entry metadata ending at c.Tail in data is
// the one c records.
func metaMatches(data []byte, c shm.Commit) bool {
	if c.Tail == 0 {
		return true
	}
	if c.Tail < format.MetaSize+1 || c.Tail > int64(len(data)) {
		return false
	}
	m := format.ReadMeta(data[c.Tail-format.MetaSize : c.Tail])
	return m.Hash == c.Hash && m.Prev == c.Prev && m.CRC == c.CRC
}

// stateHint returns what the state file knows of a file of size bytes about
// to be recovered: the writer's last committed tail, and whether every byte
// past it (up to size) is known to be the writer's own uncommitted write
// (own), so that recovery can cut there without scanning. ok is false when
// there is no usable state (missing, garbage, another file, another boot: a
// power cut may have left it stale, so it is not trusted after a reboot, nor
// when the metadata at its tail is not in the file). When ok but not own,
// someone else (the Rust original, which knows nothing of the state) wrote
// past the tail: recovery scans from committed. A read-only Store's recovery
// uses it the same way (own: open at committed, never at an uncommitted
// record).
func (s *Store) stateHint(g *gen, size int64) (committed int64, own, ok bool) {
	s.sf.hints.Add(1)
	c, infl, ok := s.stateCommit(g)
	if !ok || c.Tail > size {
		return 0, false, false
	}
	match := false
	if guardFault(func() { match = metaMatches(g.m.Bytes()[:size], c) }) || !match {
		return 0, false, false
	}
	return c.Tail, size <= infl, true
}
