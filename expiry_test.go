package simdr

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"

	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simdr-go/simdr/internal/format"
)

// fakeClock is an injected clock (Options.Clock) the tests move by hand.
type fakeClock struct{ ms atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(1_700_000_000_000)
	return c
}

func (c *fakeClock) now() time.Time           { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) add(d time.Duration)      { c.ms.Add(int64(d / time.Millisecond)) }
func (c *fakeClock) opts(o *Options) *Options { o.Clock = c.now; return o }

// ttlModel is what a store should hold: each key's value and its expiry
// (Unix ms, 0 for none).
type ttlModel map[string]struct {
	v   string
	exp int64
}

// live returns the keys of m alive at now, with their values.
func (m ttlModel) live(now int64) map[string]string {
	out := map[string]string{}
	for k, e := range m {
		if e.exp == 0 || e.exp > now {
			out[k] = e.v
		}
	}
	return out
}

// checkTTLModel asserts that s holds exactly what m holds at the clock's
// time: values (checkModel: Get, Len, Entries), Has, GetMany,
// ForEachParallel, TTL and Stats.LiveKeys.
func checkTTLModel(t *testing.T, s *Store, m ttlModel, c *fakeClock) {
	t.Helper()
	now := c.ms.Load()
	live := m.live(now)
	checkModel(t, s, live)
	keys := make([][]byte, 0, len(m))
	for k, e := range m {
		keys = append(keys, []byte(k))
		_, alive := live[k]
		if s.Has([]byte(k)) != alive {
			t.Fatalf("Has(%q) = %v, want %v (exp %d, now %d)", k, !alive, alive, e.exp, now)
		}
		d, err := s.TTL([]byte(k))
		switch {
		case !alive:
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("TTL(%q) of an expired key = %v, %v; want ErrNotFound", k, d, err)
			}
		case e.exp == 0:
			if err != nil || d != NoExpiry {
				t.Fatalf("TTL(%q) = %v, %v; want NoExpiry", k, d, err)
			}
		default:
			if want := time.Duration(e.exp-now) * time.Millisecond; err != nil || d != want {
				t.Fatalf("TTL(%q) = %v, %v; want %v", k, d, err, want)
			}
		}
	}
	es, err := s.GetMany(keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		v, alive := live[string(keys[i])]
		if e.Exists() != alive || (alive && string(e.Bytes()) != v) {
			t.Fatalf("GetMany[%q] = %v %q, want %v %q", keys[i], e.Exists(), e.Bytes(), alive, v)
		}
	}
	var n atomic.Int64
	if err := s.ForEachParallel(context.Background(), 2, func(e Entry) error {
		n.Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if int(n.Load()) != len(live) {
		t.Fatalf("ForEachParallel visits %d entries, want %d", n.Load(), len(live))
	}
	if st := s.Stats(); st.LiveKeys != len(live) {
		t.Fatalf("Stats.LiveKeys = %d, want %d", st.LiveKeys, len(live))
	}
}

func TestTTLBasic(t *testing.T) {
	c := newClock()
	s, _ := openT(t, c.opts(&Options{}))
	if err := s.PutTTL([]byte("a"), []byte("apple"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	putT(t, s, "b", "banana")
	m := ttlModel{"a": {"apple", c.ms.Load() + 10_000}, "b": {"banana", 0}}
	checkTTLModel(t, s, m, c)
	c.add(9999 * time.Millisecond)
	checkTTLModel(t, s, m, c) // 1 ms left
	c.add(time.Millisecond)
	checkTTLModel(t, s, m, c) // expired at its expiry
	if _, err := s.Get([]byte("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an expired key: %v, want ErrNotFound", err)
	}
}

func TestTTLInvalid(t *testing.T) {
	c := newClock()
	s, _ := openT(t, c.opts(&Options{}))
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := s.PutTTL([]byte("a"), []byte("x"), ttl); !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("PutTTL(ttl %v) = %v, want ErrInvalidTTL", ttl, err)
		}
		var b Batch
		b.Put([]byte("b"), []byte("y"))
		b.PutTTL([]byte("a"), []byte("x"), ttl)
		if err := s.Apply(&b); !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("Apply(PutTTL ttl %v) = %v, want ErrInvalidTTL", ttl, err)
		}
	}
	if err := s.PutTTL([]byte("a"), nil, time.Second); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("PutTTL(empty value) = %v, want ErrInvalidValue", err)
	}
	if s.Len() != 0 || s.Size() != 0 {
		t.Fatalf("failed puts wrote: Len %d, Size %d", s.Len(), s.Size())
	}
	// A ttl of a nanosecond is a millisecond: never expired when written.
	if err := s.PutTTL([]byte("a"), []byte("x"), time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	if d, err := s.TTL([]byte("a")); err != nil || d != time.Millisecond {
		t.Fatalf("TTL after PutTTL(1ns) = %v, %v; want 1ms", d, err)
	}
	// A huge ttl does not overflow into the past.
	if err := s.PutTTL([]byte("h"), []byte("x"), time.Duration(1<<63-1)); err != nil {
		t.Fatal(err)
	}
	c.add(100 * 365 * 24 * time.Hour)
	if getT(t, s, "h") != "x" {
		t.Fatal("a key with the largest ttl expired")
	}
}

