package simdr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/simdr-go/simdr/internal/vfs"
	"github.com/simdr-go/simdr/internal/vfs/faultfs"
)

// openThroughFault opens path with opts through a faultfs that is the
// Store's own file system but not Options.fs (which turns checkpoints off:
// fault tests see only the store file): vfs.OS is swapped for the call to
// Open only. The test must not run in parallel with others.
func openThroughFault(t *testing.T, path string, opts *Options) (*Store, *faultfs.FS) {
	t.Helper()
	orig := vfs.OS
	ffs := faultfs.New(orig)
	vfs.OS = ffs
	s, err := Open(path, opts)
	vfs.OS = orig
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ffs
}

// A failed fdatasync of the store file in a background checkpoint is
// sticky, as one in Sync is: from then on writes and Sync fail with
// ErrFailed, reads go on, no checkpoint is written that names the bytes
// not synced, and a reopen recovers.
func TestGapsCheckpointSyncFailureSticky(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.simdr")
	s, ffs := openThroughFault(t, path, &Options{CheckpointBytes: 1})
	ffs.Inject(faultfs.Rule{Op: faultfs.Sync, Err: syscall.EIO, Match: "s.simdr"})
	// Enough entries for a checkpoint to pay (ckMinEntries), in batches:
	// the first write past the threshold starts it in the background. A
	// batch after that may already find the store failed.
	n, last := 0, 0 // keys written; keys of the last batch applied
	for n < ckMinEntries+1000 {
		var b Batch
		for range 1000 {
			b.Put([]byte(fmt.Sprint("k", n)), []byte(fmt.Sprint("v", n)))
			n++
		}
		if err := s.Apply(&b); err != nil {
			if ffs.Fired() == 1 && errors.Is(err, ErrFailed) {
				break // the checkpoint met the fault meanwhile
			}
			t.Fatalf("batch up to %d: %v (a write met the fault before the checkpoint)", n, err)
		}
		last = n
	}
	s.ckWG.Wait() // the background checkpoint has run
	if ffs.Fired() != 1 {
		t.Fatalf("%d faults fired: the checkpoint did not sync the store file", ffs.Fired())
	}
	if _, err := os.Stat(checkpointPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a checkpoint was written after the failed sync: %v", err)
	}
	// Sticky: every write and Sync fails, not only the next one.
	for i := range 2 {
		if err := s.Put([]byte("after"), []byte("x")); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("Put %d after the failed checkpoint sync: %v, want ErrFailed wrapping EIO", i, err)
		}
		var b Batch
		b.Put([]byte("after"), []byte("x"))
		if err := s.Apply(&b); !errors.Is(err, ErrFailed) {
			t.Fatalf("Apply %d: %v, want ErrFailed", i, err)
		}
		if err := s.Sync(); !errors.Is(err, ErrFailed) {
			t.Fatalf("Sync %d: %v, want ErrFailed", i, err)
		}
	}
	if got := getT(t, s, "k7"); got != "v7" {
		t.Fatalf("reads stop after the failure: k7 = %q", got)
	}
	if err := s.Close(); err != nil && !errors.Is(err, ErrFailed) {
		t.Fatalf("Close: %v", err)
	}
	s = reopenT(t, path, nil)
	if err := s.Put([]byte("after"), []byte("x")); err != nil {
		t.Fatalf("a write after reopening: %v", err)
	}
	if got := getT(t, s, fmt.Sprint("k", last-1)); got != fmt.Sprint("v", last-1) {
		t.Fatalf("the last batch after reopening: %q", got)
	}
}
