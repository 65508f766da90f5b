package simdr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// TestCallsRacingClose: every read call running while Close runs, or after
// it, returns a valid result or ErrClosed (the zero result for Has, Len and
// Stats), and never panics or faults (issue 11 §6). Values include long ones
// (whose length is read from their metadata in the mapping), and half the
// rounds verify checksums on every read.
func TestCallsRacingClose(t *testing.T) {
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	const keys = 64
	long := bytes.Repeat([]byte("L"), maxPacked+100)
	key := func(i int) []byte { return []byte("k" + strconv.Itoa(i)) }
	okErr := func(err error) bool { return err == nil || errors.Is(err, ErrClosed) }
	calls := []struct {
		name string
		// call does one read; closed reports that it saw the Store closed.
		call func(s *Store, i int) (closed bool, err error)
	}{
		{"Get", func(s *Store, i int) (bool, error) {
			e, err := s.Get(key(i % keys))
			if err == nil && e.Len() == 0 {
				return false, errors.New("Get: empty value")
			}
			return errors.Is(err, ErrClosed), errOr(okErr(err), err)
		}},
		{"GetHash", func(s *Store, i int) (bool, error) {
			_, err := s.GetHash(Hash(key(i % keys)))
			return errors.Is(err, ErrClosed), errOr(okErr(err), err)
		}},
		{"Has", func(s *Store, i int) (bool, error) { return !s.Has(key(i % keys)), nil }},
		{"GetMany", func(s *Store, i int) (bool, error) {
			es, err := s.GetMany([][]byte{key(i % keys), key((i + 1) % keys), []byte("missing")})
			if err == nil && (!es[0].Exists() || !es[1].Exists() || es[2].Exists()) {
				return false, errors.New("GetMany: wrong slots")
			}
			return errors.Is(err, ErrClosed), errOr(okErr(err), err)
		}},
		{"Entries", func(s *Store, _ int) (bool, error) {
			n := 0
			for e := range s.Entries() {
				_ = e.Bytes()[e.Len()-1] // may read zeros once Close ran: never faults
				n++
			}
			return n < keys, nil
		}},
		{"Len", func(s *Store, _ int) (bool, error) { return s.Len() == 0, nil }},
		{"Size", func(s *Store, _ int) (bool, error) { return s.Size() == 0, nil }},
		{"Stats", func(s *Store, _ int) (bool, error) {
			st := s.Stats()
			if st.LiveKeys != 0 && st.LiveKeys != keys {
				return false, fmt.Errorf("Stats: %d live keys", st.LiveKeys)
			}
			return st.LiveKeys == 0, nil
		}},
		{"ForEachParallel", func(s *Store, _ int) (bool, error) {
			var n atomic.Int64
			err := s.ForEachParallel(context.Background(), 2, func(e Entry) error {
				_ = e.Bytes()[e.Len()-1]
				n.Add(1)
				return nil
			})
			if err == nil && n.Load() != keys {
				return false, fmt.Errorf("ForEachParallel: %d entries", n.Load())
			}
			return errors.Is(err, ErrClosed), errOr(okErr(err), err)
		}},
		{"Put", func(s *Store, i int) (bool, error) {
			err := s.Put(key(i%keys), []byte("v"+strconv.Itoa(i)))
			return errors.Is(err, ErrClosed), errOr(okErr(err), err)
		}},
	}
	for round := range rounds {
		var opts *Options
		if round%2 == 1 {
			opts = &Options{VerifyChecksums: true}
		}
		s, _ := openT(t, opts)
		var b Batch
		for i := range keys {
			if i%4 == 0 {
				b.Put(key(i), long)
			} else {
				b.Put(key(i), []byte("value "+strconv.Itoa(i)))
			}
		}
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
		var started, wg sync.WaitGroup
		for _, c := range calls {
			started.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				sawClosed := 0
				for i := 0; sawClosed < 20; i++ {
					if i == 10 {
						started.Done()
					}
					closed, err := c.call(s, i)
					if err != nil {
						t.Errorf("round %d: %s: %v", round, c.name, err)
						if i < 10 {
							started.Done()
						}
						return
					}
					if closed {
						sawClosed++
					}
				}
			}()
		}
		started.Wait()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}

// errOr returns nil when ok, else err.
func errOr(ok bool, err error) error {
	if ok {
		return nil
	}
	return err
}

// TestStaleEntryAfterClose: a slice kept past Close reads zeros (for a grace
// period, see Close) instead of faulting the process.
func TestStaleEntryAfterClose(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "k", "value")
	long := bytes.Repeat([]byte("L"), 3<<20)
	if err := s.Put([]byte("long"), long); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	el, _ := s.Get([]byte("long"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.Bytes(), make([]byte, 5)) || !bytes.Equal(el.Bytes(), make([]byte, len(long))) {
		t.Fatalf("stale slices after Close read %q, want zeros", e.Bytes())
	}
	if e.Checksum() != 0 || !errors.Is(e.Verify(), ErrChecksum) {
		t.Fatal("a stale Entry verifies after Close")
	}
	if _, err := s.Get([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
}
