package simdr

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestBackupUnderWriters: backups taken while writers go on open as stores
// holding exactly a prefix of the writes, one that includes every write
// acknowledged before the call.
func TestBackupUnderWriters(t *testing.T) {
	s, _ := openT(t, nil)
	var acked atomic.Int64 // writes 0..acked-1 returned
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var b Batch
		for i := int64(0); i < 20_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Write i sets key i%50 to "i", and in every third write a batch
			// of two: key i%50 and a big value under "big".
			if i%3 == 0 {
				b.Reset()
				b.Put(fmt.Appendf(nil, "k%d", i%50), fmt.Appendf(nil, "%d", i))
				b.Put([]byte("big"), bytes.Repeat(fmt.Appendf(nil, "%d,", i), 100))
				if err := s.Apply(&b); err != nil {
					t.Error(err)
					return
				}
			} else if err := s.Put(fmt.Appendf(nil, "k%d", i%50), fmt.Appendf(nil, "%d", i)); err != nil {
				t.Error(err)
				return
			}
			acked.Store(i + 1)
		}
	}()
	dir := t.TempDir()
	for round := 0; round < 10; round++ {
		before := acked.Load()
		var buf bytes.Buffer
		info, err := s.Backup(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if int64(buf.Len()) != info.Tail || info.From != 0 {
			t.Fatalf("backup of %d bytes, info %+v", buf.Len(), info)
		}
		path := filepath.Join(dir, fmt.Sprintf("b%d", round))
		os.WriteFile(path, buf.Bytes(), 0o644)
		b, err := Open(path, &Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Verify(); err != nil {
			t.Fatal(err)
		}
		// The writes in the backup: the largest i it shows for some key is
		// the last write it holds; every write up to it must show.
		last := int64(-1)
		for k := 0; k < 50; k++ {
			if e, err := b.Get(fmt.Appendf(nil, "k%d", k)); err == nil {
				var i int64
				fmt.Sscanf(string(e.Bytes()), "%d", &i)
				last = max(last, i)
			}
		}
		if last < before-1 {
			t.Fatalf("round %d: backup holds writes up to %d, but %d were acknowledged before it", round, last, before)
		}
		for i := max(0, last-49); i <= last; i++ {
			e, err := b.Get(fmt.Appendf(nil, "k%d", i%50))
			if err != nil || string(e.Bytes()) != fmt.Sprint(i) {
				t.Fatalf("round %d: not a prefix: key k%d = %q, %v; want %d (last %d)", round, i%50, e.Bytes(), err, i, last)
			}
		}
		b.Close()
	}
	close(stop)
	wg.Wait()
}

// TestBackupIncremental: base + increment = full, byte for byte; a Compact
// in between is detected; BackupFile takes the incremental path when it can.
func TestBackupIncremental(t *testing.T) {
	s, path := openT(t, nil)
	for i := 0; i < 100; i++ {
		putT(t, s, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	var base bytes.Buffer
	bi, err := s.Backup(&base)
	if err != nil {
		t.Fatal(err)
	}
	var empty bytes.Buffer
	if ei, err := s.BackupSince(&empty, bi); err != nil || empty.Len() != 0 || ei.From != ei.Tail {
		t.Fatalf("nothing new: %d bytes, %+v, %v", empty.Len(), ei, err)
	}
	for i := 0; i < 50; i++ {
		putT(t, s, fmt.Sprintf("k%d", i), fmt.Sprintf("w%d", i))
	}
	s.Delete([]byte("k3"))
	var inc bytes.Buffer
	ii, err := s.BackupSince(&inc, bi)
	if err != nil {
		t.Fatal(err)
	}
	if ii.From != bi.Tail || ii.Generation != bi.Generation {
		t.Fatalf("increment %+v after %+v", ii, bi)
	}
	var full bytes.Buffer
	if _, err := s.Backup(&full); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(bytes.Clone(base.Bytes()), inc.Bytes()...), full.Bytes()) {
		t.Fatal("base + increment differs from the full backup")
	}
	disk, _ := os.ReadFile(path)
	if !bytes.Equal(disk, full.Bytes()) {
		t.Fatal("the full backup differs from the store file")
	}
	// A tail that is not an entry end of this file.
	bad := bi
	bad.Tail--
	if _, err := s.BackupSince(&bytes.Buffer{}, bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("BackupSince a non-entry tail: %v", err)
	}
	// BackupFile: full, then incremental, each a store equal to the source.
	dest := filepath.Join(t.TempDir(), "dest")
	fi, err := s.BackupFile(dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	putT(t, s, "after", "1")
	fi2, err := s.BackupFile(dest, &fi)
	if err != nil || fi2.From != fi.Tail {
		t.Fatalf("incremental BackupFile: %+v, %v", fi2, err)
	}
	got, _ := os.ReadFile(dest)
	disk, _ = os.ReadFile(path)
	if !bytes.Equal(got, disk) {
		t.Fatal("BackupFile's result differs from the store")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".dest.*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	// A Compact: the generation changes.
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BackupSince(&bytes.Buffer{}, ii); !errors.Is(err, ErrGeneration) {
		t.Fatalf("BackupSince across a Compact: %v", err)
	}
	// BackupFile falls back to a full backup.
	fi3, err := s.BackupFile(dest, &fi2)
	if err != nil || fi3.From != 0 {
		t.Fatalf("BackupFile across a Compact: %+v, %v", fi3, err)
	}
	b, err := Open(dest, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if getT(t, b, "after") != "1" || getT(t, b, "k0") != "w0" || b.Has([]byte("k3")) {
		t.Fatal("the backup after Compact does not hold the store")
	}
}

func TestBackupClosed(t *testing.T) {
	s, _ := openT(t, nil)
	s.Close()
	if _, err := s.Backup(&bytes.Buffer{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Backup after Close: %v", err)
	}
}
