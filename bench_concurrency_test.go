package simdr

// Concurrency figures (docs/concurrency.md):
//
//	BenchmarkEntries, BenchmarkForEachParallel  reading every value (CRC-32 of
//	    its bytes, or SHA-256 with -simdr.iterfn=sha256) in one goroutine vs
//	    several; -simdr.iterbytes sets the store's size (1<<30 for the issue's
//	    figure), SIMDR_BENCH_ITER_DIR keeps the store between runs.
//	BenchmarkGetThroughput  random Gets from 1 and 2 goroutines over
//	    -simdr.getkeys keys of 100-byte values; ns/op is wall time per Get, so
//	    the speed-up is ns/op(1) / ns/op(2); cpu-ns/op is the process's CPU
//	    time per Get (on a shared machine, the speed-up two free cores give
//	    is 2 × cpu-ns/op(1) / cpu-ns/op(2)).
//	BenchmarkGetLatency  the distribution of single Gets (p50, p99, p999 in
//	    ns) alone, beside a goroutine burning CPU, and beside a writer
//	    streaming -simdr.streamvalue values through PutReader.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	ccIterBytes   = flag.Int64("simdr.iterbytes", 32<<20, "store size for BenchmarkEntries and BenchmarkForEachParallel")
	ccIterValue   = flag.Int("simdr.itervalue", 4096, "value size for BenchmarkEntries and BenchmarkForEachParallel")
	ccGetKeys     = flag.Int("simdr.getkeys", 1_000_000, "keys (100-byte values) for BenchmarkGetThroughput and BenchmarkGetLatency")
	ccIterFn      = flag.String("simdr.iterfn", "crc", "what BenchmarkEntries and BenchmarkForEachParallel compute per value: crc (CRC-32, memory-bound) or sha256 (CPU-bound)")
	ccStreamValue = flag.Int64("simdr.streamvalue", 256<<20, "size of each value the writer streams in BenchmarkGetLatency")
)

// ccIterStore opens (building it if needed) a store of about
// *ccIterBytes bytes of *ccIterValue-byte values.
func ccIterStore(b *testing.B) (*Store, int64) {
	dir := os.Getenv("SIMDR_BENCH_ITER_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("iter-%d-%d.simdr", *ccIterBytes, *ccIterValue))
	if _, err := os.Stat(path); err != nil {
		tmp := path + ".building"
		os.Remove(tmp)
		s, err := Open(tmp, nil)
		if err != nil {
			b.Fatal(err)
		}
		v := make([]byte, *ccIterValue)
		var batch Batch
		n := int(*ccIterBytes / int64(*ccIterValue))
		for i := range n {
			ccFill(v, 0, uint64(i))
			batch.Put(binary.LittleEndian.AppendUint64(nil, uint64(i)), v)
			if batch.Len() == 256 || i == n-1 {
				if err := s.Apply(&batch); err != nil {
					b.Fatal(err)
				}
				batch.Reset()
			}
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			b.Fatal(err)
		}
	}
	s, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	var total int64
	for e := range s.Entries() { // warm: fault the mapping in once
		total += int64(e.Len())
		crc32.ChecksumIEEE(e.Bytes())
	}
	return s, total
}

// ccDigest is the per-value work of the iteration benchmarks (-simdr.iterfn).
func ccDigest(v []byte) uint32 {
	if *ccIterFn == "sha256" {
		d := sha256.Sum256(v)
		return binary.LittleEndian.Uint32(d[:])
	}
	return crc32.ChecksumIEEE(v)
}

// BenchmarkEntries reads every value once per op, ranging over Entries in
// one goroutine (the baseline for BenchmarkForEachParallel).
func BenchmarkEntries(b *testing.B) {
	s, total := ccIterStore(b)
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		var sum uint32
		for e := range s.Entries() {
			sum += ccDigest(e.Bytes())
		}
		_ = sum
	}
}

