package format

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time of the calling thread in nanoseconds: the
// machine the figures come from is shared, and wall time there measures the
// other tenants.
func threadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// BenchmarkFindTail times FindTail over torn tails of every shape in
// tornKinds (8, 64 and 256 MiB, past a store of 20,000 entries), and the
// FindTail it replaced (old) as the baseline at 8 MiB. ns/byte is the wall
// time per byte of torn tail, cpu-ns/byte the CPU time of the benchmark's
// thread (what to compare on a loaded machine); B/op bounds the memory. FINDTAIL_OLD=64 also runs the
// baseline at 64 MiB (minutes for some shapes).
//
//	go test -run '^$' -bench FindTail -benchtime 1x ./internal/format
func BenchmarkFindTail(b *testing.B) {
	r := rand.New(rand.NewPCG(21, 22))
	base, ends := build(r, 20000)
	buf := make([]byte, len(base)+256<<20)
	copy(buf, base)
	oldMax := 8
	if os.Getenv("FINDTAIL_OLD") == "64" {
		oldMax = 64
	}
	for _, kind := range tornKinds {
		for _, mib := range []int{8, 64, 256} {
			data := buf[:len(base)+mib<<20]
			made, want := false, int64(-1)
			for _, impl := range []string{"new", "old"} {
				if impl == "old" && mib > oldMax {
					continue
				}
				find := FindTail
				if impl == "old" {
					find = oldFindTail
				}
				b.Run(fmt.Sprintf("%s/%dMiB/%s", kind, mib, impl), func(b *testing.B) {
					if !made {
						tornTail(kind, r, data[len(base):], int64(len(base)), ends)
						made = true
					}
					b.ReportAllocs()
					b.SetBytes(int64(mib) << 20)
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					cpu0 := threadCPU()
					for b.Loop() {
						L, _ := find(data, 0)
						if want < 0 {
							want = L
						}
						if L != want {
							b.Fatalf("found %d, the other %d", L, want)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(mib<<20), "ns/byte")
					b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N)/float64(mib<<20), "cpu-ns/byte")
				})
			}
		}
	}
}