func TestTTLReservedKeys(t *testing.T) {
	s, _ := openT(t, nil)
	dst, _ := openT(t, nil)
	putT(t, s, "k", "v")
	for _, key := range [][]byte{[]byte(reservedPrefix), []byte(reservedPrefix + "abcdefgh"), append([]byte(reservedPrefix), 1, 2)} {
		var b Batch
		b.Put(key, []byte("x"))
		var bd Batch
		bd.Delete(key)
		_, prErr := s.PutReader(key, bytes.NewReader([]byte("x")))
		for name, err := range map[string]error{
			"Put":       s.Put(key, []byte("x")),
			"PutTTL":    s.PutTTL(key, []byte("x"), time.Hour),
			"Delete":    s.Delete(key),
			"Apply":     s.Apply(&b),
			"ApplyDel":  s.Apply(&bd),
			"PutReader": prErr,
			"RenameTo":  s.Rename([]byte("k"), key),
			"RenameOf":  s.Rename(key, []byte("k2")),
			"Copy":      s.Copy(key, dst),
			"Move":      s.Move(key, dst),
		} {
			if !errors.Is(err, ErrReservedKey) {
				t.Errorf("%s(%q) = %v, want ErrReservedKey", name, key, err)
			}
		}
	}
	// Keys that only look close are ordinary.
	for _, key := range []string{"\x00simdr.ttl", "simdr.ttl\x00", "\x01simdr.ttl\x00x"} {
		putT(t, s, key, "ok")
	}
}

// TestTTLReplace: a later Put drops the expiry, a later PutTTL replaces it,
// Delete removes both, in single writes and inside one batch.
func TestTTLReplace(t *testing.T) {
	c := newClock()
	s, path := openT(t, c.opts(&Options{}))
	now := c.ms.Load()
	m := ttlModel{}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutTTL([]byte("a"), []byte("1"), time.Second))
	putT(t, s, "a", "2") // no expiry any more
	m["a"] = struct {
		v   string
		exp int64
	}{"2", 0}
	must(s.PutTTL([]byte("b"), []byte("1"), time.Second))
	must(s.PutTTL([]byte("b"), []byte("2"), time.Hour))
	m["b"] = struct {
		v   string
		exp int64
	}{"2", now + 3_600_000}
	must(s.PutTTL([]byte("c"), []byte("1"), time.Second))
	must(s.Delete([]byte("c")))
	putT(t, s, "c", "3")
	m["c"] = struct {
		v   string
		exp int64
	}{"3", 0}
	var b Batch
	b.PutTTL([]byte("d"), []byte("1"), time.Second)
	b.Put([]byte("d"), []byte("2"))
	b.PutTTL([]byte("e"), []byte("1"), time.Second)
	b.Delete([]byte("e"))
	b.Put([]byte("f"), []byte("1"))
	b.PutTTL([]byte("f"), []byte("2"), time.Minute)
	must(s.Apply(&b))
	m["d"] = struct {
		v   string
		exp int64
	}{"2", 0}
	m["f"] = struct {
		v   string
		exp int64
	}{"2", now + 60_000}
	checkTTLModel(t, s, m, c)
	c.add(2 * time.Second)
	checkTTLModel(t, s, m, c)
	// The file holds records only for keys that expire: every other
	// record was deleted (what other readers of the file see).
	must(s.Close())
	s = reopenT(t, path, c.opts(&Options{}))
	checkTTLModel(t, s, m, c)
	g := s.cur.Load()
	n := 0
	g.ix.Range(func(h, v uint64) bool {
		if _, ok := g.recordAt(h, v); ok {
			n++
		}
		return true
	})
	if n != 2 {
		t.Fatalf("%d live records in the file, want 2 (b and f)", n)
	}
	c.add(time.Hour)
	checkTTLModel(t, s, m, c)
}

