package simdr

import "github.com/simdr-go/simdr/internal/format"

// Stats describes a store file. Its JSON form (used by simdr serve and the
// CLI) names the fields in snake case.
type Stats struct {
	// LiveKeys is the number of keys with a value (as Len: expired keys and
	// the expiry records of PutTTL are not counted).
	LiveKeys int `json:"live_keys"`
	// Entries is the number of value entries in the file, overwritten ones included.
	Entries int64 `json:"entries"`
	// Tombstones is the number of delete markers in the file.
	Tombstones int64 `json:"tombstones"`
	// FileBytes is the size of the valid part of the file (as Size).
	FileBytes int64 `json:"file_bytes"`
	// LiveBytes is the sum of the live values' lengths.
	LiveBytes int64 `json:"live_bytes"`
	// ReclaimableBytes is how many bytes Compact would free, exactly, if
	// nothing is written meanwhile: the file size less the size of the file
	// Compact writes (the live values in file order, each with its metadata
	// and the padding that aligns the next one).
	ReclaimableBytes int64 `json:"reclaimable_bytes"`
	// IndexBytes is the memory the in-memory index holds.
	IndexBytes int `json:"index_bytes"`
}

// Stats returns figures about the store. It visits every live key (no lock),
// so it costs time in proportion to Len. The figures are those of one state
// between writes; writes that keep interrupting the visit make it take the
// write lock. A closed Store (also during Close) gives zero Stats.
//
// Stats reads the metadata of values longer than 32 KiB from the mapping. If
// another process has cut the file under the Store, such a value whose
// metadata is gone counts as a live key of 0 bytes (Stats never faults); the
// Store's next write or Sync fails with ErrCorrupt (see docs/reliability.md).
func (s *Store) Stats() Stats {
	var st Stats
	if !s.stable(func(g *gen) {
		st = Stats{
			Entries:    g.ents.Load(),
			Tombstones: g.tomb.Load(),
			FileBytes:  g.tail.Load(),
			IndexBytes: g.ix.Bytes(),
		}
		// Compact writes the live values in file order from offset 0: each
		// one takes its length and metadata, and every one but the last the
		// padding that aligns the next payload (which depends on its own end
		// only).
		var compacted, lastEnd, lastPad int64
		x, now := g.x.Load(), s.now()
		var records int // records Compact writes again
		g.ix.Range(func(h, v uint64) bool {
			var hidden bool // a record or the marker (expiry.go)
			if x != nil {
				switch st := x.state(h); {
				case st == hiddenMark:
					if h == markerHash {
						return true // counted below, with the records
					}
					r, ok := g.recordAt(h, v)
					if k := x.state(r.hash); !ok || int64(k) != r.exp || r.exp <= now {
						return true // stale, or its key expired: not written again
					}
					hidden = true
					records++
				case st != 0 && int64(st) <= now:
					return true // expired: Compact drops it
				}
			}
			n := int64(v >> lenShift)
			if n == 0 {
				e, err := g.longEntry(h, v)
				if err != nil {
					n = -1 // unreadable: a file cut under the Store
				} else {
					n = int64(e.Len())
				}
			}
			if !hidden {
				st.LiveKeys++
			}
			if n < 0 {
				return true
			}
			if !hidden {
				st.LiveBytes += n
			}
			pad := format.Prepad(n + format.MetaSize)
			compacted += n + format.MetaSize + pad
			if end := endOf(v); end > lastEnd {
				lastEnd, lastPad = end, pad
			}
			return true
		})
		if records > 0 { // the marker, before the first record
			n := int64(len(markerValue))
			compacted += n + format.MetaSize + format.Prepad(n+format.MetaSize)
		}
		compacted -= lastPad
		st.ReclaimableBytes = max(0, st.FileBytes-compacted)
	}) {
		return Stats{}
	}
	return st
}
