package simdr

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/simdr-go/simdr/internal/vfs/faultfs"
)

// TestCopiesRefuseDamagedValues: Rename, Copy and Move check a value's
// stored checksum as they copy it. A value whose payload has a flipped bit is
// not written under a fresh checksum: the call fails with ErrChecksum naming
// the value's offset, and neither store changes (issue 11 §2).
func TestCopiesRefuseDamagedValues(t *testing.T) {
	ops := []struct {
		name string
		op   func(src, dst *Store, key string) error
		// where returns the store and key the copy of key is found under.
		where func(src, dst *Store, key string) (*Store, string)
	}{
		{"Rename",
			func(src, _ *Store, k string) error { return src.Rename([]byte(k), []byte(k+"-renamed")) },
			func(src, _ *Store, k string) (*Store, string) { return src, k + "-renamed" }},
		{"Copy",
			func(src, dst *Store, k string) error { return src.Copy([]byte(k), dst) },
			func(_, dst *Store, k string) (*Store, string) { return dst, k }},
		{"Move",
			func(src, dst *Store, k string) error { return src.Move([]byte(k), dst) },
			func(_, dst *Store, k string) (*Store, string) { return dst, k }},
	}
	sizes := []int{100, maxPacked + 1, directWrite + 10}
	for _, op := range ops {
		for _, n := range sizes {
			for _, sync := range []bool{false, true} {
				t.Run(op.name+"/"+strconv.Itoa(n)+"/sync="+strconv.FormatBool(sync), func(t *testing.T) {
					dir := t.TempDir()
					opts := &Options{SyncWrites: sync}
					src := reopenT(t, filepath.Join(dir, "src"), opts)
					dst := reopenT(t, filepath.Join(dir, "dst"), opts)
					putT(t, src, "before", "z") // so that the damaged value's offset is not 0
					value := bytes.Repeat([]byte("v"), n)
					if err := src.Put([]byte("bad"), value); err != nil {
						t.Fatal(err)
					}
					putT(t, src, "after", "x")
					putT(t, dst, "d", "y")
					e, _ := src.Get([]byte("bad"))
					relFlipByte(t, src.Path(), e.Offset()+int64(n/2))
					srcSize, dstSize := fileSize(t, src.Path()), fileSize(t, dst.Path())

					err := op.op(src, dst, "bad")
					if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "offset "+strconv.FormatInt(e.Offset(), 10)) {
						t.Fatalf("%s of a damaged value = %v, want ErrChecksum naming offset %d", op.name, err, e.Offset())
					}
					if a, b := fileSize(t, src.Path()), fileSize(t, dst.Path()); a != srcSize || b != dstSize {
						t.Fatalf("file sizes %d, %d after the failed %s, want %d, %d", a, b, op.name, srcSize, dstSize)
					}
					if src.Size() != srcSize || dst.Size() != dstSize {
						t.Fatalf("Size %d, %d after the failed %s", src.Size(), dst.Size(), op.name)
					}
					if got, err := src.Get([]byte("bad")); err != nil || got.Offset() != e.Offset() || !errors.Is(got.Verify(), ErrChecksum) {
						t.Fatalf("the damaged value moved or went: %v", err)
					}
					if src.Has([]byte("bad-renamed")) || dst.Has([]byte("bad")) || src.Len() != 3 || dst.Len() != 1 {
						t.Fatalf("the failed %s changed the keys: src %d, dst %d", op.name, src.Len(), dst.Len())
					}
					// An intact value still copies, with its checksum.
					good, _ := src.Get([]byte("after"))
					if err := op.op(src, dst, "after"); err != nil {
						t.Fatal(err)
					}
					in, k := op.where(src, dst, "after")
					if c, err := in.Get([]byte(k)); err != nil || c.Checksum() != good.Checksum() || string(c.Bytes()) != "x" || c.Verify() != nil {
						t.Fatalf("the copy of an intact value: %v", err)
					}
				})
			}
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestMoveFailureChangesNothing: when the copy's sync, the copy's write or
// the source's tombstone fails, Move fails and both stores are as before,
// in memory and on disk: the copy is cut off the destination again.
func TestMoveFailureChangesNothing(t *testing.T) {
	cases := []struct {
		name string
		rule func(src, dst string) faultfs.Rule
	}{
		{"copy write", func(_, dst string) faultfs.Rule {
			return faultfs.Rule{Op: faultfs.WriteAt, Match: dst}
		}},
		{"copy sync", func(_, dst string) faultfs.Rule { return faultfs.Rule{Op: faultfs.Sync, Match: dst} }},
		{"tombstone write", func(src, _ string) faultfs.Rule {
			return faultfs.Rule{Op: faultfs.WriteAt, Match: src}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			sp, dp := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
			ffs := faultfs.New(nil)
			src := reopenT(t, sp, &Options{fs: ffs})
			dst := reopenT(t, dp, &Options{fs: ffs})
			putT(t, src, "k", "precious")
			putT(t, dst, "other", "x")
			srcSize, dstSize := fileSize(t, sp), fileSize(t, dp)
			ffs.Inject(c.rule(sp, dp))
			if err := src.Move([]byte("k"), dst); err == nil {
				t.Fatal("Move succeeded through a failure")
			}
			ffs.Clear()
			if getT(t, src, "k") != "precious" || dst.Has([]byte("k")) || dst.Len() != 1 {
				t.Fatal("the failed Move changed the keys")
			}
			if a, b := fileSize(t, sp), fileSize(t, dp); a != srcSize || b != dstSize {
				t.Fatalf("file sizes %d, %d after the failed Move, want %d, %d", a, b, srcSize, dstSize)
			}
			// Both still work, and the Move goes through once the fault is
			// gone. A failed sync is sticky (ErrFailed until reopened).
			if c.name == "copy sync" {
				if err := src.Move([]byte("k"), dst); !errors.Is(err, ErrFailed) {
					t.Fatalf("Move after a failed sync of the copy: %v, want ErrFailed", err)
				}
				dst.Close()
				dst = reopenT(t, dp, &Options{fs: ffs})
			}
			if err := src.Move([]byte("k"), dst); err != nil {
				t.Fatal(err)
			}
			if src.Has([]byte("k")) || getT(t, dst, "k") != "precious" {
				t.Fatal("the Move after the failure")
			}
		})
	}
}
