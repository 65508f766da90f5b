package format

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// salvFile builds a file of n entries (every fifth a tombstone) and returns
// it with the end of each entry.
func salvFile(n int, seed uint64) ([]byte, []int64) {
	r := rand.New(rand.NewPCG(seed, 1))
	var data []byte
	var ends []int64
	for i := range n {
		tail := int64(len(data))
		if i%5 == 4 {
			data = AppendTombstone(data, tail, uint64(i)+1)
		} else {
			v := make([]byte, 1+r.IntN(200))
			for j := range v {
				v[j] = byte(r.Uint32()) | 1
			}
			data = AppendEntry(data, tail, uint64(i)+1, v)
		}
		ends = append(ends, int64(len(data)))
	}
	return data, ends
}

func TestDecodeDamagedTombstone(t *testing.T) {
	for _, prev := range []int64{0, 64, 25} {
		data := make([]byte, prev)
		data = AppendTombstone(data, prev, 7)
		data[prev] = 1
		e, ok := Decode(data, int64(len(data)))
		if !ok || !e.Tombstone || !e.Valid(data) || e.Intact(data) {
			t.Fatalf("prev %d: Decode = %+v, %v; Valid %v Intact %v", prev, e, ok, e.Valid(data), e.Intact(data))
		}
	}
	// A real one-byte value at an aligned offset stays a value.
	data := AppendEntry(nil, 0, 7, []byte{1})
	if e, ok := Decode(data, int64(len(data))); !ok || e.Tombstone || !e.Intact(data) {
		t.Fatalf("one-byte value: %+v, %v", e, ok)
	}
}

func TestClassifyTail(t *testing.T) {
	data, ends := salvFile(120, 1)
	n := int64(len(data))
	if n < 3*PageSize {
		t.Fatalf("%d bytes", n)
	}
	mk := func(f func(b []byte)) []byte {
		b := slices.Clone(data)
		f(b)
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
		kind TailKind
	}{
		{"torn last entry", data[:n-3], Torn},
		{"junk appended", append(slices.Clone(data), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22), Torn},
		{"a prev damaged", mk(func(b []byte) { b[ends[10]-12] ^= 0x80 }), Broken},
		{"a prev damaged, then a torn write", append(mk(func(b []byte) { b[ends[10]-12] ^= 0x80 }), make([]byte, 30)...), Broken},
		{"a page lost", mk(func(b []byte) { clear(b[PageSize : 2*PageSize]) }), Torn},
		{"a metadata record zeroed (no page lost)", mk(func(b []byte) { clear(b[ends[30]-MetaSize : ends[30]]) }), Broken},
		{"the first value damaged", mk(func(b []byte) { b[0] ^= 1 }), FirstDamaged},
	} {
		L, _ := FindTail(tc.data, 0)
		c := ClassifyTail(tc.data, 0, L, int64(len(tc.data)))
		if c.Kind != tc.kind {
			t.Errorf("%s: %v (L %d, break %d, %d entries above), want %v", tc.name, c.Kind, c.L, c.Break, c.Entries, tc.kind)
		}
	}
}

func TestSalvage(t *testing.T) {
	data, ends := salvFile(60, 2)
	entry := func(i int) []byte {
		lo := int64(0)
		if i > 0 {
			lo = ends[i-1]
		}
		e, _ := Decode(data, ends[i])
		if e.Tombstone {
			return []byte{0}
		}
		_ = lo
		return data[e.Start:e.End]
	}
	for _, tc := range []struct {
		name    string
		damage  func(b []byte) []byte
		lost    []int // entries that may not survive
		inPlace bool
	}{
		{"a prev", func(b []byte) []byte { b[ends[10]-12] ^= 0x80; return b }, nil, true},
		{"two prevs", func(b []byte) []byte { b[ends[10]-12] ^= 0x80; b[ends[40]-11] ^= 1; return b }, nil, true},
		{"a metadata record", func(b []byte) []byte { copy(b[ends[20]-MetaSize:], bytes.Repeat([]byte{0xee}, MetaSize)); return b }, []int{20}, false},
		{"a torn tail", func(b []byte) []byte { return append(b, 9, 9, 9) }, nil, true},
		{"a payload (kept, damaged)", func(b []byte) []byte { b[ends[30]-MetaSize-1] ^= 4; return b }, nil, true},
		{"everything", func(b []byte) []byte { return bytes.Repeat([]byte{0xab}, len(b)) }, nil, true},
	} {
		bad := tc.damage(slices.Clone(data))
		L, _ := FindTail(bad, 0)
		sv := Salvage(bad, L)
		if tc.name == "everything" {
			if len(sv.Kept) != 0 || sv.End != 0 || len(sv.Dropped) != 1 {
				t.Errorf("%s: %+v", tc.name, sv)
			}
			continue
		}
		var j int
		for i := range ends {
			if j < len(sv.Kept) {
				k := sv.Kept[j]
				got := []byte{0}
				if !k.Tombstone {
					got = bad[k.Start:k.End]
				}
				if k.Hash == uint64(i)+1 && (bytes.Equal(got, entry(i)) || k.Damaged) {
					j++
					continue
				}
			}
			if !slices.Contains(tc.lost, i) {
				t.Fatalf("%s: entry %d lost", tc.name, i)
			}
		}
		if j != len(sv.Kept) || sv.InPlace() != tc.inPlace {
			t.Errorf("%s: %d kept of %d matched, in place %v", tc.name, len(sv.Kept), j, sv.InPlace())
		}
	}
}

// FuzzSalvage: on any bytes, Salvage keeps entries in order, inside the
// data, each intact or a linked damaged one, and the dropped ranges and the
// kept entries tile the data; ClassifyTail never panics.
func FuzzSalvage(f *testing.F) {
	data, _ := salvFile(12, 5)
	f.Add(data)
	f.Add(data[:len(data)-7])
	f.Add(append(slices.Clone(data), data...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		L, _ := FindTail(b, 0)
		ClassifyTail(b, 0, L, int64(len(b)))
		sv := Salvage(b, L)
		var pos int64
		d := 0
		for _, k := range sv.Kept {
			for d < len(sv.Dropped) && sv.Dropped[d].Off == pos {
				pos += sv.Dropped[d].Len
				d++
			}
			if k.Start < pos || !k.Relink && k.Prev != pos || k.End <= k.Start || k.Next() > int64(len(b)) {
				t.Fatalf("kept %+v at %d", k, pos)
			}
			if k.Link != pos && !k.Relink {
				t.Fatalf("kept %+v: link %d, at %d", k, k.Link, pos)
			}
			if !k.Tombstone && !k.Damaged && Checksum(b[k.Start:k.End]) != k.CRC {
				t.Fatalf("kept %+v does not verify", k)
			}
			pos = k.Next()
		}
		for ; d < len(sv.Dropped); d++ {
			pos = sv.Dropped[d].Off + sv.Dropped[d].Len
		}
		if pos != int64(len(b)) && len(b) > 0 {
			t.Fatalf("kept and dropped end at %d of %d: %s", pos, len(b), fmt.Sprint(sv.Dropped))
		}
	})
}
