package simdr

// Attacks on expiring keys (PutTTL, expiry.go): forged and deleted records
// through the hash-level API, torn writes, damaged records, Repair,
// checkpoints, the clock, Compact under writers, followers in another
// process, and a writer killed at any moment.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/simdr-go/simdr/internal/format"
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

// atkState is what a key holds: its value and expiry (0 none), or absent.
type atkState struct {
	v   string
	exp int64
}

// atkSnapshot reads every key of keys from s (absent: no entry), checking
// that s shows nothing else (Len).
func atkSnapshot(t *testing.T, s *Store, keys []string) map[string]atkState {
	t.Helper()
	out := map[string]atkState{}
	for _, k := range keys {
		e, err := s.Get([]byte(k))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[k] = atkState{string(e.Bytes()), atkExp(s, k)}
	}
	if s.Len() != len(out) {
		t.Fatalf("Len = %d, %d keys found", s.Len(), len(out))
	}
	return out
}

// TestAttackTTLTornTail cuts a file at every entry boundary inside each
// write (what a power cut leaves: a prefix of the last write's entries, the
// state file of another boot not trusted) and reopens it. A batch is not
// atomic across a crash, so a key may hold what any prefix of the write's
// operations gave it, but each operation is whole: a torn Put or Delete of
// a key must not leave its old value without its expiry (it did, with the
// record's tombstone written first), nor a torn PutTTL over a value with an
// expiry (its record, written first, replaced the old value's record: the
// old value lived for good), nor a torn PutTTL a new value without its
// expiry.
func TestAttackTTLTornTail(t *testing.T) {
	c := newClock()
	s, path := openT(t, c.opts(&Options{}))
	now := c.ms.Load()
	keys := []string{"a", "b", "c", "d", "e", "r", "r2"}
	// An op is one caller operation; a step is one write (a batch is
	// several ops) and lists the states each op leaves its keys in.
	type op struct {
		key string
		st  atkState // the zero state: deleted
	}
	type step struct {
		name string
		run  func() error
		ops  []op
	}
	min, hour := now+60_000, now+3_600_000
	ttl := func(k, v string) step {
		return step{"PutTTL " + k, func() error { return s.PutTTL([]byte(k), []byte(v), time.Minute) }, []op{{k, atkState{v, min}}}}
	}
	steps := []step{
		ttl("a", "a1"),
		{"Put a over a ttl", func() error { return s.Put([]byte("a"), []byte("a2")) }, []op{{"a", atkState{"a2", 0}}}},
		ttl("b", "b1"),
		{"Delete b with a ttl", func() error { return s.Delete([]byte("b")) }, []op{{"b", atkState{}}}},
		ttl("c", "c1"),
		{"PutReader c over a ttl", func() error {
			_, err := s.PutReader([]byte("c"), strings.NewReader("c2"))
			return err
		}, []op{{"c", atkState{"c2", 0}}}},
		{"Batch d, e", func() error {
			var b Batch
			b.PutTTL([]byte("d"), []byte("d1"), time.Minute)
			b.Put([]byte("e"), []byte("e1"))
			b.PutTTL([]byte("e"), []byte("e2"), time.Hour)
			return s.Apply(&b)
		}, []op{{"d", atkState{"d1", min}}, {"e", atkState{"e1", 0}}, {"e", atkState{"e2", hour}}}},
		{"Batch Put d, Delete e", func() error {
			var b Batch
			b.Put([]byte("d"), []byte("d2"))
			b.Delete([]byte("e"))
			return s.Apply(&b)
		}, []op{{"d", atkState{"d2", 0}}, {"e", atkState{}}}},
		ttl("r", "r1"),
		{"Rename r r2", func() error { return s.Rename([]byte("r"), []byte("r2")) }, []op{{"r2", atkState{"r1", min}}, {"r", atkState{}}}},
		ttl("r", "r3"),
		{"PutTTL r over a ttl", func() error { return s.PutTTL([]byte("r"), []byte("r4"), time.Hour) }, []op{{"r", atkState{"r4", hour}}}},
	}
	type mark struct {
		step
		before, after int64 // the file's size before and after the step
		was           map[string]atkState
	}
	var marks []mark
	for _, st := range steps {
		m := mark{step: st, before: s.Size(), was: atkSnapshot(t, s, keys)}
		if err := st.run(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		m.after = s.Size()
		marks = append(marks, m)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cuts := 0
	format.Walk(data, 0, int64(len(data)), func(e format.Entry) bool {
		cut := e.Next()
		for _, m := range marks {
			if cut <= m.before || cut >= m.after {
				continue
			}
			cuts++
			p := filepath.Join(dir, fmt.Sprintf("cut%d", cut))
			if err := os.WriteFile(p, data[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			// Read-only first (it leaves the file as it is), then as the writer.
			f := reopenT(t, p, c.opts(&Options{ReadOnly: true}))
			ro := atkSnapshot(t, f, keys)
			f.Close()
			s := reopenT(t, p, c.opts(&Options{}))
			got := atkSnapshot(t, s, keys)
			s.Close()
			if !atkSameState(ro, got) {
				t.Errorf("%s, cut at %d: read-only %v, as the writer %v", m.name, cut, ro, got)
			}
		key:
			for _, k := range keys {
				g := got[k]
				if g == m.was[k] {
					continue
				}
				for _, o := range m.ops {
					if o.key != k {
						continue
					}
					if g == o.st {
						continue key
					}
				}
				t.Errorf("%s, cut at %d: %q holds %+v; before the write %+v, the write's ops %+v", m.name, cut, k, g, m.was[k], m.ops)
			}
		}
		return true
	})
	if cuts == 0 {
		t.Fatal("no cut inside a write")
	}
	t.Logf("%d cuts", cuts)
}

// atkEntries returns the entries of the store file at path, oldest first.
func atkEntries(t *testing.T, path string) ([]byte, []format.Entry) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var es []format.Entry
	format.Walk(data, 0, int64(len(data)), func(e format.Entry) bool { es = append(es, e); return true })
	slices.Reverse(es)
	return data, es
}

// TestAttackTTLRepairRewrite: Repair that has to move entries down over
// dropped bytes (a rewrite) moves values; an expiry record names where its
// value ends, so the keys above the damage must keep their expiry (they
// lived forever: every record was left naming the old offsets). And when the
// bytes dropped held the marker, the records kept must still be found on
// Open (without it Open does not look for them: every record showed as a
// key, and no key expired).
func TestAttackTTLRepairRewrite(t *testing.T) {
	for _, destroy := range []string{"p2", "marker"} {
		t.Run(destroy, func(t *testing.T) { atkRepairRewrite(t, destroy) })
	}
}

func atkRepairRewrite(t *testing.T, destroy string) {
	c := newClock()
	s, path := openT(t, c.opts(&Options{}))
	putT(t, s, "p1", strings.Repeat("1", 100))
	putT(t, s, "p2", strings.Repeat("2", 100))
	m := ttlModel{"p1": {strings.Repeat("1", 100), 0}, "q": {"q", 0}}
	for i := range 5 {
		k := fmt.Sprintf("k%d", i)
		if err := s.PutTTL([]byte(k), []byte(strings.Repeat("v", 10*i+1)), time.Duration(i+1)*time.Minute); err != nil {
			t.Fatal(err)
		}
		m[k] = struct {
			v   string
			exp int64
		}{strings.Repeat("v", 10*i+1), c.ms.Load() + int64(i+1)*60_000}
	}
	putT(t, s, "q", "q")
	s.Close()
	data, es := atkEntries(t, path)
	// Destroy the entry, payload and metadata: its bytes are dropped.
	want := Hash([]byte("p2"))
	if destroy == "marker" {
		want = atkMarkerHash
	}
	var d format.Entry
	for _, e := range es {
		if e.Hash == want {
			d = e
		}
	}
	if d.End == 0 {
		t.Fatalf("no entry %s", destroy)
	}
	for i := d.Prev; i < d.Next(); i++ {
		data[i] = 0xab
	}
	if destroy == "marker" {
		m["p2"] = struct {
			v   string
			exp int64
		}{strings.Repeat("2", 100), 0}
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	atkRepairRewrites(t, path, m, c, 3*time.Minute)
}

// atkRepairRewrites opens path with Repair, which must rewrite the file, and
// checks that the store holds m, after the repair, reopened, and later on
// the clock.
func atkRepairRewrites(t *testing.T, path string, m ttlModel, c *fakeClock, later time.Duration) {
	t.Helper()
	s := reopenT(t, path, c.opts(&Options{Repair: true}))
	if r := s.Repaired(); r == nil || !r.Rewritten {
		t.Fatalf("the repair did not rewrite the file: %+v", r)
	}
	checkTTLModel(t, s, m, c)
	s.Close()
	s = reopenT(t, path, c.opts(&Options{}))
	checkTTLModel(t, s, m, c)
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
	c.add(later)
	checkTTLModel(t, s, m, c)
}

// TestAttackTTLDamagedRecord flips a byte in each field of a key's expiry
// record (not the newest entry: Open does not check its checksum) and
// opens the file, as the writer, read-only and with Repair. The damaged
// record's expiry cannot be trusted: the key must read as expired (a cache
// miss), never with another expiry, nor none (it would outlive its ttl,
// or live for good); the record must not show as a key; Verify must name
// the damage.
func TestAttackTTLDamagedRecord(t *testing.T) {
	for _, field := range []struct {
		name string
		at   int
	}{{"magic", 0}, {"hash", 8}, {"bound", 16}, {"bound high", 22}, {"expiry", 24}, {"expiry high", 29}} {
		t.Run(field.name, func(t *testing.T) {
			c := newClock()
			s, path := openT(t, c.opts(&Options{}))
			if err := s.PutTTL([]byte("k"), []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
			putT(t, s, "after", "a")
			s.Close()
			data, es := atkEntries(t, path)
			var rec format.Entry
			for _, e := range es {
				if e.Hash == atkRecordHash("k") {
					rec = e
				}
			}
			data[rec.Start+int64(field.at)] ^= 0x10
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, o := range []Options{{}, {ReadOnly: true}, {Repair: true}} {
				s, err := Open(path, c.opts(&o))
				if err != nil {
					t.Fatalf("Open(%+v): %v", o, err)
				}
				if d, err := s.TTL([]byte("k")); !errors.Is(err, ErrNotFound) {
					t.Errorf("Open(%+v): TTL(k) = %v, %v; want ErrNotFound (expired)", o, d, err)
				}
				checkModel(t, s, map[string]string{"after": "a"})
				if err := s.Verify(); !errors.Is(err, ErrChecksum) {
					t.Errorf("Open(%+v): Verify = %v, want ErrChecksum", o, err)
				}
				s.Close()
			}
			// Compact refuses, as for a damaged value, until the key is
			// written again.
			s = reopenT(t, path, c.opts(&Options{}))
			if err := s.Compact(); !errors.Is(err, ErrChecksum) {
				t.Fatalf("Compact = %v, want ErrChecksum", err)
			}
			if err := s.PutTTL([]byte("k"), []byte("v2"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := s.Compact(); err != nil {
				t.Fatal(err)
			}
			checkTTLModel(t, s, ttlModel{"k": {"v2", c.ms.Load() + 60_000}, "after": {"a", 0}}, c)
		})
	}
}

// TestAttackTTLCheckpointBeforeTTL: an index checkpoint taken before the
// file held any expiry record (no marker in its table), then keys written
// with a ttl (and one with a ttl replaced by a plain value, one deleted)
// past what it covers; Open loads the checkpoint and walks the rest. And
// the other way: a checkpoint covering ttl keys, then writes that drop
// their expiry past it.
func TestAttackTTLCheckpointBeforeTTL(t *testing.T) {
	c := newClock()
	o := func() *Options { return c.opts(&Options{}) }
	s, path := openT(t, o())
	model := ckModel(t, s, 2*ckMinEntries, 7)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	m := ttlModel{}
	for k, v := range model {
		m[k] = struct {
			v   string
			exp int64
		}{v, 0}
	}
	type e = struct {
		v   string
		exp int64
	}
	// reopen closes s (too few entries written for Close to checkpoint
	// again) and opens it from the checkpoint, which covers less.
	reopen := func() *Store {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s := reopenT(t, path, o())
		if ck := s.cur.Load().ck; ck == nil || ck.h.tail >= s.Size() {
			t.Fatal("the index was not loaded from a checkpoint covering less than the file")
		}
		return s
	}
	s = reopenT(t, path, o())
	now := c.ms.Load()
	for i := range 20 {
		k := fmt.Sprintf("k%d", i)
		if err := s.PutTTL([]byte(k), []byte("t"), time.Duration(1+i)*time.Second); err != nil {
			t.Fatal(err)
		}
		m[k] = e{"t", now + int64(1+i)*1000}
	}
	putT(t, s, "k3", "plain")
	m["k3"] = e{"plain", 0}
	if err := s.Delete([]byte("k4")); err != nil {
		t.Fatal(err)
	}
	delete(m, "k4")
	s = reopen()
	checkTTLModel(t, s, m, c)
	// Now a checkpoint that covers the ttl keys.
	s.wmu.Lock()
	g := s.cur.Load()
	err := s.writeCheckpoint(g, g.tail.Load(), g.ents.Load(), g.tomb.Load(), true)
	s.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 10; i++ {
		k := fmt.Sprintf("k%d", i)
		putT(t, s, k, "plain")
		m[k] = e{"plain", 0}
	}
	if err := s.Delete([]byte("k10")); err != nil {
		t.Fatal(err)
	}
	delete(m, "k10")
	if err := s.PutTTL([]byte("k11"), []byte("later"), time.Hour); err != nil {
		t.Fatal(err)
	}
	m["k11"] = e{"later", now + 3_600_000}
	s = reopen()
	checkTTLModel(t, s, m, c)
	c.add(30 * time.Second)
	checkTTLModel(t, s, m, c)
}

// TestAttackTTLClockBackReopen: a key this process reported expired stays
// expired when the clock goes back and the store is opened again in the
// same process, or opened by a second Store (a read-only follower) after
// the clock went back.
func TestAttackTTLClockBackReopen(t *testing.T) {
	c := newClock()
	o := func(ro bool) *Options { return c.opts(&Options{ReadOnly: ro}) }
	s, path := openT(t, o(false))
	if err := s.PutTTL([]byte("k"), []byte("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	if s.Has([]byte("k")) {
		t.Fatal("not expired")
	}
	c.add(-time.Hour)
	f := reopenT(t, path, o(true))
	if f.Has([]byte("k")) || f.Len() != 0 {
		t.Error("a follower opened after the clock went back shows a key the writer reported expired")
	}
	f.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopenT(t, path, o(false))
	if _, err := s.Get([]byte("k")); !errors.Is(err, ErrNotFound) {
		t.Errorf("reopened after the clock went back: Get(k) = %v, want ErrNotFound", err)
	}
	// A Store on the system clock does not take the time of one given its
	// own clock (a year ahead here): it would expire a ttl of an hour at once.
	c.ms.Store(time.Now().Add(365 * 24 * time.Hour).UnixMilli())
	s.Has([]byte("k"))
	s.Close()
	s = reopenT(t, path, nil)
	if err := s.PutTTL([]byte("h"), []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if d, err := s.TTL([]byte("h")); err != nil || d > time.Hour {
		t.Errorf("on the system clock, after a Store of the same path on a clock a year ahead: TTL = %v, %v", d, err)
	}
}

// TestAttackTTLCompactUnderWriters runs Compact while two writers (on keys
// of their own) PutTTL, Put, Delete and Apply batches, and a reader checks
// every Get; the clock stands still within a round and moves between
// rounds, so that each writer's model knows every expiry. After each round
// the store must hold exactly the models, and again after a reopen.
func TestAttackTTLCompactUnderWriters(t *testing.T) {
	c := newClock()
	s, path := openT(t, c.opts(&Options{}))
	const writers, keys = 2, 40
	models := make([]ttlModel, writers)
	for i := range models {
		models[i] = ttlModel{}
	}
	type e = struct {
		v   string
		exp int64
	}
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	for round := range rounds {
		now := c.ms.Load()
		done := make(chan struct{})
		errs := make(chan error, writers+2)
		var ww, wg sync.WaitGroup
		for w := range writers {
			ww.Add(1)
			go func() {
				defer ww.Done()
				m := models[w]
				r := rand.New(rand.NewPCG(uint64(round), uint64(w)))
				for i := 0; i < 300; i++ {
					k := fmt.Sprintf("w%d-%d", w, r.IntN(keys))
					v := fmt.Sprintf("r%d-%d", round, i)
					d := time.Duration(1+r.IntN(3000)) * time.Millisecond
					var err error
					switch r.IntN(5) {
					case 0:
						err = s.Put([]byte(k), []byte(v))
						m[k] = e{v, 0}
					case 1, 2:
						err = s.PutTTL([]byte(k), []byte(v), d)
						m[k] = e{v, now + d.Milliseconds()}
					case 3:
						err = s.Delete([]byte(k))
						delete(m, k)
					case 4:
						var b Batch
						k2 := fmt.Sprintf("w%d-%d", w, r.IntN(keys))
						b.PutTTL([]byte(k), []byte(v), d)
						b.Put([]byte(k2), []byte(v+"b"))
						m[k] = e{v, now + d.Milliseconds()}
						m[k2] = e{v + "b", 0}
						err = s.Apply(&b)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		// Until the writers are done: fn again and again, its first error
		// sent on errs.
		loop := func(fn func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					if err := fn(); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		loop(s.Compact)
		loop(func() error { // every value read is one some writer wrote
			for e := range s.Entries() {
				if !strings.HasPrefix(string(e.Bytes()), "r") {
					return fmt.Errorf("Entries yields %q under %x", e.Bytes(), e.KeyHash())
				}
			}
			return nil
		})
		ww.Wait() // the writers are done: stop Compact and the reader
		close(done)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		all := ttlModel{}
		for _, m := range models {
			for k, v := range m {
				all[k] = v
			}
		}
		checkTTLModel(t, s, all, c)
		c.add(time.Duration(300*(round+1)) * time.Millisecond)
		checkTTLModel(t, s, all, c)
		if err := s.Compact(); err != nil {
			t.Fatal(err)
		}
		checkTTLModel(t, s, all, c)
	}
	s.Close()
	s = reopenT(t, path, c.opts(&Options{}))
	all := ttlModel{}
	for _, m := range models {
		for k, v := range m {
			all[k] = v
		}
	}
	checkTTLModel(t, s, all, c)
}

// ---- A writer of expiring keys killed at any moment ----

// atkKillEnv runs TestAttackTTLKillChild: "path|seed|sync".
const (
	atkKillEnv   = "SIMDR_ATK_TTL_KILL"
	atkKillLives = 40
)

// atkKillClock is the child's clock and the parent's: it stands still, so
// that every expiry is known exactly (base + ttl).
func atkKillClock() time.Time { return time.UnixMilli(1_700_000_000_000) }

// atkKillOp is one caller operation of the child: a PutTTL, Put, Delete,
// PutReader, Rename, or a batch of PutTTLs, Puts and Deletes.
type atkKillOp struct {
	kind  byte // 't' PutTTL, 'p' Put, 'd' Delete, 'r' PutReader, 'n' Rename, 'b' batch
	k, k2 string
	v     string
	ttl   time.Duration
	batch []atkKillOp
}

func atkKillGen(r *rand.Rand, i int) atkKillOp {
	key := func() string { return fmt.Sprintf("k%d", r.IntN(24)) }
	val := func(j int) string {
		n := 1 + r.IntN(40)
		switch r.IntN(16) {
		case 0, 1:
			n = 5000 + r.IntN(70000) // some values of many pages
		case 2:
			n = directWrite + r.IntN(64<<10) // written apart from what precedes it
		}
		return fmt.Sprintf("%d.%d.", i, j) + strings.Repeat("x", n)
	}
	ttl := func() time.Duration { return time.Duration(1+r.IntN(1e6)) * time.Millisecond }
	switch n := r.IntN(20); {
	case n < 6:
		return atkKillOp{kind: 't', k: key(), v: val(0), ttl: ttl()}
	case n < 9:
		return atkKillOp{kind: 'p', k: key(), v: val(0)}
	case n < 11:
		return atkKillOp{kind: 'd', k: key()}
	case n < 12:
		return atkKillOp{kind: 'r', k: key(), v: val(0)}
	case n < 14:
		return atkKillOp{kind: 'n', k: key(), k2: key()}
	default:
		op := atkKillOp{kind: 'b'}
		for j := range 1 + r.IntN(6) {
			switch r.IntN(3) {
			case 0:
				op.batch = append(op.batch, atkKillOp{kind: 't', k: key(), v: val(j), ttl: ttl()})
			case 1:
				op.batch = append(op.batch, atkKillOp{kind: 'p', k: key(), v: val(j)})
			default:
				op.batch = append(op.batch, atkKillOp{kind: 'd', k: key()})
			}
		}
		return op
	}
}

func (op atkKillOp) run(s *Store) error {
	switch op.kind {
	case 't':
		return s.PutTTL([]byte(op.k), []byte(op.v), op.ttl)
	case 'p':
		return s.Put([]byte(op.k), []byte(op.v))
	case 'd':
		return s.Delete([]byte(op.k))
	case 'r':
		_, err := s.PutReader([]byte(op.k), strings.NewReader(op.v))
		return err
	case 'n':
		if op.k == op.k2 {
			return nil
		}
		if err := s.Rename([]byte(op.k), []byte(op.k2)); !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	}
	var b Batch
	for _, o := range op.batch {
		switch o.kind {
		case 't':
			b.PutTTL([]byte(o.k), []byte(o.v), o.ttl)
		case 'p':
			b.Put([]byte(o.k), []byte(o.v))
		default:
			b.Delete([]byte(o.k))
		}
	}
	return s.Apply(&b)
}

// apply applies op to model m (a copy is returned).
func (op atkKillOp) apply(m map[string]atkState) map[string]atkState {
	out := make(map[string]atkState, len(m))
	for k, v := range m {
		out[k] = v
	}
	base := atkKillClock().UnixMilli()
	var do func(o atkKillOp)
	do = func(o atkKillOp) {
		switch o.kind {
		case 't':
			out[o.k] = atkState{o.v, base + o.ttl.Milliseconds()}
		case 'p', 'r':
			out[o.k] = atkState{o.v, 0}
		case 'd':
			delete(out, o.k)
		case 'n':
			if st, ok := out[o.k]; ok && o.k != o.k2 {
				out[o.k2] = st
				delete(out, o.k)
			}
		case 'b':
			for _, b := range o.batch {
				do(b)
			}
		}
	}
	do(op)
	return out
}

// TestAttackTTLKillChild is the child of TestAttackTTLKill; it is skipped
// unless re-executed by it.
func TestAttackTTLKillChild(t *testing.T) {
	spec := os.Getenv(atkKillEnv)
	if spec == "" {
		t.Skip("run by TestAttackTTLKill")
	}
	f := strings.Split(spec, "|")
	seed, _ := strconv.ParseUint(f[1], 10, 64)
	s, err := Open(f[0], &Options{SyncWrites: f[2] == "1", Clock: atkKillClock})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	r := rand.New(rand.NewPCG(seed, 2))
	count := -1 // ops before "done" (then the child waits to be killed)
	if len(f) > 3 {
		count, _ = strconv.Atoi(f[3])
	}
	for i := 0; ; i++ {
		if i == count {
			fmt.Fprintln(os.Stdout, "done")
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				select {} // no parent asking for more
			}
			if err := s.Compact(); err != nil {
				fmt.Fprintln(os.Stderr, "child compact:", err)
				os.Exit(3)
			}
			fmt.Fprintln(os.Stdout, "compacted")
			select {}
		}
		if count > 0 && i%16 == 0 {
			time.Sleep(time.Millisecond) // let the follower follow
		}
		op := atkKillGen(r, i)
		fmt.Fprintf(os.Stdout, "begin %d\n", i)
		if err := op.run(s); err != nil {
			fmt.Fprintf(os.Stderr, "child op %d: %v\n", i, err)
			os.Exit(3)
		}
		fmt.Fprintf(os.Stdout, "ack %d\n", i)
	}
}

// TestAttackTTLKill kills a child writing expiring keys (PutTTL, batches
// with PutTTL, Puts, Deletes, PutReaders, Renames over them) with SIGKILL
// at a random moment, many times over one file, and reopens it (read-only
// first, then as the writer; in some lives with the state file removed, as
// another boot leaves it). Every key must hold exactly what the
// acknowledged operations gave it, expiry included, or what the one in
// flight gave it (with the state file, the write in flight is whole or not
// at all; without it, a batch may be cut after any of its operations, each
// whole): no key gets an expiry it was not given, none loses one.
func TestAttackTTLKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	seed := atkSeed(t)
	r := rand.New(rand.NewPCG(seed, 1))
	path := filepath.Join(t.TempDir(), "kill.simdr")
	keys := make([]string, 24)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	model := map[string]atkState{}
	inFlight, noState := 0, 0
	for life := range atkKillLives {
		lifeSeed := r.Uint64()
		syncW := life%2 == 1
		cmd := exec.Command(os.Args[0], "-test.run=^TestAttackTTLKillChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%d", atkKillEnv, path, lifeSeed, relB2i(syncW)))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		safety := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
		killAt := 1 + r.IntN(60)
		pause := time.Duration(r.IntN(400)) * time.Microsecond
		acks, begun, killed := 0, false, false
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if _, ok := strings.CutPrefix(line, "begin "); ok {
				begun = true
				if acks >= killAt && !killed {
					killed = true
					time.Sleep(pause)
					cmd.Process.Signal(syscall.SIGKILL)
				}
				continue
			}
			if _, ok := strings.CutPrefix(line, "ack "); ok {
				acks++
				begun = false
			}
		}
		werr := cmd.Wait()
		safety.Stop()
		var ee *exec.ExitError
		if !killed || !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("life %d: child ended by itself (%v) after %d acks: %s", life, werr, acks, stderr.String())
		}
		// The model: the acknowledged ops, then the one in flight.
		gr := rand.New(rand.NewPCG(lifeSeed, 2))
		var next atkKillOp
		for i := 0; i <= acks; i++ {
			next = atkKillGen(gr, i)
			if i < acks {
				model = next.apply(model)
			}
		}
		after := next.apply(model)
		// Without the state file a batch is not atomic across a crash:
		// any prefix of its operations, each whole.
		prefixes := []map[string]atkState{}
		m := model
		for _, o := range next.batch {
			m = o.apply(m)
			prefixes = append(prefixes, m)
		}
		stateless := life%3 == 2
		if stateless {
			os.Remove(path + StateSuffix) // as another boot leaves it
			noState++
		}
		for _, ro := range []bool{true, false} {
			s, err := Open(path, &Options{ReadOnly: ro, Clock: atkKillClock})
			if err != nil {
				t.Fatalf("life %d: Open(read-only %v): %v", life, ro, err)
			}
			got := atkSnapshot(t, s, keys)
			if err := s.Verify(); err != nil {
				t.Fatalf("life %d: Verify: %v", life, err)
			}
			s.Close()
			prefix := -1
			for i, p := range prefixes {
				if stateless && begun && atkSameState(got, p) {
					prefix = i
				}
			}
			switch {
			case atkSameState(got, model):
			case begun && atkSameState(got, after):
				if !ro {
					model = after // the op in flight is in the file
					inFlight++
				}
			case prefix >= 0:
				if !ro {
					model = prefixes[prefix] // part of the batch in flight
					inFlight++
				}
			default:
				t.Fatalf("life %d (read-only %v, sync %v, %d acks, op in flight %v: %s): %s",
					life, ro, syncW, acks, begun, next, atkDiff(got, model, after))
			}
		}
	}
	t.Logf("%d lives, %d showed the op in flight, %d reopened without the state file", atkKillLives, inFlight, noState)
}

// atkSeed returns a new seed, or the one SIMDR_ATK_TTL_SEED replays, and
// logs it.
func atkSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SIMDR_ATK_TTL_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (SIMDR_ATK_TTL_SEED=%d to replay)", seed, seed)
	return seed
}

// String shows a state with its value cut short.
func (s atkState) String() string {
	v := s.v
	if len(v) > 12 {
		v = fmt.Sprintf("%s...(%d bytes)", v[:12], len(v))
	}
	return fmt.Sprintf("{%q exp %d}", v, s.exp)
}

// String shows an op with its values cut short.
func (op atkKillOp) String() string {
	if op.kind == 'b' {
		return fmt.Sprint("batch", op.batch)
	}
	return fmt.Sprintf("%c %s %s %v ttl %v", op.kind, op.k, op.k2, atkState{v: op.v}, op.ttl)
}

// atkDiff lists the keys where got differs from want and from or.
func atkDiff(got, want, or map[string]atkState) string {
	var b strings.Builder
	for i := range 24 {
		k := fmt.Sprintf("k%d", i)
		if got[k] != want[k] || got[k] != or[k] {
			fmt.Fprintf(&b, "\n  %s: got %v, acknowledged %v, with the op in flight %v", k, got[k], want[k], or[k])
		}
	}
	return b.String()
}

func atkSameState(a, b map[string]atkState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// atkChanges returns the changes op makes, as Changes shows them (key and
// whether deleted), given the model m before it.
func (op atkKillOp) changes(m map[string]atkState) []string {
	var out []string
	live := func(k string) bool { _, ok := m[k]; return ok }
	var do func(o atkKillOp)
	do = func(o atkKillOp) {
		switch o.kind {
		case 't', 'p', 'r':
			out = append(out, o.k)
		case 'd':
			if live(o.k) {
				out = append(out, "-"+o.k)
			}
		case 'n':
			if live(o.k) && o.k != o.k2 {
				out = append(out, o.k2, "-"+o.k)
			}
		case 'b':
			for _, b := range o.batch {
				do(b)
				m = b.apply(m)
			}
		}
	}
	do(op)
	return out
}

// TestAttackTTLFollowerProcess: a writer in another process writes expiring
// keys while this process follows it read-only with Wait and Changes. The
// changes must be exactly the callers' writes (no record, record tombstone
// or marker), and the follower, refreshed, must hold every key with exactly
// its expiry, and again once the writer has compacted.
func TestAttackTTLFollowerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	const ops = 400
	path := filepath.Join(t.TempDir(), "follow.simdr")
	w := reopenT(t, path, &Options{Clock: atkKillClock})
	putT(t, w, "seed", "s") // the file exists before the follower opens it
	w.Close()
	f := reopenT(t, path, &Options{ReadOnly: true, Clock: atkKillClock})
	cur := f.Cursor()
	const seed = 77
	cmd := exec.Command(os.Args[0], "-test.run=^TestAttackTTLKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|0|%d", atkKillEnv, path, seed, ops))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	done, compacted := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool // the child printed done (else it died)
	go func() {
		defer close(compacted)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			switch sc.Text() {
			case "done":
				finished.Store(true)
				close(done)
			case "compacted":
				return
			}
		}
		if !finished.Load() {
			close(done)
		}
	}()
	names := map[uint64]string{}
	for i := range 24 {
		k := fmt.Sprintf("k%d", i)
		names[Hash([]byte(k))] = k
	}
	var got []string
	rounds := 0 // Changes calls that found something
	follow := func() {
		ch, next, err := f.Changes(cur)
		if err != nil {
			t.Fatal(err)
		}
		if len(ch) > 0 {
			rounds++
		}
		for _, c := range ch {
			k, ok := names[c.KeyHash]
			if !ok {
				t.Fatalf("Changes shows key hash %016x, not one of the writer's keys (a record, or the marker?)", c.KeyHash)
			}
			if c.Deleted {
				k = "-" + k
			}
			got = append(got, k)
		}
		cur = next
	}
	for stop := false; !stop; {
		select {
		case <-done:
			stop = true
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		f.Wait(ctx) // a timeout only makes it look again
		cancel()
		if err := f.Refresh(); err != nil {
			t.Fatal(err)
		}
		follow()
	}
	if !finished.Load() {
		cmd.Wait()
		t.Fatalf("the child died: %s", stderr.String())
	}
	if err := f.Refresh(); err != nil {
		t.Fatal(err)
	}
	follow()
	// What the child wrote.
	r := rand.New(rand.NewPCG(seed, 2))
	model := map[string]atkState{}
	var want []string
	for i := range ops {
		op := atkKillGen(r, i)
		want = append(want, op.changes(model)...)
		model = op.apply(model)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Changes:\n got  %v\n want %v", got, want)
	}
	keys := []string{"seed"}
	for i := range 24 {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	model["seed"] = atkState{"s", 0}
	if st := atkSnapshot(t, f, keys); !atkSameState(st, model) {
		t.Fatalf("the follower holds\n %v\nthe writer wrote\n %v", st, model)
	}
	// The writer compacts: the follower moves to the new file (its records
	// bound to the values' new places).
	g := f.Generation()
	fmt.Fprintln(in, "compact")
	<-compacted
	if err := f.Refresh(); err != nil {
		t.Fatal(err)
	}
	if f.Generation() == g {
		t.Fatalf("the follower did not move to the compacted file: %s", stderr.String())
	}
	if st := atkSnapshot(t, f, keys); !atkSameState(st, model) {
		t.Fatalf("after the writer's Compact the follower holds\n %v\nthe writer wrote\n %v", st, model)
	}
	t.Logf("%d changes followed in %d rounds", len(got), rounds)
}

// TestAttackTTLReadAllocs: Get in a store with expiring keys allocates
// nothing, whatever it finds: a live key with or without a ttl, and the
// misses: an expired key, a record's hash, the marker's, a missing key.
func TestAttackTTLReadAllocs(t *testing.T) {
	c := newClock()
	s, _ := openT(t, c.opts(&Options{}))
	if err := s.PutTTL([]byte("a"), []byte("x"), time.Second); err != nil {
		t.Fatal(err)
	}
	putT(t, s, "b", "y")
	if err := s.PutTTL([]byte("c"), []byte("z"), time.Hour); err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	for name, h := range map[string]uint64{"expired": Hash([]byte("a")), "record": atkRecordHash("a"), "marker": atkMarkerHash,
		"missing": Hash([]byte("missing")), "live": Hash([]byte("b")), "live with a ttl": Hash([]byte("c"))} {
		if _, err := s.GetHash(h); (err == nil) != strings.HasPrefix(name, "live") {
			t.Fatalf("GetHash(%s) = %v", name, err)
		}
		if n := testing.AllocsPerRun(100, func() { s.GetHash(h) }); n != 0 {
			t.Errorf("GetHash(%s) allocates %v times", name, n)
		}
	}
}

// TestAttackTTLFollowerSplit: a follower that refreshes (with no state file
// to tell it where the writer's commits end) while the writer's PutTTL is
// half in the file (its record, not yet its value) and again once it is
// whole. It must never see the record without its value: taken alone, the
// record replaced the old value's (which lost its expiry) and, once the
// value came in the next Refresh, bound nothing (the value lived for good
// on the follower).
func TestAttackTTLFollowerSplit(t *testing.T) {
	c := newClock()
	w, path := openT(t, c.opts(&Options{}))
	if err := w.PutTTL([]byte("k"), []byte("v1"), time.Hour); err != nil {
		t.Fatal(err)
	}
	half := w.Size()
	if err := w.PutTTL([]byte("k"), []byte("v2"), 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	w.Close()
	data, es := atkEntries(t, path)
	var cut int64 // the end of the second record
	for _, e := range es {
		if e.Hash == atkRecordHash("k") && e.Prev >= half {
			cut = e.Next()
		}
	}
	if cut == 0 {
		t.Fatal("no second record")
	}
	// A copy of the file (no state file) as the writer leaves it mid-write.
	p := filepath.Join(t.TempDir(), "mid.simdr")
	if err := os.WriteFile(p, data[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	now := c.ms.Load()
	f := reopenT(t, p, c.opts(&Options{ReadOnly: true}))
	checkTTLModel(t, f, ttlModel{"k": {"v1", now + 3_600_000}}, c)
	// The rest of the write arrives.
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Write(data[cut:]); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	if err := f.Refresh(); err != nil {
		t.Fatal(err)
	}
	checkTTLModel(t, f, ttlModel{"k": {"v2", now + 7_200_000}}, c)
}

// ---- Costs of expiring keys ----

// atkLoadTTL writes n keys as loadBench does, every other one with PutTTL
// (an hour).
func atkLoadTTL(b testing.TB, path string, n int) { loadBenchTTL(b, path, n, 2) }

// BenchmarkAttackTTLGet: Get in a store where half the keys have an expiry,
// of the keys without one and of the keys with one, next to a store with
// none (as BenchmarkGet); -simdr.keys keys, the same random order.
func BenchmarkAttackTTLGet(b *testing.B) {
	n := *benchKeys
	plain, ttl := filepath.Join(b.TempDir(), "p"), filepath.Join(b.TempDir(), "t")
	loadBench(b, plain, n)
	atkLoadTTL(b, ttl, n)
	get := func(b *testing.B, path string, parity int) {
		s, err := Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		var keys [][]byte
		for i := range n {
			if j := int(uint64(i) * 2654435761 % uint64(n)); parity < 0 || j%2 == parity {
				keys = append(keys, benchKey(make([]byte, 8), j))
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		var sum int
		for i := 0; i < b.N; i++ {
			e, err := s.Get(keys[i%len(keys)])
			if err != nil {
				b.Fatal(err)
			}
			sum += int(e.Bytes()[0])
		}
		_ = sum
	}
	b.Run("no-ttl-store", func(b *testing.B) { get(b, plain, -1) })
	b.Run("ttl-store/plain-key", func(b *testing.B) { get(b, ttl, 1) })
	b.Run("ttl-store/ttl-key", func(b *testing.B) { get(b, ttl, 0) })
}

// BenchmarkAttackTTLOpen: Open (read-only, as BenchmarkOpen) of a store of
// -simdr.keys keys with no expiry, and of one where half have one (Open
// rebuilds the expiry index: one pass over the index reading the 32-byte
// values), from the checkpoint Close writes and by a walk of the file.
func BenchmarkAttackTTLOpen(b *testing.B) {
	n := *benchKeys
	plain, ttl := filepath.Join(b.TempDir(), "p"), filepath.Join(b.TempDir(), "t")
	loadBench(b, plain, n)
	atkLoadTTL(b, ttl, n)
	open := benchOpen
	b.Run("no-ttl/checkpoint", func(b *testing.B) { open(b, plain) })
	b.Run("ttl/checkpoint", func(b *testing.B) { open(b, ttl) })
	for _, p := range []*string{&plain, &ttl} {
		w := *p + ".walk"
		copyFileB(b, *p, w)
		*p = w
	}
	b.Run("no-ttl/walk", func(b *testing.B) { open(b, plain) })
	b.Run("ttl/walk", func(b *testing.B) { open(b, ttl) })
}
