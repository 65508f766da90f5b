package simdr

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestAttackStateFileCut: another process cuts the state file
// (FILE-simdr-shm, a cache anyone may remove or empty) while a writer and a
// follower have it mapped: truncated to nothing, or emptied and sized again
// (zeros). Neither may fault (SIGBUS) on its next store or read of the
// mapping: the writer's Put, Apply, PutReader, Sync, Compact and Close, the
// follower's Refresh and Wait. Both go on without the state (the follower
// scans), every acknowledged write is seen by the follower and after a
// reopen. Before the fix the writer's next Put, or its Close, died of
// SIGBUS, and so did a follower's Wait.
func TestAttackStateFileCut(t *testing.T) {
	for _, how := range []struct {
		name string
		cut  func(path string) error
	}{
		{"truncated", func(p string) error { return os.Truncate(p, 0) }},
		{"emptied and sized again", func(p string) error {
			if err := os.Truncate(p, 0); err != nil {
				return err
			}
			return os.Truncate(p, 4096)
		}},
	} {
		for _, first := range []string{"Put", "Close", "Wait", "Compact"} {
			t.Run(how.name+"/"+first, func(t *testing.T) {
				w, path := openT(t, nil)
				model := map[string]string{}
				put := func(k, v string) {
					putT(t, w, k, v)
					model[k] = v
				}
				put("a", "1")
				f := reopenT(t, path, &Options{ReadOnly: true})
				defer f.Close()
				if err := how.cut(statePath(path)); err != nil {
					t.Fatal(err)
				}
				switch first {
				case "Close":
					if err := w.Close(); err != nil {
						t.Fatalf("Close after the state file was cut: %v", err)
					}
					w = reopenT(t, path, nil)
				case "Wait":
					ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
					err := f.Wait(ctx)
					cancel()
					if err != nil && err != context.DeadlineExceeded {
						t.Fatalf("Wait after the state file was cut: %v", err)
					}
				case "Compact":
					if err := w.Compact(); err != nil {
						t.Fatal(err)
					}
				}
				for i := range 20 {
					put(fmt.Sprint("k", i), fmt.Sprint("v", i))
				}
				var b Batch
				b.Put([]byte("batch"), []byte("applied"))
				if err := w.Apply(&b); err != nil {
					t.Fatal(err)
				}
				model["batch"] = "applied"
				if _, err := w.PutReader([]byte("stream"), strings.NewReader("streamed")); err != nil {
					t.Fatal(err)
				}
				model["stream"] = "streamed"
				if err := w.Sync(); err != nil {
					t.Fatal(err)
				}
				// The follower waits for, and sees, every commit.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				for f.Len() != len(model) {
					if err := f.Refresh(); err != nil {
						t.Fatal(err)
					}
					if f.Len() == len(model) {
						break
					}
					if err := f.Wait(ctx); err != nil {
						t.Fatalf("the follower never saw the writes: %d keys of %d: %v", f.Len(), len(model), err)
					}
				}
				checkModel(t, f, model)
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				r := reopenT(t, path, nil)
				checkModel(t, r, model)
				r.Close()
			})
		}
	}
}
