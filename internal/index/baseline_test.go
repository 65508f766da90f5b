package index

import (
	"math/bits"
	"math/rand/v2"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

// single is the index before shards (one table, grown whole), kept as the
// baseline of BenchmarkGetVsSingle: its lookup exactly as it was.
type single struct{ groups []group }

func (t *single) home(h uint64) uint64 {
	hi, _ := bits.Mul64(h, uint64(len(t.groups)))
	return hi
}

func (t *single) find(h uint64) uint64 {
	n := uint64(len(t.groups))
	for i := t.home(h); ; {
		g := &t.groups[i]
		v0, v1, v2, v3 := g[0].val.Load(), g[1].val.Load(), g[2].val.Load(), g[3].val.Load()
		r := pick(v0, g[0].key.Load() == h) | pick(v1, g[1].key.Load() == h) |
			pick(v2, g[2].key.Load() == h) | pick(v3, g[3].key.Load() == h)
		if r != 0 || v3 == 0 {
			return r
		}
		if i++; i == n {
			i = 0
		}
	}
}

type singleIndex struct{ t *single }

func (ix *singleIndex) Get(h uint64) (uint64, bool) {
	v := ix.t.find(h)
	return v, v != 0 && v&Deleted == 0
}

// BenchmarkGetVsSingle looks up random keys of a 1M-key index in the
// sharded index and in the single table it replaced, interleaved so that
// both see the same machine (it is shared): rounds of four runs of 16Ki
// lookups, each run on keys of its own, in the order new, old, old, new.
// ns/op is the sharded index's, ratio the median over rounds of its time
// over the single table's (below 1: faster).
func BenchmarkGetVsSingle(b *testing.B) {
	const n = 1 << 20
	hs := make([]uint64, n)
	ix := New(n)
	st := &single{groups: alignedGroups(groupsFor(n))}
	for i := range hs {
		hs[i] = rand.Uint64()
		ix.Put(hs[i], uint64(i+1))
		s := (*table)(nil).slotForSingle(st, hs[i])
		st.groupsStore(s, hs[i], uint64(i+1))
	}
	old := &singleIndex{st}
	throughput := func(get func(uint64) (uint64, bool), from, to int) (sum uint64) {
		for i := from; i < to; i++ {
			p, _ := get(hs[i&(n-1)])
			sum += p
		}
		return sum
	}
	latency := func(get func(uint64) (uint64, bool), from, to int) uint64 {
		var p uint64
		for i := from; i < to; i++ {
			p, _ = get(hs[(i+int(p&1))&(n-1)])
		}
		return p
	}
	for _, mode := range []string{"throughput", "latency"} {
		run := throughput
		if mode == "latency" {
			run = latency
		}
		b.Run(mode, func(b *testing.B) {
			var tNew time.Duration
			var ratios []float64
			var sum uint64
			const chunk = 1 << 14
			for done := 0; done < b.N; done += 4 * chunk {
				m := max(min(chunk, (b.N-done)/4), 1)
				var dNew, dOld time.Duration
				for k, isNew := range []bool{true, false, false, true} {
					get := old.Get
					if isNew {
						get = ix.Get
					}
					from := done + k*m
					t0 := time.Now()
					sum += run(get, from, from+m)
					if d := time.Since(t0); isNew {
						dNew += d
					} else {
						dOld += d
					}
				}
				tNew += dNew
				ratios = append(ratios, float64(dNew)/float64(dOld))
			}
			benchSink = sum
			slices.Sort(ratios)
			b.ReportMetric(float64(tNew.Nanoseconds())/float64(b.N/2), "ns/op")
			b.ReportMetric(ratios[len(ratios)/2], "ratio")
		})
	}
}

// slotForSingle returns the slot for h in the single table st.
func (*table) slotForSingle(st *single, h uint64) *slot {
	n := uint64(len(st.groups))
	for i := st.home(h); ; {
		g := &st.groups[i]
		for j := range g {
			if g[j].val.Load() == 0 || g[j].key.Load() == h {
				return &g[j]
			}
		}
		if i++; i == n {
			i = 0
		}
	}
}

func (st *single) groupsStore(s *slot, h, v uint64) {
	s.key.Store(h)
	s.val.Store(v)
}

// BenchmarkInsert puts 1M random keys in batches of 1,000 as the store's
// writer does (Reserve, Touch each key, then Put each): into an index that
// grows from empty, and into one sized for them (ns/op is per key;
// max-batch-µs the longest batch, growth steps included).
func BenchmarkInsert(b *testing.B) {
	const n = 1 << 20
	hs := make([]uint64, n)
	for i := range hs {
		hs[i] = rand.Uint64()
	}
	for _, presized := range []bool{false, true} {
		name := "growing"
		if presized {
			name = "presized"
		}
		b.Run(name, func(b *testing.B) {
			cpu0 := cpuTime()
			var stop time.Duration // the longest batch: a growth step is in it
			for r := 0; r < b.N; r++ {
				ix := New(0)
				if presized {
					ix = New(n)
				}
				for lo := 0; lo < n; lo += 1000 {
					t0 := time.Now()
					hi := min(lo+1000, n)
					ix.Reserve(hi - lo)
					for _, h := range hs[lo:hi] {
						ix.Touch(h)
					}
					for i, h := range hs[lo:hi] {
						ix.Put(h, uint64(lo+i+1))
					}
					stop = max(stop, time.Since(t0))
				}
			}
			b.ReportMetric(float64(stop.Microseconds()), "max-batch-µs")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/n, "cpu-ns/key")
		})
	}
}

// cpuTime returns the CPU time the process has used (user and system, all
// threads, so the garbage collector's too), in nanoseconds: on a shared
// machine it moves less than wall time with the other jobs' load.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkGrowCopy is one growth step: a full shard of 16,000 groups (at
// the load where it grows) copied into a new one 1.25× its size (ns/op is
// per key copied). SIMDR_NOHUGE=1 in the environment leaves the new shards
// without the huge-page advice, to compare.
func BenchmarkGrowCopy(b *testing.B) {
	if os.Getenv("SIMDR_NOHUGE") != "" {
		hugePages = false
		defer func() { hugePages = true }()
	}
	src := tableOf(alignedGroups(16000), 0, 0)
	for src.used < src.limit {
		src.insert(rand.Uint64(), uint64(src.used+1))
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		nt := newTable(src.live+1, 0, 0)
		nt.copyFrom(src, false)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(src.live), "ns/key")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/float64(src.live), "cpu-ns/key")
}

// BenchmarkGrowCopyOnly is BenchmarkGrowCopy into one shard allocated
// once and cleared each time: the copy without the allocation.
func BenchmarkGrowCopyOnly(b *testing.B) {
	src := tableOf(alignedGroups(16000), 0, 0)
	for src.used < src.limit {
		src.insert(rand.Uint64(), uint64(src.used+1))
	}
	nt := newTable(src.live+1, 0, 0)
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		clear(nt.groups)
		nt.copyFrom(src, false)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(src.live), "ns/key")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/float64(src.live), "cpu-ns/key")
}
