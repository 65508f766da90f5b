package simdr

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWait: Wait returns once the writer commits (at once when a commit is
// already there), on ctx's end with its error, and with ErrClosed after
// Close; with and without a state file, for followers and the writer.
func TestWait(t *testing.T) {
	for _, state := range []bool{true, false} {
		t.Run(fmt.Sprint("state=", state), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			if !state {
				// A directory where the state file would be: nobody can make one.
				if err := os.Mkdir(statePath(path), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			w := ccOpen(t, path, nil)
			ccPut(t, w, "a", "1")
			r := ccOpen(t, path, &Options{ReadOnly: true})
			if got := sfVouches(r); got != state {
				t.Fatalf("follower uses a state file: %v, want %v", got, state)
			}
			for _, s := range []*Store{r, w} {
				done := make(chan error, 1)
				go func() { done <- s.Wait(context.Background()) }()
				select {
				case err := <-done:
					t.Fatalf("Wait returned with nothing new: %v", err)
				case <-time.After(30 * time.Millisecond):
				}
				ccPut(t, w, "b", fmt.Sprint(s == w))
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if err := r.Refresh(); err != nil {
					t.Fatal(err)
				}
				ccWant(t, r, "b", fmt.Sprint(s == w))
			}
			// Already committed: at once.
			ccPut(t, w, "c", "3")
			if err := r.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := r.Refresh(); err != nil {
				t.Fatal(err)
			}
			// Cancelled.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if err := r.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait with a deadline: %v", err)
			}
			ctx2, cancel2 := context.WithCancel(context.Background())
			cancel2()
			if err := w.Wait(ctx2); !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait cancelled: %v", err)
			}
			// Compacted: the follower's file is replaced.
			if err := w.Compact(); err != nil {
				t.Fatal(err)
			}
			if err := r.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			r.Close()
			if err := r.Wait(context.Background()); !errors.Is(err, ErrClosed) {
				t.Fatalf("Wait after Close: %v", err)
			}
		})
	}
}

// monoNow is CLOCK_MONOTONIC in ns: the same clock in every process.
func monoNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// TestWaitWriterChild commits the monotonic clock under key "t" every 1-3 ms,
// arg times, then idles (printing IDLE) until killed.
func TestWaitWriterChild(t *testing.T) {
	path := ccChildPath(t, "wait-writer")
	n, _ := strconv.Atoi(os.Getenv(ccArgEnv))
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Put([]byte("t"), binary.LittleEndian.AppendUint64(nil, 0))
	fmt.Println("READY")
	for i := range n {
		time.Sleep(time.Millisecond + time.Duration(i%3)*500*time.Microsecond)
		v := binary.LittleEndian.AppendUint64(nil, uint64(monoNow()))
		v = binary.LittleEndian.AppendUint64(v, uint64(i+1))
		if err := s.Put([]byte("t"), v); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("IDLE")
	time.Sleep(time.Minute)
}

// TestWaitAcrossProcesses: a follower waiting in this process wakes up for
// each commit of a writer in another, and uses next to no CPU while the
// writer is idle. It logs the commit-to-wake latency (p50, p99) and the CPU
// time of an idle second; it asserts only that every commit is seen.
func TestWaitAcrossProcesses(t *testing.T) {
	if os.Getenv(ccChildEnv) != "" {
		t.Skip("not in a child")
	}
	n := 300
	if testing.Short() {
		n = 50
	}
	path := filepath.Join(t.TempDir(), "s")
	child := ccStartChild(t, "TestWaitWriterChild", "wait-writer", path, fmt.Sprint(n))
	child.waitLine("READY")
	r := ccOpen(t, path, &Options{ReadOnly: true})
	var lat []time.Duration
	last := uint64(0)
	for done := false; !done; {
		ctx, cancel := context.WithTimeout(context.Background(), ccHang)
		err := r.Wait(ctx)
		woke := monoNow()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		e, err := r.Get([]byte("t"))
		if err != nil {
			t.Fatal(err)
		}
		if b := e.Bytes(); len(b) == 16 {
			if v := binary.LittleEndian.Uint64(b); v != last {
				lat = append(lat, time.Duration(woke-int64(v)))
				last = v
			}
			done = binary.LittleEndian.Uint64(b[8:]) == uint64(n)
		}
	}
	child.waitLine("IDLE")
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait while the writer idles: %v", err)
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	slices.Sort(lat)
	t.Logf("commit→wake over %d of %d commits: p50 %v, p99 %v, max %v; CPU while idle: %v in 2 s", len(lat), n,
		lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], cpu)
}

// TestChanges: the entries committed after a cursor, oldest first, for the
// writer and a follower; ErrNotFound across a Compact and for the zero
// Cursor.
func TestChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "a", "1")
	r := ccOpen(t, path, &Options{ReadOnly: true})
	wc, rc := w.Cursor(), r.Cursor()
	ccPut(t, w, "b", "22")
	var b Batch
	b.Put([]byte("c"), []byte("333"))
	b.Delete([]byte("a"))
	if err := w.Apply(&b); err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	want := []Change{{KeyHash: Hash([]byte("b")), Len: 2}, {KeyHash: Hash([]byte("c")), Len: 3}, {KeyHash: Hash([]byte("a")), Deleted: true}}
	for _, s := range []*Store{w, r} {
		from := wc
		if s == r {
			from = rc
		}
		got, to, err := s.Changes(from)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || to.Tail() != w.Size() {
			t.Fatalf("changes: %+v to %d", got, to.Tail())
		}
		for i := range want {
			got[i].Offset = 0
			if got[i] != want[i] {
				t.Fatalf("change %d: %+v, want %+v", i, got[i], want[i])
			}
		}
		if more, _, err := s.Changes(to); err != nil || len(more) != 0 {
			t.Fatalf("changes at the end: %v %v", more, err)
		}
	}
	if _, _, err := w.Changes(Cursor{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("zero cursor: %v", err)
	}
	if err := w.Compact(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Changes(wc); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Compact: %v", err)
	}
}
