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

// ---- issue 11 §5: directory fsync on create, sticky fsync failures ----

// TestOpenCreateSyncsDir: a writable Open that creates the file fsyncs its
// directory (and only then); a failed directory fsync fails Open and leaves
// no file, so that the next Open creates it again and syncs again.
func TestOpenCreateSyncsDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new.simdr")
	ffs := faultfs.New(nil)

	ffs.Fail(faultfs.SyncDir, 1, syscall.EIO)
	if s, err := Open(path, &Options{fs: ffs}); !errors.Is(err, syscall.EIO) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open with a failing directory fsync = %v, want EIO", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after the failed Open the file is there (%v): the next Open would not sync the directory", err)
	}

	for _, tc := range []struct {
		name     string
		opts     Options
		wantSync int
	}{
		{"create", Options{}, 1},
		{"reopen", Options{}, 0},
		{"read-only", Options{ReadOnly: true}, 0},
	} {
		ffs.Clear()
		before := ffs.Calls(faultfs.SyncDir)
		tc.opts.fs = ffs
		s, err := Open(path, &tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := ffs.Calls(faultfs.SyncDir) - before; got != tc.wantSync {
			t.Errorf("%s: %d directory fsyncs, want %d", tc.name, got, tc.wantSync)
		}
		if !tc.opts.ReadOnly {
			putT(t, s, "k", tc.name)
		}
		s.Close()
	}
}

// TestSyncFailureIsSticky: after a failed fdatasync, Sync never reports
// success again and every write fails with ErrFailed; reads go on; a reopen
// works and shows exactly the acknowledged writes.
func TestSyncFailureIsSticky(t *testing.T) {
	for _, tc := range []struct {
		name string
		sync bool // SyncWrites: the failing sync is a Put's
	}{{"Sync", false}, {"SyncWrites", true}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.simdr")
			ffs := faultfs.New(nil)
			s, err := Open(path, &Options{fs: ffs, SyncWrites: tc.sync})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			model := map[string]string{}
			for i := range 5 {
				k, v := fmt.Sprint("k", i), strings.Repeat(fmt.Sprint(i), 50)
				putT(t, s, k, v)
				model[k] = v
			}
			size := s.Size()
			ffs.Fail(faultfs.Sync, 1, syscall.EIO)
			if tc.sync {
				err = s.Put([]byte("lost"), []byte("v"))
			} else {
				putT(t, s, "unsynced", "v") // acknowledged, in the page cache
				model["unsynced"] = "v"
				size = s.Size()
				err = s.Sync()
			}
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("the failing sync = %v, want EIO", err)
			}
			if s.Size() != size || relFileSize(t, path) != size {
				t.Fatalf("tail %d, file %d bytes; want %d", s.Size(), relFileSize(t, path), size)
			}
			// The fault was one-shot: what follows would succeed if retried.
			var b Batch
			b.Put([]byte("b"), []byte("v"))
			for name, op := range map[string]func() error{
				"Put":        func() error { return s.Put([]byte("x"), []byte("v")) },
				"Delete":     func() error { return s.Delete([]byte("k1")) },
				"Apply":      func() error { return s.Apply(&b) },
				"PutReader":  func() error { _, err := s.PutReader([]byte("r"), strings.NewReader("v")); return err },
				"Rename":     func() error { return s.Rename([]byte("k2"), []byte("k9")) },
				"Sync":       s.Sync,
				"Sync again": s.Sync,
			} {
				if err := op(); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
					t.Errorf("%s after a failed sync = %v, want ErrFailed (wrapping the EIO)", name, err)
				}
			}
			checkModel(t, s, model) // reads go on
			if relFileSize(t, path) != size {
				t.Fatalf("file %d bytes after the refused writes, want %d", relFileSize(t, path), size)
			}
			s.Close()
			r := reopenT(t, path, &Options{fs: ffs, SyncWrites: tc.sync})
			checkModel(t, r, model)
			putT(t, r, "after", "reopen")
			if err := r.Sync(); err != nil {
				t.Fatalf("Sync after reopen: %v", err)
			}
		})
	}
}

// ---- PutReader whose reader panics ----

type panicReader struct {
	n, after int // panics once after bytes have been read
}

func (r *panicReader) Read(p []byte) (int, error) {
	if r.n >= r.after {
		panic("reader exploded")
	}
	n := min(len(p), r.after-r.n)
	for i := range p[:n] {
		p[i] = byte(r.n + i)
	}
	r.n += n
	return n, nil
}

