package index

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestModel checks random Put/Delete/Shrink against a map, including hashes
// that collide on their home slot.
func TestModel(t *testing.T) {
	for _, start := range []int{0, 10, 100000} {
		r := rand.New(rand.NewPCG(uint64(start), 1))
		ix := New(start)
		model := map[uint64]uint64{} // live keys
		deleted := map[uint64]uint64{}
		keys := make([]uint64, 5000)
		for i := range keys {
			keys[i] = r.Uint64()
			if i%7 == 0 {
				keys[i] = uint64(i) // low hashes share home slots
			}
		}
		// oldOK checks the value Put or Delete replaced: the live position, or
		// for a deleted key its tombstone's (growing may forget deleted keys).
		oldOK := func(old, h uint64) bool {
			if p, ok := model[h]; ok {
				return old == p
			}
			if w, ok := deleted[h]; ok {
				return old == Deleted|w || old == 0
			}
			return old == 0
		}
		for op := 0; op < 30000; op++ {
			h := keys[r.IntN(len(keys))]
			pos := uint64(op + 1)
			switch r.IntN(10) {
			case 0, 1, 2:
				old := ix.Delete(h, pos)
				if !oldOK(old, h) {
					t.Fatalf("Delete(%x) old = %x", h, old)
				}
				delete(model, h)
				deleted[h] = pos
			default:
				old := ix.Put(h, pos)
				if !oldOK(old, h) {
					t.Fatalf("Put(%x) old = %x", h, old)
				}
				model[h] = pos
				delete(deleted, h)
			}
			if op%4999 == 0 {
				ix.Shrink()
			}
		}
		checkModel(t, ix, model) // Len, every live key, Range
		for _, h := range keys {
			if _, live := model[h]; !live {
				if pos, ok := ix.Get(h); ok {
					t.Fatalf("Get(%x) = %d, true; want absent", h, pos)
				}
			}
		}
	}
}

// TestBytesPerKey holds the index to its memory target after a Shrink.
func TestBytesPerKey(t *testing.T) {
	ix := New(0)
	const n = 1 << 18
	for i := uint64(1); i <= n; i++ {
		ix.Put(i*0x9E3779B97F4A7C15, i)
	}
	ix.Shrink()
	if per := float64(ix.Bytes()) / n; per > 24 {
		t.Fatalf("%.1f bytes per key, want ≤ 24", per)
	}
}

// TestConcurrentReaders runs readers against one writer (meaningful under
// -race): a key once written with a position never reads as another key's.
func TestConcurrentReaders(t *testing.T) {
	ix := New(0)
	whileWriting(func(int) bool {
		for h := uint64(1); h < 3000; h += 7 {
			// Positions are always h*1000+k: a foreign value would show.
			if pos, ok := ix.Get(h); ok && pos/1000 != h {
				t.Errorf("Get(%d) = %d", h, pos)
				return false
			}
		}
		return true
	}, func() {
		for k := uint64(0); k < 3; k++ {
			for h := uint64(1); h < 3000; h++ {
				if h%3 == 0 {
					ix.Delete(h, h*1000+k)
				} else {
					ix.Put(h, h*1000+k)
				}
			}
			ix.Shrink()
		}
	})
}

// whileWriting calls read on two goroutines, each with its own count of
// calls r, until write returns or read returns false.
func whileWriting(read func(r int) bool, write func()) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for r := 0; !stop.Load() && read(r); r++ {
			}
		})
	}
	write()
	stop.Store(true)
	wg.Wait()
}

// BenchmarkGet looks up random keys of a 1M-key index: "throughput" uses
// each position found (as the store does, to slice the entry), so lookups
// overlap their cache misses; "latency" makes each lookup's key depend on the
// previous result, so they do not.
func BenchmarkGet(b *testing.B) {
	const n = 1 << 20
	ix := New(n)
	hs := make([]uint64, n)
	for i := range hs {
		hs[i] = rand.Uint64()
		ix.Put(hs[i], uint64(i+1))
	}
	b.Run("throughput", func(b *testing.B) {
		var sum uint64
		for i := 0; i < b.N; i++ {
			p, _ := ix.Get(hs[i&(n-1)])
			sum += p
		}
		benchSink = sum
	})
	b.Run("latency", func(b *testing.B) {
		var p uint64
		for i := 0; i < b.N; i++ {
			p, _ = ix.Get(hs[(i+int(p&1))&(n-1)])
		}
		benchSink = p
	})
}

var benchSink uint64
