package simdr

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// openReturns runs Open(path, opts) and fails the test if it does not
// return within 20 s; it returns Open's result.
func openReturns(t *testing.T, path string, opts *Options) (*Store, error) {
	t.Helper()
	type res struct {
		s   *Store
		err error
	}
	done := make(chan res, 1)
	go func() {
		s, err := Open(path, opts)
		done <- res{s, err}
	}()
	select {
	case r := <-done:
		return r.s, r.err
	case <-time.After(20 * time.Second):
		t.Fatalf("Open(%s, %+v) never returned", path, opts)
		return nil, nil
	}
}

// TestAttackSpecialFiles: the checkpoint's name taken by something that is
// not a regular file (a directory, a FIFO no one writes to, a symlink to
// /dev/zero) costs the Open nothing but the walk; and a store path that is
// a FIFO fails rather than blocks.
func TestAttackSpecialFiles(t *testing.T) {
	for _, kind := range []string{"dir", "fifo", "devzero"} {
		t.Run("checkpoint "+kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			s := reopenT(t, path, nil)
			putT(t, s, "k", "v")
			s.Close()
			ck := checkpointPath(path)
			var err error
			switch kind {
			case "dir":
				err = os.Mkdir(ck, 0o755)
			case "fifo":
				err = syscall.Mkfifo(ck, 0o644)
			case "devzero":
				err = os.Symlink("/dev/zero", ck)
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{true, false} {
				s, err := openReturns(t, path, &Options{ReadOnly: ro})
				if err != nil {
					t.Fatal(err)
				}
				if got := getT(t, s, "k"); got != "v" {
					t.Fatalf("Get = %q", got)
				}
				s.Close()
			}
		})
	}
	t.Run("store fifo", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, ro := range []bool{true, false} {
			if s, err := openReturns(t, path, &Options{ReadOnly: ro}); err == nil {
				s.Close()
				t.Errorf("read-only %v: Open of a FIFO succeeded", ro)
			} else if !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("read-only %v: Open of a FIFO: %v, want fs.ErrInvalid", ro, err)
			}
		}
	})
}