// TestPutReaderPanicRollsBack: a reader that panics after 3 MiB leaves the
// store exactly as before (the partial entry is cut off the file), the panic
// reaches the caller unchanged, and the Store stays usable.
func TestPutReaderPanicRollsBack(t *testing.T) {
	s, path := openT(t, nil)
	putT(t, s, "a", "1")
	size := s.Size()
	for _, after := range []int{0, 100, 3 << 20} {
		got := func() (r any) {
			defer func() { r = recover() }()
			s.PutReader([]byte("p"), &panicReader{after: after})
			return nil
		}()
		if got != "reader exploded" {
			t.Fatalf("after %d bytes: recovered %v, want the reader's panic", after, got)
		}
		if s.Size() != size || relFileSize(t, path) != size {
			t.Fatalf("after %d bytes: tail %d, file %d bytes, want %d: the partial entry stayed", after, s.Size(), relFileSize(t, path), size)
		}
		if s.Has([]byte("p")) {
			t.Fatalf("after %d bytes: the panicked value is visible", after)
		}
	}
	putT(t, s, "b", "2") // the write lock was released
	if n, err := s.PutReader([]byte("p"), bytes.NewReader(make([]byte, 5<<20))); err != nil || n != 5<<20 {
		t.Fatalf("PutReader after the panics = %d, %v", n, err)
	}
	s.Close()
	r := reopenT(t, path, nil)
	if getT(t, r, "a") != "1" || getT(t, r, "b") != "2" || r.Len() != 3 {
		t.Fatalf("reopened: %d keys", r.Len())
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
}

// ---- the file cut under the Store by another process ----

// cutStore makes a store of small values and two long ones (their lengths
// are not packed in the index: Get reads their metadata from the mapping),
// and returns the offsets where each long value's metadata starts.
func cutStore(t *testing.T, s *Store) (model map[string]string, metaAt map[string]int64) {
	t.Helper()
	model, metaAt = map[string]string{}, map[string]int64{}
	putT(t, s, "small0", "v0")
	for i, k := range []string{"long1", "long2"} {
		v := strings.Repeat(string(rune('a'+i)), 40000+i*5000)
		putT(t, s, k, v)
		model[k] = v
		metaAt[k] = s.Size() - format.MetaSize
	}
	for i := range 10 {
		putT(t, s, fmt.Sprint("small", i), fmt.Sprint("value", i))
		model[fmt.Sprint("small", i)] = fmt.Sprint("value", i)
	}
	return model, metaAt
}

func cutFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0) // another process's descriptor
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// TestFileCutUnderWriter: another descriptor truncates the store's file.
// Stats and Get do not crash (SIGBUS); the next Put is refused with
// ErrCorrupt rather than acknowledged (it would extend the file with a hole
// and be dropped at the next Open), later writes and Sync with ErrFailed, and
// nothing is written; a reopen recovers what is left.
func TestFileCutUnderWriter(t *testing.T) {
	for _, tc := range []struct {
		name string
		// where to cut: the long values' metadata then lies on a page past
		// the new end (it faults) or in its last page (it reads as zeros)
		cut func(metaAt map[string]int64) int64
	}{
		{"page before long1", func(map[string]int64) int64 { return 4096 }},
		{"inside long2's metadata page", func(m map[string]int64) int64 { return m["long2"] - 3 }},
		{"just after long2", func(m map[string]int64) int64 { return m["long2"] + format.MetaSize + 1 }},
	} {
		for _, reopen := range []bool{false, true} {
			for _, first := range cutWrites() {
				t.Run(fmt.Sprintf("%s/reopened=%v/%s", tc.name, reopen, first.name), func(t *testing.T) {
					testFileCutUnderWriter(t, tc.cut, reopen, first)
				})
			}
		}
	}
}

// cutWrite is the first write made after the file was cut.
type cutWrite struct {
	name string
	run  func(s *Store) error
}

func cutWrites() []cutWrite {
	return []cutWrite{
		{"Put", func(s *Store) error { return s.Put([]byte("new"), []byte("value")) }},
		{"Put/direct", func(s *Store) error { return s.Put([]byte("new"), make([]byte, directWrite+1)) }},
		{"Apply", func(s *Store) error {
			var b Batch
			b.Put([]byte("new"), []byte("value"))
			b.Delete([]byte("small2"))
			return s.Apply(&b)
		}},
		{"Delete", func(s *Store) error { return s.Delete([]byte("small2")) }},
		{"PutReader", func(s *Store) error {
			_, err := s.PutReader([]byte("new"), bytes.NewReader(make([]byte, 3*streamChunk)))
			return err
		}},
		{"Rename", func(s *Store) error { return s.Rename([]byte("small2"), []byte("new")) }},
	}
}

