package index

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// loadRandom puts n random keys (position i+1) and deletes every 5th of
// them, checking the memory bound as it goes; it returns the model.
func loadRandom(t *testing.T, ix *Index, n int, seed uint64) map[uint64]uint64 {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 2))
	model := map[uint64]uint64{}
	var keys []uint64
	for i := 0; i < n; i++ {
		h := r.Uint64()
		ix.Put(h, uint64(i+1))
		model[h] = uint64(i + 1)
		keys = append(keys, h)
		if i%5 == 4 {
			k := keys[r.IntN(len(keys))]
			ix.Delete(k, uint64(i+1))
			delete(model, k)
		}
		if i%100_000 == 99_999 {
			// Every shard stays between fitLoad and maxLoad (deleted
			// slots count as used): never more than 23.5 bytes per used
			// slot, and no shard above maxGroups.
			if _, largest := ix.Shards(); largest > maxGroups*GroupBytes {
				t.Fatalf("after %d keys a shard holds %d bytes, want ≤ %d", i+1, largest, maxGroups*GroupBytes)
			}
		}
	}
	return model
}

func checkModel(t *testing.T, ix *Index, model map[uint64]uint64) {
	t.Helper()
	if ix.Len() != len(model) {
		t.Fatalf("Len = %d, want %d", ix.Len(), len(model))
	}
	for h, want := range model {
		if pos, ok := ix.Get(h); !ok || pos != want {
			t.Fatalf("Get(%x) = %d, %v; want %d", h, pos, ok, want)
		}
	}
	n := 0
	ix.Range(func(h, pos uint64) bool {
		if model[h] != pos {
			t.Fatalf("Range gave %x=%d, want %d", h, pos, model[h])
		}
		n++
		return true
	})
	if n != len(model) {
		t.Fatalf("Range visited %d, want %d", n, len(model))
	}
}

// TestShards grows an index far past one shard, Put by Put and with Load,
// and checks it against a map, through Shrink and its merges.
func TestShards(t *testing.T) {
	ix := New(0)
	model := loadRandom(t, ix, 400_000, 1)
	if n, _ := ix.Shards(); n < 8 {
		t.Fatalf("%d shards after 400,000 keys: the index did not split", n)
	}
	checkModel(t, ix, model)
	if per := float64(ix.Bytes()) / float64(len(model)+len(model)/4); per > 24 {
		t.Fatalf("%.1f bytes per used slot before Shrink, want ≤ 24", per)
	}
	ix.Shrink()
	checkModel(t, ix, model)
	if per := float64(ix.Bytes()) / float64(len(model)); per > 24 {
		t.Fatalf("%.1f bytes per key after Shrink, want ≤ 24", per)
	}
	// Delete nearly everything: Shrink merges the shards back.
	before, _ := ix.Shards()
	i := 0
	for h := range model {
		if i++; i%100 != 0 {
			ix.Delete(h, 1)
			delete(model, h)
		}
	}
	ix.Shrink()
	checkModel(t, ix, model)
	if after, _ := ix.Shards(); after*4 > before {
		t.Fatalf("Shrink left %d of %d shards for %d keys", after, before, len(model))
	}

	// Load, newest first, into an index told too few keys.
	lx := New(1000)
	r := rand.New(rand.NewPCG(3, 4))
	hs, vs := make([]uint64, 300_000), make([]uint64, 300_000)
	want := map[uint64]uint64{}
	for i := range hs {
		hs[i], vs[i] = r.Uint64(), uint64(i+1)
		if i%10 == 9 {
			hs[i] = hs[i-5] // an older state of a key loaded already: ignored
		}
		if _, ok := want[hs[i]]; !ok {
			want[hs[i]] = vs[i]
		}
	}
	for lo := 0; lo < len(hs); lo += 256 {
		hi := min(lo+256, len(hs))
		lx.Load(hs[lo:hi], vs[lo:hi])
	}
	checkModel(t, lx, want)
}

