package index

import "testing"

// TestLoadGrowthKeepsTombstones: Load fed more keys than New was told grows
// the table (grows or splits its shards), and a key loaded as deleted stays
// deleted: its older value, met later in the newest-first walk, must not
// come back as live.
func TestLoadGrowthKeepsTombstones(t *testing.T) {
	const n = 5000
	h := func(i int) uint64 { return uint64(i+1) * 0x9E3779B97F4A7C15 }
	defer func(m int) { maxGroups = m }(maxGroups)
	for _, tc := range []struct {
		name      string
		batch     int // keys per Load call
		maxGroups int
	}{
		{"one call", 2 * n, maxGroups}, {"batches of 256", 256, maxGroups}, {"batches of 1", 1, maxGroups},
		{"one call, splits", 2 * n, 16}, {"batches of 256, splits", 256, 16}, {"batches of 1, splits", 1, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			maxGroups = tc.maxGroups
			// Newest first: a tombstone for every even key and a value for
			// every odd one, then an older value of every key.
			var hs, vs []uint64
			for i := range n {
				hs = append(hs, h(i))
				if i%2 == 0 {
					vs = append(vs, Deleted|uint64(10*n+i))
				} else {
					vs = append(vs, uint64(10*n+i))
				}
			}
			for i := range n {
				hs = append(hs, h(i))
				vs = append(vs, uint64(i+1))
			}
			ix := New(1) // far too small: Load must grow it
			for lo := 0; lo < len(hs); lo += tc.batch {
				hi := min(lo+tc.batch, len(hs))
				ix.Load(hs[lo:hi], vs[lo:hi])
			}
			if ix.Len() != n/2 {
				t.Fatalf("Len = %d, want %d", ix.Len(), n/2)
			}
			for i := range n {
				pos, ok := ix.Get(h(i))
				switch {
				case i%2 == 0 && (ok || ix.Lookup(h(i)) != Deleted|uint64(10*n+i)):
					t.Fatalf("key %d: Get = %d, %v; Lookup = %x: want deleted by its tombstone", i, pos, ok, ix.Lookup(h(i)))
				case i%2 == 1 && (!ok || pos != uint64(10*n+i)):
					t.Fatalf("key %d: Get = %d, %v; want its newest value %d", i, pos, ok, 10*n+i)
				}
			}
			live := 0
			ix.Range(func(uint64, uint64) bool { live++; return true })
			if live != n/2 {
				t.Fatalf("Range visits %d keys, want %d", live, n/2)
			}
			if ns, _ := ix.Shards(); tc.maxGroups == 16 && ns < 8 {
				t.Fatalf("%d shards: the index did not split", ns)
			}
		})
	}
}
