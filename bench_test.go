package simdr

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	benchKeys   = flag.Int("simdr.keys", 1_000_000, "keys in the store for Get, Open and Compact benchmarks")
	benchStream = flag.Int64("simdr.stream", 256<<20, "value size for the PutReader benchmark (1<<30 for the issue's figure)")
)

// benchKey writes the i'th benchmark key into k (8 bytes).
func benchKey(k []byte, i int) []byte {
	binary.LittleEndian.PutUint64(k, uint64(i)*0x9E3779B97F4A7C15)
	return k
}

// loadBench fills a store with n keys of 100-byte values, in batches of 1,000.
func loadBench(b testing.TB, path string, n int) { loadBenchTTL(b, path, n, 0) }

// loadBenchTTL is loadBench that writes every ttlEvery-th key with PutTTL (an
// hour), none when ttlEvery is 0.
func loadBenchTTL(b testing.TB, path string, n, ttlEvery int) {
	s, err := Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var batch Batch
	v := bytes.Repeat([]byte("v"), 100)
	k := make([]byte, 8)
	for i := 0; i < n; i++ {
		if ttlEvery > 0 && i%ttlEvery == 0 {
			batch.PutTTL(benchKey(k, i), v, time.Hour)
		} else {
			batch.Put(benchKey(k, i), v)
		}
		if batch.Len() == 1000 || i == n-1 {
			if err := s.Apply(&batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
}

// TestGetAllocatesNothing: the read path allocates nothing, found or not.
func TestGetAllocatesNothing(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "k", "value")
	key, missing := []byte("k"), []byte("missing")
	if n := testing.AllocsPerRun(1000, func() {
		e, _ := s.Get(key)
		_ = e.Bytes()
		s.Get(missing)
		s.Has(key)
		s.GetHash(42)
	}); n != 0 {
		t.Fatalf("Get allocates %.1f times per call", n)
	}
}

// TestIndexMemory holds the index to ≤ 24 bytes per key after an Open.
func TestIndexMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m")
	const n = 100_000
	loadBench(t, path, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := reopenT(t, path, nil)
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := s.Stats()
	if per := float64(st.IndexBytes) / float64(st.LiveKeys); st.LiveKeys != n || per > 24 {
		t.Fatalf("%d keys, %.1f index bytes per key, want ≤ 24", st.LiveKeys, per)
	}
	// The heap the open Store holds (index and all) measured by the runtime.
	// Signed: memory freed meanwhile by other tests' timers (a closed
	// mapping's grace period ending) can make after smaller than before.
	if per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n; per > 26 {
		t.Fatalf("open store holds %.1f heap bytes per key, want ≤ 24 (+ small overhead)", per)
	}
	runtime.KeepAlive(s)
}

// BenchmarkGet is the read path against a Go map of the same values (the
// physical limit), over the same random key order, one goroutine. It uses a
// plain b.N loop: b.Loop keeps every call's results alive in memory, which
// costs Get's seven-word result far more than the map's one and doubles its
// figure.
func BenchmarkGet(b *testing.B) {
	n := *benchKeys
	path := filepath.Join(b.TempDir(), "g")
	loadBench(b, path, n)
	s, err := Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = benchKey(make([]byte, 8), int(uint64(i)*2654435761%uint64(n)))
	}
	b.Run("simdr", func(b *testing.B) {
		b.ReportAllocs()
		b.ResetTimer()
		var sum int
		for i := 0; i < b.N; i++ {
			e, err := s.Get(keys[i%n])
			if err != nil {
				b.Fatal(err)
			}
			sum += int(e.Bytes()[0])
		}
		_ = sum
	})
	// The baseline: a bare map[uint64][]byte lookup plus hashing the key.
	b.Run("map", func(b *testing.B) {
		m := make(map[uint64][]byte, n)
		v := bytes.Repeat([]byte("v"), 100)
		for _, k := range keys {
			m[Hash(k)] = bytes.Clone(v)
		}
		b.ReportAllocs()
		b.ResetTimer()
		var sum int
		for i := 0; i < b.N; i++ {
			sum += int(m[Hash(keys[i%n])][0])
		}
		_ = sum
	})
}

// BenchmarkApply loads batches of 1,000 × 100-byte values; entries/s is
// b.N*1000/s. The baseline writes the same bytes to a plain file.
func BenchmarkApply(b *testing.B) {
	v := bytes.Repeat([]byte("v"), 100)
	b.Run("simdr", func(b *testing.B) {
		s, err := Open(filepath.Join(b.TempDir(), "a"), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		var batch Batch
		k := make([]byte, 8)
		b.SetBytes(1000 * 100)
		for i := 0; b.Loop(); i++ {
			batch.Reset()
			for j := 0; j < 1000; j++ {
				batch.Put(benchKey(k, i*1000+j), v)
			}
			if err := s.Apply(&batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("file", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "f"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 1000*128) // the same bytes simdr writes: 100 + 20 meta, padded
		b.SetBytes(1000 * 100)
		for b.Loop() {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOpen reopens a store of -simdr.keys entries next to reading the
// same file once sequentially: with the checkpoint a clean Close leaves
// ("simdr"), without any ("walk": the cost of the first Open, and of an Open
// after a crash before any checkpoint), and after a crash with a checkpoint
// taken at 90 % of the load ("crash": the checkpoint plus a walk of the last
// tenth). read-checkpoint reads the checkpoint file once.
func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "o")
	loadBench(b, path, *benchKeys)
	open := benchOpen
	b.Run("simdr", func(b *testing.B) { open(b, path) })
	walk := filepath.Join(b.TempDir(), "w")
	copyFileB(b, path, walk)
	b.Run("walk", func(b *testing.B) { open(b, walk) })
	// A checkpoint of the first 90 %, then the rest written and no Close.
	crash := filepath.Join(b.TempDir(), "c")
	loadBench(b, crash, *benchKeys*9/10)
	s, err := Open(crash, nil)
	if err != nil {
		b.Fatal(err)
	}
	var batch Batch
	v := bytes.Repeat([]byte("v"), 100)
	k := make([]byte, 8)
	for i := *benchKeys * 9 / 10; i < *benchKeys; i++ {
		batch.Put(benchKey(k, i), v)
		if batch.Len() == 1000 {
			s.Apply(&batch)
			batch.Reset()
		}
	}
	s.Apply(&batch)
	b.Run("crash", func(b *testing.B) { open(b, crash) })
	s.Close()
	read := func(b *testing.B, path string) {
		buf := make([]byte, 1<<20)
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
			f.Close()
		}
	}
	b.Run("read-file", func(b *testing.B) { read(b, path) })
	b.Run("read-checkpoint", func(b *testing.B) { read(b, checkpointPath(path)) })
}

// benchOpen opens the store at path read-only, reads a key and closes it,
// b.N times.
func benchOpen(b *testing.B, path string) {
	for b.Loop() {
		s, err := Open(path, &Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Get(benchKey(make([]byte, 8), 1)); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// copyFileB copies the store file at from to to (not its checkpoint).
func copyFileB(b *testing.B, from, to string) {
	data, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, data, 0o644)
	}
	if err != nil {
		b.Fatal(err)
	}
}

// patternReader yields n bytes without holding them.
type patternReader struct{ n int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), r.n)
	for i := range p[:k] {
		p[i] = byte(i) | 1
	}
	r.n -= k
	return int(k), nil
}

// BenchmarkPutReader streams a -simdr.stream value into the store, next to
// io.Copy of the same reader into a plain file.
func BenchmarkPutReader(b *testing.B) {
	size := *benchStream
	b.Run("simdr", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			path := filepath.Join(b.TempDir(), "s")
			s, err := Open(path, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.PutReader([]byte("big"), &patternReader{size}); err != nil {
				b.Fatal(err)
			}
			s.Close()
			os.Remove(path)
		}
	})
	b.Run("io.Copy", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			path := filepath.Join(b.TempDir(), "f")
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(f, &patternReader{size}); err != nil {
				b.Fatal(err)
			}
			f.Close()
			os.Remove(path)
		}
	})
}

// BenchmarkCompact compacts a store of -simdr.keys entries of which half are
// overwritten (1.5 × keys entries in the file, keys live).
func BenchmarkCompact(b *testing.B) {
	n := *benchKeys
	src := filepath.Join(b.TempDir(), "src")
	loadBench(b, src, n)
	s, err := Open(src, nil)
	if err != nil {
		b.Fatal(err)
	}
	var batch Batch
	v := bytes.Repeat([]byte("w"), 100)
	k := make([]byte, 8)
	for i := 0; i < n; i += 2 {
		batch.Put(benchKey(k, i), v)
		if batch.Len() == 1000 {
			s.Apply(&batch)
			batch.Reset()
		}
	}
	s.Apply(&batch)
	s.Close()
	orig, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(orig)))
	for b.Loop() {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "c")
		os.WriteFile(path, orig, 0o644)
		s, err := Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.Compact(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if s.Len() != n {
			b.Fatalf("Len %d after compact", s.Len())
		}
		s.Close()
		os.Remove(path)
		b.StartTimer()
	}
}

