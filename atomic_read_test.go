package simdr

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// The batches of TestReadersSeeBatchesWhole: batch i sets "first", "f<i>",
// 1,000 fillers, "l<i>" and "last", in that order, all to the value i. So
// after batch i the store holds 1,004+2i keys (always even) and 1,004(i+1)
// value entries, and first, last and the fillers hold the number of the
// last batch: a read of one that follows a read of another may never see a
// smaller number.
const wholeFillers = 1000

func wholeBatch(b *Batch, i int) {
	v := []byte(strconv.Itoa(i))
	b.Reset()
	b.Put([]byte("first"), v)
	b.Put([]byte("f"+strconv.Itoa(i)), v)
	for j := range wholeFillers {
		b.Put([]byte("filler"+strconv.Itoa(j)), v)
	}
	b.Put([]byte("l"+strconv.Itoa(i)), v)
	b.Put([]byte("last"), v)
}

// num decodes a value of TestReadersSeeBatchesWhole.
func num(t testing.TB, e Entry) int {
	n, err := strconv.Atoi(string(e.Bytes()))
	if err != nil {
		t.Errorf("value %q: %v", e.Bytes(), err)
	}
	return n
}

// TestReadersSeeBatchesWhole: once a read has seen an effect of a batch,
// every later read, in any goroutine and through any read call, sees all of
// it (issue 11 §3). Several readers of each kind run while a writer applies
// 1,004-op batches; each checks an invariant that a half-applied batch breaks.
func TestReadersSeeBatchesWhole(t *testing.T) {
	batches := 30
	if testing.Short() {
		batches = 10
	}
	everyBatch := map[uint64]bool{Hash([]byte("first")): true, Hash([]byte("last")): true}
	for j := range wholeFillers {
		everyBatch[Hash([]byte("filler"+strconv.Itoa(j)))] = true
	}
	readers := []struct {
		name string
		// read does one round of reads; it returns an error for a broken promise.
		read func(s *Store, next *int) error
	}{
		{"Get first then last", func(s *Store, _ *int) error {
			a, err1 := s.Get([]byte("first"))
			b, err2 := s.Get([]byte("last"))
			if err1 != nil || err2 != nil {
				return nil // before the first batch
			}
			if x, y := num(t, a), num(t, b); y < x {
				return fmt.Errorf("Get(first) = %d, then Get(last) = %d", x, y)
			}
			return nil
		}},
		{"Get filler then last", func(s *Store, _ *int) error {
			a, err1 := s.GetHash(Hash([]byte("filler500")))
			b, err2 := s.Get([]byte("last"))
			if err1 != nil || err2 != nil {
				return nil
			}
			if x, y := num(t, a), num(t, b); y < x {
				return fmt.Errorf("GetHash(filler500) = %d, then Get(last) = %d", x, y)
			}
			return nil
		}},
		{"Has", func(s *Store, next *int) error {
			// f<i> is the batch's second key, l<i> its second to last.
			i := *next
			if !s.Has([]byte("f" + strconv.Itoa(i))) {
				return nil
			}
			if !s.Has([]byte("l" + strconv.Itoa(i))) {
				return fmt.Errorf("Has(f%d) true, then Has(l%d) false", i, i)
			}
			if _, err := s.GetHash(Hash([]byte("l" + strconv.Itoa(i)))); err != nil {
				return fmt.Errorf("Has(l%d) true, then GetHash: %v", i, err)
			}
			*next = i + 1
			return nil
		}},
		{"GetMany", func(s *Store, _ *int) error {
			es, err := s.GetMany([][]byte{[]byte("first"), []byte("filler0"), []byte("filler999"), []byte("last")})
			if err != nil {
				return err
			}
			if !es[0].Exists() {
				return nil
			}
			for _, e := range es[1:] {
				if num(t, e) != num(t, es[0]) {
					return fmt.Errorf("GetMany mixes batches: first=%s, other=%s", es[0].Bytes(), e.Bytes())
				}
			}
			return nil
		}},
		{"Entries", func(s *Store, _ *int) error {
			last := -1
			for e := range s.Entries() {
				if !everyBatch[e.KeyHash()] {
					continue // f<i> and l<i> keep the value of their batch
				}
				n := num(t, e)
				if n < last {
					return fmt.Errorf("Entries yields %d after %d", n, last)
				}
				last = max(last, n)
			}
			return nil
		}},
		{"Len", func(s *Store, _ *int) error {
			if n := s.Len(); n%2 != 0 {
				return fmt.Errorf("Len = %d: half a batch", n)
			}
			return nil
		}},
		{"Stats", func(s *Store, _ *int) error {
			st := s.Stats()
			if st.Entries == 0 {
				return nil
			}
			if st.Entries%(wholeFillers+4) != 0 || int64(st.LiveKeys) != wholeFillers+4+2*(st.Entries/(wholeFillers+4)-1) {
				return fmt.Errorf("Stats mixes batches: %d entries, %d live keys", st.Entries, st.LiveKeys)
			}
			return nil
		}},
	}
	for _, r := range readers {
		t.Run(r.name, func(t *testing.T) {
			s, _ := openT(t, nil)
			var done atomic.Bool
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					next := 0
					for !done.Load() {
						if err := r.read(s, &next); err != nil {
							select {
							case errs <- err:
							default:
							}
							return
						}
					}
				}()
			}
			var b Batch
			for i := range batches {
				wholeBatch(&b, i)
				if err := s.Apply(&b); err != nil {
					t.Fatal(err)
				}
				runtime.Gosched()
			}
			done.Store(true)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestRenameSeenWhole: a chain of renames k0 → k1 → k2 ...; a reader that
// finds the value under k<j+1> must not find it under k<j> afterwards.
func TestRenameSeenWhole(t *testing.T) {
	s, _ := openT(t, nil)
	const n = 3000
	key := func(j int) []byte { return []byte("k" + strconv.Itoa(j)) }
	putT(t, s, "k0", "the value")
	var at atomic.Int64 // the rename in progress: k<at> → k<at+1>
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				j := int(at.Load())
				if s.Has(key(j+1)) && s.Has(key(j)) {
					errs <- fmt.Errorf("value found under k%d, then still under k%d", j+1, j)
					return
				}
			}
		}()
	}
	for j := range n {
		at.Store(int64(j))
		if err := s.Rename(key(j), key(j+1)); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.Len() != 1 || getT(t, s, "k"+strconv.Itoa(n)) != "the value" {
		t.Fatalf("after the renames: Len %d", s.Len())
	}
}

