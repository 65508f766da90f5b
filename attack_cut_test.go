package simdr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/simdr-go/simdr/internal/format"
)

// TestAttackCutReads: another process cuts the store file under a writer and
// under a read-only Store. Each read that walks the mapping (Verify, Backup to
// a buffer, to io.Discard and to a file, BackupSince, BackupFile, GetMany,
// ForEachParallel, Changes, Entries) must neither fault (SIGBUS kills the test binary)
// nor hand back bytes that are not the entries written: it fails with an error
// matching ErrCorrupt, or (Entries, which has no error) skips what was cut.
// Before the fix Verify, GetMany, Entries, ForEachParallel and Changes faulted on a
// cut page, and Backup to io.Discard or of a file cut mid-page returned nil
// (the zeros read past the new end as the store's bytes), BackupFile an
// unwrapped EFAULT.
func TestAttackCutReads(t *testing.T) {
	longs := []string{"long1", "long2"}
	for _, tc := range []struct {
		name string
		cut  func(metaAt map[string]int64) int64
	}{
		{"page before long1", func(map[string]int64) int64 { return 4096 }},
		{"inside long2's metadata page", func(m map[string]int64) int64 { return m["long2"] - 3 }},
	} {
		for _, ro := range []bool{false, true} {
			for _, op := range []struct {
				name string
				run  func(t *testing.T, s *Store, since BackupInfo, cutLongs []string) error
			}{
				{"Verify", func(_ *testing.T, s *Store, _ BackupInfo, _ []string) error { return s.Verify() }},
				{"Backup/buffer", func(_ *testing.T, s *Store, _ BackupInfo, _ []string) error {
					_, err := s.Backup(&bytes.Buffer{})
					return err
				}},
				{"Backup/discard", func(_ *testing.T, s *Store, _ BackupInfo, _ []string) error {
					_, err := s.Backup(io.Discard)
					return err
				}},
				{"BackupSince", func(_ *testing.T, s *Store, since BackupInfo, _ []string) error {
					_, err := s.BackupSince(&bytes.Buffer{}, since)
					return err
				}},
				{"BackupFile", func(t *testing.T, s *Store, _ BackupInfo, _ []string) error {
					_, err := s.BackupFile(filepath.Join(t.TempDir(), "backup"), nil)
					return err
				}},
				{"GetMany", func(_ *testing.T, s *Store, _ BackupInfo, cutLongs []string) error {
					keys := [][]byte{[]byte("small1")}
					for _, k := range cutLongs {
						keys = append(keys, []byte(k))
					}
					_, err := s.GetMany(keys)
					return err
				}},
				{"ForEachParallel", func(_ *testing.T, s *Store, _ BackupInfo, _ []string) error {
					return s.ForEachParallel(context.Background(), 2, func(Entry) error { return nil })
				}},
				{"Changes", func(_ *testing.T, s *Store, _ BackupInfo, _ []string) error {
					_, _, err := s.Changes(cursorAt(s, 0))
					return err
				}},
				{"Entries", func(t *testing.T, s *Store, _ BackupInfo, cutLongs []string) error {
					for e := range s.Entries() {
						for _, k := range cutLongs {
							if e.KeyHash() == Hash([]byte(k)) {
								t.Fatalf("Entries yielded %s, whose metadata was cut off (%d bytes at %d)", k, e.Len(), e.Offset())
							}
						}
					}
					return ErrCorrupt // nothing to return: the check is above
				}},
			} {
				t.Run(fmt.Sprintf("%s/readonly=%v/%s", tc.name, ro, op.name), func(t *testing.T) {
					s, path := openT(t, nil)
					model, metaAt := cutStore(t, s)
					since, err := s.Backup(io.Discard)
					if err != nil {
						t.Fatal(err)
					}
					putT(t, s, "after", "the backup")
					model["after"] = "the backup"
					if ro {
						s.Close()
						s = reopenT(t, path, &Options{ReadOnly: true})
					}
					checkModel(t, s, model)
					cut := tc.cut(metaAt)
					cutFile(t, path, cut)
					var cutLongs []string
					for _, k := range longs {
						if metaAt[k]+format.MetaSize > cut {
							cutLongs = append(cutLongs, k)
						}
					}
					if err := op.run(t, s, since, cutLongs); !errors.Is(err, ErrCorrupt) {
						t.Fatalf("%s on a file cut to %d = %v, want ErrCorrupt", op.name, cut, err)
					}
				})
			}
		}
	}
}

// TestAttackCutBackupKeepsDest: a BackupFile that finds the store cut leaves
// no temporary file and does not replace the backup already at dest.
func TestAttackCutBackupKeepsDest(t *testing.T) {
	s, path := openT(t, nil)
	_, metaAt := cutStore(t, s)
	dest := filepath.Join(t.TempDir(), "backup")
	if _, err := s.BackupFile(dest, nil); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	putT(t, s, "after", "the backup")
	cutFile(t, path, metaAt["long2"]-3)
	if _, err := s.BackupFile(dest, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("BackupFile of a cut store = %v, want ErrCorrupt", err)
	}
	after, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("dest changed by a failed backup (%v)", err)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".*")); len(m) != 0 {
		t.Fatalf("temporary files left: %v", m)
	}
}

// cursorAt is a Cursor of s's current file at tail (0: from its start).
func cursorAt(s *Store, tail int64) Cursor {
	return Cursor{g: s.cur.Load(), tail: tail}
}