// TestSkewedHashes: hashes that share their top bits cannot be split
// apart; the index must still hold them (growing past maxGroups once the
// directory is as deep as it may be).
func TestSkewedHashes(t *testing.T) {
	defer func(m int) { maxGroups = m }(maxGroups)
	maxGroups = 16 // split at 1 KiB
	ix := New(0)
	model := map[uint64]uint64{}
	r := rand.New(rand.NewPCG(7, 8))
	for i := uint64(1); i <= 3_000; i++ {
		h := r.Uint64() >> 16 // the top 16 bits are all zero
		ix.Put(h, i)
		model[h] = i
	}
	checkModel(t, ix, model)
	if d := ix.d.Load(); d.depth != maxDepth {
		t.Fatalf("directory depth %d, want the cap %d", d.depth, maxDepth)
	}
}

// TestConcurrentSplits runs readers while one writer splits shards (run it
// with -race): a key once written reads its own value or nothing yet, and
// keys written before the readers started are always found.
func TestConcurrentSplits(t *testing.T) {
	defer func(m int) { maxGroups = m }(maxGroups)
	maxGroups = 64 // many splits and directory doublings
	ix := New(0)
	const pre = 10_000
	key := func(i int) uint64 { return uint64(i)*0x9E3779B97F4A7C15 | 1 }
	for i := 0; i < pre; i++ {
		ix.Put(key(i), uint64(i)<<8|2)
	}
	whileWriting(func(r int) bool {
		i := r % pre
		if pos, ok := ix.Get(key(i)); !ok || pos>>8 != uint64(i) {
			t.Errorf("Get(key %d) = %d, %v", i, pos, ok)
			return false
		}
		j := pre + r%200_000
		if pos, ok := ix.Get(key(j)); ok && pos>>8 != uint64(j) {
			t.Errorf("Get(key %d) = %d", j, pos)
			return false
		}
		if r%50_000 == 0 {
			ix.Range(func(h, pos uint64) bool { return true })
		}
		return true
	}, func() {
		for i := pre; i < pre+200_000; i++ {
			ix.Put(key(i), uint64(i)<<8|1)
		}
	})
}

// TestSnapshotShards: WriteSnapshot and WriteQuiet of a sharded index give
// back the same index through Restore, from 64-byte aligned memory, and it
// grows on from there; a damaged directory is ErrSnapshot.
func TestSnapshotShards(t *testing.T) {
	ix := New(0)
	model := loadRandom(t, ix, 200_000, 5)
	for _, quiet := range []bool{false, true} {
		var buf bytes.Buffer
		var info SnapInfo
		var err error
		if quiet {
			info, err = ix.WriteQuiet(&buf)
		} else {
			info, err = ix.WriteSnapshot(&buf)
		}
		if err != nil || info.Groups*GroupBytes != buf.Len() || info.Live != len(model) {
			t.Fatalf("quiet=%v: %+v, %d bytes, %v", quiet, info, buf.Len(), err)
		}
		mem := alignedBytes(buf.Bytes())
		rx, err := Restore(mem, info.Used, info.Live)
		if err != nil {
			t.Fatal(err)
		}
		checkModel(t, rx, model)
		if !owns(rx, mem) {
			t.Fatal("restored index does not live in mem")
		}
		m2 := map[uint64]uint64{}
		for h, p := range model {
			m2[h] = p
		}
		for h, p := range loadRandom(t, rx, 100_000, 6) {
			m2[h] = p
		}
		// loadRandom deletes only its own keys: model's stay.
		checkModel(t, rx, m2)
		if quiet {
			// Damage: counts, a shard size, the magic.
			if _, err := Restore(alignedBytes(buf.Bytes()), info.Used+1, info.Live); !errors.Is(err, ErrSnapshot) {
				t.Fatalf("wrong used: %v", err)
			}
			b := alignedBytes(buf.Bytes())
			n := len(b) / GroupBytes
			dg := dirGroups(len(ix.d.Load().tables()))
			w := unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), len(b)/8)
			w[(n-dg)*8] += 1 // the first shard's groups, one too many
			if _, err := Restore(b, info.Used, info.Live); !errors.Is(err, ErrSnapshot) {
				t.Fatalf("wrong shard size: %v", err)
			}
		}
	}
}

// owns reports whether every current shard of ix lives in mem (none has
// grown since Restore).
func owns(ix *Index, mem []byte) bool {
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	hi := lo + uintptr(len(mem))
	for _, t := range ix.d.Load().tables() {
		if p := uintptr(unsafe.Pointer(unsafe.SliceData(t.groups))); p < lo || p >= hi {
			return false
		}
	}
	return true
}

