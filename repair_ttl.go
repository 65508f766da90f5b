package simdr

import (
	"cmp"
	"slices"

	"github.com/simdr-go/simdr/internal/format"
)

// dropUnbound removes from what sv keeps (Repair, see format.Salvage) the
// expiry entries (expiry.go) that the damage left without the entry they
// were written with:
//
//   - an intact expiry record whose value is dropped: it binds nothing, yet,
//     kept, it would replace the record of the key's older value (kept, as
//     Repair brings back an older value when a newer one is lost), which
//     would then live for good;
//   - the tombstone of a record whose preceding entry is dropped: simdr
//     writes it right after the key's new value or tombstone (appender.store,
//     remove), so that entry was lost with the bytes before it, and the
//     key's older value, back again, would lose its expiry.
//
// Dropped, they let the older record bind the older value again. A damaged
// record is kept (its key reads as expired, see recordEntry). The ranges of
// what is removed join sv.Dropped, and sv.End follows the last entry kept.
func dropUnbound(data []byte, sv *format.Salvaged) {
	type value struct {
		h   uint64
		end int64
	}
	values := map[value]bool{}
	recs := map[uint64]bool{} // hashes of the records kept
	for _, k := range sv.Kept {
		if k.Tombstone {
			continue
		}
		values[value{k.Hash, k.End}] = true
		if k.End-k.Start == recordSize {
			if _, ok := decodeRecord(k.Hash, data[k.Start:k.End]); ok {
				recs[k.Hash] = true
			}
		}
	}
	if len(recs) == 0 {
		return
	}
	gapAt := map[int64]bool{} // where a dropped range ends
	for _, d := range sv.Dropped {
		gapAt[d.Off+d.Len] = true
	}
	var (
		kept    []format.Kept
		removed []format.Span
		end     int64 // of the last entry before the one looked at
	)
	for _, k := range sv.Kept {
		drop := false
		switch {
		case k.Tombstone:
			drop = recs[k.Hash] && gapAt[k.Start]
		case !k.Damaged && recs[k.Hash]:
			if r, ok := decodeRecord(k.Hash, data[k.Start:k.End]); ok {
				drop = !values[value{r.hash, r.bound}]
			}
		}
		if drop {
			removed = append(removed, format.Span{Off: end, Len: k.Next() - end})
		} else {
			kept = append(kept, k)
		}
		end = k.Next()
	}
	if len(removed) == 0 {
		return
	}
	sv.Kept = kept
	sv.End = 0
	if len(kept) > 0 {
		sv.End = kept[len(kept)-1].Next()
	}
	sv.Dropped = mergeSpans(append(sv.Dropped, removed...))
}

// mergeSpans returns the union of spans, sorted, overlapping and adjacent
// ones joined.
func mergeSpans(spans []format.Span) []format.Span {
	slices.SortFunc(spans, func(a, b format.Span) int { return cmp.Compare(a.Off, b.Off) })
	var out []format.Span
	for _, s := range spans {
		if n := len(out); n > 0 && s.Off <= out[n-1].Off+out[n-1].Len {
			out[n-1].Len = max(out[n-1].Len, s.Off+s.Len-out[n-1].Off)
			continue
		}
		out = append(out, s)
	}
	return out
}
