package simdr

// Attacks on expiring keys by damage: Repair of files where the damage took
// the entry an expiry record (or its tombstone) was written with, and the
// damage the format cannot tell (a flipped bit in a key hash, which no
// checksum covers).

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// atkDestroy overwrites the n-th entry (from 1, oldest first) of the file
// at path under key hash h, prepad, payload and metadata, with bytes no
// entry can be read from.
func atkDestroy(t *testing.T, path string, h uint64, n int) {
	t.Helper()
	data, es := atkEntries(t, path)
	for _, e := range es {
		if e.Hash != h {
			continue
		}
		if n--; n == 0 {
			for i := e.Prev; i < e.Next(); i++ {
				data[i] = 0xab
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no entry %016x", h)
}

// TestAttackTTLRepairLostPartner: Repair brings back a key's older value
// when damage took the newer one (format.Salvage keeps every intact entry).
// When the newer write was a PutTTL, its record survived the loss of its
// value and replaced the older value's record; when it was a plain Put or a
// Delete, the tombstone of the record survived the loss of the value or of
// the key's tombstone. Either way the older value came back with no expiry,
// alive for good. It must come back with its own.
func TestAttackTTLRepairLostPartner(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(s *Store) error // over k, which has v1 for an hour
		h     uint64               // the entry destroyed: the second one of h
	}{
		{"PutTTL, its value lost", func(s *Store) error { return s.PutTTL([]byte("k"), []byte("v2"), 2*time.Hour) }, Hash([]byte("k"))},
		{"Put, its value lost", func(s *Store) error { return s.Put([]byte("k"), []byte("v2")) }, Hash([]byte("k"))},
		{"Delete, its tombstone lost", func(s *Store) error { return s.Delete([]byte("k")) }, Hash([]byte("k"))},
		{"batch, its value lost", func(s *Store) error {
			var b Batch
			b.PutTTL([]byte("j"), []byte("j1"), time.Minute)
			b.Put([]byte("k"), []byte("v2"))
			b.PutTTL([]byte("i"), []byte("i1"), time.Minute)
			return s.Apply(&b)
		}, Hash([]byte("k"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			s, path := openT(t, c.opts(&Options{}))
			if err := s.PutTTL([]byte("k"), []byte("v1"), time.Hour); err != nil {
				t.Fatal(err)
			}
			exp := c.ms.Load() + 3_600_000
			if err := tc.write(s); err != nil {
				t.Fatal(err)
			}
			m := ttlModel{"k": {"v1", exp}, "after": {"a", 0}}
			if _, err := s.Get([]byte("j")); err == nil {
				m["j"] = struct {
					v   string
					exp int64
				}{"j1", c.ms.Load() + 60_000}
				m["i"] = struct {
					v   string
					exp int64
				}{"i1", c.ms.Load() + 60_000}
			}
			putT(t, s, "after", "a")
			s.Close()
			atkDestroy(t, path, tc.h, 2)
			if _, err := Open(path, c.opts(&Options{})); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			atkRepairRewrites(t, path, m, c, time.Hour)
		})
	}
}

// TestAttackTTLUndetectable pins down what the format cannot tell (see
// docs/ttl.md): a checksum covers a payload, not the key hash in its
// metadata, so a bit flipped there goes unseen by Open, Verify and Repair.
// And a record whose bytes Repair drops leaves its value with no expiry:
// no intact entry says it had one.
func TestAttackTTLUndetectable(t *testing.T) {
	flipHash := func(h uint64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			data, es := atkEntries(t, path)
			for _, e := range slices.Backward(es) { // the newest
				if e.Hash == h {
					data[e.End+3] ^= 1 // a bit of the key hash
					if err := os.WriteFile(path, data, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
			}
			t.Fatalf("no entry %016x", h)
		}
	}
	type seen struct {
		shown    int  // records and markers shown as keys
		kExpires bool // k's value (v2, an hour) expires
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		repair bool
		// before and after a PutTTL, which writes the marker again when
		// the store has none, and a reopen
		before, after seen
	}{
		// The record is a 32-byte value under another hash: shown, and k's
		// value has no expiry.
		{"record's key hash", flipHash(atkRecordHash("k")), false, seen{1, false}, seen{1, false}},
		// The marker is a 51-byte value under another hash, and without it
		// Open does not look for records: the marker and k's record show,
		// and no key expires, until a PutTTL writes the marker again.
		{"marker's key hash", flipHash(atkMarkerHash), false, seen{2, false}, seen{1, true}},
		// Repair drops the record: k's value has no expiry.
		{"record lost", func(t *testing.T, path string) { atkDestroy(t, path, atkRecordHash("k"), 2) }, true, seen{0, false}, seen{0, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			s, path := openT(t, c.opts(&Options{}))
			for _, v := range []string{"v1", "v2"} {
				if err := s.PutTTL([]byte("k"), []byte(v), time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			putT(t, s, "after", "a")
			s.Close()
			tc.damage(t, path)
			c.add(2 * time.Hour)
			check := func(s *Store, want seen, when string) {
				t.Helper()
				if err := s.Verify(); err != nil {
					t.Fatalf("%s: Verify = %v", when, err)
				}
				if got := !s.Has([]byte("k")); got != want.kExpires {
					t.Errorf("%s: k expired = %v, want %v", when, got, want.kExpires)
				}
				n := 0
				for e := range s.Entries() {
					if e.Len() == recordSize || string(e.Bytes()) == markerValue {
						n++
					}
				}
				if n != want.shown {
					t.Errorf("%s: Entries shows %d records or markers, want %d", when, n, want.shown)
				}
				keys := 1 // after
				if !want.kExpires {
					keys++
				}
				if strings.Contains(when, "PutTTL") {
					keys++ // n
				}
				if s.Len() != keys+want.shown {
					t.Errorf("%s: Len = %d, want %d", when, s.Len(), keys+want.shown)
				}
			}
			s = reopenT(t, path, c.opts(&Options{Repair: tc.repair}))
			check(s, tc.before, "opened")
			if err := s.PutTTL([]byte("n"), []byte("n1"), time.Hour); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = reopenT(t, path, c.opts(&Options{}))
			check(s, tc.after, "after a PutTTL and a reopen")
		})
	}
}

// TestAttackRepairTombstoneAfterLoss: Repair of a file where the damage took
// a tombstone, and an intact tombstone follows it (two Deletes; a Put or
// Delete of a key with an expiry, then its record's tombstone): the intact
// one must be kept, whatever the alignment. format.Salvage looked for the
// next entry only from the aligned start of the lost bytes' payload, so a
// tombstone lying before it was dropped (or, right at it, taken for a value
// 0x00), and the key it deleted came back.
func TestAttackRepairTombstoneAfterLoss(t *testing.T) {
	for pad := range 64 { // moves the lost tombstone through every alignment
		s, path := openT(t, nil)
		putT(t, s, "a", "a")
		putT(t, s, "b", "b")
		m := map[string]string{"after": "z"}
		if pad > 0 {
			v := string(make([]byte, pad)) + "x"
			putT(t, s, "x", v)
			m["x"] = v
		}
		for _, k := range []string{"a", "b"} {
			if err := s.Delete([]byte(k)); err != nil {
				t.Fatal(err)
			}
		}
		putT(t, s, "after", "z")
		s.Close()
		atkDestroy(t, path, Hash([]byte("a")), 2) // a's tombstone: a comes back
		m["a"] = "a"
		s = reopenT(t, path, &Options{Repair: true})
		if s.Has([]byte("b")) {
			t.Errorf("pad %d: b, deleted, is back after Repair (%+v)", pad, s.Repaired())
			continue
		}
		checkModel(t, s, m)
		s.Close()
	}
}
