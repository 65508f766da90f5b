package simdr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/simdr-go/simdr/internal/format"
)

// Range is a span of bytes in a store file.
type Range struct {
	Off int64 `json:"offset"`
	Len int64 `json:"length"`
}

// RepairReport says what Open with Options.Repair changed in the file.
type RepairReport struct {
	// OldSize and NewSize are the file's size before and after the repair.
	OldSize int64 `json:"old_size"`
	NewSize int64 `json:"new_size"`
	// Kept is the number of intact entries kept, in their order.
	Kept int `json:"kept"`
	// Relinked is the number of entries whose link to the entry before had to
	// be rewritten (a damaged prev field, or entries moved down over a gap).
	Relinked int `json:"relinked"`
	// Dropped lists the byte ranges of the old file that held no intact
	// entry and were left out (and those of intact expiry records, or
	// their tombstones, left out with the entry they were written with:
	// docs/ttl.md). DroppedBytes is their total length.
	Dropped      []Range `json:"dropped"`
	DroppedBytes int64   `json:"dropped_bytes"`
	// Healed is the number of damaged tombstones (their zero byte or their
	// checksum changed) written whole again: their key stays deleted.
	Healed int `json:"healed"`
	// Damaged lists the offsets, in the repaired file, of values kept with
	// a checksum that fails: their links on both sides were sound, so they
	// are kept as they were, stored checksum included (Verify lists them,
	// VerifyChecksums makes Get fail on them), rather than dropped, which
	// would bring back an older value of their key.
	Damaged []int64 `json:"damaged"`
	// Rewritten is true when the entries were written into a new file that
	// replaced the old one (entries had to move down over dropped bytes);
	// false when the repair rewrote links in place and cut the file.
	Rewritten bool `json:"rewritten"`
}

// repairSuffix ends the name of the temporary file a Repair that rewrites
// the file writes.
const repairSuffix = ".simdr.repair"

// repairName is the temporary file a Repair that rewrites the store file
// real (its path with symlinks resolved, identity fi) writes:
// ".BASE.INODE.simdr.repair" in real's directory, as compactName. A file of
// that name beside the store, which only the lock holder writes, is a
// leftover of an interrupted Repair of this very file: the next writer's
// Open removes it (removeLeftover), and no other file.
func repairName(real string, fi os.FileInfo) string { return tempName(real, fi, repairSuffix) }

// tempName is ".BASE.INODE" followed by suffix, in real's directory, INODE
// fi's inode number in hex ("" when fi has none).
func tempName(real string, fi os.FileInfo, suffix string) string {
	_, ino, _, ok := fileID(fi)
	if !ok {
		return ""
	}
	dir, base := filepath.Split(real)
	return filepath.Join(dir, "."+base+"."+strconv.FormatUint(ino, 16)+suffix)
}

// Repaired returns what Open with Options.Repair changed, or nil when the
// file needed no repair (or Repair was not set).
func (s *Store) Repaired() *RepairReport { return s.repaired }

// repair salvages the file of g, whose data does not end in a valid chain
// (the longest ends at L): every intact entry is kept, in order (see
// format.Salvage). When no bytes below the last kept entry are dropped, the
// damaged links and tombstones are rewritten in place and the file is cut
// after the last kept entry; otherwise the kept entries are written into a
// new file (fresh links and pre-pads, the same payloads, key hashes and
// checksums), which is synced and renamed over the path (keeping the mode),
// the directory synced, and g switched to it. It returns the new tail.
func (s *Store) repair(g *gen, data []byte, L int64) (int64, error) {
	size := int64(len(data))
	sv := format.Salvage(data, L)
	dropUnopenableFirst(&sv)
	dropUnbound(data, &sv) // expiry records and their tombstones (repair_ttl.go)
	rep := &RepairReport{OldSize: size, NewSize: sv.End, Kept: len(sv.Kept), Dropped: []Range{}, Damaged: []int64{}}
	for _, d := range sv.Dropped {
		rep.Dropped = append(rep.Dropped, Range{d.Off, d.Len})
		rep.DroppedBytes += d.Len
	}
	var err error
	if sv.InPlace() {
		err = s.repairInPlace(g, &sv, rep)
	} else {
		err = s.rewrite(g, data, &sv, rep)
	}
	if err != nil {
		return 0, fmt.Errorf("repair: %w", err)
	}
	if rep.OldSize != rep.NewSize || rep.Relinked > 0 || rep.Healed > 0 || rep.Rewritten {
		s.repaired = rep
	}
	return rep.NewSize, nil
}

