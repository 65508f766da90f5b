package simdr

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/index"
)

// rustImage builds a store file the way a program that knows nothing of
// checkpoints (the Rust original) would: n entries of prefix%06d with 8-byte
// values, then "done" = "1".
func rustImage(prefix string, n int) []byte {
	var b []byte
	for i := 0; i < n; i++ {
		b = format.AppendEntry(b, int64(len(b)), Hash([]byte(fmt.Sprintf("%s%06d", prefix, i))), []byte(fmt.Sprintf("v%07d", i)))
	}
	return format.AppendEntry(b, int64(len(b)), Hash([]byte("done")), []byte("1"))
}

// TestAttackCheckpointReplacedStore: the store file replaced by another
// program's file of the same layout but other keys (restored with cp, which
// keeps the inode, or deleted and written again, which on ext4 reuses it
// at once) ends in the same 20 bytes of metadata at the checkpoint's tail.
// The checkpoint is a cache: Open must show the new file's keys, never the
// old file's.
func TestAttackCheckpointReplacedStore(t *testing.T) {
	n := ckMinEntries + 10
	for _, how := range []string{"cp over", "rm and write"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			if err := os.WriteFile(path, rustImage("a", n), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.Close() // the walk found 65,546 entries: Close writes a checkpoint
			if _, err := os.Stat(checkpointPath(path)); err != nil {
				t.Fatalf("no checkpoint written: %v", err)
			}
			fi0, _ := os.Stat(path)
			if how == "rm and write" {
				os.Remove(path)
			}
			if err := os.WriteFile(path, rustImage("b", n), 0o644); err != nil {
				t.Fatal(err)
			}
			fi1, _ := os.Stat(path)
			if d0, i0, _, _ := fileID(fi0); true {
				if d1, i1, _, _ := fileID(fi1); d0 != d1 || i0 != i1 {
					t.Skip("the file system gave the new file another inode")
				}
			}
			s, err = Open(path, &Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, i := range []int{0, 1, n / 2, n - 1} {
				if got := getT(t, s, fmt.Sprintf("b%06d", i)); got != fmt.Sprintf("v%07d", i) {
					t.Errorf("Get(b%06d) = %q: the old file's checkpoint was used for the new file", i, got)
				}
				if got := getT(t, s, fmt.Sprintf("a%06d", i)); got != "<absent>" {
					t.Errorf("Get(a%06d) = %q: a key of the replaced file", i, got)
				}
			}
		})
	}
}

// TestAttackCheckpointFullTable: a checkpoint whose table has no empty slot
// left, its header claiming the counts of the real one (CRCs recomputed, as
// a forger or a buggy writer would). A Get of an absent key probes for an
// empty slot: it must still return, not spin forever.
func TestAttackCheckpointFullTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	s := reopenT(t, path, nil)
	model := ckModel(t, s, 2*ckMinEntries, 9)
	s.Close()
	b, err := os.ReadFile(checkpointPath(path))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := decodeCkHeader(b)
	table := b[ckHeaderSize:]
	var some uint64
	for i := 0; i+16 <= len(table); i += 16 {
		if v := byteOrder.Uint64(table[i+8:]); v != 0 {
			some = v &^ index.Deleted
			break
		}
	}
	for i, k := 0, uint64(1); i+16 <= len(table); i += 16 {
		if byteOrder.Uint64(table[i+8:]) == 0 {
			byteOrder.PutUint64(table[i:], k*0x9e3779b97f4a7c15|1) // a key no one asks for
			byteOrder.PutUint64(table[i+8:], some|index.Deleted)   // deleted: Get says not found
			k++
		}
	}
	h.tableCRC = crc32.ChecksumIEEE(table)
	copy(b, h.encode())
	os.WriteFile(checkpointPath(path), b, 0o600)
	s = reopenT(t, path, &Options{ReadOnly: true})
	done := make(chan error, 1)
	go func() {
		_, err := s.Get([]byte("no such key"))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of an absent key: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Get of an absent key never returned: the restored table has no empty slot to end its probe")
	}
	checkModel(t, s, model)
}

// entryEnds returns the tail after each entry of a store image, oldest first.
func entryEnds(data []byte) []format.Entry {
	var es []format.Entry
	format.Walk(data, 0, int64(len(data)), func(e format.Entry) bool {
		es = append(es, e)
		return true
	})
	for i, j := 0, len(es)-1; i < j; i, j = i+1, j-1 {
		es[i], es[j] = es[j], es[i]
	}
	return es
}

