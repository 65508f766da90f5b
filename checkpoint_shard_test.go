package simdr

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"os"
	"path/filepath"
	"testing"

	"github.com/simdr-go/simdr/internal/index"
)

// ckDir is the shard directory that ends a checkpoint's table, read as
// docs/checkpoint.md describes it.
type ckDir struct {
	table         []byte
	depth, shards int
	dir0          int // byte offset of the directory's first group
}

// ckDirMagic is the directory's last word, "SIMDRIXD" in the machine's order.
var ckDirMagic = binary.LittleEndian.Uint64([]byte("SIMDRIXD"))

// readCkDir reads the directory at the end of table; ok is false when its
// last word is not the magic.
func readCkDir(table []byte) (d ckDir, ok bool) {
	last := table[len(table)-64:]
	d = ckDir{table: table, depth: int(byteOrder.Uint64(last[0:])), shards: int(byteOrder.Uint64(last[16:]))}
	d.dir0 = len(table) - 64*int(byteOrder.Uint64(last[32:]))
	return d, byteOrder.Uint64(last[48:]) == ckDirMagic
}

// word returns the offset in table of the directory's i'th key word.
func (d ckDir) word(i int) int { return d.dir0 + (i/4)*64 + (i%4)*16 }

func (d ckDir) get(i int) uint64    { return byteOrder.Uint64(d.table[d.word(i):]) }
func (d ckDir) put(i int, v uint64) { byteOrder.PutUint64(d.table[d.word(i):], v) }

// shard returns the byte range of shard k's groups.
func (d ckDir) shard(k int) (lo, hi int) {
	for j := 0; j <= k; j++ {
		lo, hi = hi, hi+64*int(d.get(3*j)&(1<<56-1))
	}
	return lo, hi
}

// recount sets every shard's used and live words from its slots, as an
// honest forger would.
func (d ckDir) recount() {
	for k := 0; k < d.shards; k++ {
		lo, hi := d.shard(k)
		var used, live uint64
		for i := lo; i+16 <= hi; i += 16 {
			if v := byteOrder.Uint64(d.table[i+8:]); v != 0 {
				used++
				if v&index.Deleted == 0 {
					live++
				}
			}
		}
		d.put(3*k+1, used)
		d.put(3*k+2, live)
	}
}

// TestAttackCheckpointShardDirectory: checkpoints whose shard directory was
// forged, checksums and header counts recomputed. Whatever the directory
// says, a Get must return (no probe without end, no panic); a directory
// that does not add up is refused, and the store then shows exactly what
// its file holds.
func TestAttackCheckpointShardDirectory(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base")
	s := reopenT(t, base, nil)
	model := ckModel(t, s, 2*ckMinEntries, 17)
	s.Close()
	good, err := os.ReadFile(checkpointPath(base))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := readCkDir(good[ckHeaderSize:]); !ok || d.shards < 2 {
		t.Fatalf("directory found %v, %d shards: want two or more", ok, d.shards)
	}
	for _, c := range []struct {
		name    string
		edit    func(d ckDir)
		refused bool // Restore must refuse it (else it may give wrong answers, but must return)
	}{
		{"a shard without a probe end", func(d ckDir) {
			// In shard 1, move each group's first slot into its empty last
			// slot: no group of that shard ends a probe, while the other
			// shards (and the directory) still hold groups that do.
			lo, hi := d.shard(1)
			var some []byte
			for g := lo; g < hi; g += 64 {
				if some == nil && byteOrder.Uint64(d.table[g+8:]) != 0 {
					some = append([]byte(nil), d.table[g:g+16]...)
				}
			}
			for g := lo; g < hi; g += 64 {
				last := d.table[g+48 : g+64]
				if byteOrder.Uint64(last[8:]) == 0 {
					copy(last, d.table[g:g+16])
					if byteOrder.Uint64(last[8:]) == 0 {
						copy(last, some) // a real slot: passes the sampling
					}
					clear(d.table[g : g+16])
				}
			}
			d.recount()
		}, true},
		{"counts moved between shards", func(d ckDir) {
			d.put(1, d.get(1)+5)
			d.put(4, d.get(4)-5)
		}, true},
		{"local depth above the depth", func(d ckDir) {
			d.put(0, uint64(d.depth+1)<<56|d.get(0)&(1<<56-1))
		}, true},
		{"a depth past the index's", func(d ckDir) {
			byteOrder.PutUint64(d.table[len(d.table)-64:], 63)
		}, true},
		{"shard sizes shifted, counts honest", func(d ckDir) {
			d.put(0, d.get(0)+1)
			d.put(3, d.get(3)-1)
			d.recount()
		}, false},
		{"the directory gone: read as one single table", func(d ckDir) {
			clear(d.table[len(d.table)-64:])
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			data, _ := os.ReadFile(base)
			os.WriteFile(path, data, 0o644)
			os.WriteFile(checkpointPath(path), good, 0o600)
			retarget(t, path)
			forgeTable(t, path, func(table []byte) {
				d, _ := readCkDir(table)
				c.edit(d)
			})
			s := reopenT(t, path, &Options{ReadOnly: true})
			getReturns(t, s, "no such key")
			for _, k := range []string{"k1", "k2", "k77", "k4096"} {
				getReturns(t, s, k)
			}
			if c.refused {
				if s.cur.Load().ck != nil {
					t.Fatal("Open used the forged checkpoint")
				}
				checkModel(t, s, model)
			}
		})
	}
}

