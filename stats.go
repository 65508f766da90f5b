package simdr

import "github.com/simdr-go/simdr/internal/format"

// Stats describes a store file. Its JSON form (used by simdr serve and the
// CLI) names the fields in snake case.
type Stats struct {
	// LiveKeys is the number of keys with a value (as Len).
	LiveKeys int `json:"live_keys"`
	// Entries is the number of value entries in the file, overwritten ones included.
	Entries int64 `json:"entries"`
	// Tombstones is the number of delete markers in the file.
	Tombstones int64 `json:"tombstones"`
	// FileBytes is the size of the valid part of the file (as Size).
	FileBytes int64 `json:"file_bytes"`
	// LiveBytes is the sum of the live values' lengths.
	LiveBytes int64 `json:"live_bytes"`
	// ReclaimableBytes is about how many bytes Compact would free: the file
	// size less what the live entries take once rewritten.
	ReclaimableBytes int64 `json:"reclaimable_bytes"`
	// IndexBytes is the memory the in-memory index holds.
	IndexBytes int `json:"index_bytes"`
}

// Stats returns figures about the store. It visits every live key (no lock),
// so it costs time in proportion to Len. The figures are those of one state
// between writes; writes that keep interrupting the visit make it take the
// write lock. A closed Store (also during Close) gives zero Stats.
func (s *Store) Stats() Stats {
	var st Stats
	if !s.stable(func(g *gen) {
		st = Stats{
			Entries:    g.ents.Load(),
			Tombstones: g.tomb.Load(),
			FileBytes:  g.tail.Load(),
			IndexBytes: g.ix.Bytes(),
		}
		var compacted int64
		g.ix.Range(func(h, v uint64) bool {
			n := int64(g.entryAt(h, v).Len())
			st.LiveKeys++
			st.LiveBytes += n
			compacted += n + format.MetaSize + format.Prepad(n+format.MetaSize)
			return true
		})
		st.ReclaimableBytes = max(0, st.FileBytes-compacted)
	}) {
		return Stats{}
	}
	return st
}