// testFileCutUnderWriter cuts the file of a writer that has just written
// small entries (its check reads the mapping) or has just been reopened (its
// check is an fstat).
func testFileCutUnderWriter(t *testing.T, cutAt func(map[string]int64) int64, reopen bool, first cutWrite) {
	s, path := openT(t, nil)
	model, metaAt := cutStore(t, s)
	if reopen {
		s.Close()
		s = reopenT(t, path, nil)
	}
	tail := s.Size()
	cut := cutAt(metaAt)
	cutFile(t, path, cut)

	st := s.Stats() // must not fault
	if st.LiveKeys != len(model) || st.FileBytes != tail {
		t.Fatalf("Stats = %+v", st)
	}
	for k, at := range metaAt {
		e, err := s.Get([]byte(k))
		if at+format.MetaSize > cut {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get(%s) with its metadata cut = %v, %v; want ErrCorrupt", k, e, err)
			}
		} else if err != nil || e.Len() != len(model[k]) {
			t.Fatalf("Get(%s) with its metadata intact = %v, %v", k, e, err)
		}
	}
	err := first.run(s)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "cut") {
		t.Fatalf("%s on the cut file = %v, want ErrCorrupt", first.name, err)
	}
	var b Batch
	b.Put([]byte("x"), []byte("y"))
	for name, op := range map[string]func() error{
		"Put":       func() error { return s.Put([]byte("new"), []byte("value")) },
		"Apply":     func() error { return s.Apply(&b) },
		"PutReader": func() error { _, err := s.PutReader([]byte("r"), strings.NewReader("v")); return err },
		"Delete":    func() error { return s.Delete([]byte("small1")) },
		"Sync":      s.Sync,
	} {
		if err := op(); !errors.Is(err, ErrFailed) {
			t.Errorf("%s after the cut = %v, want ErrFailed", name, err)
		}
	}
	if got := relFileSize(t, path); got != cut {
		t.Fatalf("file is %d bytes after the refused writes, cut to %d: the Store wrote to it", got, cut)
	}
	s.Close()
	r, err := Open(path, nil)
	if err != nil {
		t.Fatalf("reopen of the cut file: %v", err)
	}
	defer r.Close()
	if r.Has([]byte("new")) || r.Size() > cut {
		t.Fatalf("reopened: tail %d (cut %d), new=%v", r.Size(), cut, r.Has([]byte("new")))
	}
}

// TestLastEntryOverwritten: bytes of the last entry's metadata changed by
// another process (the file keeps its size) make the next write fail with
// ErrCorrupt rather than chain a new entry onto a broken one.
func TestLastEntryOverwritten(t *testing.T) {
	s, path := openT(t, nil)
	putT(t, s, "a", "1")
	putT(t, s, "b", "2")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff, 0xff}, s.Size()-2)
	f.Close()
	size := relFileSize(t, path)
	if err := s.Put([]byte("c"), []byte("3")); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "overwritten") {
		t.Fatalf("Put after the last metadata changed = %v, want ErrCorrupt", err)
	}
	if err := s.Put([]byte("c"), []byte("3")); !errors.Is(err, ErrFailed) {
		t.Fatalf("the next Put = %v, want ErrFailed", err)
	}
	if relFileSize(t, path) != size {
		t.Fatal("the refused Put wrote to the file")
	}
}

// TestSyncOnCutFile: Sync must not report success for entries another
// process cut off the file.
func TestSyncOnCutFile(t *testing.T) {
	s, path := openT(t, nil)
	cutStore(t, s)
	cutFile(t, path, 100)
	if err := s.Sync(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Sync on a cut file = %v, want ErrCorrupt", err)
	}
	if err := s.Sync(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Sync again = %v, want ErrFailed", err)
	}
}