// singleTable lays out the live keys of ix as the single table of earlier
// versions held them: groups of four slots, a hash's home group h×n>>64,
// linear probing, a group's slots claimed in order.
func singleTable(ix *index.Index) (table []byte, keys int) {
	n := int(float64(ix.Len())/0.68)/4 + 1
	table = make([]byte, 64*n)
	ix.Range(func(h, v uint64) bool {
		g, _ := bits.Mul64(h, uint64(n))
		for i := int(g); ; i = (i + 1) % n {
			for j := 0; j < 4; j++ {
				if s := table[64*i+16*j:]; byteOrder.Uint64(s[8:]) == 0 {
					byteOrder.PutUint64(s, h)
					byteOrder.PutUint64(s[8:], v)
					keys++
					return true
				}
			}
		}
	})
	return table, keys
}

// TestCheckpointSingleTable: a checkpoint of an earlier version (version 1:
// one single table, no directory) still restores, and the next checkpoint
// written is version 2.
func TestCheckpointSingleTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	s := reopenT(t, path, nil)
	model := ckModel(t, s, 2*ckMinEntries, 18)
	table, keys := singleTable(s.cur.Load().ix)
	s.Close()
	ck, err := os.ReadFile(checkpointPath(path))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := decodeCkHeader(ck)
	if v := byteOrder.Uint32(ck[8:]); v != ckVersion {
		t.Fatalf("checkpoint version %d, want %d", v, ckVersion)
	}
	if d, ok := readCkDir(ck[ckHeaderSize:]); !ok || d.shards < 2 {
		t.Fatalf("directory found %v, %d shards: want two or more", ok, d.shards)
	}
	// What an earlier version wrote: the single table, version 1.
	h.groups, h.used, h.live, h.tableCRC = int64(len(table)/64), int64(keys), int64(keys), crc32.ChecksumIEEE(table)
	hb := h.encode()
	byteOrder.PutUint32(hb[8:], ckVersionSingle)
	byteOrder.PutUint32(hb[ckFields:], crc32.ChecksumIEEE(hb[:ckFields]))
	os.WriteFile(checkpointPath(path), append(hb, table...), 0o600)
	s = reopenT(t, path, nil)
	if s.cur.Load().ck == nil {
		t.Fatal("Open did not use the version 1 checkpoint")
	}
	checkStore(t, s, model)
	var b Batch
	for i := 0; i < ckMinEntries; i++ {
		k := fmt.Sprintf("n%d", i)
		b.Put([]byte(k), []byte("x"))
		model[k] = "x"
		if b.Len() == 1000 || i == ckMinEntries-1 {
			if err := s.Apply(&b); err != nil {
				t.Fatal(err)
			}
			b.Reset()
		}
	}
	s.Close()
	if ck, err = os.ReadFile(checkpointPath(path)); err != nil || byteOrder.Uint32(ck[8:]) != ckVersion {
		t.Fatalf("the checkpoint after growing: %v, version %d", err, byteOrder.Uint32(ck[8:]))
	}
	s = reopenT(t, path, nil)
	if s.cur.Load().ck == nil {
		t.Fatal("Open did not use the new checkpoint")
	}
	checkStore(t, s, model)
}