// TestAttackCheckpointDamageThenRepair: a checkpoint covers most of the
// file; then a prev link breaks, above the checkpoint's tail or below it.
// Above: Open refuses the damage (ErrCorrupt) with or without the
// checkpoint. Below: Open with the checkpoint does not look there
// (documented), but Verify must see it. Either way Repair keeps every
// entry, and the next Open (the old checkpoint still beside the file) shows
// exactly the model and verifies.
func TestAttackCheckpointDamageThenRepair(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	s := reopenT(t, base, nil)
	model := ckModel(t, s, 2*ckMinEntries, 11)
	s.Close()
	ckBytes, err := os.ReadFile(checkpointPath(base))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := decodeCkHeader(ckBytes)
	// A few entries more, above the checkpoint (too few for Close to write one).
	s = reopenT(t, base, &Options{CheckpointBytes: -1})
	for i := 0; i < 50; i++ {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("late-%d", i)
		putT(t, s, k, v)
		model[k] = v
	}
	s.Close()
	storeBytes, _ := os.ReadFile(base)
	es := entryEnds(storeBytes)
	var above, below format.Entry
	for _, e := range es {
		if e.Prev > h.tail && above.End == 0 {
			above = e
		}
		if e.Next() < h.tail-10000 && e.Prev > 1000 {
			below = e
		}
	}
	for _, c := range []struct {
		name       string
		e          format.Entry
		openRefuse bool
	}{
		{"above", above, true},
		{"below", below, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			img := append([]byte(nil), storeBytes...)
			img[c.e.End+8] ^= 0x04 // prev, bit 2 of its low byte: an 8-aligned offset nowhere near an entry end
			os.WriteFile(path, img, 0o644)
			os.WriteFile(checkpointPath(path), ckBytes, 0o600)
			retarget(t, path)
			s, err := Open(path, nil)
			if c.openRefuse {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open of a broken chain above the checkpoint: %v, want ErrCorrupt", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Verify(); err == nil {
					t.Error("Verify found nothing wrong with a broken prev link below the checkpoint's tail")
				}
				s.Close()
			}
			r, err := Open(path, &Options{Repair: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep := r.Repaired(); rep == nil || rep.Kept != len(es) {
				t.Errorf("Repair: %+v, want every one of %d entries kept", rep, len(es))
			}
			r.Close()
			s = reopenT(t, path, nil)
			checkStore(t, s, model)
		})
	}
}

// TestAttackCheckpointCloseRace: background checkpoints every few KiB while
// writers, readers and Close race; under -race. Every acknowledged write is
// there after reopening (with whatever checkpoint was left), and the
// checkpoint agrees with a full walk.
func TestAttackCheckpointCloseRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r")
	s0 := reopenT(t, path, &Options{CheckpointBytes: 4 << 10})
	model := ckModel(t, s0, ckMinEntries+100, 12)
	s0.Close()
	var mu sync.Mutex
	for round := 0; round < 3; round++ {
		s, err := Open(path, &Options{CheckpointBytes: 4 << 10})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					k, v := fmt.Sprintf("w%d-%d", w, i%5000), fmt.Sprintf("r%d-%d-%d", round, w, i)
					if err := s.Put([]byte(k), []byte(v)); err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Error(err)
						}
						return
					}
					mu.Lock()
					model[k] = v
					mu.Unlock()
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if _, err := s.Get([]byte(fmt.Sprintf("k%d", i%ckMinEntries))); errors.Is(err, ErrClosed) {
					return
				}
			}
		}()
		time.Sleep(200 * time.Millisecond) // let several background checkpoints start
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
	s2 := reopenT(t, path, nil)
	checkModel(t, s2, model)
	want, got := statsWithoutCheckpoint(t, path), s2.Stats()
	got.IndexBytes, want.IndexBytes = 0, 0 // a restored table may be larger
	if got != want {
		t.Fatalf("stats with the checkpoint %+v, without %+v", got, want)
	}
}

// TestAttackCheckpointTmpSymlink: the checkpoint is written through a fixed
// temporary name beside the store. A symlink planted there (by another user
// of a shared directory, or left by a tool) must not make the writer
// truncate and overwrite the file it points to: here, the store itself.
func TestAttackCheckpointTmpSymlink(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, self := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "s")
		target := victim
		if self {
			target = path
		}
		s, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		model := ckModel(t, s, ckMinEntries+ckMinEntries/4, 13)
		os.Remove(checkpointPath(path) + ".tmp")
		if err := os.Symlink(target, checkpointPath(path)+".tmp"); err != nil {
			t.Fatal(err)
		}
		s.Close() // writes a checkpoint
		if b, _ := os.ReadFile(victim); string(b) != "precious" {
			t.Fatalf("the checkpoint was written through the planted symlink into %s", victim)
		}
		s, err = Open(path, nil)
		if err != nil {
			t.Fatalf("the store after a checkpoint through a symlink to it: %v", err)
		}
		checkModel(t, s, model)
		s.Close()
	}
}

