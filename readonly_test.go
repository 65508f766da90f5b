package simdr

// Read-only followers: what they may do, that they never write the file, and
// what Refresh shows them (whole new entries, never a torn in-flight append;
// the new file after a Compact, with old slices still valid).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/simdr-go/simdr/internal/format"
)

// ccFileBytes reads a whole file.
func ccFileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ccAppendRaw writes b at off in the file at path, behind the store's back
// (a writer's append, seen half done or whole).
func ccAppendRaw(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// ccState returns key hash → value of every live entry.
func ccState(s *Store) map[uint64]string {
	m := make(map[uint64]string)
	for e := range s.Entries() {
		m[e.KeyHash()] = string(e.Bytes())
	}
	return m
}

func ccSameState(t *testing.T, what string, got *Store, want map[string]string) {
	t.Helper()
	st := ccState(got)
	if len(st) != len(want) || got.Len() != len(want) {
		t.Fatalf("%s: %d keys iterated, Len %d; want %d", what, len(st), got.Len(), len(want))
	}
	for k, v := range want {
		if st[Hash([]byte(k))] != v {
			t.Fatalf("%s: key %q = %q, want %q", what, k, st[Hash([]byte(k))], v)
		}
		ccWant(t, got, k, v)
	}
}

// TestReadOnlyOpenWhileWriterHoldsLock: followers open beside a writer,
// which stays the only writer.
func TestReadOnlyOpenWhileWriterHoldsLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "a", "1")
	ccPut(t, w, "b", "2")
	var rs []*Store
	for range 3 {
		rs = append(rs, ccOpen(t, path, &Options{ReadOnly: true, VerifyChecksums: true}))
	}
	ccPut(t, w, "c", "3") // the writer goes on writing beside them
	if _, err := Open(path, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v, want ErrLocked", err)
	}
	for _, r := range rs {
		ccSameState(t, "before refresh", r, map[string]string{"a": "1", "b": "2"})
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		ccSameState(t, "after refresh", r, map[string]string{"a": "1", "b": "2", "c": "3"})
		if err := r.Verify(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadOnlyMissingFile: a follower neither opens nor creates a missing file.
func TestReadOnlyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing")
	_, err := Open(path, &Options{ReadOnly: true})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read-only open of a missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read-only open created the file: %v", err)
	}
}

// TestReadOnlyEmptyFile: a follower of a new, empty store sees its first write
// after Refresh.
func TestReadOnlyEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil) // creates the file, writes nothing
	r := ccOpen(t, path, &Options{ReadOnly: true})
	if r.Len() != 0 || r.Size() != 0 {
		t.Fatalf("empty file: Len %d Size %d", r.Len(), r.Size())
	}
	ccPut(t, w, "k", "v")
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	ccSameState(t, "after the first write", r, map[string]string{"k": "v"})
}

// TestReadOnlyOpenDuringFirstAppend: while a writer holds the lock and its
// first entry is still in flight, a follower opens on an empty store and sees
// the entry after Refresh once it is whole. With no writer, the same bytes
// are a corrupt file, and the probe leaves no lock behind.
func TestReadOnlyOpenDuringFirstAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	entry := format.AppendEntry(nil, 0, Hash([]byte("first")), bytes.Repeat([]byte("f"), 1000))
	ccAppendRaw(t, path, 0, entry[:600])
	r := ccOpen(t, path, &Options{ReadOnly: true})
	if r.Len() != 0 || r.Size() != 0 {
		t.Fatalf("follower during the first append: Len %d Size %d", r.Len(), r.Size())
	}
	ccAppendRaw(t, path, 0, entry)
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	ccSameState(t, "first entry whole", r, map[string]string{"first": strings.Repeat("f", 1000)})
	r.Close()
	w.Close()

	if err := os.Truncate(path, 600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, &Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("follower of a file with no entry and no writer: %v, want ErrCorrupt", err)
	}
	w2, err := Open(path, nil) // the probe left no lock behind
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("writer: %v, want ErrCorrupt", err)
	}
	if w2 != nil {
		w2.Close()
	}
}

