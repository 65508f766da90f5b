package format

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// oldShift is crcShift as zlib computes it, bit by bit.
func oldShift(crc uint32, n int64) uint32 {
	p := uint32(1) << 31 // x^0
	for k := 3; n != 0; n, k = n>>1, k+1 {
		if n&1 != 0 {
			p = multModP(x2n[k&31], p)
		}
	}
	return multModP(p, crc)
}

// TestCRCMath checks the table-driven shift against zlib's, unfeed against
// checksums computed forwards, and the CRC table property unfeed rests on.
func TestCRCMath(t *testing.T) {
	var seen [256]bool
	for _, v := range crcTab {
		if seen[v>>24] {
			t.Fatal("the CRC table's top bytes are not distinct")
		}
		seen[v>>24] = true
	}
	r := rand.New(rand.NewPCG(11, 12))
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for range 2000 {
		a := r.IntN(len(data))
		b := a + r.IntN(len(data)-a+1)
		full, part := Checksum(data[:b]), Checksum(data[:a])
		if got := unfeed(full, data[a:b]); got != part {
			t.Fatalf("unfeed(crc(:%d), [%d:%d]) = %08x, want %08x", b, a, b, got, part)
		}
		if got, want := crcShift(part, int64(b-a)), oldShift(part, int64(b-a)); got != want {
			t.Fatalf("crcShift(%08x, %d) = %08x, want %08x", part, b-a, got, want)
		}
		if got := crcUnshift(crcShift(part, int64(b-a)), int64(b-a)); got != part {
			t.Fatalf("crcUnshift(crcShift(%08x, %d)) = %08x", part, b-a, got)
		}
		if got := Checksum(data[a:b]) ^ crcShift(part, int64(b-a)); got != full {
			t.Fatalf("combine over [0:%d] [%d:%d] = %08x, want %08x", a, a, b, got, full)
		}
	}
	for _, n := range []int64{0, 1, 1 << 40, MaxOffset, 1<<62 + 12345} {
		c := r.Uint32()
		if got, want := crcShift(c, n), oldShift(c, n); got != want {
			t.Fatalf("crcShift(%08x, %d) = %08x, want %08x", c, n, got, want)
		}
	}
}

// TestSumsCursor moves the running checksum at random, near and far, up and
// down, as FindTail and step do.
func TestSumsCursor(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for _, floor := range []int64{0, 77, 300000} {
		c := &sums{floor: floor}
		x := int64(len(data))
		for range 3000 {
			switch r.IntN(4) {
			case 0:
				x = floor + r.Int64N(int64(len(data))-floor+1)
			case 1:
				x = min(int64(len(data)), x+r.Int64N(3000))
			default:
				x = max(floor, x-r.Int64N(3000))
			}
			if got, want := c.upto(data, x), Checksum(data[floor:x]); got != want {
				t.Fatalf("floor %d: upto(%d) = %08x, want %08x", floor, x, got, want)
			}
		}
	}
}

// plainTail is FindTail without what it remembers: Chain at every offset.
func plainTail(data []byte, floor int64) (int64, bool) {
	for L := int64(len(data)); L > floor; L-- {
		if Chain(data, floor, L) {
			return L, true
		}
	}
	return floor, int64(len(data)) == floor
}

// tornKinds are the shapes of bytes past a store's tail that cost recovery
// most (see the benchmark in recovery_bench_test.go): the real store is base,
// its entry ends ends.
var tornKinds = []string{
	"random", "zeros", "word=tail", "word=1", "word=64", "word=end3",
	"ends", "numeric", "numeric-offsets", "numeric-tail", "first-entries",
	"fake-chain", "fake-forest",
}

