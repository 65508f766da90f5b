package simdr

// Attacks on expiring keys seen by followers: a read-only Store refreshed
// from one prefix of a writer's file to a longer one must show what an Open
// of the longer prefix shows, never a record or the marker as a key.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// ttlView is everything a reader shows of a store with expiring keys: each
// live key hash with its value and expiry (Unix ms, 0 for none), and Len.
type ttlView struct {
	keys map[uint64]string
	n    int
}

func (v ttlView) String() string {
	var ks []string
	for h, s := range v.keys {
		ks = append(ks, fmt.Sprintf("%016x=%s", h, s))
	}
	sort.Strings(ks)
	return fmt.Sprintf("Len %d {%s}", v.n, strings.Join(ks, " "))
}

// viewTTL reads s's view (where says which, for errors) through Entries, GetHash, ExpiresAtHash and Len,
// failing t when they disagree, or when a record or the marker shows (by
// their hashes, for names, or by their shape).
func viewTTL(t *testing.T, s *Store, names []string, where string) ttlView {
	t.Helper()
	v := ttlView{keys: map[uint64]string{}, n: s.Len()}
	hidden := map[uint64]bool{atkMarkerHash: true}
	for _, k := range names {
		hidden[atkRecordHash(k)] = true
	}
	for e := range s.Entries() {
		h := e.KeyHash()
		b := string(e.Bytes())
		if hidden[h] || b == markerValue || strings.HasPrefix(b, recordMagic) {
			t.Fatalf("%s: Entries shows a record or the marker: %016x = %q", where, h, b)
		}
		exp, err := s.ExpiresAtHash(h)
		if err != nil {
			t.Fatalf("%s: Entries yields %016x, ExpiresAtHash: %v", where, h, err)
		}
		var ms int64
		if !exp.IsZero() {
			ms = exp.UnixMilli()
		}
		g, err := s.GetHash(h)
		if err != nil || string(g.Bytes()) != b {
			t.Fatalf("%s: Entries yields %016x=%q, GetHash %q, %v", where, h, b, g.Bytes(), err)
		}
		v.keys[h] = fmt.Sprintf("%s@%d", b, ms)
	}
	for h := range hidden {
		if _, err := s.GetHash(h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: GetHash(%016x) of a record or the marker: %v", where, h, err)
		}
	}
	if v.n != len(v.keys) {
		t.Fatalf("%s: Len = %d, Entries yields %d: %v", where, v.n, len(v.keys), v)
	}
	return v
}

// TestAttackTTLFollowerPrefixes writes every kind of write over keys with
// and without expiries, then for every pair of entry boundaries i < j of the
// file (a follower without the state file, which scans, may stop at any of
// them) opens a follower on the first i bytes, lets the file grow to j and
// refreshes: it must show exactly what a follower opened on j bytes shows.
// It showed the marker as a key when the write that brought the first
// record stopped after the marker (its record, which ends the file, is not
// taken alone), until a record came.
func TestAttackTTLFollowerPrefixes(t *testing.T) {
	c := newClock()
	w, path := openT(t, c.opts(&Options{}))
	names := []string{"a", "b", "c", "d", "e", "r", "r2"}
	putT(t, w, "p", "plain")
	steps := []func() error{
		func() error { return w.PutTTL([]byte("a"), []byte("a1"), time.Minute) },
		func() error { return w.Put([]byte("a"), []byte("a2")) },
		func() error { return w.PutTTL([]byte("b"), []byte("b1"), time.Hour) },
		func() error { return w.PutTTL([]byte("b"), []byte("b2"), time.Minute) },
		func() error { return w.Delete([]byte("b")) },
		func() error {
			var b Batch
			b.PutTTL([]byte("c"), []byte("c1"), time.Minute)
			b.Put([]byte("d"), []byte("d1"))
			b.PutTTL([]byte("d"), []byte("d2"), time.Hour)
			b.PutExpiresAt([]byte("e"), []byte("e1"), c.now().Add(-time.Second))
			return w.Apply(&b)
		},
		func() error { return w.Rename([]byte("c"), []byte("r")) },
		func() error { return w.Rename([]byte("r"), []byte("r2")) },
		func() error { return w.PutTTL([]byte("r2"), []byte("r3"), time.Hour) },
		func() error { return w.Put([]byte("d"), []byte("d3")) },
	}
	for i, st := range steps {
		if err := st(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	w.Close()
	data, es := atkEntries(t, path)
	cuts := []int64{0}
	for _, e := range es {
		cuts = append(cuts, e.Next())
	}
	dir := t.TempDir()
	opts := c.opts(&Options{ReadOnly: true})
	views := make([]ttlView, len(cuts))
	for j, cut := range cuts {
		p := filepath.Join(dir, fmt.Sprint(cut))
		if err := os.WriteFile(p, data[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		f := reopenT(t, p, opts)
		views[j] = viewTTL(t, f, names, fmt.Sprintf("opened at %d", cut))
		f.Close()
	}
	for i := range cuts {
		for j := i + 1; j < len(cuts); j++ {
			p := filepath.Join(dir, fmt.Sprintf("f%d-%d", i, j))
			if err := os.WriteFile(p, data[:cuts[i]], 0o644); err != nil {
				t.Fatal(err)
			}
			f := reopenT(t, p, opts)
			if err := os.WriteFile(p, data[:cuts[j]], 0o644); err != nil {
				t.Fatal(err)
			}
			if err := f.Refresh(); err != nil {
				t.Fatal(err)
			}
			got := viewTTL(t, f, names, fmt.Sprintf("opened at %d, refreshed at %d", cuts[i], cuts[j]))
			if got.String() != views[j].String() {
				t.Errorf("follower opened at %d, refreshed at %d: %v; opened there: %v", cuts[i], cuts[j], got, views[j])
			}
			f.Close()
		}
	}
}
