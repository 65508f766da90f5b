package server

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/simdr-go/simdr"
)

// TestBatchCost: what the memory budget charges for a batch (cost.batch)
// covers what the decoded batch holds at the peak of its growth (1.5 times
// what it holds once built: the last doubling of a slice holds the old
// array and the new), for batches of the cheapest operations of each kind
// (one-byte values, short keys) and of large values. (Applying it adds as
// much again at most: measured peaks of decoding and applying together are
// about 113 bytes an op for deletes, 282 for puts, 447 for puts with a ttl,
// under the charges.) The budget used to charge 64 bytes an operation and
// twice its value: a one-byte put, 18 bytes in the body, holds about 104
// decoded (its entry is padded to 64 bytes in the batch's image of the
// file), so that requests the budget admitted held several times it.
func TestBatchCost(t *testing.T) {
	binOps := func(n int, op byte, value string) []byte {
		var b []byte
		for i := range n {
			o := op
			if op == 'X' { // puts and deletes of the same keys
				o = "PD"[i%2]
			}
			key := fmt.Sprint(i / 2)
			b = append(b, o)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(key)))
			b = append(b, key...)
			if o != 'D' {
				b = binary.LittleEndian.AppendUint64(b, uint64(len(value)))
				b = append(b, value...)
			}
			if o == 'T' {
				b = binary.LittleEndian.AppendUint64(b, 3_600_000)
			}
		}
		return b
	}
	jsonOps := func(n int, op string) []byte {
		var b strings.Builder
		b.WriteString(`{"ops":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			switch op {
			case "put":
				fmt.Fprintf(&b, `{"op":"put","key":"%d","value":"v"}`, i)
			case "ttl":
				fmt.Fprintf(&b, `{"op":"put","key":"%d","value":"v","ttl_ms":3600000}`, i)
			default:
				fmt.Fprintf(&b, `{"op":"delete","key":"%d"}`, i)
			}
		}
		b.WriteString(`]}`)
		return []byte(b.String())
	}
	big := strings.Repeat("x", 60000)
	for _, c := range []struct {
		name string
		body []byte
		bin  bool
	}{
		{"binary puts", binOps(20000, 'P', "v"), true},
		{"binary puts with a ttl", binOps(20000, 'T', "v"), true},
		{"binary deletes", binOps(20000, 'D', ""), true},
		{"binary puts and deletes", binOps(20000, 'X', "v"), true},
		{"binary puts of 60 kB", binOps(200, 'P', big), true},
		{"binary puts of 60 kB with a ttl", binOps(200, 'T', big), true},
		{"JSON puts", jsonOps(20000, "put"), false},
		{"JSON puts with a ttl", jsonOps(20000, "ttl"), false},
		{"JSON deletes", jsonOps(20000, "delete"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cst, err := countBatch(c.body, c.bin)
			if err != nil {
				t.Fatal(err)
			}
			st, err := simdr.Open(filepath.Join(t.TempDir(), "s"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			b, err := decodeBatch(c.body, c.bin) // the keys go in the index: its growth is the store's, not the request's
			if err == nil {
				err = st.Apply(b)
			}
			if err != nil {
				t.Fatal(err)
			}
			b = nil
			held := retained(func() any {
				b, err := decodeBatch(c.body, c.bin)
				if err != nil {
					t.Fatal(err)
				}
				return b
			})
			t.Logf("%d ops, %d bytes: charged %d, decoded %d", cst.items, len(c.body), cst.batch(), held)
			if 3*held/2 > uint64(cst.batch()) {
				t.Errorf("the decoded batch of %d ops (%d bytes) holds %d bytes (%d at the peak of its growth), the budget charges %d",
					cst.items, len(c.body), held, 3*held/2, cst.batch())
			}
		})
	}
}

// retained returns the bytes of heap what fn returns holds.
func retained(fn func() any) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	v := fn()
	runtime.GC()
	runtime.ReadMemStats(&b)
	runtime.KeepAlive(v)
	if b.HeapAlloc < a.HeapAlloc {
		return 0
	}
	return b.HeapAlloc - a.HeapAlloc
}
