package simdr

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/vfs/faultfs"
)

// repairImages returns a store image with garbage over a few entries (Repair
// writes a new file) and one with damaged prev links (Repair relinks in
// place, and cuts the torn tail after them), of n small entries.
func repairImages(n int) (rewrite, inPlace []byte) {
	var img []byte
	for i := range n {
		v := bytes.Repeat([]byte{byte(i)}, 100+i%300)
		copy(v, fmt.Sprintf("k%d-%d", i%(n*3/4), i))
		img = format.AppendEntry(img, int64(len(img)), Hash([]byte(fmt.Sprint("k", i%(n*3/4)))), v)
	}
	es := entryEnds(img)
	rewrite = bytes.Clone(img)
	for i := len(img) / 2; i < len(img)/2+1500; i++ {
		rewrite[i] = byte(i*31 + 7)
	}
	inPlace = bytes.Clone(img)
	for _, j := range []int{n / 5, n / 2, n - 3} {
		inPlace[es[j].End+8] ^= 0x04
	}
	inPlace = append(inPlace, bytes.Repeat([]byte{0x5a}, 100)...) // a torn tail: the repair cuts it
	return rewrite, inPlace
}

// TestAttackRepairFaults: Open with Options.Repair meets a fault at each
// write, sync, truncate, create, rename and directory sync of the repair
// (EIO and ENOSPC). Each time: Open returns an error that matches the
// injected one, holds no lock (the next Open works), leaves no temporary file
// once the next writer's Open has run, and the file is either as it was
// (still refused with ErrCorrupt) or whole; a Repair without faults then ends
// with exactly what an uninterrupted repair keeps.
func TestAttackRepairFaults(t *testing.T) {
	rewrite, inPlace := repairImages(400)
	dir := relFastDir(t)
	for _, c := range []struct {
		name string
		img  []byte
	}{{"rewrite", rewrite}, {"in place", inPlace}} {
		oracle := filepath.Join(dir, "oracle")
		os.WriteFile(oracle, c.img, 0o644)
		o, err := Open(oracle, &Options{Repair: true})
		if err != nil {
			t.Fatal(err)
		}
		want, wantSize := contents(o), o.Size()
		if rep := o.Repaired(); rep == nil || rep.Rewritten != (c.name == "rewrite") {
			t.Fatalf("%s: the uninterrupted repair: %+v", c.name, rep)
		}
		o.Close()
		type fault struct {
			op   faultfs.Op
			nth  int
			keep int
		}
		var faults []fault
		for nth := 1; nth <= 4; nth++ {
			faults = append(faults, fault{faultfs.WriteAt, nth, 0}, fault{faultfs.WriteAt, nth, 7})
		}
		for _, op := range []faultfs.Op{faultfs.Sync, faultfs.Truncate, faultfs.OpenFile, faultfs.Rename, faultfs.SyncDir} {
			faults = append(faults, fault{op, 1, 0})
		}
		for _, f := range faults {
			for _, errno := range []syscall.Errno{syscall.EIO, syscall.ENOSPC} {
				name := fmt.Sprintf("%s/%v#%d,keep%d/%v", c.name, f.op, f.nth, f.keep, errno)
				t.Run(name, func(t *testing.T) {
					path := filepath.Join(t.TempDir(), "s.simdr")
					os.WriteFile(path, c.img, 0o644)
					ffs := faultfs.New(nil)
					ffs.Inject(faultfs.Rule{Op: f.op, Nth: f.nth, Keep: f.keep, Err: errno})
					s, err := Open(path, &Options{Repair: true, fs: ffs})
					if ffs.Fired() == 0 {
						if err != nil {
							t.Fatalf("no fault fired, yet Open = %v", err)
						}
						s.Close()
						t.Skip("the repair makes fewer such calls")
					}
					if err == nil {
						got := contents(s)
						size := s.Size()
						s.Close()
						if size != wantSize || len(got) != len(want) {
							t.Fatalf("Open acknowledged a repair that met %v: %d keys in %d bytes, want %d in %d", errno, len(got), size, len(want), wantSize)
						}
					} else if !errors.Is(err, errno) {
						t.Fatalf("Open = %v, want an error matching %v", err, errno)
					}
					// Whatever the fault left opens as the damaged file
					// (refused) or as the repair's result.
					if r, err := Open(path, &Options{ReadOnly: true}); err == nil {
						got := contents(r)
						r.Close()
						if !sameContents(got, want) {
							t.Fatalf("after the failed repair the file opens with %d keys, the repair keeps %d", len(got), len(want))
						}
					} else if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("read-only open after the failed repair: %v", err)
					}
					s, err = Open(path, &Options{Repair: true})
					if err != nil {
						t.Fatalf("Repair after the fault: %v", err)
					}
					got := contents(s)
					if err := s.Verify(); err != nil {
						t.Fatalf("Verify after the second repair: %v", err)
					}
					s.Close()
					if !sameContents(got, want) {
						t.Fatalf("the second repair kept %d keys, an uninterrupted one %d", len(got), len(want))
					}
					left, _ := os.ReadDir(filepath.Dir(path))
					for _, e := range left {
						if strings.Contains(e.Name(), ".simdr.repair") || strings.Contains(e.Name(), ".simdr.compact") {
							t.Fatalf("left behind: %s", e.Name())
						}
					}
				})
			}
		}
	}
}

// sameContents reports whether two contents maps are equal.
func sameContents(a, b map[uint64]string) bool {
	if len(a) != len(b) {
		return false
	}
	for h, v := range b {
		if got, ok := a[h]; !ok || got != v {
			return false
		}
	}
	return true
}
