package simdr

import (
	"iter"
)

// Entries returns every live entry, each key once with its latest value, in
// no particular order. It reads the index without locks: writes made while it
// runs may or may not be seen. Ranging over it after Close yields nothing.
func (s *Store) Entries() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		g := s.cur.Load()
		if g == nil {
			return
		}
		g.ix.Range(func(_, pos uint64) bool {
			return yield(g.entryAt(pos))
		})
	}
}