// coldSink keeps the bytes BenchmarkCold reads alive (a discarded load may
// be optimized away).
var coldSink int

var (
	benchCold    = flag.Bool("simdr.cold", false, "run BenchmarkCold (evicts the store's files from the page cache before each round)")
	benchColdDir = flag.String("simdr.colddir", "", "BenchmarkCold keeps its store of -simdr.keys entries in this directory and reuses it in later runs (default: a new one each run)")
)

// coldStore returns the path of a closed store of n entries for
// BenchmarkCold, loading it unless -simdr.colddir holds one already.
func coldStore(b *testing.B, n int) string {
	dir := *benchColdDir
	if dir == "" {
		dir = b.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("cold-%d", n))
	done := path + ".loaded"
	if _, err := os.Stat(done); err == nil {
		return path
	}
	os.Remove(path)
	os.Remove(checkpointPath(path))
	loadBench(b, path, n)
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkCold reads a store of -simdr.keys entries from a cold page cache
// (behind -simdr.cold). Before each round, the store's file and its
// checkpoint are evicted from the page cache (POSIX_FADV_DONTNEED; pages a
// process has mapped stay cached, so the store is closed first), and the
// store is opened again with its checkpoint (Open reads the checkpoint and
// samples the file). Each round times the store's reads next to a baseline
// on the same file, so that both see the same disk:
//
//   - get-100, get-1000: that many random Gets (the first byte of each
//     value read) and as many random 4 KiB preads of the file, one of each
//     in turn after the same Open (Open reads hundreds of megabytes at 10M
//     keys, and the disk is not the same right after); the metrics are
//     µs/get, µs/pread, their ratio get/pread over all rounds,
//     the ratio of their medians (p50-get/pread: a shared disk's outliers,
//     a few reads of milliseconds, move the means), and KiB/get, what a
//     Get had read from storage (/proc/self/io).
//   - verify, entries, open-walk (Open without a checkpoint walks the
//     whole file): each against one sequential read of the file (evicted
//     again, before or after the walk in turn) with
//     1 MiB reads (ms/read, and walk/read; ms/op is the walk's), and
//     the same walk again right after, with the file cached (ms/warm). A
//     walk the kernel reads ahead for costs about the larger of ms/warm
//     and ms/read; one that faults page by page, far more than both.
func BenchmarkCold(b *testing.B) {
	if !*benchCold {
		b.Skip("needs -simdr.cold")
	}
	n := *benchKeys
	path := coldStore(b, n)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	// evicted evicts the store's files and returns the path to open: the
	// store, or a copy of it without a checkpoint.
	evicted := func(b *testing.B, checkpoint bool) string {
		p := path
		if !checkpoint {
			p = path + "-walk"
			if _, err := os.Stat(p); err != nil {
				copyFileB(b, path, p)
			}
		}
		evictStore(b, p)
		return p
	}
	open := func(b *testing.B, p string) *Store {
		s, err := Open(p, &Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	// round runs the store's part (which times itself) and the baseline,
	// each first in turn; it returns the baseline's total time.
	round := func(b *testing.B, store func(), base func() time.Duration) time.Duration {
		b.StopTimer()
		var bt time.Duration
		for i := 0; i < b.N; i++ {
			if i%2 == 1 {
				bt += base()
			}
			store()
			if i%2 == 0 {
				bt += base()
			}
		}
		return bt
	}
	for _, gets := range []int{100, 1000} {
		b.Run(fmt.Sprintf("get-%d", gets), func(b *testing.B) {
			k := make([]byte, 8)
			buf := make([]byte, 4096)
			pages := fi.Size() / 4096
			var read int64
			var lg, lp []time.Duration    // each Get's and pread's time
			var spent, base time.Duration // the Gets', the preads'
			b.StopTimer()                 // the timer would time Open and eviction; the Gets time themselves
			for i := 0; i < b.N; i++ {
				s := open(b, evicted(b, true))
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				// After the same Open, a Get and a pread in turn, each
				// first in turn: both see the disk as Open left it.
				for j := range gets {
					for step := range 2 {
						if (j+step)%2 == 0 {
							r0 := readBytes()
							t0 := time.Now()
							e, err := s.Get(benchKey(k, rnd.IntN(n)))
							if err != nil {
								b.Fatal(err)
							}
							coldSink += int(e.Bytes()[0])
							lg = append(lg, time.Since(t0))
							read += readBytes() - r0
							spent += lg[len(lg)-1]
						} else {
							t0 := time.Now()
							if _, err := f.ReadAt(buf, rnd.Int64N(pages)*4096); err != nil {
								b.Fatal(err)
							}
							lp = append(lp, time.Since(t0))
							base += lp[len(lp)-1]
						}
					}
				}
				f.Close()
				s.Close()
			}
			ops := float64(b.N * gets)
			b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N), "ns/op")
			b.ReportMetric(float64(spent.Microseconds())/ops, "µs/get")
			b.ReportMetric(float64(base.Microseconds())/ops, "µs/pread")
			b.ReportMetric(float64(spent)/float64(base), "get/pread")
			b.ReportMetric(float64(median(lg))/float64(median(lp)), "p50-get/pread")
			b.ReportMetric(float64(read)/1024/ops, "KiB/get")
		})
	}
	seqRead := func() time.Duration {
		evictStore(b, path)
		buf := make([]byte, 1<<20)
		t0 := time.Now()
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	for _, w := range []struct {
		name       string
		checkpoint bool
		walk       func(s *Store)
	}{
		{"verify", true, func(s *Store) {
			if err := s.Verify(); err != nil {
				b.Fatal(err)
			}
		}},
		{"entries", true, func(s *Store) {
			for e := range s.Entries() {
				coldSink += int(e.Bytes()[0]) & 1
			}
		}},
		{"open-walk", false, nil},
	} {
		b.Run(w.name, func(b *testing.B) {
			var warm time.Duration
			base := round(b, func() {
				p := evicted(b, w.checkpoint)
				if w.walk == nil {
					b.StartTimer()
				}
				s := open(b, p)
				if w.walk != nil {
					b.StartTimer()
					w.walk(s)
				}
				b.StopTimer()
				// The same walk again, with the file cached.
				t0 := time.Now()
				if w.walk == nil {
					s.Close()
					s = open(b, p)
				} else {
					w.walk(s)
				}
				warm += time.Since(t0)
				s.Close()
			}, seqRead)
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/op")
			b.ReportMetric(float64(warm.Microseconds())/1e3/float64(b.N), "ms/warm")
			b.ReportMetric(float64(base.Microseconds())/1e3/float64(b.N), "ms/read")
			b.ReportMetric(float64(b.Elapsed())/float64(base), "walk/read")
		})
	}
}

// BenchmarkLoad loads -simdr.keys keys of 100-byte values in batches of
// 1,000 and then syncs once (ns/key), next to a Go map of the same values
// and to a plain file that receives the bytes simdr's file holds, laid out
// the same way, with one write per batch and one fdatasync: the physical
// limit. Run it with -benchtime 1x; -simdr.keys=10000000 and 100000000 give
// the larger rows (100M needs about 13 GB of disk).
func BenchmarkLoad(b *testing.B) {
	n := *benchKeys
	v := bytes.Repeat([]byte("v"), 100)
	// cpu-ns/key is the process's CPU time (all threads), setup included:
	// on a shared machine it moves less than wall time with other jobs.
	perKey := func(b *testing.B, cpu0 time.Duration) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
		b.ReportMetric(float64((ccCPUTime()-cpu0).Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/key")
	}
	b.Run("simdr", func(b *testing.B) {
		cpu0 := ccCPUTime()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			path := filepath.Join(b.TempDir(), "l")
			s, err := Open(path, &Options{CheckpointBytes: -1})
			if err != nil {
				b.Fatal(err)
			}
			var batch Batch
			k := make([]byte, 8)
			var stop time.Duration // the longest Apply: growth of the index is in it
			b.StartTimer()
			for j := 0; j < n; j++ {
				batch.Put(benchKey(k, j), v)
				if batch.Len() == 1000 || j == n-1 {
					t0 := time.Now()
					if err := s.Apply(&batch); err != nil {
						b.Fatal(err)
					}
					stop = max(stop, time.Since(t0))
					batch.Reset()
				}
			}
			b.ReportMetric(float64(stop.Microseconds()), "max-apply-µs")
			t0 := time.Now()
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(t0).Microseconds()), "sync-µs")
			b.StopTimer()
			st := s.Stats()
			if i == 0 {
				b.Logf("%d keys: index %.1f bytes/key", n, float64(st.IndexBytes)/float64(n))
			}
			s.Close()
			os.Remove(path)
			os.Remove(checkpointPath(path))
			b.StartTimer()
		}
		perKey(b, cpu0)
	})
	b.Run("map", func(b *testing.B) {
		cpu0 := ccCPUTime()
		for i := 0; i < b.N; i++ {
			m := make(map[uint64][]byte)
			k := make([]byte, 8)
			for j := 0; j < n; j++ {
				m[Hash(benchKey(k, j))] = bytes.Clone(v)
			}
			runtime.KeepAlive(m)
		}
		perKey(b, cpu0)
	})
	// file: the baseline. file-writeback: the same, asking the
	// kernel to start writing every 8 MiB out as simdr does (writeback.go).
	for _, wb := range []bool{false, true} {
		name := "file"
		if wb {
			name = "file-writeback"
		}
		b.Run(name, func(b *testing.B) {
			cpu0 := ccCPUTime()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				path := filepath.Join(b.TempDir(), "f")
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 0, 1000*128)
				k := make([]byte, 8)
				var tail int64
				b.StartTimer()
				for j := 0; j < n; j++ {
					// simdr's bytes: zeros to a multiple of 64, the value, 20 bytes of metadata.
					pad := (64 - (tail+int64(len(buf)))%64) % 64
					buf = append(buf, make([]byte, pad)...)
					buf = append(buf, v...)
					buf = append(buf, benchKey(k, j)...)
					buf = append(buf, make([]byte, 12)...)
					if j%1000 == 999 || j == n-1 {
						if _, err := f.Write(buf); err != nil {
							b.Fatal(err)
						}
						if lo, hi := tail/writebackEvery, (tail+int64(len(buf)))/writebackEvery; wb && hi > lo {
							unix.SyncFileRange(int(f.Fd()), lo*writebackEvery, (hi-lo)*writebackEvery, unix.SYNC_FILE_RANGE_WRITE)
						}
						tail += int64(len(buf))
						buf = buf[:0]
					}
				}
				t0 := time.Now()
				if err := syscall.Fdatasync(int(f.Fd())); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(t0).Microseconds()), "sync-µs")
				b.StopTimer()
				f.Close()
				os.Remove(path)
				b.StartTimer()
			}
			perKey(b, cpu0)
		})
	}
}
