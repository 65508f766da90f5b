package simdr

// The concurrency stress suite: many goroutines doing random Put, Get,
// GetMany, Delete, Apply, PutReader and Rename against one Store while others
// compact it, iterate it and follow it read-only, checked against a model
// after each phase and after reopening. Keys are partitioned: each worker owns
// its keys, so its model of them is exact at every step; a few keys are
// shared by all workers and checked as linearizable registers from the
// intervals of every read and write. `go test -tags long` runs it longer.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ccBuildSetting returns a setting the test binary was built with ("-race",
// "-tags"), or "".
func ccBuildSetting(key string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// ccRace reports whether the race detector is on (runs are then slower).
func ccRace() bool { return ccBuildSetting("-race") == "true" }

// ccLong reports whether the tests were built with -tags long.
func ccLong() bool { return slices.Contains(strings.Split(ccBuildSetting("-tags"), ","), "long") }

// ccVal is the model's view of a key's value: the key it was first written
// under (Rename moves values) and the write that made it; id 0 is absent.
type ccVal struct{ src, id int }

// ccWrite is one write of a shared key (id 0 is the initial absent state;
// del marks a delete), with its interval on the suite's logical clock.
type ccWrite struct {
	id         int
	del        bool
	start, end int64
}

// ccRead is one read of a shared key: the write it saw (0 for absent) and
// its interval.
type ccRead struct {
	id         int
	start, end int64
}

// ccStress is the shared state of one stress run.
type ccStress struct {
	t       *testing.T
	path    string
	s       *Store
	workers int
	keys    int // keys per worker
	shared  int // keys shared by all workers
	ids     atomic.Int64
	clock   atomic.Int64
	hashes  map[uint64]int // hash → key number, for every key the run uses
	models  []map[int]ccVal

	mu     sync.Mutex // guards what follows
	writes map[int][]ccWrite
	reads  map[int][]ccRead
	failed atomic.Bool
}

const ccSharedBase = 1_000_000 // key numbers of shared keys start here

func (st *ccStress) key(n int) []byte { return []byte(fmt.Sprintf("stress-%d", n)) }

func (st *ccStress) fail(format string, args ...any) {
	st.failed.Store(true)
	st.t.Errorf(format, args...)
}

// ccSize picks a value size: mostly small, some medium, a few written straight
// from the caller's slice (>= 256 KiB).
func ccSize(r *rand.Rand) int {
	switch x := r.IntN(1000); {
	case x < 2:
		return 256<<10 + r.IntN(64<<10)
	case x < 50:
		return 1000 + r.IntN(8000)
	default:
		return 24 + r.IntN(300)
	}
}

// checkOwn checks that e (or err) is what the model says key n holds.
func (st *ccStress) checkOwn(n int, want ccVal, e Entry, err error) bool {
	if want.id == 0 {
		if !errors.Is(err, ErrNotFound) {
			st.fail("key %d: got %v, %v; want ErrNotFound", n, e, err)
			return false
		}
		return true
	}
	if err != nil {
		st.fail("key %d: %v; want write %d", n, err, want.id)
		return false
	}
	return st.checkEntry(n, want, e)
}

func (st *ccStress) checkEntry(n int, want ccVal, e Entry) bool {
	if err := e.Verify(); err != nil {
		st.fail("key %d: %v", n, err)
		return false
	}
	src, id, err := ccMPParse(e.Bytes())
	if err != nil || src != want.src || id != want.id || e.KeyHash() != Hash(st.key(n)) {
		st.fail("key %d: value of key %d write %d (%v), want key %d write %d", n, src, id, err, want.src, want.id)
		return false
	}
	return true
}

// checkWhole checks an entry met by an iterator or a follower: it verifies,
// its header parses, and its hash is one of the run's keys.
func (st *ccStress) checkWhole(e Entry) bool {
	if err := e.Verify(); err != nil {
		st.fail("iterated entry %v: %v", e, err)
		return false
	}
	if _, _, err := ccMPParse(e.Bytes()); err != nil {
		st.fail("iterated entry %v: %v", e, err)
		return false
	}
	if _, ok := st.hashes[e.KeyHash()]; !ok {
		st.fail("iterated entry %v: hash of no key", e)
		return false
	}
	return true
}

// worker runs ops random operations on worker w's keys and the shared keys.
func (st *ccStress) worker(w, ops int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, uint64(w)))
	model := st.models[w]
	own := func() int { return w*st.keys + r.IntN(st.keys) }
	var b Batch
	for i := 0; i < ops && !st.failed.Load(); i++ {
		n := own()
		switch x := r.IntN(1000); {
		case x < 300:
			id := int(st.ids.Add(1))
			if err := st.s.Put(st.key(n), ccMPValue(n, id, ccSize(r))); err != nil {
				st.fail("put: %v", err)
				return
			}
			model[n] = ccVal{n, id}
		case x < 500:
			e, err := st.s.Get(st.key(n))
			st.checkOwn(n, model[n], e, err)
		case x < 550:
			ns := []int{n, own(), own(), own()}
			keys := make([][]byte, len(ns))
			for j, k := range ns {
				keys[j] = st.key(k)
			}
			es, err := st.s.GetMany(keys)
			if err != nil {
				st.fail("get many: %v", err)
				return
			}
			for j, k := range ns {
				if model[k].id == 0 {
					if es[j].Exists() {
						st.fail("get many: key %d should be absent", k)
					}
				} else {
					st.checkEntry(k, model[k], es[j])
				}
			}
		case x < 620:
			if err := st.s.Delete(st.key(n)); err != nil {
				st.fail("delete: %v", err)
				return
			}
			delete(model, n)
		case x < 700:
			b.Reset()
			next := ccCopyModel(model)
			for j, m := 0, 1+r.IntN(10); j < m; j++ {
				k := own()
				if r.IntN(4) == 0 {
					b.Delete(st.key(k))
					delete(next, k)
				} else {
					id := int(st.ids.Add(1))
					b.Put(st.key(k), ccMPValue(k, id, ccSize(r)))
					next[k] = ccVal{k, id}
				}
			}
			if err := st.s.Apply(&b); err != nil {
				st.fail("apply: %v", err)
				return
			}
			clear(model)
			for k, v := range next {
				model[k] = v
			}
		case x < 703:
			id := int(st.ids.Add(1))
			size := 64<<10 + r.IntN(1<<20+64<<10) // spans PutReader's 1 MiB chunks
			if _, err := st.s.PutReader(st.key(n), bytes.NewReader(ccMPValue(n, id, size))); err != nil {
				st.fail("put reader: %v", err)
				return
			}
			model[n] = ccVal{n, id}
		case x < 740:
			to := own()
			err := st.s.Rename(st.key(n), st.key(to))
			switch {
			case to == n:
				if !errors.Is(err, ErrSameKey) {
					st.fail("rename to itself: %v", err)
				}
			case model[n].id == 0:
				if !errors.Is(err, ErrNotFound) {
					st.fail("rename of an absent key: %v", err)
				}
			case err != nil:
				st.fail("rename: %v", err)
				return
			default:
				model[to] = model[n]
				delete(model, n)
			}
		case x < 770:
			if got, want := st.s.Has(st.key(n)), model[n].id != 0; got != want {
				st.fail("has key %d: %v, want %v", n, got, want)
			}
		default:
			st.sharedOp(r)
		}
	}
}

