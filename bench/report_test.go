package main

import (
	"math"
	"strings"
	"testing"
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
	set := sizeSet{1_000_000, 100}
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
