package simdr

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
)

func TestCompact(t *testing.T) {
	s, path := openT(t, nil)
	model := map[string]string{}
	for i := 0; i < 300; i++ {
		k := fmt.Sprint("k", i%100)
		v := strings.Repeat(fmt.Sprint(i), 1+i%50)
		putT(t, s, k, v)
		model[k] = v
	}
	for i := 0; i < 100; i += 3 {
		k := fmt.Sprint("k", i)
		s.Delete([]byte(k))
		delete(model, k)
	}
	held, _ := s.Get([]byte("k1"))
	heldCopy := bytes.Clone(held.Bytes())
	st := s.Stats()
	if st.LiveKeys != len(model) || st.Tombstones != 34 || st.ReclaimableBytes <= 0 {
		t.Fatalf("stats before: %+v", st)
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if after.Tombstones != 0 || after.ReclaimableBytes != 0 || after.LiveKeys != len(model) ||
		after.LiveBytes != st.LiveBytes || after.FileBytes >= st.FileBytes {
		t.Fatalf("stats after: %+v (before %+v)", after, st)
	}
	if fi, _ := os.Stat(path); fi.Size() != after.FileBytes {
		t.Fatalf("file is %d bytes, Stats says %d", fi.Size(), after.FileBytes)
	}
	checkModel(t, s, model)
	if !bytes.Equal(held.Bytes(), heldCopy) {
		t.Fatal("slice from before Compact changed")
	}
	// Writes after Compact are in the new file after a reopen (the original
	// loses them), and deleted keys stay deleted.
	putT(t, s, "after", "compact")
	s.Delete([]byte("k1"))
	model["after"] = "compact"
	delete(model, "k1")
	if !bytes.Equal(held.Bytes(), heldCopy) {
		t.Fatal("slice from before Compact changed")
	}
	s.Close()
	s = reopenT(t, path, nil)
	checkModel(t, s, model)
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
	// Compacting a compacted store and an empty store works.
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	checkModel(t, s, model)
	e, _ := openT(t, nil)
	if err := e.Compact(); err != nil {
		t.Fatal(err)
	}
	checkModel(t, e, map[string]string{})
}

// TestCompactLeftoverDiscarded: a temporary file left by an interrupted
// compaction is removed at Open, never used (the original resurrects deleted
// keys from it).
func TestCompactLeftoverDiscarded(t *testing.T) {
	s, path := openT(t, nil)
	putT(t, s, "k", "v1")
	putT(t, s, "gone", "x")
	// A leftover that still has "gone" and an old value of k.
	old, _ := os.ReadFile(path)
	os.WriteFile(compactPath(path), old, 0o644)
	s.Delete([]byte("gone"))
	putT(t, s, "k", "v2")
	s.Close()
	s = reopenT(t, path, nil)
	if _, err := os.Stat(compactPath(path)); !os.IsNotExist(err) {
		t.Fatalf("leftover still there: %v", err)
	}
	checkModel(t, s, map[string]string{"k": "v2"})
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	checkModel(t, reopenT(t, path, nil), map[string]string{"k": "v2"})
}

// TestCompactConcurrent runs writers and readers while Compact runs many
// times; every writer owns its keys, so its model is exact. Run with -race.
func TestCompactConcurrent(t *testing.T) {
	s, path := openT(t, nil)
	const writers, keys, rounds = 3, 50, 1500
	models := make([]map[string]string, writers)
	var held sync.Map // key+value -> slice held across compactions
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < writers; w++ {
		models[w] = map[string]string{}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			m := models[w]
			for i := 0; i < rounds; i++ {
				k := fmt.Sprintf("w%d-%d", w, r.IntN(keys))
				switch r.IntN(6) {
				case 0:
					if err := s.Delete([]byte(k)); err != nil {
						t.Error(err)
						return
					}
					delete(m, k)
				case 1:
					var b Batch
					k2 := fmt.Sprintf("w%d-%d", w, r.IntN(keys))
					b.Put([]byte(k), []byte("b"+k))
					b.Delete([]byte(k2))
					if err := s.Apply(&b); err != nil {
						t.Error(err)
						return
					}
					m[k] = "b" + k
					delete(m, k2)
				default:
					v := fmt.Sprintf("%s=%d", k, i)
					if err := s.Put([]byte(k), []byte(v)); err != nil {
						t.Error(err)
						return
					}
					m[k] = v
				}
				// Own keys read back what was written last.
				e, err := s.Get([]byte(k))
				want, live := m[k]
				if live != (err == nil) || live && string(e.Bytes()) != want {
					t.Errorf("read own write %s: %q, %v; want %q", k, e.Bytes(), err, want)
					return
				}
				if live && i%20 == 0 {
					held.Store(string(e.Bytes()), e.Bytes())
				}
			}
		}(w)
	}
	compactions := 0
	var cw sync.WaitGroup
	cw.Add(1)
	go func() {
		defer cw.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Compact(); err != nil {
				t.Error(err)
				return
			}
			compactions++
		}
	}()
	wg.Wait()
	close(stop)
	cw.Wait()
	if compactions == 0 {
		t.Fatal("no compaction ran")
	}
	all := map[string]string{}
	for _, m := range models {
		for k, v := range m {
			all[k] = v
		}
	}
	checkModel(t, s, all)
	held.Range(func(k, v any) bool {
		if string(v.([]byte)) != k.(string) {
			t.Fatalf("held slice changed: %q", v)
		}
		return true
	})
	s.Close()
	s = reopenT(t, path, nil)
	checkModel(t, s, all)
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d compactions during the writes", compactions)
}