// TestTTLClockBack: once reported expired, a key stays expired in this
// Store when the clock goes back.
func TestTTLClockBack(t *testing.T) {
	c := newClock()
	s, _ := openT(t, c.opts(&Options{}))
	if err := s.PutTTL([]byte("a"), []byte("x"), time.Second); err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	if s.Has([]byte("a")) {
		t.Fatal("not expired")
	}
	c.add(-time.Hour)
	if s.Has([]byte("a")) || getT(t, s, "a") != "<absent>" || s.Len() != 0 {
		t.Fatal("a clock set back brought an expired key back")
	}
	// Expiries are measured from the latest time seen, too.
	if err := s.PutTTL([]byte("b"), []byte("x"), time.Second); err != nil {
		t.Fatal(err)
	}
	c.add(time.Hour + time.Second)
	if s.Has([]byte("b")) {
		t.Fatal("b outlived its ttl measured from the latest time seen")
	}
}

// TestTTLTransfers: Rename, Copy and Move keep a value's expiry; an expired
// key is not found by them.
func TestTTLTransfers(t *testing.T) {
	c := newClock()
	o := func() *Options { return c.opts(&Options{}) }
	s, _ := openT(t, o())
	d, dpath := openT(t, o())
	now := c.ms.Load()
	for _, k := range []string{"r", "c", "m", "x"} {
		if err := s.PutTTL([]byte(k), []byte("v"+k), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	putT(t, s, "plain", "p")
	putT(t, d, "c", "old")
	if err := s.PutTTL([]byte("r2"), []byte("old"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename([]byte("r"), []byte("r2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename([]byte("plain"), []byte("plain2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Copy([]byte("c"), d); err != nil {
		t.Fatal(err)
	}
	if err := s.Move([]byte("m"), d); err != nil {
		t.Fatal(err)
	}
	type e = struct {
		v   string
		exp int64
	}
	ms := ttlModel{"r2": e{"vr", now + 60_000}, "plain2": e{"p", 0}, "c": e{"vc", now + 60_000}, "x": e{"vx", now + 60_000}}
	md := ttlModel{"c": e{"vc", now + 60_000}, "m": e{"vm", now + 60_000}}
	checkTTLModel(t, s, ms, c)
	checkTTLModel(t, d, md, c)
	c.add(time.Minute)
	for name, err := range map[string]error{
		"Rename": s.Rename([]byte("x"), []byte("y")),
		"Copy":   s.Copy([]byte("x"), d),
		"Move":   s.Move([]byte("x"), d),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of an expired key = %v, want ErrNotFound", name, err)
		}
	}
	checkTTLModel(t, s, ms, c)
	checkTTLModel(t, d, md, c)
	d.Close()
	d = reopenT(t, dpath, o())
	checkTTLModel(t, d, md, c)
}

// TestTTLCompact: Compact drops expired keys and their records, keeps the
// others' expiry (also for keys written while it runs, through its second
// phase), and frees exactly what Stats said.
func TestTTLCompact(t *testing.T) {
	c := newClock()
	s, path := openT(t, c.opts(&Options{}))
	m := ttlModel{}
	r := rand.New(rand.NewPCG(3, 4))
	now := c.ms.Load()
	for i := range 2000 {
		k := fmt.Sprintf("k%d", r.IntN(500))
		v := fmt.Sprintf("v%d", i)
		if r.IntN(3) == 0 {
			putT(t, s, k, v)
			m[k] = struct {
				v   string
				exp int64
			}{v, 0}
		} else {
			ttl := time.Duration(1+r.IntN(2000)) * time.Millisecond
			if err := s.PutTTL([]byte(k), []byte(v), ttl); err != nil {
				t.Fatal(err)
			}
			m[k] = struct {
				v   string
				exp int64
			}{v, now + ttl.Milliseconds()}
		}
	}
	c.add(time.Second)
	st := s.Stats()
	before := s.Size()
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if freed := before - s.Size(); freed != st.ReclaimableBytes {
		t.Errorf("Compact freed %d bytes, Stats said %d", freed, st.ReclaimableBytes)
	}
	checkTTLModel(t, s, m, c)
	if st := s.Stats(); st.ReclaimableBytes != 0 {
		t.Errorf("after Compact, ReclaimableBytes = %d", st.ReclaimableBytes)
	}
	// Nothing expired is left in the file: every value entry is live.
	if st := s.Stats(); int(st.Entries) != st.LiveKeys+countTTL(m, c.ms.Load())+1 {
		t.Errorf("after Compact: %d entries for %d live keys (%d with a ttl)", st.Entries, st.LiveKeys, countTTL(m, c.ms.Load()))
	}
	s.Close()
	s = reopenT(t, path, c.opts(&Options{}))
	checkTTLModel(t, s, m, c)
	c.add(time.Second)
	checkTTLModel(t, s, m, c)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	checkTTLModel(t, s, m, c)
	if g := s.cur.Load(); g.x.Load() != nil {
		t.Error("a compacted file with no expiring key still has an expiry index")
	}
}

func countTTL(m ttlModel, now int64) (n int) {
	for _, e := range m {
		if e.exp > now {
			n++
		}
	}
	return n
}

// TestTTLCompactDelta: writes made during Compact's first phase (the delta
// its second phase copies) keep their expiry, drop it, or delete the key.
func TestTTLCompactDelta(t *testing.T) {
	c := newClock()
	s, _ := openT(t, c.opts(&Options{}))
	type e = struct {
		v   string
		exp int64
	}
	now := c.ms.Load()
	m := ttlModel{}
	for i := range 200 {
		k := fmt.Sprintf("k%d", i)
		if err := s.PutTTL([]byte(k), []byte("old"), time.Hour); err != nil {
			t.Fatal(err)
		}
		m[k] = e{"old", now + 3_600_000}
	}
	// Each case writes during Compact's first phase, through the hook.
	compactHook = func() {
		compactHook = nil
		for i := range 200 {
			k := fmt.Sprintf("k%d", i)
			var err error
			switch i % 5 {
			case 0:
				err = s.Put([]byte(k), []byte("plain"))
				m[k] = e{"plain", 0}
			case 1:
				err = s.PutTTL([]byte(k), []byte("new"), time.Minute)
				m[k] = e{"new", now + 60_000}
			case 2:
				err = s.Delete([]byte(k))
				delete(m, k)
			case 3:
				err = s.PutTTL([]byte(k), []byte("short"), time.Millisecond)
				m[k] = e{"short", now + 1}
			}
			if err != nil {
				t.Error(err)
			}
		}
		c.add(time.Millisecond) // the short ones expire before phase 2
	}
	t.Cleanup(func() { compactHook = nil })
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	checkTTLModel(t, s, m, c)
	c.add(time.Minute)
	checkTTLModel(t, s, m, c)
}

// TestTTLModel runs random writes, clock moves, reopens and compactions
// against a model.
func TestTTLModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			c := newClock()
			o := func() *Options { return c.opts(&Options{}) }
			s, path := openT(t, o())
			r := rand.New(rand.NewPCG(seed, 99))
			m := ttlModel{}
			type e = struct {
				v   string
				exp int64
			}
			key := func() string { return fmt.Sprintf("k%d", r.IntN(60)) }
			ttl := func() time.Duration { return time.Duration(1+r.IntN(50)) * time.Millisecond }
			for i := range 1500 {
				now := c.ms.Load()
				v := fmt.Sprintf("v%d", i)
				var err error
				switch op := r.IntN(100); {
				case op < 25:
					k := key()
					err = s.Put([]byte(k), []byte(v))
					m[k] = e{v, 0}
				case op < 50:
					k, d := key(), ttl()
					err = s.PutTTL([]byte(k), []byte(v), d)
					m[k] = e{v, now + d.Milliseconds()}
				case op < 58:
					k := key()
					err = s.Delete([]byte(k))
					delete(m, k)
				case op < 70:
					var b Batch
					for j := range 1 + r.IntN(5) {
						k, vv := key(), fmt.Sprintf("%s.%d", v, j)
						switch r.IntN(3) {
						case 0:
							b.Put([]byte(k), []byte(vv))
							m[k] = e{vv, 0}
						case 1:
							d := ttl()
							b.PutTTL([]byte(k), []byte(vv), d)
							m[k] = e{vv, now + d.Milliseconds()}
						case 2:
							b.Delete([]byte(k))
							delete(m, k)
						}
					}
					err = s.Apply(&b)
				case op < 76:
					a, b := key(), key()
					if a == b {
						continue
					}
					err = s.Rename([]byte(a), []byte(b))
					if ea, ok := m[a]; ok && (ea.exp == 0 || ea.exp > now) {
						m[b] = ea
						delete(m, a)
					} else if !errors.Is(err, ErrNotFound) {
						t.Fatalf("Rename of missing %q: %v", a, err)
					} else {
						err = nil
					}
				case op < 90:
					c.add(time.Duration(r.IntN(20)) * time.Millisecond)
				case op < 95:
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = reopenT(t, path, o())
				default:
					err = s.Compact()
				}
				if err != nil {
					t.Fatalf("op %d: %v", i, err)
				}
				if i%50 == 0 {
					checkTTLModel(t, s, m, c)
				}
			}
			checkTTLModel(t, s, m, c)
			if err := s.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTTLCheckpoint: an index loaded from a checkpoint (no walk) still
// knows which keys expire.
func TestTTLCheckpoint(t *testing.T) {
	c := newClock()
	o := func() *Options { return c.opts(&Options{}) }
	s, path := openT(t, o())
	model := ckModel(t, s, 2*ckMinEntries, 31)
	m := ttlModel{}
	for k, v := range model {
		m[k] = struct {
			v   string
			exp int64
		}{v, 0}
	}
	now := c.ms.Load()
	for i := range 300 {
		k := fmt.Sprintf("k%d", i)
		if err := s.PutTTL([]byte(k), []byte("t"), time.Duration(1+i)*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		m[k] = struct {
			v   string
			exp int64
		}{"t", now + int64(1+i)}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(checkpointPath(path)); err != nil {
		t.Fatalf("no checkpoint written: %v", err)
	}
	s = reopenT(t, path, o())
	if s.cur.Load().ck == nil {
		t.Fatal("the index was not loaded from the checkpoint")
	}
	c.add(150 * time.Millisecond)
	checkTTLModel(t, s, m, c)
}

// TestTTLFollower: a read-only Store that follows the writer with Refresh
// sees expiries as they are written, and a reopened one too.
func TestTTLFollower(t *testing.T) {
	c := newClock()
	w, path := openT(t, c.opts(&Options{}))
	putT(t, w, "seed", "s")
	f := reopenT(t, path, c.opts(&Options{ReadOnly: true}))
	if err := w.PutTTL([]byte("a"), []byte("x"), time.Second); err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.PutTTL([]byte("b"), []byte("y"), 2*time.Second)
	b.Put([]byte("c"), []byte("z"))
	if err := w.Apply(&b); err != nil {
		t.Fatal(err)
	}
	if err := f.Refresh(); err != nil {
		t.Fatal(err)
	}
	now := c.ms.Load()
	m := ttlModel{"seed": {"s", 0}, "a": {"x", now + 1000}, "b": {"y", now + 2000}, "c": {"z", 0}}
	checkTTLModel(t, f, m, c)
	putT(t, w, "a", "plain")
	if err := f.Refresh(); err != nil {
		t.Fatal(err)
	}
	m["a"] = struct {
		v   string
		exp int64
	}{"plain", 0}
	c.add(time.Second)
	checkTTLModel(t, f, m, c)
	c.add(time.Second)
	checkTTLModel(t, f, m, c)
}

// TestTTLRecordsOnlyByShape: a user's 32-byte value that spells a record,
// under an ordinary key, is a value like any other: it does not make the key
// it names expire, nor hide itself.
func TestTTLRecordsOnlyByShape(t *testing.T) {
	c := newClock()
	s, path := openT(t, c.opts(&Options{}))
	putT(t, s, "victim", "v")
	forged := record{hash: Hash([]byte("victim")), bound: 1, exp: 1}.encode()
	if err := s.PutTTL([]byte("real"), []byte("r"), time.Hour); err != nil { // marker present
		t.Fatal(err)
	}
	if err := s.Put([]byte("forger"), forged); err != nil {
		t.Fatal(err)
	}
	m := ttlModel{"victim": {"v", 0}, "forger": {string(forged), 0}, "real": {"r", c.ms.Load() + 3_600_000}}
	checkTTLModel(t, s, m, c)
	s.Close()
	s = reopenT(t, path, c.opts(&Options{}))
	checkTTLModel(t, s, m, c)
}

// TestTTLChanges: Changes shows the values and deletions callers wrote, not
// the records.
func TestTTLChanges(t *testing.T) {
	s, _ := openT(t, nil)
	from := s.Cursor()
	if err := s.PutTTL([]byte("a"), []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	putT(t, s, "a", "y")
	if err := s.PutTTL([]byte("b"), []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutReader([]byte("b"), bytes.NewReader([]byte("z"))); err != nil {
		t.Fatal(err)
	}
	ch, _, err := s.Changes(from)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range ch {
		k := map[uint64]string{Hash([]byte("a")): "a", Hash([]byte("b")): "b"}[c.KeyHash]
		if k == "" {
			k = fmt.Sprintf("%016x", c.KeyHash)
		}
		if c.Deleted {
			k = "-" + k
		}
		got = append(got, k)
	}
	if want := "[a a b -b b]"; fmt.Sprint(got) != want {
		t.Fatalf("Changes = %v, want %v", got, want)
	}
}

// TestTTLFileIsPlain: the entries PutTTL writes are ordinary entries of the
// format (a reader that knows nothing of expiry walks them): the marker, a
// 32-byte record under a reserved hash, then the value, the caller's bytes
// under the key's hash.
func TestTTLFileIsPlain(t *testing.T) {
	c := newClock()
	s, path := openT(t, c.opts(&Options{}))
	if err := s.PutTTL([]byte("key"), []byte("value"), time.Minute); err != nil {
		t.Fatal(err)
	}
	exp := c.ms.Load() + 60_000
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []format.Entry
	format.Walk(data, 0, int64(len(data)), func(e format.Entry) bool { got = append(got, e); return true })
	sort.Slice(got, func(i, j int) bool { return got[i].Start < got[j].Start })
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3 (marker, record, value)", len(got))
	}
	if got[0].Hash != Hash([]byte(reservedPrefix)) || string(data[got[0].Start:got[0].End]) != markerValue {
		t.Errorf("first entry is not the marker")
	}
	r, ok := decodeRecord(got[1].Hash, data[got[1].Start:got[1].End])
	if !ok || r.hash != Hash([]byte("key")) || r.bound != got[2].End || r.exp != exp {
		t.Errorf("second entry is not the record: %+v %v", r, ok)
	}
	if got[1].Hash != Hash(append([]byte(reservedPrefix), le64(Hash([]byte("key")))...)) {
		t.Errorf("record under hash %x, not that of the reserved prefix and the key hash", got[1].Hash)
	}
	if got[2].Hash != Hash([]byte("key")) || string(data[got[2].Start:got[2].End]) != "value" {
		t.Errorf("third entry is not the value")
	}
}

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// TestTTLTornBetweenRecordAndValue: a crash that keeps a PutTTL's record
// but not its value (the file cut between them) leaves the key as it was,
// and the record binds no later value (a later Put deletes it first).
func TestTTLTornBetweenRecordAndValue(t *testing.T) {
	c := newClock()
	s, path := openT(t, c.opts(&Options{}))
	putT(t, s, "k", "old")
	before := s.Size()
	if err := s.PutTTL([]byte("k"), []byte("new"), time.Second); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Cut just past the record: the marker and the record stay, the value goes.
	var ents []format.Entry
	format.Walk(data, 0, int64(len(data)), func(e format.Entry) bool { ents = append(ents, e); return true })
	recEnd := ents[1].End + format.MetaSize // newest first: value, record, marker, old
	if _, ok := decodeRecord(ents[1].Hash, data[ents[1].Start:ents[1].End]); !ok || recEnd <= before {
		t.Fatalf("entry below the value is not its record")
	}
	if err := os.Truncate(path, recEnd+7); err != nil { // and a torn start of the value
		t.Fatal(err)
	}
	s = reopenT(t, path, c.opts(&Options{}))
	if got := getT(t, s, "k"); got != "old" {
		t.Fatalf("after the torn PutTTL, k = %q, want the old value", got)
	}
	if d, err := s.TTL([]byte("k")); err != nil || d != NoExpiry {
		t.Fatalf("TTL(k) = %v, %v; want NoExpiry", d, err)
	}
	putT(t, s, "k", "new")
	c.add(time.Hour)
	if got := getT(t, s, "k"); got != "new" {
		t.Fatalf("a later Put of k expired with the torn PutTTL's record: k = %q", got)
	}
	s.Close()
	s = reopenT(t, path, c.opts(&Options{}))
	if got := getT(t, s, "k"); got != "new" {
		t.Fatalf("after reopen, k = %q, want new", got)
	}
}

// TestTTLExpiresAt: an absolute expiry does not depend on when Apply runs;
// one in the past writes an expired value.
func TestTTLExpiresAt(t *testing.T) {
	c := newClock()
	s, _ := openT(t, c.opts(&Options{}))
	at := time.UnixMilli(c.ms.Load() + 5000)
	var b Batch
	b.PutExpiresAt([]byte("a"), []byte("x"), at)
	b.PutHashExpiresAt(Hash([]byte("old")), []byte("y"), time.UnixMilli(c.ms.Load()-1))
	b.PutExpiresAt([]byte("zero"), []byte("z"), time.Time{})
	c.add(2 * time.Second) // Apply runs later: the expiry stays at
	if err := s.Apply(&b); err != nil {
		t.Fatal(err)
	}
	m := ttlModel{"a": {"x", at.UnixMilli()}, "old": {"y", 1}, "zero": {"z", 1}}
	checkTTLModel(t, s, m, c)
	var bad Batch
	bad.PutExpiresAt([]byte(reservedPrefix), []byte("x"), at)
	if err := s.Apply(&bad); !errors.Is(err, ErrReservedKey) {
		t.Fatalf("PutExpiresAt of a reserved key: %v", err)
	}
}

func TestTTLExpiresAtRead(t *testing.T) {
	c := newClock()
	s, _ := openT(t, c.opts(&Options{}))
	putT(t, s, "plain", "p")
	if err := s.PutTTL([]byte("t"), []byte("x"), 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	want := time.UnixMilli(c.ms.Load() + 1500)
	if at, err := s.ExpiresAt([]byte("t")); err != nil || !at.Equal(want) {
		t.Fatalf("ExpiresAt(t) = %v, %v; want %v", at, err, want)
	}
	if at, err := s.ExpiresAt([]byte("plain")); err != nil || !at.IsZero() {
		t.Fatalf("ExpiresAt(plain) = %v, %v; want the zero Time", at, err)
	}
	if _, err := s.ExpiresAt([]byte("missing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ExpiresAt(missing): %v", err)
	}
	c.add(1500 * time.Millisecond)
	if _, err := s.ExpiresAtHash(Hash([]byte("t"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ExpiresAtHash(expired): %v", err)
	}
}

// TestTTLHashLevelGuards: the hash-level writes cannot delete a record or
// the marker, write the marker, or write a value that spells a record under
// the hash it names (Open would take it for one).
func TestTTLHashLevelGuards(t *testing.T) {
	c := newClock()
	s, path := openT(t, c.opts(&Options{}))
	if err := s.PutTTL([]byte("k"), []byte("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	putT(t, s, "victim", "v")
	vh := Hash([]byte("victim"))
	forged := record{hash: vh, bound: 1, exp: 1}.encode()
	var b1, b2, b3, b4 Batch
	b1.DeleteHash(recordHash(Hash([]byte("k"))))
	b2.DeleteHash(markerHash)
	b3.PutHash(markerHash, []byte("x"))
	b4.PutHash(recordHash(vh), forged)
	for name, err := range map[string]error{
		"DeleteHash(record)":     s.DeleteHash(recordHash(Hash([]byte("k")))),
		"DeleteHash(marker)":     s.DeleteHash(markerHash),
		"Apply(DeleteHash rec)":  s.Apply(&b1),
		"Apply(DeleteHash mark)": s.Apply(&b2),
		"Apply(PutHash marker)":  s.Apply(&b3),
		"Apply(PutHash forged)":  s.Apply(&b4),
	} {
		if !errors.Is(err, ErrReservedKey) {
			t.Errorf("%s = %v, want ErrReservedKey", name, err)
		}
	}
	m := ttlModel{"k": {"v", c.ms.Load() + 1000}, "victim": {"v", 0}}
	checkTTLModel(t, s, m, c)
	s.Close()
	s = reopenT(t, path, c.opts(&Options{}))
	checkTTLModel(t, s, m, c)
	if !IsReservedKey([]byte(reservedPrefix+"x")) || IsReservedKey([]byte("x")) {
		t.Fatal("IsReservedKey")
	}
}
