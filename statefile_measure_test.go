package simdr

// Measurements for issue 14, run on demand (SIMDR_MEASURE=1): they log
// figures and assert nothing about time.
//
//	SIMDR_MEASURE=1 go test -run 'TestMeasure' -v .
//	SIMDR_MEASURE_MIB=256 (the in-flight size; the scan without the state
//	over crafted bytes takes minutes at 256)

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func sfMeasure(t *testing.T) {
	if os.Getenv("SIMDR_MEASURE") == "" {
		t.Skip("set SIMDR_MEASURE=1 to measure")
	}
}

// sfStore opens a writer at a new path, with or without a state file (a
// directory where it would be keeps it from being made).
func sfStore(t *testing.T, state bool) (string, *Store) {
	path := filepath.Join(t.TempDir(), "s")
	if !state {
		if err := os.Mkdir(statePath(path), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return path, ccOpen(t, path, nil)
}

// TestMeasureRefreshInFlight: the cost of a follower's Refresh while an
// upload of N MiB is in flight past its tail, of random bytes, zeros, and
// crafted bytes (the follower's tail repeated as an 8-byte word: every 8
// bytes a candidate entry for the scan), with the state file and without
// (today's scan).
func TestMeasureRefreshInFlight(t *testing.T) {
	sfMeasure(t)
	mib := 256
	if v, err := strconv.Atoi(os.Getenv("SIMDR_MEASURE_MIB")); err == nil {
		mib = v
	}
	for _, pattern := range []string{"random", "zeros", "crafted"} {
		for _, state := range []bool{true, false} {
			path, w := sfStore(t, state)
			ccPut(t, w, "a", "1")
			r := ccOpen(t, path, &Options{ReadOnly: true})
			tail := w.Size()
			ready, next := make(chan int, 1), make(chan bool)
			fill := map[string]func([]byte){
				"random": sfRandomFill(5),
				"zeros":  func([]byte) {},
				"crafted": func(b []byte) {
					for i := 0; i+8 <= len(b); i += 8 {
						binary.LittleEndian.PutUint64(b[i:], uint64(tail))
					}
				},
			}[pattern]
			n := mib
			if pattern == "crafted" && !state && os.Getenv("SIMDR_MEASURE_FULL") == "" {
				n = min(n, 16) // seconds per 8 MiB: extrapolate (SIMDR_MEASURE_FULL=1 for all of it)
			}
			src := &sfPlainSource{n: n, fill: fill, ready: ready, next: next}
			done := make(chan error, 1)
			go func() { _, err := w.PutReader([]byte("big"), src); done <- err }()
			<-ready
			t0 := time.Now()
			if err := r.Refresh(); err != nil {
				t.Fatal(err)
			}
			d := time.Since(t0)
			t.Logf("%-7s %4d MiB in flight, state file %-5v: Refresh %v (follower at %d, committed %d)", pattern, n, state, d, r.Size(), tail)
			next <- true
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			r.Close()
			w.Close()
			os.Remove(path)
		}
	}
}

// sfPlainSource yields n MiB of fill, then stops before its end until told.
type sfPlainSource struct {
	n, i  int
	fill  func([]byte)
	buf   []byte
	off   int
	ready chan<- int
	next  <-chan bool
}

func (s *sfPlainSource) Read(p []byte) (int, error) {
	if s.off == len(s.buf) {
		if s.i == s.n {
			s.ready <- s.i
			<-s.next
			copy(p, "end")
			s.i++
			return 3, nil
		}
		if s.i > s.n {
			return 0, io.EOF
		}
		if s.buf == nil {
			s.buf = make([]byte, streamChunk)
			s.fill(s.buf)
		}
		s.i++
		s.off = 0
	}
	n := copy(p, s.buf[s.off:])
	s.off += n
	return n, nil
}

// TestMeasureCommitCost: Put of 100 bytes and Apply of 1,000 such puts, on
// two stores open side by side, one keeping the state file and one not, in
// alternating blocks (so both see the same machine load); logs the ratio of
// the total times.
func TestMeasureCommitCost(t *testing.T) {
	sfMeasure(t)
	v := make([]byte, 100)
	var b Batch
	for i := range 1000 {
		b.Put([]byte(fmt.Sprint("k", i)), v)
	}
	for _, apply := range []bool{false, true} {
		_, with := sfStore(t, true)
		_, without := sfStore(t, false)
		block, rounds := 2000, 60
		if apply {
			block, rounds = 10, 40
		}
		var tw, to time.Duration
		k := make([]byte, 8)
		i := 0
		run := func(w *Store) time.Duration {
			t0 := time.Now()
			for range block {
				i++
				if apply {
					if err := w.Apply(&b); err != nil {
						t.Fatal(err)
					}
					continue
				}
				binary.LittleEndian.PutUint64(k, uint64(i))
				if err := w.Put(k, v); err != nil {
					t.Fatal(err)
				}
			}
			return time.Since(t0)
		}
		for r := range rounds {
			if r%2 == 0 {
				tw += run(with)
				to += run(without)
			} else {
				to += run(without)
				tw += run(with)
			}
		}
		what := "Put 100 B"
		if apply {
			what = "Apply 1,000 × 100 B"
		}
		n := time.Duration(block * rounds)
		t.Logf("%s: with the state file %v, without %v: ratio %.3f", what, tw/n, to/n, float64(tw)/float64(to))
		with.Close()
		without.Close()
	}
}
