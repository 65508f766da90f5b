package simdr

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simdr-go/simdr/internal/testclock"
)

// Len counts the keys whose expiry has passed by walking the expiry index:
// with many keys that have a ttl, one count takes milliseconds. It must
// still return while writes go on without a pause (a read retried until no
// write lands while it runs would never finish), and give the right count.
func TestLenManyTTLKeysUnderWrites(t *testing.T) {
	s, _ := openT(t, nil)
	const n = 200_000
	var b Batch
	for i := range n {
		b.PutTTL(fmt.Appendf(nil, "ttl%d", i), []byte("v"), time.Hour)
		if b.Len() == 1000 {
			if err := s.Apply(&b); err != nil {
				t.Fatal(err)
			}
			b.Reset()
		}
	}
	putT(t, s, "busy", "v") // before Len runs: the count is n+1 throughout
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // one key rewritten again and again: Len stays n+1
		defer wg.Done()
		for !stop.Load() {
			if err := s.Put([]byte("busy"), []byte("v")); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	done := make(chan int, 1)
	go func() {
		l := 0
		for range 3 {
			t0 := time.Now()
			l = s.Len()
			t.Logf("Len took %v", time.Since(t0))
		}
		done <- l
	}()
	select {
	case l := <-done:
		if l != n+1 {
			t.Errorf("Len = %d, want %d", l, n+1)
		}
	case <-time.After(2 * time.Minute): // a liveness bound, not a timing: it takes milliseconds
		t.Error("Len did not return while a writer ran")
	}
	stop.Store(true)
	wg.Wait()
}

// Len against a model, over random puts with and without a ttl (expiries
// in the past too, and earlier than every counted one), plain puts and
// deletes over keys with one, renames, the clock moving, Compact, a
// follower's Refresh and a reopen; with the counts keeping 4 upcoming
// expiries, so that they stop holding and are counted again often.
func TestLenCountsModel(t *testing.T) {
	defer func(k int) { soonKeep = k }(soonKeep)
	soonKeep = 4
	clk := testclock.New()
	opts := &Options{Clock: clk.Now}
	s, path := openT(t, opts)
	fol, err := Open(path, &Options{Clock: clk.Now, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { fol.Close() }()
	model := map[string]int64{} // key → expiry (Unix ms, 0: none)
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() string { return fmt.Sprintf("k%d", rng.IntN(60)) }
	want := func() int {
		now := clk.Now().UnixMilli()
		n := 0
		for _, exp := range model {
			if exp == 0 || exp > now {
				n++
			}
		}
		return n
	}
	live := func(k string) bool {
		exp, ok := model[k]
		return ok && (exp == 0 || exp > clk.Now().UnixMilli())
	}
	for step := range 3000 {
		switch op := rng.IntN(100); {
		case op < 35:
			k, ttl := key(), time.Duration(1+rng.IntN(5000))*time.Millisecond
			if err := s.PutTTL([]byte(k), []byte("v"), ttl); err != nil {
				t.Fatal(err)
			}
			model[k] = clk.Now().UnixMilli() + ttl.Milliseconds()
		case op < 45:
			k, at := key(), clk.Now().Add(time.Duration(rng.IntN(4000)-2000)*time.Millisecond)
			var b Batch
			b.PutExpiresAt([]byte(k), []byte("v"), at)
			if err := s.Apply(&b); err != nil {
				t.Fatal(err)
			}
			model[k] = max(at.UnixMilli(), 1)
		case op < 60:
			k := key()
			putT(t, s, k, "plain")
			model[k] = 0
		case op < 70:
			k := key()
			if err := s.Delete([]byte(k)); err != nil {
				t.Fatal(err)
			}
			delete(model, k)
		case op < 75:
			from, to := key(), key()
			if from == to || !live(from) {
				continue
			}
			if err := s.Rename([]byte(from), []byte(to)); err != nil {
				t.Fatalf("rename %s %s: %v", from, to, err)
			}
			model[to] = model[from]
			delete(model, from)
		case op < 95:
			clk.Advance(time.Duration(rng.IntN(400)) * time.Millisecond)
		case op < 97:
			if err := s.Compact(); err != nil {
				t.Fatal(err)
			}
		case op < 99:
			if err := fol.Refresh(); err != nil {
				t.Fatal(err)
			}
			if got, w := fol.Len(), want(); got != w {
				t.Fatalf("step %d: follower Len %d, want %d", step, got, w)
			}
		default:
			s.Close()
			var err error
			if s, err = Open(path, opts); err != nil {
				t.Fatal(err)
			}
		}
		for k := range model { // expired keys are gone for good
			if !live(k) {
				delete(model, k)
			}
		}
		if got, w := s.Len(), want(); got != w {
			t.Fatalf("step %d: Len %d, want %d", step, got, w)
		}
	}
	s.Close()
}
