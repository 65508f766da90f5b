package simdr

import (
	"fmt"
)

// GetMany returns the values of keys, in order, as one consistent snapshot:
// no write is seen half-applied and no write that ended before the call is
// missed. A missing key gives a zero Entry (Exists false) in its slot; err is
// only for a closed Store (ErrClosed, also during Close) or, with
// Options.VerifyChecksums, a damaged value. A GetMany that writers keep
// interrupting takes the write lock for its snapshot, so unlike Get it may
// wait for a write in progress.
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
	if !s.stable(func(g *gen) {
		for i, h := range hashes {
			out[i] = Entry{}
			if v, ok := g.ix.Get(h); ok && !s.expired(g, h) {
				out[i] = g.entryAt(h, v)
			}
		}
	}) {
		return nil, fmt.Errorf("simdr: get many: %w", ErrClosed)
	}
	if s.opts.VerifyChecksums {
		for _, e := range out {
			if e.Exists() {
				if _, err := s.verified(e); err != nil {
					return nil, fmt.Errorf("simdr: get many: %w", err)
				}
			}
		}
	}
	return out, nil
}
