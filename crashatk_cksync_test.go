package simdr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/simdr-go/simdr/internal/vfs"
)

// heldSyncFS is the real file system, except that the first Sync of a file
// whose name contains match waits until release is closed and then fails
// with EIO (as Linux reports a writeback error once: the next fdatasync
// succeeds although the pages it lost are not on disk).
type heldSyncFS struct {
	vfs.FS
	match   string
	entered chan struct{} // closed when the held Sync starts
	release chan struct{}
	once    sync.Once
}

type heldSyncFile struct {
	vfs.File
	fs *heldSyncFS
}

func (f *heldSyncFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.Contains(name, f.match) {
		return file, err
	}
	return &heldSyncFile{File: file, fs: f}, nil
}

func (f *heldSyncFile) Sync() error {
	held := false
	f.fs.once.Do(func() { held = true })
	if !held {
		return f.File.Sync()
	}
	close(f.fs.entered)
	<-f.fs.release
	return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.EIO}
}

// A background checkpoint whose fdatasync of the store file fails while the
// writer goes on, with no write or Sync after the failure, then Close: Close
// must not write a checkpoint (its own fdatasync succeeds, the error was
// reported once, so the checkpoint would name bytes the disk may not hold),
// and it reports the failure no call has reported yet. The store's data is
// unaffected and the next Open correct.
func TestCrashAtkCheckpointSyncFailureBeforeClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.simdr")
	hfs := &heldSyncFS{FS: vfs.OS, match: "s.simdr", entered: make(chan struct{}), release: make(chan struct{})}
	orig := vfs.OS
	vfs.OS = hfs // the Store's own file system, but not Options.fs (which turns checkpoints off)
	s, err := Open(path, &Options{CheckpointBytes: 1})
	vfs.OS = orig
	if err != nil {
		t.Fatal(err)
	}
	put := func(from, to int) {
		t.Helper()
		var b Batch
		for i := from; i < to; i++ {
			b.Put([]byte(fmt.Sprint("k", i)), []byte(fmt.Sprint("v", i)))
		}
		if err := s.Apply(&b); err != nil {
			t.Fatalf("batch %d..%d: %v", from, to, err)
		}
	}
	put(0, ckMinEntries) // starts the background checkpoint
	<-hfs.entered        // which now waits in its fdatasync
	// Enough more for a checkpoint at Close to pay, while the sync hangs.
	n := ckMinEntries + ckMinEntries/2
	put(ckMinEntries, n)
	close(hfs.release) // the background sync fails
	s.ckWG.Wait()
	err = s.Close()
	if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Errorf("Close after an unreported failed background sync: %v, want ErrFailed wrapping EIO", err)
	}
	if _, err := os.Stat(checkpointPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close wrote a checkpoint after a failed fdatasync of the store file: %v", err)
	}
	s = reopenT(t, path, nil)
	if s.Len() != n {
		t.Fatalf("reopened: %d keys, want %d", s.Len(), n)
	}
	for _, i := range []int{0, ckMinEntries - 1, ckMinEntries, n - 1} {
		if got, want := getT(t, s, fmt.Sprint("k", i)), fmt.Sprint("v", i); got != want {
			t.Fatalf("k%d = %q, want %q", i, got, want)
		}
	}
}

// A background checkpoint that fails (here: its temporary file cannot be
// made) writes nothing; Close must not count it as written, and writes the
// checkpoint itself once it can (before, the failed one's coverage kept
// Close from writing any, and the next Open walked the whole file).
func TestCrashAtkFailedBackgroundCheckpointNotCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.simdr")
	tmp := checkpointPath(path) + ".tmp"
	// A non-empty directory under the temporary name: removing it fails.
	if err := os.MkdirAll(filepath.Join(tmp, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, &Options{CheckpointBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	for i := range ckMinEntries {
		b.Put([]byte(fmt.Sprint("k", i)), []byte(fmt.Sprint("v", i)))
	}
	if err := s.Apply(&b); err != nil { // starts the background checkpoint
		t.Fatal(err)
	}
	s.ckWG.Wait()
	if _, err := os.Stat(checkpointPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the background checkpoint was written: %v", err)
	}
	if err := s.Put([]byte("after"), []byte("x")); err != nil {
		t.Fatalf("a write after the failed checkpoint: %v", err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(checkpointPath(path)); err != nil {
		t.Fatalf("Close wrote no checkpoint after the background one failed: %v", err)
	}
	s = reopenT(t, path, nil)
	if s.cur.Load().ck == nil {
		t.Fatal("the reopen did not use the checkpoint")
	}
	if s.Len() != ckMinEntries+1 || getT(t, s, "k0") != "v0" || getT(t, s, "after") != "x" {
		t.Fatalf("reopened: %d keys", s.Len())
	}
}