// TestReadOnlyRejectsWrites: every write fails with ErrReadOnly and leaves the
// file as it was.
func TestReadOnlyRejectsWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "a", "1")
	ccPut(t, w, "b", "2")
	w.Close()
	before := ccFileBytes(t, path)
	r := ccOpen(t, path, &Options{ReadOnly: true})
	other := ccOpen(t, filepath.Join(dir, "other"), nil)
	var b Batch
	b.Put([]byte("x"), []byte("y"))
	b.Delete([]byte("a"))
	_, putReaderErr := r.PutReader([]byte("x"), strings.NewReader("y"))
	writes := map[string]error{
		"Put":        r.Put([]byte("x"), []byte("y")),
		"Delete":     r.Delete([]byte("a")),
		"DeleteHash": r.DeleteHash(Hash([]byte("a"))),
		"Apply":      r.Apply(&b),
		"PutReader":  putReaderErr,
		"Rename":     r.Rename([]byte("a"), []byte("z")),
		"Compact":    r.Compact(),
		"Copy into":  other.Copy([]byte("nothing"), r), // not found first is fine too
		"Move from":  r.Move([]byte("a"), other),
	}
	for op, err := range writes {
		if op == "Copy into" {
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrReadOnly) {
				t.Errorf("%s: %v", op, err)
			}
			continue
		}
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store: %v, want ErrReadOnly", op, err)
		}
	}
	ccPut(t, other, "c", "3")
	if err := other.Copy([]byte("c"), r); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Copy into a read-only store: %v, want ErrReadOnly", err)
	}
	// Move from a read-only store must not leave a copy behind in dst.
	ccWant(t, other, "a", "")
	if err := r.Sync(); err != nil {
		t.Errorf("Sync on a read-only store: %v", err)
	}
	ccSameState(t, "after rejected writes", r, map[string]string{"a": "1", "b": "2"})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, ccFileBytes(t, path)) {
		t.Fatal("a read-only store changed the file")
	}
}

// TestReadOnlyNeverModifiesFile: with a torn tail present, a follower opens
// at the last whole entry and ignores the rest; nothing it does (reads,
// iteration, Verify, Stats, Refresh, Close) changes a byte of the file. A
// writer opening afterwards cuts the tail.
func TestReadOnlyNeverModifiesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	want := map[string]string{}
	for i := range 50 {
		k, v := fmt.Sprint("k", i), strings.Repeat(fmt.Sprint(i), 10+i)
		ccPut(t, w, k, v)
		want[k] = v
	}
	ccPut(t, w, "gone", "soon")
	if err := w.Delete([]byte("gone")); err != nil {
		t.Fatal(err)
	}
	tail := w.Size()
	w.Close()
	whole := format.AppendEntry(nil, tail, Hash([]byte("torn")), bytes.Repeat([]byte("t"), 300))
	ccAppendRaw(t, path, tail, whole[:len(whole)-7]) // torn in its metadata
	before := ccFileBytes(t, path)
	fi0, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	for _, opts := range []Options{{ReadOnly: true}, {ReadOnly: true, VerifyChecksums: true}} {
		r, err := Open(path, &opts)
		if err != nil {
			t.Fatal(err)
		}
		if r.Size() != tail {
			t.Fatalf("follower's tail %d, want %d (before the torn entry)", r.Size(), tail)
		}
		ccSameState(t, "torn tail", r, want)
		if err := r.Verify(); err != nil {
			t.Fatal(err)
		}
		r.Stats()
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		if r.Size() != tail {
			t.Fatalf("Refresh took the torn entry: tail %d", r.Size())
		}
		if err := r.ForEachParallel(context.Background(), 2, func(e Entry) error { return e.Verify() }); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fi1, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, ccFileBytes(t, path)) || fi1.Size() != fi0.Size() || !fi1.ModTime().Equal(fi0.ModTime()) {
		t.Fatal("a read-only store changed the file")
	}
	w = ccOpen(t, path, nil)
	if fi, _ := os.Stat(path); fi.Size() != tail {
		t.Fatalf("the writer left the torn tail: size %d, want %d", fi.Size(), tail)
	}
	ccSameState(t, "writer after the torn tail", w, want)
}

