package index

import (
	"math/bits"
	"math/rand/v2"
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

// BenchmarkGetVsSingle looks up the same random keys of a 1M-key index in
// the sharded index and in the single table it replaced, alternating
// between them every 64Ki lookups so that both see the same machine (it is
// shared): ns/op is the sharded index's, ratio its time over the single
// table's (below 1: faster).
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
	for _, mode := range []string{"throughput", "latency"} {
		b.Run(mode, func(b *testing.B) {
			var tNew, tOld time.Duration
			var sum uint64
			const chunk = 1 << 16
			for done := 0; done < b.N; done += chunk {
				m := min(chunk, b.N-done)
				t0 := time.Now()
				if mode == "throughput" {
					for i := done; i < done+m; i++ {
						p, _ := ix.Get(hs[i&(n-1)])
						sum += p
					}
				} else {
					var p uint64
					for i := done; i < done+m; i++ {
						p, _ = ix.Get(hs[(i+int(p&1))&(n-1)])
					}
					sum += p
				}
				t1 := time.Now()
				if mode == "throughput" {
					for i := done; i < done+m; i++ {
						p, _ := old.Get(hs[i&(n-1)])
						sum += p
					}
				} else {
					var p uint64
					for i := done; i < done+m; i++ {
						p, _ = old.Get(hs[(i+int(p&1))&(n-1)])
					}
					sum += p
				}
				t2 := time.Now()
				tNew += t1.Sub(t0)
				tOld += t2.Sub(t1)
			}
			benchSink = sum
			b.ReportMetric(float64(tNew.Nanoseconds())/float64(b.N), "ns/op")
			b.ReportMetric(float64(tOld.Nanoseconds())/float64(b.N), "single-ns/op")
			b.ReportMetric(float64(tNew)/float64(tOld), "ratio")
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
