package simdr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
	"github.com/simdr-go/simdr/internal/lock"
	"github.com/simdr-go/simdr/internal/mapping"
	"github.com/simdr-go/simdr/internal/vfs"
)

// compactPath is where Compact writes the new file before renaming it over the
// store. Only the writer that holds the lock compacts, so a file found there
// when a writer opens is a leftover of an interrupted Compact: it is removed,
// never reused.
func compactPath(path string) string { return path + ".compact" }

// Compact rewrites the live entries (the latest value of each live key, no
// tombstones) into a new file beside the store, makes it durable (fsync of the
// file, rename over the store, fsync of the directory), and carries on with
// the new file.
//
// Other goroutines are not stopped: Gets go on reading the old file, and
// Puts and Deletes go on appending to it while the live entries are copied;
// Compact then takes the write lock only to copy what was written meanwhile
// and switch files. Every Entry handed out before Compact stays valid: the
// old file stays mapped, and its disk space is given back only when the Store
// is closed. A crash at any point leaves either the old or the new file whole
// under the store's path.
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
}

func (c *compactor) put(h uint64, v []byte) {
	end := c.tail + format.Prepad(c.tail) + int64(len(v))
	c.buf = format.AppendEntry(c.buf, c.tail, h, v)
	c.ix.Put(h, pack(end, int64(len(v))))
	c.tail = end + format.MetaSize
	c.ents++
	c.maybeFlush()
}

func (c *compactor) del(h uint64) {
	c.buf = format.AppendTombstone(c.buf, c.tail, h)
	c.ix.Delete(h, uint64(c.tail+1))
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
	tmp := compactPath(s.path)
	s.fs.Remove(tmp)
	f, err := s.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			s.fs.Remove(tmp)
		}
	}()
	if err := lock.Exclusive(f.Fd(), 0); err != nil {
		return fmt.Errorf("lock new file: %w", err)
	}
	old := g.live(t0) // sorted: read the old file front to back
	c := &compactor{f: f, ix: index.New(len(old))}
	for _, l := range old {
		e := g.entryAt(l.h, l.v)
		c.put(l.h, e.Bytes())
		if c.err != nil {
			return c.err
		}
	}
	old = nil
	// Make the bulk durable now, so that the sync under the write lock below
	// only has what was written meanwhile to flush.
	c.flush()
	if c.err == nil {
		c.err = f.Sync()
	}
	if c.err != nil {
		return c.err
	}

	// Phase 2: with the write lock, copy what was written since t0, make the
	// new file durable, and switch to it.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if g, err = s.writable(); err != nil {
		return err
	}
	data := g.m.Bytes()
	var delta []format.Entry
	format.Walk(data, t0, g.tail.Load(), func(e format.Entry) bool {
		delta = append(delta, e)
		return true
	})
	for i := len(delta) - 1; i >= 0; i-- {
		e := delta[i]
		switch {
		case !e.Tombstone:
			c.put(e.Hash, data[e.Start:e.End])
		case live(c.ix, e.Hash):
			c.del(e.Hash)
		}
	}
	c.flush()
	if c.err != nil {
		return c.err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	m, err := mapping.New(f.Fd(), c.tail)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	if err := s.fs.Rename(tmp, s.path); err != nil {
		m.Close()
		return err
	}
	renamed = true
	ng := &gen{f: f, m: m, ix: c.ix, fi: fi}
	ng.tail.Store(c.tail)
	ng.ents.Store(c.ents)
	ng.tomb.Store(c.tomb)
	s.replace(ng)
	// The old file's lock no longer guards the path; its mapping stays until Close.
	lock.Unlock(g.f.Fd())
	if err := s.fs.SyncDir(filepath.Dir(s.path)); err != nil {
		return errors.Join(errors.New("compacted, but the directory sync failed"), err)
	}
	return nil
}
