package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "123": 123, "4KiB": 4 << 10, "4MiB": 4 << 20, "1GiB": 1 << 30, "64MB": 64 << 20, "2G": 2 << 30} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "1.5GiB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) succeeded", in)
		}
	}
}

func TestMedianAndFormats(t *testing.T) {
	if m := median([]float64{5, 1, 3}); m != 3 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
	for v, want := range map[float64]string{12.34: "12.3 ns", 1234: "1.23 µs", 2.5e6: "2.50 ms", 3e9: "3.00 s"} {
		if got := fmtNs(v); got != want {
			t.Errorf("fmtNs(%v) = %q, want %q", v, got, want)
		}
	}
	if got := commas(1234567); got != "1,234,567" {
		t.Errorf("commas = %q", got)
	}
}

// TestKeysDistinct checks that the generated keys are distinct and the values
// are the requested size.
func TestKeysDistinct(t *testing.T) {
	d := newDataset(50_000, 100, 1)
	seen := map[string]bool{}
	var kb [keyLen]byte
	for i := 0; i < d.n; i++ {
		k := string(d.key(i, kb[:]))
		if seen[k] {
			t.Fatalf("key %d repeats", i)
		}
		seen[k] = true
		if len(d.value(i, 0)) != 100 {
			t.Fatalf("value %d has %d bytes", i, len(d.value(i, 0)))
		}
	}
}

// TestTargets renders a report from made-up results and checks the verdicts.
func TestTargets(t *testing.T) {
	set := sizeSet{n: 1_000_000, size: 100}
	mk := func(store string, load, get1, reopen, seq int64) result {
		r := result{Store: store, N: set.n, Size: set.size, M: map[string]measure{
			wLoad:    {Ops: int64(set.n), Ns: load, Bytes: int64(set.n) * 116},
			wGet1:    {Ops: int64(set.n), Ns: get1},
			wGetP:    {Ops: int64(set.n), Ns: get1 / 2},
			wMixed:   {Ops: int64(set.n), Ns: get1},
			wReopen:  {Ops: 1, Ns: reopen},
			wClose:   {Ops: 1, Ns: 1},
			wSeqRead: {Ops: 1, Ns: seq, Bytes: 1 << 27},
		}, IndexBytes: 23_500_000, IndexBytesReo: 23_500_000, IndexKeys: int64(set.n)}
		for w, m := range r.M {
			if m.Ns == 0 {
				delete(r.M, w)
			}
		}
		return r
	}
	var stores []storeDef
	for _, name := range []string{"simdr", "map", "file", "bbolt"} {
		s, _ := findStore(name)
		stores = append(stores, s)
	}
	r := &report{sets: []sizeSet{set}, stores: stores, runs: 1, results: map[string][]result{
		resultKey("kv", set): {
			mk("simdr", 200e6, 300e6, 30e6, 15e6),
			mk("map", 100e6, 250e6, 0, 0),
			mk("file", 150e6, 0, 0, 0),
			mk("bbolt", 900e6, 900e6, 1e6, 1e6),
		},
	}}
	md, svg, verdicts := r.render("x.svg")
	for _, want := range []string{
		"PASS  random Get ≤ 1.5× the map baseline",
		"PASS  random Get faster than every other store",
		"MISS  batched load ≥ 0.9× the plain file's bytes/s",
		"PASS  batched load faster than every other store",
		"PASS  reopen ≤ 3× one sequential read of the file",
		"PASS  index memory ≤ 24 bytes per key",
	} {
		if !strings.Contains(verdicts, want) {
			t.Errorf("verdicts lack %q:\n%s", want, verdicts)
		}
	}
	if !strings.Contains(md, "| bbolt |") || !strings.Contains(md, "![headline figures](x.svg)") {
		t.Errorf("report lacks rows or the chart:\n%s", md)
	}
	if !strings.HasPrefix(svg, "<svg ") || !strings.HasSuffix(svg, "</svg>\n") {
		t.Errorf("not an SVG document")
	}
}