// alignedBytes copies b into 64-byte aligned memory.
func alignedBytes(b []byte) []byte {
	gs := alignedGroups(len(b) / GroupBytes)
	out := groupBytes(gs)
	copy(out, b)
	return out
}

// TestRestoreForged: snapshots edited as a forger would (or a bug) must be
// refused with ErrSnapshot, never panic, and never restore a shard where a
// lookup of an absent key would probe forever.
func TestRestoreForged(t *testing.T) {
	ix := New(0)
	loadRandom(t, ix, 150_000, 9)
	var buf bytes.Buffer
	info, err := ix.WriteQuiet(&buf)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := ix.Shards()
	if ns < 4 {
		t.Fatalf("%d shards: too few for the test", ns)
	}
	dg := dirGroups(ns)
	words := func(b []byte) []uint64 { return unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), len(b)/8) }
	// dirKey returns the index in words of the i'th directory key word.
	n := buf.Len() / GroupBytes
	dirKey := func(i int) int { return (n-dg)*8 + (i/4)*8 + (i%4)*2 }
	trailer := func(i int) int { return (n-1)*8 + i*2 }
	shardGroups := func(w []uint64, k int) int { return int(w[dirKey(3*k)] & (1<<56 - 1)) }
	for _, c := range []struct {
		name string
		edit func(w []uint64)
	}{
		{"depth beyond the maximum", func(w []uint64) { w[trailer(0)] = maxDepth + 1 }},
		{"no shards", func(w []uint64) { w[trailer(1)] = 0 }},
		{"more shards than entries", func(w []uint64) { w[trailer(1)] = 1<<w[trailer(0)] + 1 }},
		{"directory groups wrong", func(w []uint64) { w[trailer(2)]++ }},
		{"directory larger than the snapshot", func(w []uint64) { w[trailer(2)] = uint64(n + 1) }},
		{"a position in the directory", func(w []uint64) { w[dirKey(0)+1] = 5 }},
		{"local depth above the depth", func(w []uint64) { w[dirKey(0)] = (w[trailer(0)]+1)<<56 | w[dirKey(0)]&(1<<56-1) }},
		{"local depth 0 beside others", func(w []uint64) { w[dirKey(3)] &= 1<<56 - 1 }},
		{"a shard of no groups", func(w []uint64) { w[dirKey(0)] &^= 1<<56 - 1 }},
		{"a shard past the end", func(w []uint64) { w[dirKey(0)] += uint64(n) }},
		{"shard sizes shifted", func(w []uint64) { w[dirKey(0)]++; w[dirKey(3)]-- }},
		{"counts moved between shards", func(w []uint64) {
			w[dirKey(1)] += 3
			w[dirKey(2)] += 3
			w[dirKey(4)] -= 3
			w[dirKey(5)] -= 3
		}},
		{"a shard without a probe end, counts honest", func(w []uint64) {
			// In shard 1, move each group's first slot into its empty last
			// slot: no group of the shard ends a probe any more.
			lo := shardGroups(w, 0)
			for g := lo; g < lo+shardGroups(w, 1); g++ {
				s := w[g*8 : g*8+8]
				if s[7] == 0 {
					s[6], s[7] = s[0], s[1]
					if s[7] == 0 { // an empty group: fill its last slot
						s[6], s[7] = 1, Deleted|1
						w[dirKey(3+1)]++ // used, kept honest
					}
					s[0], s[1] = 0, 0
				}
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := alignedBytes(buf.Bytes())
			c.edit(words(b))
			if _, err := Restore(b, info.Used, info.Live); !errors.Is(err, ErrSnapshot) {
				t.Fatalf("Restore of a forged snapshot: %v, want ErrSnapshot", err)
			}
		})
	}
	// The single table of earlier versions with no probe end.
	old := New(1000)
	for i := uint64(1); i <= 500; i++ {
		old.Put(i*0x9E3779B97F4A7C15, i)
	}
	tb := old.d.Load().tabs[0]
	b := alignedBytes(groupBytes(tb.groups))
	w := words(b)
	used := tb.used
	for g := 0; g < len(w)/8; g++ {
		if s := w[g*8 : g*8+8]; s[7] == 0 {
			s[6], s[7] = uint64(g)<<1|1, Deleted|1
			used++
		}
	}
	if _, err := Restore(b, used, tb.live); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("Restore of a single table with no probe end: %v, want ErrSnapshot", err)
	}
}