// TestMoveSeenWhole: keys move one by one from src to dst. A reader that
// finds a key in dst must not find it in src afterwards, and one that finds
// it gone from src must find it in dst afterwards.
func TestMoveSeenWhole(t *testing.T) {
	dir := t.TempDir()
	src := reopenT(t, filepath.Join(dir, "src"), nil)
	dst := reopenT(t, filepath.Join(dir, "dst"), nil)
	n := 300
	if testing.Short() {
		n = 60
	}
	key := func(j int) []byte { return []byte("k" + strconv.Itoa(j)) }
	var b Batch
	for j := range n {
		b.Put(key(j), []byte("value "+strconv.Itoa(j)))
	}
	if err := src.Apply(&b); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := 0
			for !done.Load() && j < n {
				k := key(j)
				if r%2 == 0 { // dst first
					if !dst.Has(k) {
						continue
					}
					if _, err := src.Get(k); !errors.Is(err, ErrNotFound) {
						errs <- fmt.Errorf("k%d found in dst, then in src (%v)", j, err)
						return
					}
				} else { // src first
					if src.Has(k) {
						continue
					}
					if e, err := dst.Get(k); err != nil || string(e.Bytes()) != "value "+strconv.Itoa(j) {
						errs <- fmt.Errorf("k%d gone from src, then not in dst (%v)", j, err)
						return
					}
				}
				j++
			}
		}()
	}
	for j := range n {
		if err := src.Move(key(j), dst); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if src.Len() != 0 || dst.Len() != n {
		t.Fatalf("after the moves: src %d keys, dst %d", src.Len(), dst.Len())
	}
}

// TestMoveBothWays: Move(a→b) and Move(b→a) at once, many times, neither
// deadlocks, and no value is lost or duplicated.
func TestMoveBothWays(t *testing.T) {
	dir := t.TempDir()
	a := reopenT(t, filepath.Join(dir, "a"), nil)
	b := reopenT(t, filepath.Join(dir, "b"), nil)
	const n = 200
	for j := range n {
		putT(t, a, "a"+strconv.Itoa(j), "x")
		putT(t, b, "b"+strconv.Itoa(j), "y")
	}
	var wg sync.WaitGroup
	for _, p := range []struct {
		from, to *Store
		prefix   string
	}{{a, b, "a"}, {b, a, "b"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range n {
				if err := p.from.Move([]byte(p.prefix+strconv.Itoa(j)), p.to); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if a.Len() != n || b.Len() != n || !a.Has([]byte("b0")) || !b.Has([]byte("a0")) || a.Has([]byte("a0")) {
		t.Fatalf("after moving both ways: a %d keys, b %d", a.Len(), b.Len())
	}
}

// TestEntriesWhileIndexGrowsAndCompacts: Entries ranging while the index
// grows (each batch adds 1,000 keys) and Compact replaces the generation
// still yields every key that lives throughout exactly once, each with a
// value no older than the ones yielded before it.
func TestEntriesWhileIndexGrowsAndCompacts(t *testing.T) {
	s, _ := openT(t, nil)
	everyBatch := map[uint64]bool{Hash([]byte("first")): true, Hash([]byte("last")): true}
	for j := range wholeFillers {
		everyBatch[Hash([]byte("filler"+strconv.Itoa(j)))] = true
	}
	var b Batch
	batch := func(i int) {
		wholeBatch(&b, i)
		for j := range 1000 {
			b.Put([]byte("new"+strconv.Itoa(i)+"-"+strconv.Itoa(j)), []byte(strconv.Itoa(i)))
		}
		if err := s.Apply(&b); err != nil {
			t.Error(err)
		}
	}
	batch(0)
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				seen := make(map[uint64]bool, len(everyBatch))
				last := -1
				for e := range s.Entries() {
					if !everyBatch[e.KeyHash()] {
						continue
					}
					if seen[e.KeyHash()] {
						errs <- fmt.Errorf("Entries yields %x twice", e.KeyHash())
						return
					}
					seen[e.KeyHash()] = true
					n := num(t, e)
					if n < last {
						errs <- fmt.Errorf("Entries yields %d after %d", n, last)
						return
					}
					last = n
				}
				if len(seen) != len(everyBatch) {
					errs <- fmt.Errorf("Entries yields %d of the %d keys that live throughout", len(seen), len(everyBatch))
					return
				}
			}
		}()
	}
	for i := 1; i <= 8; i++ {
		batch(i)
		if i%4 == 0 {
			if err := s.Compact(); err != nil {
				t.Fatal(err)
			}
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