// madeUp is a result of store on set with the given per-op times (ns) and
// cold figures (cold: per-Get ns of the cold Gets and of the preads).
func madeUp(set sizeSet, store string, get1 int64, coldGet, coldPread int64) result {
	n := int64(set.n)
	r := result{Store: store, N: set.n, Size: set.size, M: map[string]measure{
		wLoad:    {Ops: n, Ns: 500 * n, Bytes: n * 116},
		wGet1:    {Ops: n, Ns: get1 * n, Major: get1 * 10},
		wGetP:    {Ops: n, Ns: get1 * n / 2},
		wMixed:   {Ops: n, Ns: get1 * n},
		wReopen:  {Ops: 1, Ns: 3e8},
		wClose:   {Ops: 1, Ns: 1e8},
		wSeqRead: {Ops: 1, Ns: 2e8, Bytes: 1 << 30},
	}, IndexBytes: 22 * n, IndexBytesReo: 22 * n, IndexKeys: n}
	if coldGet > 0 {
		r.M[wColdReopen] = measure{Ops: 1, Ns: 5e8}
		for _, k := range coldGets {
			r.M[fmt.Sprint(wCold, k)] = measure{Ops: int64(k * coldRounds), Ns: coldGet * int64(k*coldRounds), Bytes: 4096 * int64(k*coldRounds), P50: coldGet / 2}
			r.M[fmt.Sprint(wPread, k)] = measure{Ops: int64(k * coldRounds), Ns: coldPread * int64(k*coldRounds), P50: coldPread}
		}
	}
	return r
}

// TestSection renders a large data shape into its own section: the 1.2×
// targets of issue 17 apply, the cold table is there, only the set's stores
// appear, and writing the section again replaces it rather than adding one.
func TestSection(t *testing.T) {
	set := sizeSet{n: 10_000_000, size: 100, only: []string{"simdr", "map", "pogreb"}}
	var stores []storeDef
	for _, name := range []string{"simdr", "map", "file", "pogreb"} {
		s, _ := findStore(name)
		stores = append(stores, s)
	}
	r := &report{sets: []sizeSet{set}, stores: stores, runs: 1, cold: true, setTime: map[string]time.Duration{}, machine: machine{Commit: "abc1234"},
		results: map[string][]result{resultKey("kv", set): {
			madeUp(set, "simdr", 260, 40_000, 36_000), // cold: 1.11×
			madeUp(set, "map", 200, 0, 0),             // Get: 1.3×
			madeUp(set, "pogreb", 300, 120_000, 36_000),
			madeUp(set, "file", 1, 0, 0), // not in the set: not shown
		}}}
	md, svg, verdicts := r.renderSection(set, "benchmarks-10m.svg")
	for _, want := range []string{
		"MISS  random Get ≤ 1.2× the map baseline",
		"PASS  cold Get ≤ 1.2× a cold 4 KiB pread of its file (100 Gets an Open)",
		"PASS  cold Get ≤ 1.2× a cold 4 KiB pread of its file (1,000 Gets an Open)",
	} {
		if !strings.Contains(verdicts, want) {
			t.Errorf("verdicts lack %q:\n%s", want, verdicts)
		}
	}
	for _, want := range []string{"### 10,000,000 × 100 B values", "commit abc1234", "#### Cold page cache", "| pogreb | 500 ms | 120 µs | 36.0 µs | 3.33× (1.67×) | 4.00 KiB |", "![10,000,000 × 100 B](benchmarks-10m.svg)", "during these Gets (the page cache did not hold the files): simdr 2,600, map 2,000, pogreb 3,000."} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| file |") || strings.Contains(svg, ">file<") {
		t.Errorf("a store that did not run on the set is shown:\n%s", md)
	}
	if set.label() != "10m" || (sizeSet{n: 100_000, size: 4096}).label() != "100k-4kib" {
		t.Errorf("labels %q, %q", set.label(), (sizeSet{n: 100_000, size: 4096}).label())
	}

	doc := "# Benchmarks\n\nintro\n"
	once := replaceSection(doc, set.label(), md)
	twice := replaceSection(once, set.label(), md)
	if once != twice || strings.Count(once, "<!-- bench:10m ") != 1 || !strings.HasPrefix(once, doc) {
		t.Errorf("replacing a section changed more than it:\n%s\n----\n%s", once, twice)
	}
	other := replaceSection(once, "100m", "x\n")
	if !strings.HasPrefix(other, once[:len(once)-1]) || !strings.Contains(other, "<!-- /bench:100m -->") {
		t.Errorf("a second section did not go after the first:\n%s", other)
	}
	again := replaceSection(other, set.label(), "new\n")
	if !strings.Contains(again, "new\n<!-- /bench:10m -->") || strings.Contains(again, "### 10,000,000") || !strings.Contains(again, "<!-- /bench:100m -->") {
		t.Errorf("replacing the first section lost or kept the wrong text:\n%s", again)
	}

	kept := keepTail("# new report\n\n"+keepMarker+"\n", "# old report\n"+keepMarker+"\nnotes\n")
	if kept != "# new report\n\n"+keepMarker+"\nnotes\n" {
		t.Errorf("keepTail = %q", kept)
	}
	if kept := keepTail("# new\n"+keepMarker+"\n", "# old, no marker\n"); kept != "# new\n"+keepMarker+"\n" {
		t.Errorf("keepTail without a marker = %q", kept)
	}
	if md, _, _ := r.render("x.svg"); !strings.HasSuffix(md, keepMarker+"\n") {
		t.Errorf("a whole report does not end with the marker:\n%s", md[max(0, len(md)-200):])
	}
}

