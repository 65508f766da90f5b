package simdr

// A crash in the middle of Move, reopened with the state files that a
// kill leaves, or some of them gone (they are caches: deleting one must
// cost time, never data).

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simdr-go/simdr/internal/vfs"
)

// hookFS is vfs.OS whose files, after a WriteAt to a file whose path ends
// with match, once armed, call at: with the writer stopped there, a kill
// at that moment leaves the files as at finds them (a read-only Open
// recovers them as the next writer would, state files included).
type hookFS struct {
	vfs.FS
	mu    sync.Mutex
	match string
	at    func()
}

type hookFile struct {
	vfs.File
	fs *hookFS
}

func (fs *hookFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := fs.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return hookFile{f, fs}, nil
}

func (f hookFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	fs := f.fs
	fs.mu.Lock()
	at := fs.at
	if err == nil && at != nil && strings.HasSuffix(f.Name(), fs.match) {
		fs.at = nil
	} else {
		at = nil
	}
	fs.mu.Unlock()
	if at != nil {
		at()
	}
	return n, err
}

// TestAttackMoveKilledStateFiles: a writer killed inside Move after it
// wrote the tombstone into the source, before it published (the copy in
// the destination written and synced). The value must be in the source or
// the destination whatever state files survive (they are caches: one may be
// deleted, or be of another boot, while the other is trusted). With the
// destination's state trusted and the source's gone, the value was in
// neither: the destination's recovery cut the copy (past the committed
// tail its state names: the writer's own unfinished write), and the
// source's kept the tombstone.
func TestAttackMoveKilledStateFiles(t *testing.T) {
	for _, drop := range []string{"", "src", "dst", "both"} {
		t.Run("without "+drop, func(t *testing.T) {
			c := newClock()
			dir := t.TempDir()
			fs := &hookFS{FS: vfs.OS, match: "src.simdr"}
			paths := map[string]string{"src": filepath.Join(dir, "src.simdr"), "dst": filepath.Join(dir, "dst.simdr")}
			src := reopenT(t, paths["src"], c.opts(&Options{fs: fs}))
			dst := reopenT(t, paths["dst"], c.opts(&Options{fs: fs}))
			putT(t, dst, "d", "d")
			putT(t, src, "s", "s")
			if err := src.PutTTL([]byte("k"), []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
			exp := c.ms.Load() + 3_600_000
			ran := false
			fs.mu.Lock()
			fs.at = func() { // the tombstone is in the source
				ran = true
				for _, name := range map[string][]string{"src": {"src"}, "dst": {"dst"}, "both": {"src", "dst"}}[drop] {
					if err := os.Remove(paths[name] + StateSuffix); err != nil {
						t.Error(err)
					}
				}
				found := 0
				for _, name := range []string{"src", "dst"} {
					s, err := Open(paths[name], c.opts(&Options{ReadOnly: true}))
					if err != nil {
						t.Error(err)
						return
					}
					if s.Has([]byte("k")) {
						found++
						if got, err := s.ExpiresAt([]byte("k")); err != nil || got.UnixMilli() != exp {
							t.Errorf("%s: k expires at %v, %v; want %d", name, got, err, exp)
						}
					}
					s.Close()
				}
				if found == 0 {
					t.Error("the value moved is in neither store")
				}
			}
			fs.mu.Unlock()
			if err := src.Move([]byte("k"), dst); err != nil {
				t.Fatal(err)
			}
			if !ran {
				t.Fatal("the hook did not run")
			}
		})
	}
}
