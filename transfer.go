package simdr

import (
	"bytes"
	"fmt"
	"os"
)

// Rename moves the value of oldKey to newKey in one atomic write: a new entry
// under newKey with the same bytes (and so the same checksum), and a tombstone
// for oldKey. Any value newKey had is replaced. A missing oldKey fails with
// ErrNotFound; renaming a key to itself (or to a key with the same hash) fails
// with ErrSameKey.
func (s *Store) Rename(oldKey, newKey []byte) error {
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
	if !ok {
		return fmt.Errorf("simdr: rename: %w", ErrNotFound)
	}
	a := s.begin(g)
	a.put(nh, g.entryAt(oh, pos).Bytes())
	a.del(oh)
	if err := a.commit(); err != nil {
		return fmt.Errorf("simdr: rename: %w", err)
	}
	return nil
}

// Copy writes the value of key into dst under the same key hash, with the same
// bytes and checksum. dst must be another store file: the same file, even
// through another path or a link, fails with ErrSameStore. A missing key
// fails with ErrNotFound.
func (s *Store) Copy(key []byte, dst *Store) error {
	_, err := s.copyTo(Hash(key), dst)
	if err != nil {
		return fmt.Errorf("simdr: copy: %w", err)
	}
	return nil
}

// Move copies key into dst (see Copy), makes the copy durable, then deletes
// key from s. The value is never lost: if the copy fails, s keeps it; if s's
// value changes while the copy is made, the new value is left in s.
func (s *Store) Move(key []byte, dst *Store) error {
	if s.opts.ReadOnly {
		// Fail before copying: the key could not be deleted from s.
		return fmt.Errorf("simdr: move: %w", ErrReadOnly)
	}
	h := Hash(key)
	e, err := s.copyTo(h, dst)
	if err == nil {
		err = dst.Sync()
	}
	if err != nil {
		return fmt.Errorf("simdr: move: %w", err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g, err := s.writable()
	if err != nil {
		return fmt.Errorf("simdr: move: copied, but not deleted from the source: %w", err)
	}
	// Changed meanwhile (not merely moved by Compact): keep the newer value.
	if pos, ok := g.ix.Get(h); !ok || !bytes.Equal(g.entryAt(h, pos).Bytes(), e.Bytes()) {
		return nil
	}
	a := s.begin(g)
	a.del(h)
	if err := a.commit(); err != nil {
		return fmt.Errorf("simdr: move: copied, but not deleted from the source: %w", err)
	}
	return nil
}

// copyTo writes s's value for h into dst and returns the entry copied.
func (s *Store) copyTo(h uint64, dst *Store) (Entry, error) {
	if dst == nil {
		return Entry{}, fmt.Errorf("nil destination: %w", ErrClosed)
	}
	same, err := s.sameFile(dst)
	if err != nil {
		return Entry{}, err
	}
	if same {
		return Entry{}, ErrSameStore
	}
	e, err := s.GetHash(h)
	if err != nil {
		return Entry{}, err
	}
	return e, dst.putHash(h, e.Bytes())
}

// sameFile reports whether s and o are open on the same file.
func (s *Store) sameFile(o *Store) (bool, error) {
	if s == o {
		return true, nil
	}
	a, b := s.cur.Load(), o.cur.Load()
	if a == nil || b == nil {
		return false, ErrClosed
	}
	return os.SameFile(a.fi, b.fi), nil
}
