package simdr

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/simdr-go/simdr/internal/vfs/faultfs"
)

// TestAttackMoveOneFails: Move between two stores, one of whose disks fails
// at each step Move takes. Move's promise: a failure changes nothing (the
// value stays in the source, the destination is cut back), and even when the
// cut itself fails, the value is never in neither store, live or after
// reopening. The other store goes on working.
func TestAttackMoveOneFails(t *testing.T) {
	cases := []struct {
		name     string
		syncSrc  bool // src opened with SyncWrites
		arm      func(src, dst *faultfs.FS, dstSize int64)
		mayBoth  bool // the rollback itself failed: the copy may survive in dst
		dstStuck bool // dst refuses writes afterwards (ErrFailed)
		srcStuck bool
	}{
		{name: "dst write fails", arm: func(_, d *faultfs.FS, _ int64) { d.Fail(faultfs.WriteAt, 1, syscall.EIO) }},
		{name: "dst disk full", arm: func(_, d *faultfs.FS, n int64) { d.SetLimit(n + 100) }},
		{name: "dst sync fails", arm: func(_, d *faultfs.FS, _ int64) { d.Fail(faultfs.Sync, 1, syscall.EIO) }, dstStuck: true},
		{name: "src tombstone write fails", arm: func(s, _ *faultfs.FS, _ int64) { s.Fail(faultfs.WriteAt, 1, syscall.ENOSPC) }},
		{name: "src tombstone sync fails", syncSrc: true, arm: func(s, _ *faultfs.FS, _ int64) { s.Fail(faultfs.Sync, 1, syscall.EIO) }, srcStuck: true},
		{name: "src write and dst rollback fail", mayBoth: true, dstStuck: true, arm: func(s, d *faultfs.FS, _ int64) {
			s.Fail(faultfs.WriteAt, 1, syscall.EIO)
			d.Fail(faultfs.Truncate, 1, syscall.EIO)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			sp, dp := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
			sfs, dfs := faultfs.New(nil), faultfs.New(nil)
			src := reopenT(t, sp, &Options{fs: sfs, SyncWrites: c.syncSrc})
			dst := reopenT(t, dp, &Options{fs: dfs})
			val := bytes.Repeat([]byte("precious"), 300)
			if err := src.Put([]byte("k"), val); err != nil {
				t.Fatal(err)
			}
			putT(t, dst, "other", "o")
			c.arm(sfs, dfs, dst.Size())
			if err := src.Move([]byte("k"), dst); err == nil {
				t.Fatal("Move succeeded through an injected fault")
			}
			sfs.Clear()
			dfs.Clear()
			check := func(src, dst *Store, when string) {
				t.Helper()
				inSrc := getT(t, src, "k") == string(val)
				inDst := getT(t, dst, "k") == string(val)
				switch {
				case !inSrc && !inDst:
					t.Fatalf("%s: the value is in neither store", when)
				case !inSrc:
					t.Fatalf("%s: a failed Move deleted the value from the source", when)
				case inDst && !c.mayBoth:
					t.Fatalf("%s: a failed Move left the copy in the destination", when)
				}
				if getT(t, dst, "other") != "o" {
					t.Fatalf("%s: the destination lost its own key", when)
				}
			}
			check(src, dst, "after the failed Move")
			if err := dst.Put([]byte("later"), []byte("x")); (err != nil) != c.dstStuck || (err != nil && !errors.Is(err, ErrFailed)) {
				t.Errorf("a write to dst after the failed Move: %v (stuck expected: %v)", err, c.dstStuck)
			}
			if err := src.Put([]byte("later"), []byte("x")); (err != nil) != c.srcStuck || (err != nil && !errors.Is(err, ErrFailed)) {
				t.Errorf("a write to src after the failed Move: %v (stuck expected: %v)", err, c.srcStuck)
			}
			src.Close()
			dst.Close()
			src, dst = reopenT(t, sp, nil), reopenT(t, dp, nil)
			check(src, dst, "after reopening")
			for _, s := range []*Store{src, dst} {
				if err := s.Verify(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestAttackMoveBothWays: Move a→b and b→a at once, with readers, under
// -race: no deadlock, and every key ends in exactly one store.
func TestAttackMoveBothWays(t *testing.T) {
	dir := t.TempDir()
	a := reopenT(t, filepath.Join(dir, "a"), nil)
	b := reopenT(t, filepath.Join(dir, "b"), nil)
	const n = 200
	for i := 0; i < n; i++ {
		putT(t, a, fmt.Sprint("a", i), fmt.Sprint("va", i))
		putT(t, b, fmt.Sprint("b", i), fmt.Sprint("vb", i))
	}
	var wg sync.WaitGroup
	move := func(from, to *Store, p string) {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if err := from.Move([]byte(fmt.Sprint(p, i)), to); err != nil {
				t.Error(err)
			}
		}
	}
	wg.Add(2)
	go move(a, b, "a")
	go move(b, a, "b")
	stop := make(chan struct{})
	var rd sync.WaitGroup
	rd.Add(1)
	go func() {
		defer rd.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := 0; i < n; i += 17 {
				k := []byte(fmt.Sprint("a", i))
				// b first, then a: once seen in b it is gone from a.
				if b.Has(k) && a.Has(k) {
					t.Errorf("%s found in b, then still in a", k)
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	rd.Wait()
	for i := 0; i < n; i++ {
		if getT(t, b, fmt.Sprint("a", i)) != fmt.Sprint("va", i) || a.Has([]byte(fmt.Sprint("a", i))) {
			t.Fatalf("a%d not moved whole", i)
		}
		if getT(t, a, fmt.Sprint("b", i)) != fmt.Sprint("vb", i) || b.Has([]byte(fmt.Sprint("b", i))) {
			t.Fatalf("b%d not moved whole", i)
		}
	}
}
