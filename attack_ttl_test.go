package simdr

// Attacks on expiring keys (PutTTL, expiry.go): forged and deleted records
// through the hash-level API, torn writes, damaged records, Repair,
// checkpoints, the clock, Compact under writers, followers in another
// process, and a writer killed at any moment.

import (
	"errors"
	"testing"
	"time"
)

// atkHashOf is what any caller can compute without the package's internals:
// the hash of the reserved prefix followed by the key hash (docs/ttl.md).
func atkRecordHash(key string) uint64 {
	return Hash(append([]byte(reservedPrefix), le64(Hash([]byte(key)))...))
}

var atkMarkerHash = Hash([]byte(reservedPrefix))

// atkExp returns the expiry (Unix ms) the Store holds for key, 0 for none,
// -1 when the key has no value.
func atkExp(s *Store, key string) int64 {
	g := s.cur.Load()
	h := Hash([]byte(key))
	if _, ok := g.ix.Get(h); !ok {
		return -1
	}
	return g.ttlOf(h)
}

// TestAttackTTLHashAPIs: a caller of the hash-level API (DeleteHash,
// Batch.PutHash, Batch.DeleteHash; simdr serve's DELETE /v1/hash/{hash})
// knows the reserved hashes (they are documented) and must not be able to
// delete the marker (after a reopen every record would show as a key and no
// key would expire), delete or replace a key's record (the key would live
// forever), or forge a record that makes another key expire (or hides a
// value) once the file is reopened.
func TestAttackTTLHashAPIs(t *testing.T) {
	type attack struct {
		name string
		run  func(s *Store) error
	}
	bound := func(s *Store, key string) int64 {
		e, err := s.Get([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return e.Offset() + int64(e.Len())
	}
	forge := func(s *Store, key string) []byte {
		return record{hash: Hash([]byte(key)), bound: bound(s, key), exp: 1}.encode()
	}
	for _, a := range []attack{
		{"DeleteHash(marker)", func(s *Store) error { return s.DeleteHash(atkMarkerHash) }},
		{"Batch.DeleteHash(marker)", func(s *Store) error {
			var b Batch
			b.DeleteHash(atkMarkerHash)
			return s.Apply(&b)
		}},
		{"Batch.PutHash(marker)", func(s *Store) error {
			var b Batch
			b.PutHash(atkMarkerHash, []byte("mine now"))
			return s.Apply(&b)
		}},
		{"DeleteHash(record)", func(s *Store) error { return s.DeleteHash(atkRecordHash("ttl")) }},
		{"Batch.DeleteHash(record)", func(s *Store) error {
			var b Batch
			b.DeleteHash(atkRecordHash("ttl"))
			return s.Apply(&b)
		}},
		{"Batch.PutHash(record, junk)", func(s *Store) error {
			var b Batch
			b.PutHash(atkRecordHash("ttl"), []byte("not a record"))
			return s.Apply(&b)
		}},
		{"Batch.PutHash(record, later expiry)", func(s *Store) error {
			var b Batch
			r := record{hash: Hash([]byte("ttl")), bound: bound(s, "ttl"), exp: maxExpiry}
			b.PutHash(atkRecordHash("ttl"), r.encode())
			return s.Apply(&b)
		}},
		{"Batch.PutHash(forged record of a plain key)", func(s *Store) error {
			var b Batch
			b.PutHash(atkRecordHash("plain"), forge(s, "plain"))
			return s.Apply(&b)
		}},
		{"Batch.PutHash(forged record of a record)", func(s *Store) error {
			// A record for the record of "ttl": it would show it as a key.
			g := s.cur.Load()
			v, _ := g.ix.Get(atkRecordHash("ttl"))
			var b Batch
			r := record{hash: atkRecordHash("ttl"), bound: endOf(v), exp: maxExpiry}
			b.PutHash(recordHash(atkRecordHash("ttl")), r.encode())
			return s.Apply(&b)
		}},
	} {
		t.Run(a.name, func(t *testing.T) {
			c := newClock()
			s, path := openT(t, c.opts(&Options{}))
			putT(t, s, "plain", "p")
			if err := s.PutTTL([]byte("ttl"), []byte("t"), time.Minute); err != nil {
				t.Fatal(err)
			}
			m := ttlModel{"plain": {"p", 0}, "ttl": {"t", c.ms.Load() + 60_000}}
			if err := a.run(s); !errors.Is(err, ErrReservedKey) {
				t.Errorf("the attack returned %v, want ErrReservedKey", err)
			}
			checkTTLModel(t, s, m, c)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = reopenT(t, path, c.opts(&Options{}))
			checkTTLModel(t, s, m, c)
			c.add(time.Minute)
			checkTTLModel(t, s, m, c)
		})
	}
}