// TestRefreshSeesPutsAndDeletes: a follower sees nothing new until Refresh,
// then exactly the writer's state.
func TestRefreshSeesPutsAndDeletes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	want := map[string]string{"a": "1", "b": "2", "c": "3"}
	for k, v := range want {
		ccPut(t, w, k, v)
	}
	r := ccOpen(t, path, &Options{ReadOnly: true})
	ccSameState(t, "open", r, want)
	old, _ := r.Get([]byte("a"))

	for round := range 5 {
		prev := ccCopyStrings(want)
		ccPut(t, w, "a", fmt.Sprint("a", round))
		want["a"] = fmt.Sprint("a", round)
		k := fmt.Sprint("new", round)
		ccPut(t, w, k, "x")
		want[k] = "x"
		if err := w.Delete([]byte("b")); err != nil {
			t.Fatal(err)
		}
		delete(want, "b")
		var b Batch
		b.Put([]byte("b"), []byte(fmt.Sprint("b", round)))
		b.Delete([]byte("c"))
		b.Put([]byte("c"), []byte(fmt.Sprint("c", round)))
		b.Delete([]byte(fmt.Sprint("new", round-1)))
		if err := w.Apply(&b); err != nil {
			t.Fatal(err)
		}
		want["b"], want["c"] = fmt.Sprint("b", round), fmt.Sprint("c", round)
		delete(want, fmt.Sprint("new", round-1))
		ccSameState(t, "before refresh", r, prev) // nothing new yet
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		ccSameState(t, fmt.Sprint("refresh ", round), r, want)
		if r.Size() != w.Size() {
			t.Fatalf("follower's size %d, writer's %d", r.Size(), w.Size())
		}
		es, err := r.GetMany([][]byte{[]byte("a"), []byte("b"), []byte("zz")})
		if err != nil || string(es[0].Bytes()) != want["a"] || string(es[1].Bytes()) != want["b"] || es[2].Exists() {
			t.Fatalf("GetMany after refresh: %v %v", es, err)
		}
	}
	if string(old.Bytes()) != "1" {
		t.Fatalf("a slice from before the refreshes changed: %q", old.Bytes())
	}
	ws, rs := w.Stats(), r.Stats()
	ws.IndexBytes, rs.IndexBytes = 0, 0 // the tables grew differently
	if ws != rs {
		t.Fatalf("stats differ: writer %+v follower %+v", ws, rs)
	}
}

func ccCopyStrings(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestRefreshIgnoresInFlightAppend: an append seen half done (cut anywhere:
// in the pre-pad, the value, the metadata; or a batch cut between entries) is
// not seen; once whole, it is.
func TestRefreshIgnoresInFlightAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "base", "x") // leaves the tail unaligned: the next entry has a pre-pad
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := ccOpen(t, path, &Options{ReadOnly: true})
	want := map[string]string{"base": "x"}
	tail := r.Size()
	for i, n := range []int{1, 100, 5000} {
		k, v := fmt.Sprint("k", i), strings.Repeat(string(rune('a'+i)), n)
		entry := format.AppendEntry(nil, tail, Hash([]byte(k)), []byte(v))
		pad := int(format.Prepad(tail))
		cuts := []int{1, pad, pad + 1, pad + n/2, pad + n, pad + n + 8, len(entry) - 1}
		for _, cut := range cuts {
			if cut <= 0 || cut >= len(entry) {
				continue
			}
			ccAppendRaw(t, path, tail, entry[:cut])
			if err := r.Refresh(); err != nil {
				t.Fatal(err)
			}
			if r.Size() != tail {
				t.Fatalf("entry %d cut at %d of %d: follower moved to %d", i, cut, len(entry), r.Size())
			}
			ccSameState(t, "in flight", r, want)
		}
		ccAppendRaw(t, path, tail, entry)
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		want[k] = v
		ccSameState(t, "whole", r, want)
		tail += int64(len(entry))
	}
	// A tombstone, torn then whole.
	tomb := format.AppendTombstone(nil, tail, Hash([]byte("k0")))
	ccAppendRaw(t, path, tail, tomb[:len(tomb)-1])
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	ccSameState(t, "torn tombstone", r, want)
	ccAppendRaw(t, path, tail, tomb)
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	delete(want, "k0")
	ccSameState(t, "tombstone", r, want)
	tail += int64(len(tomb))
	// Zeroes past the end (a file grown before its data arrived) are not an entry.
	ccAppendRaw(t, path, tail, make([]byte, 4096))
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	if r.Size() != tail {
		t.Fatalf("follower took zeroes for entries: tail %d, want %d", r.Size(), tail)
	}
	// The writer cuts them when it opens; the follower carries on.
	w = ccOpen(t, path, nil)
	ccPut(t, w, "k1", "after")
	want["k1"] = "after"
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	ccSameState(t, "after the writer's recovery", r, want)
}

