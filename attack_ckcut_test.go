package simdr

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAttackCheckpointCutUnderStore: the index checkpoint (FILE-simdr-index)
// is mapped privately by the Stores that opened with it. Another process
// cuts it (truncate) or rewrites it in place (cp over it keeps the inode)
// while a writer and a follower use it: every Get must still answer from the
// index the checks accepted. Before the fix the table's pages were the page
// cache's until written: Get after a truncate died of SIGBUS, and after a
// rewrite in place found none of the keys (zeros) or other positions.
func TestAttackCheckpointCutUnderStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	s := reopenT(t, path, nil)
	model := ckModel(t, s, ckMinEntries+ckMinEntries/2, 7)
	s.Close()
	ck, err := os.ReadFile(checkpointPath(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, how := range []struct {
		name string
		do   func(p string) error
	}{
		{"truncated", func(p string) error { return os.Truncate(p, 0) }},
		{"zeroed in place", func(p string) error { return os.WriteFile(p, make([]byte, len(ck)), 0o600) }},
		{"garbage in place", func(p string) error {
			b := make([]byte, len(ck))
			for i := range b {
				b[i] = byte(i*131 + i>>9)
			}
			return os.WriteFile(p, b, 0o600)
		}},
	} {
		for _, ro := range []bool{false, true} {
			t.Run(how.name+"/readonly="+map[bool]string{false: "false", true: "true"}[ro], func(t *testing.T) {
				if err := os.WriteFile(checkpointPath(path), ck, 0o600); err != nil {
					t.Fatal(err)
				}
				s := reopenT(t, path, &Options{ReadOnly: ro})
				defer s.Close()
				if s.cur.Load().ck == nil {
					t.Fatal("Open did not use the checkpoint")
				}
				if err := how.do(checkpointPath(path)); err != nil {
					t.Fatal(err)
				}
				checkModel(t, s, model)
				if !ro {
					putT(t, s, "after", "the cut")
					model["after"] = "the cut"
					checkModel(t, s, model)
					delete(model, "after")
					if err := s.Delete([]byte("after")); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}