// BenchmarkForEachParallel reads every value once per op with
// ForEachParallel.
func BenchmarkForEachParallel(b *testing.B) {
	s, total := ccIterStore(b)
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprint("workers=", workers), func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				var sum atomic.Uint32
				if err := s.ForEachParallel(context.Background(), workers, func(e Entry) error {
					sum.Add(ccDigest(e.Bytes()))
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// ccGetStore builds a store of n keys with 100-byte values and returns it
// open, with the keys in a random order.
func ccGetStore(b *testing.B, n int) (*Store, [][]byte) {
	path := filepath.Join(b.TempDir(), "get.simdr")
	s, err := Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	keys := make([][]byte, n)
	v := make([]byte, 100)
	var batch Batch
	for i := range n {
		keys[i] = []byte(fmt.Sprintf("key-%09d", i))
		ccFill(v, 0, uint64(i))
		batch.Put(keys[i], v)
		if batch.Len() == 1000 || i == n-1 {
			if err := s.Apply(&batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	// A fixed random order (not the write order, which would walk the file).
	for i := n - 1; i > 0; i-- {
		j := int(ccMix(uint64(i)) % uint64(i+1))
		keys[i], keys[j] = keys[j], keys[i]
	}
	for _, k := range keys { // warm: fault the mapping in once
		if _, err := s.Get(k); err != nil {
			b.Fatal(err)
		}
	}
	return s, keys
}

// BenchmarkGetThroughput: random Gets of 100-byte values over -simdr.getkeys
// keys, from 1 and from 2 goroutines; each op is one Get, ns/op is wall time,
// so throughput is 1/ns/op and the speed-up ns/op(1)/ns/op(2).
func BenchmarkGetThroughput(b *testing.B) {
	s, keys := ccGetStore(b, *ccGetKeys)
	for _, g := range []int{1, 2} {
		b.Run(fmt.Sprint("goroutines=", g), func(b *testing.B) {
			var wg sync.WaitGroup
			var bad atomic.Int64
			per := b.N / g
			cpu0 := ccCPUTime()
			b.ResetTimer()
			for w := range g {
				wg.Go(func() {
					off := w * len(keys) / g
					var sum int
					for i := range per {
						e, err := s.Get(keys[(off+i)%len(keys)])
						if err != nil {
							bad.Add(1)
							continue
						}
						sum += int(e.Bytes()[99])
					}
					_ = sum
				})
			}
			wg.Wait()
			b.StopTimer()
			cpu := ccCPUTime() - cpu0
			if bad.Load() != 0 {
				b.Fatalf("%d Gets failed", bad.Load())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "MGets/s")
			// CPU time per Get: equal for 1 and 2 goroutines means the Gets
			// do not slow each other down, whatever else the machine runs.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// ccCPUTime returns the CPU time (user and system) the process has used.
func ccCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ccStreamSource yields left bytes of 0x5A, then io.EOF.
type ccStreamSource struct{ left int64 }

func (r *ccStreamSource) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.left)
	for i := range p[:n] {
		p[i] = 0x5A
	}
	r.left -= n
	return int(n), nil
}

// BenchmarkGetLatency: the latency of single random Gets (p50, p99, p999, in
// ns): alone (quiet), beside a goroutine that only burns CPU (spinning), and
// beside a writer streaming -simdr.streamvalue values with PutReader, one
// after the other, the whole time (streaming).
func BenchmarkGetLatency(b *testing.B) {
	s, keys := ccGetStore(b, *ccGetKeys)
	for _, name := range []string{"quiet", "spinning", "streaming"} {
		writer := name == "streaming"
		b.Run(name, func(b *testing.B) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var streamed atomic.Int64
			if name == "spinning" {
				// The baseline for the other core being busy, without I/O.
				wg.Go(func() {
					x := uint64(1)
					for {
						select {
						case <-stop:
							streamed.Store(int64(x & 1))
							return
						default:
						}
						for range 1000 {
							x = ccMix(x)
						}
					}
				})
			}
			if writer {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						n, err := s.PutReader([]byte("big"), &ccStreamSource{left: *ccStreamValue})
						if err != nil {
							b.Error(err)
							return
						}
						streamed.Add(n)
					}
				})
				time.Sleep(20 * time.Millisecond) // the stream is under way
			}
			lat := make([]int64, b.N)
			b.ResetTimer()
			for i := range b.N {
				k := keys[i%len(keys)]
				t0 := time.Now()
				e, err := s.Get(k)
				lat[i] = int64(time.Since(t0))
				if err != nil || e.Len() != 100 {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) }
			b.ReportMetric(q(0.50), "p50-ns")
			b.ReportMetric(q(0.99), "p99-ns")
			b.ReportMetric(q(0.999), "p999-ns")
			if writer {
				b.ReportMetric(float64(streamed.Load())/b.Elapsed().Seconds()/(1<<20), "streamed-MiB/s")
			}
		})
	}
}
