package simdr

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestBatchImage: a batch of puts, written as the image the Batch holds,
// leaves the file byte for byte as the same puts one by one do, whatever the
// tail's offset when it lands (every residue of the alignment), the values'
// sizes (tiny, unaligned, over the direct-write size) and whether the Batch
// is reused or applied twice.
func TestBatchImage(t *testing.T) {
	dir := t.TempDir()
	one, err := Open(filepath.Join(dir, "one"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	batched, err := Open(filepath.Join(dir, "batched"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer batched.Close()
	r := rand.New(rand.NewPCG(41, 42))
	var b Batch
	for round := 0; round < 80; round++ {
		// A single put first moves the tail to some residue.
		lead := bytes.Repeat([]byte{byte(round + 1)}, 1+round%70)
		for _, s := range []*Store{one, batched} {
			if err := s.Put([]byte(fmt.Sprint("lead", round)), lead); err != nil {
				t.Fatal(err)
			}
		}
		b.Reset()
		var keys, vals [][]byte
		for i := 0; i < 1+r.IntN(40); i++ {
			n := 1 + r.IntN(300)
			if r.IntN(50) == 0 {
				n = directWrite + r.IntN(1000)
			}
			k, v := []byte(fmt.Sprint("k", r.IntN(100))), make([]byte, n)
			for j := range v {
				v[j] = byte(r.Uint32() | 1)
			}
			keys, vals = append(keys, k), append(vals, v)
			b.Put(k, v)
		}
		times := 1 + round%2 // the same Batch applied twice: its links are filled in again
		for range times {
			for i := range keys {
				if err := one.Put(keys[i], vals[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := batched.Apply(&b); err != nil {
				t.Fatal(err)
			}
		}
	}
	a, _ := os.ReadFile(filepath.Join(dir, "one"))
	c, _ := os.ReadFile(filepath.Join(dir, "batched"))
	if !bytes.Equal(a[:one.Size()], c[:batched.Size()]) {
		t.Fatalf("a batch's image differs from its puts one by one (%d and %d bytes)", one.Size(), batched.Size())
	}
	if err := batched.Verify(); err != nil {
		t.Fatal(err)
	}
	re := reopenT(t, filepath.Join(dir, "batched"), &Options{ReadOnly: true})
	if re.Len() != batched.Len() {
		t.Fatalf("reopened: %d keys, want %d", re.Len(), batched.Len())
	}
}
