package simdr

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Close while Wait sleeps (the writer's own Store, or a follower's) must
// end the Wait with ErrClosed, not crash the process: Wait sleeps on the
// state file's futex word, and Close used to unmap that file while the
// sleep was in its system call (a SIGSEGV on the way out, found through the
// server's /v1/watch).
func TestWaitCloseUnder(t *testing.T) {
	for _, follower := range []bool{false, true} {
		name := "writer"
		if follower {
			name = "follower"
		}
		t.Run(name, func(t *testing.T) {
			for i := range 20 { // Close lands at several points of the sleep
				w, path := openT(t, nil)
				putT(t, w, "k", "v")
				s := w
				if follower {
					var err error
					if s, err = Open(path, &Options{ReadOnly: true}); err != nil {
						t.Fatal(err)
					}
				}
				done := make(chan error, 1)
				go func() { done <- s.Wait(context.Background()) }()
				time.Sleep(time.Duration(i%5) * time.Millisecond)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-done:
					if !errors.Is(err, ErrClosed) {
						t.Fatalf("Wait after Close: %v, want ErrClosed", err)
					}
				case <-time.After(time.Minute): // liveness only
					t.Fatal("Wait did not return after Close")
				}
				w.Close()
			}
		})
	}
}