// TestRestoreSingleTableGrows: a single table of an earlier version (its
// homes are not a shard's), larger than a shard may be, restores whole, and
// the index grows on from there.
func TestRestoreSingleTableGrows(t *testing.T) {
	const n = 100_000
	st := &single{groups: alignedGroups(groupsFor(n))}
	model := map[uint64]uint64{}
	r := rand.New(rand.NewPCG(21, 22))
	used := 0
	for used < int(float64(len(st.groups)*4)*maxLoad)-1 { // as full as it may get
		h := r.Uint64()
		s := (*table)(nil).slotForSingle(st, h)
		st.groupsStore(s, h, uint64(used+1))
		model[h] = uint64(used + 1)
		used++
	}
	ix, err := Restore(alignedBytes(groupBytes(st.groups)), used, used)
	if err != nil {
		t.Fatal(err)
	}
	checkModel(t, ix, model)
	for i := 0; i < 50_000; i++ {
		h := r.Uint64()
		ix.Put(h, uint64(used+i+1))
		model[h] = uint64(used + i + 1)
	}
	checkModel(t, ix, model)
	if ns, _ := ix.Shards(); ns < 2 {
		t.Fatalf("%d shard after growing a restored %d-group single table", ns, len(st.groups))
	}
}

// TestReserveTouch: after Reserve, the Touch of each key of a batch grows
// the shards the batch could fill, so that its Puts never grow one (the
// store runs them inside its readers' seq window).
func TestReserveTouch(t *testing.T) {
	defer func(m int) { maxGroups = m }(maxGroups)
	maxGroups = 256 // splits too
	ix := New(0)
	model := map[uint64]uint64{}
	r := rand.New(rand.NewPCG(31, 32))
	hs := make([]uint64, 1000)
	for batch := 0; batch < 300; batch++ {
		m := 1 + r.IntN(len(hs))
		for i := range hs[:m] {
			hs[i] = r.Uint64()
			if i > 0 && r.IntN(4) == 0 {
				hs[i] = hs[r.IntN(i)] // a key twice in the batch
			}
		}
		ix.Reserve(m)
		for _, h := range hs[:m] {
			ix.Touch(h)
		}
		id := ix.TableID()
		for i, h := range hs[:m] {
			ix.Put(h, uint64(batch*1000+i+1))
			model[h] = uint64(batch*1000 + i + 1)
		}
		if ix.TableID() != id {
			t.Fatalf("batch %d of %d keys: a Put grew a shard after the touches", batch, m)
		}
	}
	checkModel(t, ix, model)
}

// TestTaggedRefs: the reader's tagged pointer finds the same ref as the
// writer's directory, at every depth (the allocator places the refs of each
// directory differently).
func TestTaggedRefs(t *testing.T) {
	for depth := uint(0); depth <= maxDepth; depth++ {
		for try := 0; try < 8; try++ {
			d := newDir(depth)
			for i := range d.refs {
				d.refs[i].n = uint64(i)
			}
			for _, h := range []uint64{0, 1, 1 << 63, 1<<64 - 1, 0x9E3779B97F4A7C15, 0x0123456789abcdef} {
				if r, want := refAt(d.tagged(), h), &d.refs[d.entry(h)]; r != want {
					t.Fatalf("depth %d, hash %x: ref %p, want %p (entry %d)", depth, h, r, want, d.entry(h))
				}
			}
		}
	}
}

// TestTouchWithoutReserve: Touch and Put without Reserve (no batch begun)
// must not count touches forever and grow a shard at every Touch.
func TestTouchWithoutReserve(t *testing.T) {
	ix := New(0)
	changes, id := 0, ix.TableID()
	const n = 200_000
	for i := uint64(1); i <= n; i++ {
		h := i * 0x9E3779B97F4A7C15
		ix.Touch(h)
		ix.Put(h, i)
		if nid := ix.TableID(); nid != id {
			changes, id = changes+1, nid
		}
	}
	if per := float64(ix.Bytes()) / n; changes > 400 || per > 24 {
		t.Fatalf("%d growth steps for %d keys, %.1f bytes per key", changes, n, per)
	}
}