// tornTail fills b (which follows base at offset len(base)) with kind.
func tornTail(kind string, r *rand.Rand, b []byte, base int64, ends []int64) {
	le := binary.LittleEndian
	word := func(w uint64) {
		for i := 0; i+8 <= len(b); i += 8 {
			le.PutUint64(b[i:], w)
		}
	}
	clear(b)
	switch kind {
	case "random":
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	case "zeros":
	case "word=tail":
		word(uint64(base))
	case "word=1":
		word(1)
	case "word=64":
		word(64)
	case "word=end3":
		word(uint64(ends[3]))
	case "ends": // several real ends, cycled
		for i, k := 0, 0; i+24 <= len(b); i, k = i+24, k+1 {
			le.PutUint64(b[i:], 0x3333)
			le.PutUint64(b[i+8:], uint64(ends[len(ends)-1-k%40]))
		}
	case "numeric", "numeric-offsets", "numeric-tail":
		for i := 0; i+16 <= len(b); i += 16 {
			le.PutUint64(b[i:], uint64(i+1))
			switch kind {
			case "numeric-offsets":
				le.PutUint64(b[i+8:], uint64(i/16))
			case "numeric-tail":
				le.PutUint64(b[i+8:], uint64(base))
			}
		}
	case "first-entries":
		// (h, 0, crc) ends a fake first entry; (h, the end of the fake
		// first entry two records back, crc) a head.
		for k := 0; (k+1)*40 <= len(b); k++ {
			o := k * 40
			le.PutUint64(b[o:], 0x1111)
			le.PutUint32(b[o+16:], 7)
			le.PutUint64(b[o+20:], 0x2222)
			if k >= 2 {
				le.PutUint64(b[o+28:], uint64(base)+uint64(o)-60)
			}
			le.PutUint32(b[o+36:], 9)
		}
	case "fake-chain", "fake-forest":
		// 64-byte entries (44 bytes of payload) whose checksums fail: each
		// is a candidate over a long sound chain. fake-forest interleaves
		// 4096 such chains.
		d := 1
		if kind == "fake-forest" {
			d = 4096
		}
		start := base + Prepad(base)
		for i := 0; ; i++ {
			o := start + int64(i)*64
			if o+64 > base+int64(len(b)) {
				break
			}
			prev := base
			if i >= d {
				prev = o - int64(d)*64 + 64
			}
			m := b[o+44-base : o+64-base]
			le.PutUint64(m, uint64(i))
			le.PutUint64(m[8:], uint64(prev))
			le.PutUint32(m[16:], 1)
		}
	default:
		panic(kind)
	}
}

// TestFindTailAdversarial compares FindTail with the plain scan over every
// shape of torn tail that costs it most, from floor 0 and from the store's
// tail (a follower's Refresh), with the real tail found and not.
func TestFindTailAdversarial(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	base, ends := build(r, 60)
	for _, kind := range tornKinds {
		for _, size := range []int{100, 3000, 20000} {
			b := make([]byte, size)
			tornTail(kind, r, b, int64(len(base)), ends)
			data := append(append([]byte(nil), base...), b...)
			for _, floor := range []int64{0, ends[30], int64(len(base))} {
				gl, gok := FindTail(data, floor)
				wl, wok := plainTail(data, floor)
				if gl != wl || gok != wok {
					t.Fatalf("%s, %d bytes, floor %d: FindTail = %d, %v; the plain scan %d, %v",
						kind, size, floor, gl, gok, wl, wok)
				}
			}
			// Without the store beneath: no chain (or a forged one).
			for _, floor := range []int64{0} {
				gl, gok := FindTail(b, floor)
				wl, wok := plainTail(b, floor)
				if gl != wl || gok != wok {
					t.Fatalf("%s alone, %d bytes: FindTail = %d, %v; the plain scan %d, %v", kind, size, gl, gok, wl, wok)
				}
			}
		}
	}
}

// TestFindTailForged: a torn tail whose top record is a whole entry over a
// long chain of records is found (the format cannot tell it from an entry),
// and so is one just below a great many candidates that fail.
func TestFindTailForged(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	base, ends := build(r, 40)
	b := make([]byte, 1<<16)
	tornTail("fake-chain", r, b, int64(len(base)), ends)
	data := append(append([]byte(nil), base...), b...)
	// Make the entry ending at the 500th record's end whole.
	e, ok := Decode(data, int64(len(base))+Prepad(int64(len(base)))+500*64)
	if !ok {
		t.Fatal("no record")
	}
	binary.LittleEndian.PutUint32(data[e.End+16:], Checksum(data[e.Start:e.End]))
	for _, floor := range []int64{0, int64(len(base))} {
		if L, ok := FindTail(data, floor); !ok || L != e.Next() {
			t.Fatalf("floor %d: FindTail = %d, %v; want %d", floor, L, ok, e.Next())
		}
	}
	if got := fmt.Sprint(plainTail(data, 0)); got != fmt.Sprint(e.Next(), true) {
		t.Fatalf("plain scan: %s", got)
	}
}

// TestFindTailMemory: what FindTail remembers is bounded (caches of a fixed
// size), not proportional to the candidates of the torn tail (the maps it
// used to keep took 39 MB for 8 MiB of small integers, and 2.1 GB for a
// sparse file of 2 GiB).
func TestFindTailMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("4 MiB torn tails")
	}
	r := rand.New(rand.NewPCG(19, 20))
	base, ends := build(r, 2000)
	data := make([]byte, len(base)+4<<20)
	copy(data, base)
	for _, kind := range []string{"numeric-offsets", "numeric", "fake-chain", "word=tail"} {
		tornTail(kind, r, data[len(base):], int64(len(base)), ends)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		L, _ := FindTail(data, 0)
		runtime.ReadMemStats(&after)
		if L != int64(len(base)) {
			t.Fatalf("%s: FindTail = %d, want %d", kind, L, len(base))
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
			t.Errorf("%s: FindTail over 4 MiB allocated %d bytes", kind, got)
		}
	}
}