// TestFileCutUnderFollower: the same cut under a read-only Store: Stats and
// Get do not fault, Refresh moves to what is left.
func TestFileCutUnderFollower(t *testing.T) {
	w, path := openT(t, nil)
	model, metaAt := cutStore(t, w)
	w.Close()
	f := reopenT(t, path, &Options{ReadOnly: true})
	v := reopenT(t, path, &Options{ReadOnly: true, VerifyChecksums: true})
	checkModel(t, f, model)
	cutFile(t, path, 4096)
	if _, err := v.Get([]byte("small3")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get with VerifyChecksums of a value cut off = %v, want ErrCorrupt", err)
	}
	if st := f.Stats(); st.LiveKeys != len(model) {
		t.Fatalf("Stats = %+v", st)
	}
	for k := range metaAt {
		if _, err := f.Get([]byte(k)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Get(%s) = %v, want ErrCorrupt", k, err)
		}
	}
	if err := f.Refresh(); err != nil {
		t.Fatalf("Refresh after the cut: %v", err)
	}
	if f.Size() > 4096 || f.Has([]byte("long1")) {
		t.Fatalf("after Refresh: tail %d, long1 %v", f.Size(), f.Has([]byte("long1")))
	}
	for e := range f.Entries() {
		if err := e.Verify(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenFaultingFile: pages of the file fault while Open scans it (the
// file cut right after its size was read; a sparse file on a full tmpfs
// faults the same way). The writer's Open fails with ErrCorrupt instead of
// dying of SIGBUS; a read-only Open retries and opens what is there.
func TestOpenFaultingFile(t *testing.T) {
	for _, ro := range []bool{false, true} {
		t.Run(fmt.Sprint("read-only=", ro), func(t *testing.T) {
			w, path := openT(t, nil)
			cutStore(t, w)
			w.Close()
			ffs := faultfs.New(nil)
			ffs.CutAfterSize(path, 4096)
			s, err := Open(path, &Options{fs: ffs, ReadOnly: ro})
			if ffs.Fired() != 1 {
				t.Fatalf("the cut did not happen")
			}
			if ro {
				if err != nil {
					t.Fatalf("read-only Open = %v", err)
				}
				defer s.Close()
				if s.Size() > 4096 {
					t.Fatalf("tail %d past the cut", s.Size())
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open on a file whose pages fault succeeded")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "SIGBUS") {
				t.Fatalf("Open = %v, want ErrCorrupt naming the fault", err)
			}
			s, err = Open(path, nil)
			if err != nil {
				t.Fatalf("the next Open: %v", err)
			}
			defer s.Close()
			if s.Size() > 4096 {
				t.Fatalf("tail %d past the cut", s.Size())
			}
		})
	}
}

// TestGetLongValueAllocatesNothing: the guarded path for values whose length
// is not packed allocates nothing either.
func TestGetLongValueAllocatesNothing(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "long", strings.Repeat("x", maxPacked+1))
	key := []byte("long")
	if n := testing.AllocsPerRun(1000, func() {
		e, err := s.Get(key)
		if err != nil || e.Len() != maxPacked+1 {
			panic(err)
		}
	}); n != 0 {
		t.Fatalf("Get of a long value allocates %.1f times per call", n)
	}
}

// ---- issue 11 §7: ReclaimableBytes is exact ----

// TestReclaimableBytesExact: Stats.ReclaimableBytes is exactly what Compact
// frees, on the Rust vectors and on stores of mixed lengths (short, packed
// and long values, deletes, overwrites).
func TestReclaimableBytesExact(t *testing.T) {
	type build func(t *testing.T, path string)
	vector := func(name string) build {
		return func(t *testing.T, path string) {
			b, err := os.ReadFile(filepath.Join("testdata/vectors", name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mixed := func(seed int, lens ...int) build {
		return func(t *testing.T, path string) {
			s := reopenT(t, path, nil)
			for i, n := range lens {
				k := fmt.Appendf(nil, "k%d", (i*seed)%7)
				if err := s.Put(k, bytes.Repeat([]byte{byte(i + 1)}, n)); err != nil {
					t.Fatal(err)
				}
				if i%5 == 4 {
					s.Delete(fmt.Appendf(nil, "k%d", (i+seed)%7))
				}
			}
			s.Close()
		}
	}
	cases := map[string]build{
		"worked_example": vector("worked_example.bin"), "small": vector("small.bin"), "k1000": vector("k1000.bin"),
		"one value":       mixed(1, 1),
		"every length":    mixed(3, 1, 2, 43, 44, 45, 63, 64, 65, 107, 108, 109, 5),
		"long values":     mixed(2, maxPacked, maxPacked+1, 3, 70000, 1, maxPacked+45, 100),
		"long last value": mixed(5, 10, 20, 30, maxPacked+2),
		"all deleted": func(t *testing.T, path string) {
			mixed(1, 5)(t, path)
			s := reopenT(t, path, nil)
			s.Delete([]byte("k0"))
			s.Close()
		},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.simdr")
			b(t, path)
			s := reopenT(t, path, nil)
			st := s.Stats()
			if err := s.Compact(); err != nil {
				t.Fatal(err)
			}
			freed := st.FileBytes - s.Size()
			if st.ReclaimableBytes != freed {
				t.Fatalf("ReclaimableBytes = %d, Compact freed %d (file %d -> %d)", st.ReclaimableBytes, freed, st.FileBytes, s.Size())
			}
			if after := s.Stats(); after.ReclaimableBytes != 0 || after.LiveBytes != st.LiveBytes {
				t.Fatalf("after Compact: %+v (before %+v)", after, st)
			}
			if name == "worked_example" && freed != 85 {
				t.Fatalf("worked_example: Compact freed %d, the issue measured 85", freed)
			}
		})
	}
}