// dropUnopenableFirst drops, from what sv keeps, damaged first values whose
// key hash or checksum is 0: Open takes such metadata for what a lost write
// zeroed (a torn tail, format.ClassifyTail), not for a damaged first value,
// so a repaired file that kept one would not open. The entries above are
// then written into a new file with fresh links.
func dropUnopenableFirst(sv *format.Salvaged) {
	for len(sv.Kept) > 0 {
		k := sv.Kept[0]
		if k.Tombstone || !k.Damaged || k.Link != 0 || (k.Hash != 0 && k.CRC != 0) {
			return
		}
		sv.Kept = sv.Kept[1:]
		sv.Dropped = append([]format.Span{{Off: 0, Len: k.Next()}}, sv.Dropped...)
	}
}

// repairInPlace rewrites the links and tombstones sv marks, cuts the file
// at sv.End and syncs it.
func (s *Store) repairInPlace(g *gen, sv *format.Salvaged, rep *RepairReport) error {
	var b [format.MetaSize]byte
	for _, k := range sv.Kept {
		if k.Damaged {
			rep.Damaged = append(rep.Damaged, k.Start)
		}
		if !k.Relink && !k.Heal {
			continue
		}
		m := k.Meta
		m.Prev = k.Link
		if k.Heal {
			m.CRC = format.TombstoneCRC
			if _, err := g.f.WriteAt([]byte{0}, k.Start); err != nil {
				return err
			}
			rep.Healed++
		}
		if k.Relink {
			rep.Relinked++
		}
		format.PutMeta(b[:], m)
		if _, err := g.f.WriteAt(b[:], k.End); err != nil {
			return err
		}
	}
	if sv.End < rep.OldSize {
		if err := g.f.Truncate(sv.End); err != nil {
			return err
		}
	}
	return g.f.Sync()
}

// rewrite writes the entries sv keeps into a new file, renames it over the
// store's path and switches g to it. An expiry record (expiry.go) is written
// with the new end of the value it binds, and the marker again after the last
// entry when records are kept but the marker was dropped.
func (s *Store) rewrite(g *gen, data []byte, sv *format.Salvaged, rep *RepairReport) error {
	r, err := s.replacement(g, repairName) // refuses a file with other hard links
	if err != nil {
		return err
	}
	defer r.abandon()
	f, target := r.f, r.target
	var (
		buf  []byte
		off  int64 // bytes of buf flushed
		tail int64
	)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
		off += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	// Where each value an expiry record binds ended, and where it ends in
	// the new file (a record comes before its value).
	moved := map[int64]int64{}
	marked := false // the marker is kept
	for _, k := range sv.Kept {
		if r, ok := decodeRecord(k.Hash, data[k.Start:k.End]); ok {
			moved[r.bound] = -1
		}
		marked = marked || k.Hash == markerHash && !k.Tombstone
	}
	if len(moved) > 0 {
		var t int64
		for _, k := range sv.Kept {
			if k.Tombstone {
				t += format.TombstoneSize
				continue
			}
			if _, ok := moved[k.End]; ok {
				moved[k.End] = payloadEnd(t, int(k.End-k.Start))
			}
			t += format.EntrySize(t, int(k.End-k.Start))
		}
	}

	for _, k := range sv.Kept {
		if k.Prev != tail {
			rep.Relinked++
		}
		if k.Tombstone {
			if k.Heal {
				rep.Healed++
			}
			buf = format.AppendTombstone(buf, tail, k.Hash)
			tail += format.TombstoneSize
		} else {
			buf = format.AppendPrepad(buf, tail)
			if k.Damaged {
				rep.Damaged = append(rep.Damaged, tail+format.Prepad(tail))
			}
			p, crc := data[k.Start:k.End], k.CRC
			if r, ok := decodeRecord(k.Hash, p); ok && !k.Damaged {
				if end := moved[r.bound]; end > 0 { // its value moved: follow it
					r.bound = end
					p = r.encode()
					crc = format.Checksum(p)
				}
			}
			buf = append(buf, p...)
			buf = format.AppendMeta(buf, format.Meta{Hash: k.Hash, Prev: tail, CRC: crc})
			tail += format.EntrySize(tail, len(p))
		}
		if len(buf) >= 1<<20 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if len(moved) > 0 && !marked {
		// The marker was in the bytes dropped: without it Open would not
		// look for the records kept.
		buf = format.AppendEntry(buf, tail, markerHash, []byte(markerValue))
		tail += format.EntrySize(tail, len(markerValue))
	}
	if err := flush(); err != nil {
		return err
	}
	m, nfi, err := r.install(tail)
	if err != nil {
		return err
	}
	// g now holds the new file, locked; the old one (unlinked) is released.
	old := g.f
	g.m.Close()
	g.f, g.m, g.fi = f, m, nfi
	old.Close()
	rep.NewSize, rep.Rewritten = tail, true
	if err := s.fs.SyncDir(filepath.Dir(target)); err != nil {
		g.m.Close()
		g.f.Close()
		return errors.Join(errors.New("repaired, but the directory sync failed"), err)
	}
	return nil
}
