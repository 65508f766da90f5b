package simdr

import (
	"fmt"
	"runtime"
)

// GetMany returns the values of keys, in order, as one consistent snapshot:
// no write is seen half-applied and no write that ended before the call is
// missed. A missing key gives a zero Entry (Exists false) in its slot; err is
// only for a closed Store or, with Options.VerifyChecksums, a damaged value.
func (s *Store) GetMany(keys [][]byte) ([]Entry, error) {
	hashes := make([]uint64, len(keys))
	for i, k := range keys {
		hashes[i] = Hash(k)
	}
	return s.GetManyHash(hashes)
}

// GetManyHash is GetMany for a caller that already has the keys' hashes.
func (s *Store) GetManyHash(hashes []uint64) ([]Entry, error) {
	out := make([]Entry, len(hashes))
	for attempt := 0; ; attempt++ {
		if attempt == 8 {
			// Writers keep changing the index: take their lock to get a snapshot.
			s.wmu.Lock()
			err := s.readMany(hashes, out)
			s.wmu.Unlock()
			return out, err
		}
		before := s.seq.Load()
		if before&1 == 1 {
			runtime.Gosched()
			continue
		}
		err := s.readMany(hashes, out)
		if s.seq.Load() == before {
			return out, err
		}
	}
}

func (s *Store) readMany(hashes []uint64, out []Entry) error {
	g := s.cur.Load()
	if g == nil {
		return ErrClosed
	}
	for i, h := range hashes {
		out[i] = Entry{}
		if pos, ok := g.ix.Get(h); ok {
			out[i] = g.entryAt(h, pos)
		}
	}
	if s.opts.VerifyChecksums {
		for _, e := range out {
			if e.Exists() {
				if err := e.Verify(); err != nil {
					return fmt.Errorf("simdr: get many: %w", err)
				}
			}
		}
	}
	return nil
}