// ccCopyModel copies a model.
func ccCopyModel(m map[int]ccVal) map[int]ccVal {
	c := make(map[int]ccVal, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// sharedOp writes, deletes or reads a shared key and records its interval.
func (st *ccStress) sharedOp(r *rand.Rand) {
	n := ccSharedBase + r.IntN(st.shared)
	start := st.clock.Add(1)
	switch x := r.IntN(10); {
	case x < 4:
		id := int(st.ids.Add(1))
		if err := st.s.Put(st.key(n), ccMPValue(n, id, 24+r.IntN(100))); err != nil {
			st.fail("shared put: %v", err)
			return
		}
		end := st.clock.Add(1)
		st.mu.Lock()
		st.writes[n] = append(st.writes[n], ccWrite{id: id, start: start, end: end})
		st.mu.Unlock()
	case x < 5:
		id := int(st.ids.Add(1))
		if err := st.s.Delete(st.key(n)); err != nil {
			st.fail("shared delete: %v", err)
			return
		}
		end := st.clock.Add(1)
		st.mu.Lock()
		st.writes[n] = append(st.writes[n], ccWrite{id: id, del: true, start: start, end: end})
		st.mu.Unlock()
	default:
		e, err := st.s.Get(st.key(n))
		end := st.clock.Add(1)
		id := 0
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			st.fail("shared get: %v", err)
			return
		default:
			if err := e.Verify(); err != nil {
				st.fail("shared get: %v", err)
				return
			}
			k, wid, err := ccMPParse(e.Bytes())
			if err != nil || k != n {
				st.fail("shared key %d: value of key %d (%v)", n, k, err)
				return
			}
			id = wid
		}
		st.mu.Lock()
		st.reads[n] = append(st.reads[n], ccRead{id: id, start: start, end: end})
		st.mu.Unlock()
	}
}

// checkShared checks every recorded read of the shared keys, and their final
// state, against the writes: a read (or the final state) may return a write
// only if that write began before the read ended and no other write lies
// wholly between the write's end and the read's start. An absent result must
// be explained so by a delete or the initial state.
func (st *ccStress) checkShared(final map[int]int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for n := ccSharedBase; n < ccSharedBase+st.shared; n++ {
		ws := st.writes[n]
		ok := func(rd ccRead) bool {
			for _, w := range ws {
				if rd.id != 0 && w.id != rd.id || rd.id == 0 && !w.del || w.start > rd.end {
					continue
				}
				overwritten := false
				for _, w2 := range ws {
					if w2.start > w.end && w2.end < rd.start {
						overwritten = true
						break
					}
				}
				if !overwritten {
					return true
				}
			}
			return false
		}
		for _, rd := range st.reads[n] {
			if !ok(rd) {
				st.fail("shared key %d: read [%d,%d] of write %d is not linearizable", n, rd.start, rd.end, rd.id)
				return
			}
		}
		after := st.clock.Load() + 1
		if !ok(ccRead{id: final[n], start: after, end: after}) {
			st.fail("shared key %d: final state (write %d) is not the last write", n, final[n])
		}
		st.writes[n] = []ccWrite{{id: final[n], del: final[n] == 0}} // the next phase starts from it
		st.reads[n] = nil
	}
}

// check compares the whole store with the models: every owned key exactly,
// Len, Entries and ForEachParallel, Verify, and the shared keys' final state.
func (st *ccStress) check(s *Store, what string) {
	t := st.t
	t.Helper()
	want := make(map[int]ccVal)
	for _, m := range st.models {
		for k, v := range m {
			want[k] = v
		}
	}
	final := make(map[int]int)
	got := make(map[int]bool)
	for e := range s.Entries() {
		n, ok := st.hashes[e.KeyHash()]
		if !ok {
			t.Fatalf("%s: entry %v: hash of no key", what, e)
		}
		if got[n] {
			t.Fatalf("%s: key %d iterated twice", what, n)
		}
		got[n] = true
		if n >= ccSharedBase {
			if !st.checkWhole(e) {
				t.FailNow()
			}
			_, id, _ := ccMPParse(e.Bytes())
			final[n] = id
			continue
		}
		if want[n].id == 0 {
			t.Fatalf("%s: key %d is present, the model has it deleted", what, n)
		}
		if !st.checkEntry(n, want[n], e) {
			t.FailNow()
		}
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("%s: key %d is missing", what, k)
		}
		e, err := s.Get(st.key(k))
		if !st.checkOwn(k, want[k], e, err) {
			t.FailNow()
		}
	}
	if s.Len() != len(got) {
		t.Fatalf("%s: Len %d, iterated %d keys", what, s.Len(), len(got))
	}
	var visits atomic.Int64
	if err := s.ForEachParallel(t.Context(), 3, func(e Entry) error {
		visits.Add(1)
		return nil
	}); err != nil || int(visits.Load()) != len(got) {
		t.Fatalf("%s: ForEachParallel visited %d of %d keys: %v", what, visits.Load(), len(got), err)
	}
	if err := s.Verify(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	st.checkShared(final)
	if t.Failed() {
		t.FailNow()
	}
}

// ccEqualStores checks that a follower holds the same keys and values as the writer.
func ccEqualStores(t *testing.T, w, f *Store) {
	t.Helper()
	if w.Len() != f.Len() {
		t.Fatalf("follower has %d keys, writer %d", f.Len(), w.Len())
	}
	for e := range w.Entries() {
		fe, err := f.GetHash(e.KeyHash())
		if err != nil || !bytes.Equal(fe.Bytes(), e.Bytes()) {
			t.Fatalf("follower's value of %016x differs: %v", e.KeyHash(), err)
		}
	}
}

// TestStress is the concurrency stress suite (see the top of the file).
func TestStress(t *testing.T) {
	phases, ops := 4, 6000
	switch {
	case ccLong():
		phases, ops = 10, 50000
	case testing.Short():
		phases, ops = 2, 500
	case ccRace():
		phases, ops = 4, 5000
	}
	st := &ccStress{
		t:       t,
		path:    filepath.Join(t.TempDir(), "stress.simdr"),
		workers: 6,
		keys:    40,
		shared:  4,
		hashes:  make(map[uint64]int),
		writes:  make(map[int][]ccWrite),
		reads:   make(map[int][]ccRead),
	}
	for w := range st.workers {
		st.models = append(st.models, make(map[int]ccVal))
		for j := range st.keys {
			st.hashes[Hash(st.key(w*st.keys+j))] = w*st.keys + j
		}
	}
	for j := range st.shared {
		st.hashes[Hash(st.key(ccSharedBase+j))] = ccSharedBase + j
		st.writes[ccSharedBase+j] = []ccWrite{{del: true}} // the initial state: absent
	}
	var err error
	if st.s, err = Open(st.path, nil); err != nil {
		t.Fatal(err)
	}
	defer func() { st.s.Close() }()
	f, err := Open(st.path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var compactions, refreshes, iterations atomic.Int64
	for phase := range phases {
		stop := make(chan struct{})
		var bg, wg sync.WaitGroup
		// Compactor.
		bg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(phase), 99))
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(2+r.IntN(20)) * time.Millisecond):
				}
				if err := st.s.Compact(); err != nil {
					st.fail("compact: %v", err)
					return
				}
				compactions.Add(1)
			}
		})
		// Iterators: Entries and ForEachParallel, every entry whole.
		bg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%2 == 0 {
					for e := range st.s.Entries() {
						if !st.checkWhole(e) {
							return
						}
					}
				} else if err := st.s.ForEachParallel(t.Context(), 2, func(e Entry) error {
					if !st.checkWhole(e) {
						return errors.New("bad entry")
					}
					return nil
				}); err != nil {
					st.fail("for each: %v", err)
					return
				}
				iterations.Add(1)
				time.Sleep(time.Millisecond)
			}
		})
		// A read-only follower in the same process.
		bg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := f.Refresh(); err != nil {
					st.fail("follower refresh: %v", err)
					return
				}
				refreshes.Add(1)
				for e := range f.Entries() {
					if !st.checkWhole(e) {
						return
					}
				}
				time.Sleep(time.Millisecond)
			}
		})
		for w := range st.workers {
			wg.Go(func() { st.worker(w, ops, uint64(phase)) })
		}
		wg.Wait()
		close(stop)
		bg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		st.check(st.s, fmt.Sprintf("phase %d", phase))
		if err := f.Refresh(); err != nil {
			t.Fatal(err)
		}
		ccEqualStores(t, st.s, f)

		// Reopen: the file holds what the model says.
		if err := st.s.Close(); err != nil {
			t.Fatal(err)
		}
		if st.s, err = Open(st.path, nil); err != nil {
			t.Fatal(err)
		}
		st.check(st.s, fmt.Sprintf("phase %d, reopened", phase))
	}
	t.Logf("%d phases × %d workers × %d ops; %d compactions, %d follower refreshes, %d iterations",
		phases, st.workers, ops, compactions.Load(), refreshes.Load(), iterations.Load())
}
