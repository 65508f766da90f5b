package simdr

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
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

// TestBatchImageDropsExpiry: in a store that holds expiry records, a batch
// of plain puts is not written as its image: a put over a key with a TTL
// must drop the key's record (tombstone it), so that the new value never
// expires and the file holds records only for keys that do.
func TestBatchImageDropsExpiry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s, err := Open(filepath.Join(t.TempDir(), "x"), &Options{Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutTTL([]byte("k"), []byte("old"), time.Minute); err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.Put([]byte("k"), []byte("new"))
	b.Put([]byte("other"), []byte("x"))
	if err := s.Apply(&b); err != nil {
		t.Fatal(err)
	}
	if live(s.cur.Load().ix, recordHash(Hash([]byte("k")))) {
		t.Fatal("the file still holds the expiry record of a key a plain put replaced")
	}
	now = now.Add(time.Hour)
	if got := getT(t, s, "k"); got != "new" {
		t.Fatalf("Get(k) an hour later = %q: the plain put kept the old value's expiry", got)
	}
}