// forgeTable rewrites the checkpoint of path with edit applied to its table
// (slots of 16 bytes: key, value), the header's counts and CRCs recomputed
// from the result, as a forger would.
func forgeTable(t *testing.T, path string, edit func(table []byte)) {
	t.Helper()
	b, err := os.ReadFile(checkpointPath(path))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := decodeCkHeader(b)
	table := b[ckHeaderSize:]
	edit(table)
	h.used, h.live = 0, 0
	for i := 0; i+16 <= len(table); i += 16 {
		if v := byteOrder.Uint64(table[i+8:]); v != 0 {
			h.used++
			if v&index.Deleted == 0 {
				h.live++
			}
		}
	}
	h.tableCRC = crc32.ChecksumIEEE(table)
	copy(b, h.encode())
	if err := os.WriteFile(checkpointPath(path), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// getReturns runs Get(key) on s and fails the test if it panics or does
// not return within 20 s (a probe that never ends).
func getReturns(t *testing.T, s *Store, key string) {
	t.Helper()
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		s.Get([]byte(key))
	}()
	select {
	case p := <-done:
		if p != nil {
			t.Fatalf("Get(%q) panicked: %v", key, p)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("Get(%q) never returned", key)
	}
}

// TestAttackCheckpointNoProbeEnd: a forged table whose counts are honest
// and leave a quarter of the slots empty, but never the last slot of a
// group (a real table claims a group's slots in order). A lookup ends only
// at a group whose last slot is empty: a Get of an absent key must still
// return.
func TestAttackCheckpointNoProbeEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	s := reopenT(t, path, nil)
	ckModel(t, s, 2*ckMinEntries, 14)
	s.Close()
	forgeTable(t, path, func(table []byte) {
		var gk, gv uint64 // a real slot: its copies pass the sampling
		for i := 0; i+16 <= len(table); i += 16 {
			if v := byteOrder.Uint64(table[i+8:]); v != 0 {
				gk, gv = byteOrder.Uint64(table[i:]), v
				break
			}
		}
		for g := 0; g+64 <= len(table); g += 64 {
			last := table[g+48 : g+64]
			if byteOrder.Uint64(last[8:]) == 0 {
				// move slot 0 into the last slot (or fill it), leaving slot 0 empty
				copy(last, table[g:g+16])
				if byteOrder.Uint64(last[8:]) == 0 {
					byteOrder.PutUint64(last, gk)
					byteOrder.PutUint64(last[8:], gv|index.Deleted)
				}
				clear(table[g : g+16])
			}
		}
	})
	s = reopenT(t, path, &Options{ReadOnly: true})
	t.Logf("checkpoint used: %v", s.cur.Load().ck != nil)
	getReturns(t, s, "no such key")
}

// TestAttackCheckpointDuplicateKey: a forged table holding one key in two
// slots, each slot's position valid on its own. The index's lookup ORs the
// values of matching slots, so a Get of that key reads a position no slot
// names: it must not panic (or read outside the file).
func TestAttackCheckpointDuplicateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	s := reopenT(t, path, nil)
	ckModel(t, s, 2*ckMinEntries, 15)
	s.Close()
	var key uint64
	forgeTable(t, path, func(table []byte) {
		// a group past the first chunk's first used slot (the sampled one)
		for g := 64 * 64; g+64 <= len(table); g += 64 {
			if byteOrder.Uint64(table[g+8:]) != 0 && byteOrder.Uint64(table[g+24:]) != 0 {
				key = byteOrder.Uint64(table[g:])
				byteOrder.PutUint64(table[g+16:], key)
				// each valid alone (length <= end); ORed, the length passes the end
				byteOrder.PutUint64(table[g+8:], 0x4000|0x3fff<<lenShift)
				byteOrder.PutUint64(table[g+24:], 0x4000|0x4000<<lenShift)
				return
			}
		}
		t.Fatal("no group with two used slots")
	})
	s = reopenT(t, path, &Options{ReadOnly: true})
	t.Logf("checkpoint used: %v", s.cur.Load().ck != nil)
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		s.GetHash(key)
	}()
	if p := <-done; p != nil {
		t.Fatalf("GetHash of a key held twice panicked: %v", p)
	}
}

// TestAttackCheckpointCloseReaders: the index of a Store opened from a
// checkpoint lives in the checkpoint's mapping. Gets racing Close (which
// Close promises are safe: they return ErrClosed) must not fault on that
// mapping once Close releases it.
func TestAttackCheckpointCloseReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c")
	s0 := reopenT(t, path, nil)
	ckModel(t, s0, 2*ckMinEntries, 16)
	s0.Close()
	for round := 0; round < 20; round++ {
		s, err := Open(path, &Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if s.cur.Load().ck == nil {
			t.Fatal("the checkpoint was not used")
		}
		var wg sync.WaitGroup
		for r := 0; r < 2; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					_, err := s.Get([]byte(fmt.Sprint("absent", i)))
					if errors.Is(err, ErrClosed) {
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		s.Close()
		wg.Wait()
	}
}
