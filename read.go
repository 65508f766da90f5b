package simdr

import (
	"fmt"
)

// GetMany returns the values of keys, in order, as one consistent snapshot:
// no write is seen half-applied and no write that ended before the call is
// missed. A missing key gives a zero Entry (Exists false) in its slot; err is
// only for a closed Store (ErrClosed, also during Close), a value over 32 KiB
// whose metadata another process cut off the file or overwrote (ErrCorrupt,
// as for Get) or, with Options.VerifyChecksums, a damaged value. A GetMany that writers keep
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
	var cut error // a long value's metadata could not be read (see gen.entry)
	if !s.stable(func(g *gen) {
		cut = nil
		for i, h := range hashes {
			out[i] = Entry{}
			if v, ok := g.ix.Get(h); ok && !s.expired(g, h) {
				var err error
				if out[i], err = g.entry(h, v); err != nil && cut == nil {
					cut = err
				}
			}
		}
	}) {
		return nil, fmt.Errorf("simdr: get many: %w", ErrClosed)
	}
	if cut != nil {
		return nil, fmt.Errorf("simdr: get many: %w", cut)
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
