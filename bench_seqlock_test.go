package simdr

import (
	"flag"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/simdr-go/simdr/internal/format"
)

var benchRounds = flag.Int("simdr.rounds", 5, "rounds of BenchmarkGetSeqlock (each runs both variants)")

// getUnchecked is GetHash as it was before reads checked the seqlock: the
// baseline of BenchmarkGetSeqlock. It sees half-published writes.
//
//go:noinline
func (s *Store) getUnchecked(h uint64) (Entry, error) {
	g := s.cur.Load()
	if g == nil {
		return Entry{}, ErrClosed
	}
	pos, ok := g.ix.Get(h)
	if !ok {
		return Entry{}, ErrNotFound
	}
	e, err := g.entry(h, pos) // entryAt needs a packed length
	if err != nil {
		return Entry{}, err
	}
	if s.opts.VerifyChecksums {
		if err := e.Verify(); err != nil {
			return Entry{}, err
		}
	}
	return e, nil
}

//go:noinline
func (s *Store) getUncheckedKey(key []byte) (Entry, error) { return s.getUnchecked(format.Hash(key)) }

// BenchmarkGetSeqlock measures what the seqlock check costs Get: in one
// process, over one store (BenchmarkGet's), it alternates rounds of Get and
// of the unchecked lookup Get was before, so that both see the same caches
// and the same load on the machine. Compare the medians of the two.
func BenchmarkGetSeqlock(b *testing.B) {
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
	variants := []struct {
		name string
		get  func([]byte) (Entry, error)
	}{{"unchecked", s.getUncheckedKey}, {"seqlock", s.Get}}
	for range *benchRounds {
		slices.Reverse(variants) // either one first, in turn
		for _, v := range variants {
			b.Run(v.name, func(b *testing.B) {
				b.ReportAllocs()
				// CPU time of this thread too: the machine may be shared, and
				// wall time then counts the time others ran.
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				var r0, r1 unix.Rusage
				unix.Getrusage(unix.RUSAGE_THREAD, &r0)
				defer func() {
					unix.Getrusage(unix.RUSAGE_THREAD, &r1)
					cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
				}()
				var sum int
				for i := 0; i < b.N; i++ {
					e, err := v.get(keys[i%n])
					if err != nil {
						b.Fatal(err)
					}
					sum += int(e.Bytes()[0])
				}
				_ = sum
			})
		}
	}
}
