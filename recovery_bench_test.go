package simdr

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkRecoveryTorn times what a torn tail (an upload in flight, or one a
// crash left) costs a follower's Refresh and a read-only Open, per byte of
// torn tail, for the shapes that cost recovery most (see
// internal/format.BenchmarkFindTail for all of them, with the FindTail they
// replaced as the baseline). cpu-ns/byte is the CPU time of the benchmark's
// thread, the figure to compare on a shared machine.
//
//	go test -run '^$' -bench RecoveryTorn -benchtime 3x .
func BenchmarkRecoveryTorn(b *testing.B) {
	dir := b.TempDir()
	for _, kind := range []string{"random", "zeros", "word=tail", "numeric"} {
		for _, mib := range []int{8, 64} {
			path := filepath.Join(dir, fmt.Sprintf("%s-%d.simdr", kind, mib))
			w, err := Open(path, nil)
			if err != nil {
				b.Fatal(err)
			}
			for i := range 2000 {
				if err := w.Put(fmt.Appendf(nil, "key%d", i), relBigValue(2+i%300, byte(i))); err != nil {
					b.Fatal(err)
				}
			}
			tail := w.Size()
			w.Close()
			torn := make([]byte, mib<<20)
			benchTorn(kind, torn, tail)
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(torn); err != nil {
				b.Fatal(err)
			}
			f.Close()
			size := tail + int64(len(torn))
			run := func(name string, op func(b *testing.B)) {
				b.Run(fmt.Sprintf("%s/%s/%dMiB", name, kind, mib), func(b *testing.B) {
					b.SetBytes(int64(len(torn)))
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					cpu0 := benchThreadCPU()
					for b.Loop() {
						op(b)
					}
					b.ReportMetric(float64(benchThreadCPU()-cpu0)/float64(b.N)/float64(len(torn)), "cpu-ns/byte")
				})
			}
			ro, err := Open(path, &Options{ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			run("Refresh", func(b *testing.B) {
				if err := ro.Refresh(); err != nil || ro.Size() != tail {
					b.Fatalf("Refresh: %v, size %d of %d, want %d", err, ro.Size(), size, tail)
				}
			})
			ro.Close()
			run("OpenReadOnly", func(b *testing.B) {
				s, err := Open(path, &Options{ReadOnly: true})
				if err != nil || s.Size() != tail {
					b.Fatalf("Open: %v, want size %d", err, tail)
				}
				s.Close()
			})
			os.Remove(path)
		}
	}
}

// benchTorn fills b, appended at tail, with kind (internal/format's
// tornTail has every kind).
func benchTorn(kind string, b []byte, tail int64) {
	le := binary.LittleEndian
	r := rand.New(rand.NewPCG(1, 2))
	clear(b)
	switch kind {
	case "random":
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	case "zeros":
	case "word=tail":
		for i := 0; i+8 <= len(b); i += 8 {
			le.PutUint64(b[i:], uint64(tail))
		}
	case "numeric":
		for i := 0; i+16 <= len(b); i += 16 {
			le.PutUint64(b[i:], uint64(i+1))
		}
	}
}

// benchThreadCPU returns the CPU time of the calling thread in nanoseconds.
func benchThreadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