// TestRefreshAfterCompact: after the writer compacts (the path names a new
// file), Refresh moves the follower to it; slices it handed out before stay
// valid, even after the writer has closed, until the follower closes.
func TestRefreshAfterCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	want := map[string]string{}
	for i := range 200 {
		k, v := fmt.Sprint("k", i), strings.Repeat(fmt.Sprint(i, "-"), 1+i%50)
		ccPut(t, w, k, v)
		want[k] = v
	}
	r := ccOpen(t, path, &Options{ReadOnly: true})
	var kept []Entry
	var keptCopy [][]byte
	for i := 0; i < 200; i += 7 {
		e, err := r.Get([]byte(fmt.Sprint("k", i)))
		if err != nil {
			t.Fatal(err)
		}
		kept, keptCopy = append(kept, e), append(keptCopy, bytes.Clone(e.Bytes()))
	}
	for round := range 3 {
		for i := round; i < 200; i += 3 {
			k := fmt.Sprint("k", i)
			if i%2 == 0 {
				if err := w.Delete([]byte(k)); err != nil {
					t.Fatal(err)
				}
				delete(want, k)
			} else {
				ccPut(t, w, k, fmt.Sprint("round", round))
				want[k] = fmt.Sprint("round", round)
			}
		}
		if err := w.Compact(); err != nil {
			t.Fatal(err)
		}
		if round == 1 {
			if err := w.Compact(); err != nil { // twice between two refreshes
				t.Fatal(err)
			}
		}
		ccPut(t, w, "after", fmt.Sprint(round))
		want["after"] = fmt.Sprint(round)
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		ccSameState(t, fmt.Sprint("after compact ", round), r, want)
		if r.Size() != w.Size() {
			t.Fatalf("follower's size %d, writer's %d", r.Size(), w.Size())
		}
		// The follower follows the new file: later appends show up.
		ccPut(t, w, "later", fmt.Sprint(round))
		want["later"] = fmt.Sprint(round)
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		ccSameState(t, "later", r, want)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for i, e := range kept {
		if !bytes.Equal(e.Bytes(), keptCopy[i]) {
			t.Fatalf("slice %d from before the compactions changed", i)
		}
		if err := e.Verify(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRefreshAfterCutBack: if the file gets shorter than what the follower
// knows (a writer repairing it), Refresh reopens it.
func TestRefreshAfterCutBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "a", "1")
	mid := w.Size()
	ccPut(t, w, "b", "2")
	w.Close()
	r := ccOpen(t, path, &Options{ReadOnly: true})
	ccSameState(t, "open", r, map[string]string{"a": "1", "b": "2"})
	if err := os.Truncate(path, mid); err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	ccSameState(t, "cut back", r, map[string]string{"a": "1"})
}

// TestRefreshWritableAndClosed: Refresh does nothing on a writer and fails
// with ErrClosed after Close.
func TestRefreshWritableAndClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "a", "1")
	if err := w.Refresh(); err != nil {
		t.Fatalf("Refresh on a writer: %v", err)
	}
	r := ccOpen(t, path, &Options{ReadOnly: true})
	r.Close()
	if err := r.Refresh(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Refresh after Close: %v, want ErrClosed", err)
	}
}

// ccFailingReader yields n filler bytes, then fails.
type ccFailingReader struct{ left int }

func (f *ccFailingReader) Read(p []byte) (int, error) {
	if f.left == 0 {
		return 0, errors.New("source failed")
	}
	n := min(len(p), f.left)
	for i := range p[:n] {
		p[i] = byte(i*7 + 1)
	}
	f.left -= n
	return n, nil
}

// TestRefreshWhileWriterCutsFile: the writer cuts the file while followers
// scan past their tail: a PutReader whose source fails (its partial entry is
// cut off), and a new writer's recovery cutting a torn tail. Touching the cut
// pages raises SIGBUS; the follower must survive it (this used to crash the
// process) and stay consistent.
func TestRefreshWhileWriterCutsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ccPut(t, w, "a", "1")
	r := ccOpen(t, path, &Options{ReadOnly: true})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var refreshes int
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := r.Refresh(); err != nil {
				t.Error(err)
				return
			}
			refreshes++
		}
	})
	size := 8 << 20
	if ccRace() {
		size = 2 << 20 // the scan is slower: the windows are as wide
	}
	for i := range 8 {
		if _, err := w.PutReader([]byte("big"), &ccFailingReader{left: size}); err == nil {
			t.Fatal("PutReader with a failing source succeeded")
		}
		ccPut(t, w, "a", fmt.Sprint(i))
	}
	// A crash mid-append leaves a long torn tail; the next writer cuts it.
	tail := w.Size()
	w.Close()
	ccAppendRaw(t, path, tail, bytes.Repeat([]byte{7}, size))
	for range 4 {
		w, err = Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		ccAppendRaw(t, path, tail, bytes.Repeat([]byte{7}, size))
	}
	close(stop)
	wg.Wait()
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	ccSameState(t, "after the cuts", r, map[string]string{"a": "7"})
	t.Logf("%d refreshes", refreshes)
}
