package simdr

// ForEachParallel: every live entry exactly once, whatever the number of
// workers; stopping at the first error and at cancellation.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ccParallelStore makes a store of n live keys "k<i>" (value "v<i>-<round>"),
// written over several rounds with overwrites and deletes, and returns it
// with the expected contents.
func ccParallelStore(t *testing.T, n int) (*Store, map[uint64]string) {
	t.Helper()
	s := ccOpen(t, filepath.Join(t.TempDir(), "s"), nil)
	want := make(map[uint64]string)
	var b Batch
	for round := range 3 {
		b.Reset()
		for i := range n + n/4 {
			k := []byte(fmt.Sprint("k", i))
			switch {
			case i >= n && round == 2:
				b.Delete(k) // the extra keys end deleted
				delete(want, Hash(k))
			case (i+round)%3 != 0 || round == 0:
				v := fmt.Sprintf("v%d-%d", i, round)
				b.Put(k, []byte(v))
				want[Hash(k)] = v
			}
		}
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != n || len(want) != n {
		t.Fatalf("store has %d keys, model %d, want %d", s.Len(), len(want), n)
	}
	return s, want
}

// TestForEachParallelVisitsEachOnce: every live key exactly once with its
// latest value, for any number of workers (< 1 means GOMAXPROCS).
func TestForEachParallelVisitsEachOnce(t *testing.T) {
	s, want := ccParallelStore(t, 5000)
	for _, workers := range []int{-1, 0, 1, 2, 3, 8, 1000} {
		var mu sync.Mutex
		seen := make(map[uint64]int)
		err := s.ForEachParallel(context.Background(), workers, func(e Entry) error {
			if err := e.Verify(); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			seen[e.KeyHash()]++
			if want[e.KeyHash()] != string(e.Bytes()) {
				return fmt.Errorf("key %016x: %q, want %q", e.KeyHash(), e.Bytes(), want[e.KeyHash()])
			}
			return nil
		})
		if err != nil {
			t.Fatalf("workers %d: %v", workers, err)
		}
		if len(seen) != len(want) {
			t.Fatalf("workers %d: visited %d keys, want %d", workers, len(seen), len(want))
		}
		for h, c := range seen {
			if c != 1 {
				t.Fatalf("workers %d: key %016x visited %d times", workers, h, c)
			}
		}
	}
}

// TestForEachParallelEmptyAndClosed: no call on an empty store; ErrClosed
// after Close.
func TestForEachParallelEmptyAndClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	s := ccOpen(t, path, nil)
	calls := 0
	if err := s.ForEachParallel(context.Background(), 4, func(Entry) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("empty store: %d calls, %v", calls, err)
	}
	ccPut(t, s, "a", "1")
	s.Close()
	if err := s.ForEachParallel(context.Background(), 4, func(Entry) error { calls++; return nil }); !errors.Is(err, ErrClosed) || calls != 0 {
		t.Fatalf("closed store: %d calls, %v; want ErrClosed", calls, err)
	}
}

// TestForEachParallelStopsAtFirstError: the error fn returns is returned, and
// the visit stops: with one worker, right there; with more, long before the
// end (the calls after the error are slowed down, so that finishing the
// visit would take seconds).
func TestForEachParallelStopsAtFirstError(t *testing.T) {
	s, want := ccParallelStore(t, 5000)
	const failAt = 10
	for _, workers := range []int{1, 2, 4} {
		var calls atomic.Int64
		errStop := errors.New("stop here")
		err := s.ForEachParallel(context.Background(), workers, func(e Entry) error {
			switch n := calls.Add(1); {
			case n == failAt:
				return errStop
			case n > failAt:
				time.Sleep(time.Millisecond)
			}
			return nil
		})
		if !errors.Is(err, errStop) {
			t.Fatalf("workers %d: %v, want the error fn returned", workers, err)
		}
		n := calls.Load()
		if workers == 1 && n != failAt {
			t.Fatalf("one worker: %d calls, want %d (it stops at the error)", n, failAt)
		}
		if n < failAt || n >= int64(len(want))/2 {
			t.Fatalf("workers %d: %d calls after an error at call %d", workers, n, failAt)
		}
	}
}

// TestForEachParallelStopsOnCancel: cancelling ctx stops the visit and its
// error is returned: once cancel has returned, each worker starts at most one
// more call (one that checked ctx just before). A ctx done before the call
// means no call at all.
func TestForEachParallelStopsOnCancel(t *testing.T) {
	s, want := ccParallelStore(t, 5000)
	const cancelAt = 10
	for _, workers := range []int{1, 2, 4} {
		ctx, cancel := context.WithCancel(context.Background())
		var calls, after atomic.Int64
		var cancelled atomic.Bool
		err := s.ForEachParallel(ctx, workers, func(e Entry) error {
			if cancelled.Load() {
				after.Add(1)
			}
			if calls.Add(1) == cancelAt {
				cancel()
				cancelled.Store(true)
			}
			return nil
		})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("workers %d: %v, want context.Canceled", workers, err)
		}
		if a := after.Load(); a > int64(workers-1) {
			t.Fatalf("workers %d: %d calls began after cancel returned", workers, a)
		}
		if n := calls.Load(); workers == 1 && n != cancelAt || n >= int64(len(want)) {
			t.Fatalf("workers %d: %d calls, cancelled at call %d", workers, n, cancelAt)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	if err := s.ForEachParallel(ctx, 2, func(Entry) error { calls++; return nil }); !errors.Is(err, context.Canceled) || calls != 0 {
		t.Fatalf("cancelled before: %d calls, %v", calls, err)
	}
	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if err := s.ForEachParallel(dctx, 2, func(Entry) error { calls++; return nil }); !errors.Is(err, context.DeadlineExceeded) || calls != 0 {
		t.Fatalf("past deadline: %d calls, %v", calls, err)
	}
}

// TestForEachParallelDuringWrites: keys nobody touches are each visited once
// with their value while other keys are written and the store compacts; every
// entry met verifies, and stays valid after the Compact.
func TestForEachParallelDuringWrites(t *testing.T) {
	s, want := ccParallelStore(t, 3000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var werr atomic.Value
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := []byte(fmt.Sprint("other", i%500))
			var err error
			switch i % 50 {
			case 49:
				err = s.Compact()
			case 7, 13:
				err = s.Delete(k)
			default:
				err = s.Put(k, []byte(fmt.Sprint("o", i)))
			}
			if err != nil {
				werr.Store(err)
				return
			}
		}
	})
	var kept []Entry
	for round := range 5 {
		var mu sync.Mutex
		seen := make(map[uint64]int)
		err := s.ForEachParallel(context.Background(), 3, func(e Entry) error {
			if err := e.Verify(); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if v, ok := want[e.KeyHash()]; ok {
				seen[e.KeyHash()]++
				if v != string(e.Bytes()) {
					return fmt.Errorf("value %q, want %q", e.Bytes(), v)
				}
				if len(kept) < 100 {
					kept = append(kept, e)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for h := range want {
			if seen[h] != 1 {
				t.Fatalf("round %d: key %016x visited %d times", round, h, seen[h])
			}
		}
	}
	close(stop)
	wg.Wait()
	if err := werr.Load(); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	for _, e := range kept {
		if err := e.Verify(); err != nil || want[e.KeyHash()] != string(e.Bytes()) {
			t.Fatalf("entry kept across Compact: %q, %v", e.Bytes(), err)
		}
	}
}
