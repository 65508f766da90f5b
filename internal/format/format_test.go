package format

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

func TestPrepad(t *testing.T) {
	for _, tc := range []struct{ x, want int64 }{
		{0, 0}, {1, 63}, {63, 1}, {64, 0}, {65, 63}, {84, 44}, {128, 0}, {MaxOffset, 1},
	} {
		if got := Prepad(tc.x); got != tc.want {
			t.Errorf("Prepad(%d) = %d, want %d", tc.x, got, tc.want)
		}
	}
}

func TestValueOK(t *testing.T) {
	for _, tc := range []struct {
		v    []byte
		want bool
	}{
		{nil, false}, {[]byte{}, false}, {[]byte{0}, false}, {[]byte{1}, true},
		{[]byte{0, 0}, true}, {make([]byte, 4096), true},
	} {
		if got := ValueOK(tc.v); got != tc.want {
			t.Errorf("ValueOK(%x) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// TestWorkedExample builds the two entries of FORMAT.md's worked example and
// checks every byte against the spec.
func TestWorkedExample(t *testing.T) {
	var f []byte
	f = AppendEntry(f, 0, Hash([]byte("a")), []byte("hello"))
	if len(f) != 25 || EntrySize(0, 5) != 25 {
		t.Fatalf("first entry: %d bytes, want 25", len(f))
	}
	f = AppendEntry(f, 25, Hash([]byte("b")), []byte("hi"))
	if want := int64(25 + 39 + 2 + 20); int64(len(f)) != want || EntrySize(25, 2) != 61 {
		t.Fatalf("file: %d bytes, want %d", len(f), want)
	}
	if !bytes.Equal(f[25:64], make([]byte, 39)) || string(f[64:66]) != "hi" {
		t.Fatalf("pre-pad or payload misplaced: %x", f)
	}
	m := ReadMeta(f[66:86])
	if m.Prev != 25 || m.CRC != Checksum([]byte("hi")) || m.Hash != Hash([]byte("b")) {
		t.Fatalf("meta %+v", m)
	}
	L, ok := FindTail(f, 0)
	if !ok || L != int64(len(f)) {
		t.Fatalf("FindTail = %d, %v", L, ok)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := Meta{Hash: 0x0123456789abcdef, Prev: MaxOffset, CRC: 0xfeedbeef}
	b := AppendMeta(nil, m)
	if got := hex.EncodeToString(b); got != "efcdab8967452301"+"ffffffffffff0000"+"efbeedfe" {
		t.Fatalf("little-endian layout: %s", got)
	}
	if ReadMeta(b) != m {
		t.Fatalf("round trip: %+v", ReadMeta(b))
	}
}

func TestTombstoneCRC(t *testing.T) {
	if Checksum([]byte{0}) != TombstoneCRC {
		t.Fatalf("crc32(0x00) = %08x", Checksum([]byte{0}))
	}
}

// build appends random entries and tombstones and returns the file and the
// tail after each entry.
func build(r *rand.Rand, n int) ([]byte, []int64) {
	var f []byte
	var tails []int64
	for i := 0; i < n; i++ {
		h := r.Uint64()
		if r.IntN(5) == 0 {
			f = AppendTombstone(f, int64(len(f)), h)
		} else {
			v := make([]byte, 1+r.IntN(200))
			for j := range v {
				v[j] = byte(r.IntN(3)) // many zeros
			}
			if len(v) == 1 {
				v[0] = 7
			}
			f = AppendEntry(f, int64(len(f)), h, v)
		}
		tails = append(tails, int64(len(f)))
	}
	return f, tails
}

func TestDecodeWalk(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	f, tails := build(r, 200)
	var seen []int64
	Walk(f, 0, int64(len(f)), func(e Entry) bool {
		if !e.Valid(f) {
			t.Fatalf("entry ending at %d fails its checksum", e.Next())
		}
		if e.Start%Align != 0 && !e.Tombstone {
			t.Fatalf("payload at %d not aligned", e.Start)
		}
		seen = append(seen, e.Next())
		return true
	})
	if len(seen) != len(tails) {
		t.Fatalf("walked %d entries, want %d", len(seen), len(tails))
	}
	for i, tl := range seen {
		if want := tails[len(tails)-1-i]; tl != want {
			t.Fatalf("entry %d ends at %d, want %d", i, tl, want)
		}
	}
}

// TestFindTailTorn cuts a file at every offset of its last entries and at
// random places: FindTail must land on the last whole entry.
func TestFindTailTorn(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	f, tails := build(r, 50)
	last := func(n int64) int64 {
		best := int64(0)
		for _, tl := range tails {
			if tl <= n {
				best = tl
			}
		}
		return best
	}
	for n := int64(len(f)); n >= 0; n-- {
		L, ok := FindTail(f[:n], 0)
		if want := last(n); L != want || !ok && n > 0 && want > 0 {
			t.Fatalf("cut at %d: FindTail = %d, %v; want %d", n, L, ok, want)
		}
	}
}

// TestFindTailGarbage appends garbage, zeros, and a copy of an earlier entry:
// the tail must stay where the real entries end.
func TestFindTailGarbage(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	f, tails := build(r, 30)
	end := tails[len(tails)-1]
	junk := map[string][]byte{
		"zeros": make([]byte, 300),
		"random": func() []byte {
			b := make([]byte, 300)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}(),
		"copy": bytes.Clone(f[tails[3]:tails[5]]),
	}
	for name, j := range junk {
		g := append(bytes.Clone(f), j...)
		if L, ok := FindTail(g, 0); !ok || L != end {
			t.Errorf("%s: FindTail = %d, %v; want %d", name, L, ok, end)
		}
	}
}

// TestFindTailFloor follows from a known tail, as a reader's Refresh does.
func TestFindTailFloor(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	f, tails := build(r, 40)
	floor := tails[19]
	if L, ok := FindTail(f, floor); !ok || L != int64(len(f)) {
		t.Fatalf("FindTail from %d = %d, %v", floor, L, ok)
	}
	if L, ok := FindTail(f[:floor], floor); !ok || L != floor {
		t.Fatalf("nothing new: %d, %v", L, ok)
	}
	// A floor that is not an entry boundary finds no chain.
	if L, ok := FindTail(f, floor+1); ok {
		t.Fatalf("bogus floor accepted: %d", L)
	}
}

func TestDecodeRejects(t *testing.T) {
	f := AppendEntry(nil, 0, 1, []byte("abc"))
	for _, tc := range []struct {
		name string
		mut  func([]byte) []byte
		tail int64
	}{
		{"too short", func(b []byte) []byte { return b[:10] }, 10},
		{"prev past end", func(b []byte) []byte { b[len(b)-12] = 0xff; return b }, 0},
		{"tail beyond data", func(b []byte) []byte { return b }, 1000},
	} {
		b := tc.mut(bytes.Clone(f))
		tail := tc.tail
		if tail == 0 {
			tail = int64(len(b))
		}
		if _, ok := Decode(b, tail); ok {
			t.Errorf("%s: decoded", tc.name)
		}
	}
}

func FuzzFindTail(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 10))
	g, _ := build(r, 5)
	f.Add(g, int64(0))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, data []byte, floor int64) {
		if floor < 0 || floor > int64(len(data)) {
			floor = 0
		}
		L, ok := FindTail(data, floor)
		if L < floor || L > int64(len(data)) {
			t.Fatalf("L=%d outside [%d,%d]", L, floor, len(data))
		}
		if ok && !Chain(data, floor, L) {
			t.Fatalf("FindTail returned %d but Chain disagrees", L)
		}
		Walk(data, floor, L, func(e Entry) bool {
			if e.Start < floor || e.End > L || e.Start > e.End {
				t.Fatalf("entry out of range: %+v", e)
			}
			return true
		})
	})
}