// TestMapKV: the map baseline gives back what was put, across slabs and
// after a value is replaced.
func TestMapKV(t *testing.T) {
	s, _ := openMap("")
	k := s.(*mapKV)
	big := make([]byte, slabBytes/3)
	for i := range big {
		big[i] = byte(i)
	}
	keys := [][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("d")}
	vals := [][]byte{[]byte("12345678x"), big, big[1:], big[2:]}
	if err := s.PutBatch(keys, vals); err != nil {
		t.Fatal(err)
	}
	k.setConcurrent()
	if err := s.Put(keys[0], []byte("replaced")); err != nil {
		t.Fatal(err)
	}
	vals[0] = []byte("replaced")
	if len(k.slabs) < 2 {
		t.Fatalf("%d slabs for %d bytes", len(k.slabs), 3*len(big))
	}
	for i, key := range keys {
		n, h, err := s.Get(key)
		if err != nil || n != len(vals[i]) || h != head8(vals[i]) {
			t.Errorf("Get(%s) = %d, %x, %v; want %d, %x", key, n, h, err, len(vals[i]), head8(vals[i]))
		}
	}
	if _, _, err := s.Get([]byte("missing")); err == nil {
		t.Error("a missing key was found")
	}
	if _, err := k.add(make([]byte, slabBytes+1)); err == nil {
		t.Error("a value larger than a slab was taken")
	}
}

// TestEvictDir: evicting a directory leaves none of its files' pages
// cached, reading them again reads from storage, and a file read whole is
// no longer among the cold ones.
func TestEvictDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := evictDir(dir); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := cachedPages(f, 1<<20); err != nil || n != 0 {
		t.Fatalf("%d pages cached after eviction (%v)", n, err)
	}
	if fs, err := dirFiles(dir, true); err != nil || len(fs.paths) != 1 {
		t.Fatalf("cold files after eviction: %v, %v", fs, err)
	}
	r0 := readBytes()
	if _, err := io.Copy(io.Discard, f); err != nil {
		t.Fatal(err)
	}
	if r0 >= 0 && readBytes()-r0 < 1<<20 {
		t.Errorf("reading the evicted file read %d bytes from storage, want 1 MiB", readBytes()-r0)
	}
	if fs, err := dirFiles(dir, true); err == nil {
		t.Errorf("a file read whole is taken for cold: %v", fs.paths)
	}
}
