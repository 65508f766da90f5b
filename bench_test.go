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

var benchCold = flag.Bool("simdr.cold", false, "run BenchmarkCold, which drops the page cache (needs root: writes /proc/sys/vm/drop_caches)")

// dropCaches writes dirty pages back and empties the page cache.
func dropCaches(b testing.TB) {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil && b != nil {
		b.Skipf("cannot drop the page cache: %v", err)
	}
}

// BenchmarkCold reads a store of -simdr.keys entries with the page cache
// dropped before each round (behind -simdr.cold). Pages a process has mapped
// stay cached through a drop, so each round closes the store, drops the
// cache and opens it again (with its checkpoint: Open reads the checkpoint,
// not the store file) before the timed part: 100 and 1,000 random Gets next
// to as many random 4 KiB preads of the same file, Verify and Entries; then
// Open without a checkpoint (the walk of the whole file) next to one
// sequential read of the file.
func BenchmarkCold(b *testing.B) {
	if !*benchCold {
		b.Skip("needs -simdr.cold (root: drops the page cache)")
	}
	n := *benchKeys
	path := filepath.Join(b.TempDir(), "cold")
	loadBench(b, path, n)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	// round runs fn on a store opened after the page cache was dropped.
	round := func(b *testing.B, fn func(s *Store)) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dropCaches(b)
			s, err := Open(path, &Options{ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			fn(s)
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
	}
	for _, gets := range []int{100, 1000} {
		b.Run(fmt.Sprintf("get-%d", gets), func(b *testing.B) {
			k := make([]byte, 8)
			sum := 0
			round(b, func(s *Store) {
				for j := 0; j < gets; j++ {
					e, err := s.Get(benchKey(k, rnd.IntN(n)))
					if err != nil {
						b.Fatal(err)
					}
					sum += int(e.Bytes()[0])
				}
			})
			coldSink += sum
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*gets), "ns/get")
		})
		b.Run(fmt.Sprintf("pread-%d", gets), func(b *testing.B) {
			buf := make([]byte, 4096)
			pages := fi.Size() / 4096
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dropCaches(b)
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				for j := 0; j < gets; j++ {
					if _, err := f.ReadAt(buf, rnd.Int64N(pages)*4096); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				f.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*gets), "ns/get")
		})
	}
	b.Run("verify", func(b *testing.B) {
		round(b, func(s *Store) {
			if err := s.Verify(); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("entries", func(b *testing.B) {
		m := 0
		round(b, func(s *Store) {
			for e := range s.Entries() {
				m += int(e.Bytes()[0]) & 1
			}
		})
		coldSink += m
	})
	walk := filepath.Join(b.TempDir(), "walk")
	copyFileB(b, path, walk) // no checkpoint beside it
	b.Run("open-walk", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dropCaches(b)
			b.StartTimer()
			s, err := Open(walk, &Options{ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
	})
	b.Run("read-file", func(b *testing.B) {
		buf := make([]byte, 1<<20)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dropCaches(b)
			b.StartTimer()
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
			f.Close()
		}
	})
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
