package simdr

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestAttackStoreUnlinked: another program removes the store file, or renames
// another file over its path, while a writer has it open. The writer's file
// then has no name: whatever it writes is lost when it closes. So Sync, and a
// write with SyncWrites, must fail (ErrCorrupt, then ErrFailed) instead of
// reporting the write durable; and Move must not delete the value from its
// source once its copy went into such a file. Moving the file (a rename to
// another name) keeps it, and changes nothing. Before the fix each of these
// returned nil, and the Move lost the value.
func TestAttackStoreUnlinked(t *testing.T) {
	for _, how := range []struct {
		name string
		do   func(t *testing.T, path string)
		lost bool // the file has no name left
	}{
		{"removed", func(t *testing.T, path string) { must(t, os.Remove(path)) }, true},
		{"replaced by rename", func(t *testing.T, path string) {
			other := path + ".other"
			must(t, os.WriteFile(other, []byte("another program's file"), 0o644))
			must(t, os.Rename(other, path))
		}, true},
		{"moved", func(t *testing.T, path string) { must(t, os.Rename(path, path+".moved")) }, false},
	} {
		for _, op := range []struct {
			name string
			run  func(t *testing.T, s *Store) error
		}{
			{"Sync", func(_ *testing.T, s *Store) error { return s.Sync() }},
			{"Put/SyncWrites", func(_ *testing.T, s *Store) error {
				s.opts.SyncWrites = true
				return s.Put([]byte("new"), []byte("value"))
			}},
			{"Apply/SyncWrites", func(_ *testing.T, s *Store) error {
				s.opts.SyncWrites = true
				var b Batch
				b.Put([]byte("new"), []byte("value"))
				return s.Apply(&b)
			}},
			{"Move into it", func(t *testing.T, dst *Store) error {
				src, srcPath := openT(t, nil)
				putT(t, src, "moved", "the value")
				err := src.Move([]byte("moved"), dst)
				src.Close()
				r := reopenT(t, srcPath, nil)
				defer r.Close()
				if e, gerr := r.Get([]byte("moved")); err != nil && (gerr != nil || string(e.Bytes()) != "the value") {
					t.Fatalf("Move failed (%v), and the source lost the value: %v", err, gerr)
				}
				return err
			}},
		} {
			t.Run(how.name+"/"+op.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "s.simdr")
				s := reopenT(t, path, nil)
				defer s.Close()
				putT(t, s, "a", "1")
				how.do(t, path)
				err := op.run(t, s)
				if !how.lost {
					if err != nil {
						t.Fatalf("%s after the file was moved: %v", op.name, err)
					}
					return
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s on a file with no name left = %v, want ErrCorrupt", op.name, err)
				}
				if err := s.Put([]byte("b"), []byte("2")); !errors.Is(err, ErrFailed) {
					t.Fatalf("the next Put = %v, want ErrFailed", err)
				}
				if err := s.Sync(); !errors.Is(err, ErrFailed) {
					t.Fatalf("the next Sync = %v, want ErrFailed", err)
				}
				if e, err := s.Get([]byte("a")); err != nil || string(e.Bytes()) != "1" {
					t.Fatalf("reads go on: Get = %v, %v", e, err)
				}
			})
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
