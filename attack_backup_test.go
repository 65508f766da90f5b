package simdr

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// stallWriter holds its first Write until release is closed, after telling
// started; it keeps every byte written.
type stallWriter struct {
	once    sync.Once
	started chan struct{}
	release chan struct{}
	buf     bytes.Buffer
}

func newStallWriter() *stallWriter {
	return &stallWriter{started: make(chan struct{}), release: make(chan struct{})}
}

func (w *stallWriter) Write(p []byte) (int, error) {
	w.once.Do(func() {
		close(w.started)
		<-w.release
	})
	return w.buf.Write(p)
}

// backupStore fills a store of several MiB (several Backup chunks).
func backupStore(t *testing.T, path string) (*Store, map[string]string) {
	s := reopenT(t, path, nil)
	model := map[string]string{}
	var b Batch
	for i := 0; i < 3000; i++ {
		k, v := fmt.Sprint("k", i%2000), fmt.Sprintf("%04d%s", i, bytes.Repeat([]byte{'x'}, 2000))
		b.Put([]byte(k), []byte(v))
		model[k] = v
	}
	if err := s.Apply(&b); err != nil {
		t.Fatal(err)
	}
	return s, model
}

// checkBackup opens a backup image and compares it with model.
func checkBackup(t *testing.T, img []byte, model map[string]string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "restored")
	os.WriteFile(p, img, 0o644)
	r, err := Open(p, &Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("the backup does not open: %v", err)
	}
	defer r.Close()
	if err := r.Verify(); err != nil {
		t.Fatalf("the backup does not verify: %v", err)
	}
	checkModel(t, r, model)
}

// TestAttackBackupRacingClose: Close while Backup streams (Backup takes no
// lock). Close's promise: a call that finishes after it returns ErrClosed,
// never a wrong result. A Backup that read zero pages after Close must not
// report success (BackupFile would rename a damaged backup over the good
// one).
func TestAttackBackupRacingClose(t *testing.T) {
	s, model := backupStore(t, filepath.Join(t.TempDir(), "s"))
	w := newStallWriter()
	done := make(chan error, 1)
	go func() {
		_, err := s.Backup(w)
		done <- err
	}()
	<-w.started
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	close(w.release)
	err := <-done
	if err == nil {
		checkBackup(t, w.buf.Bytes(), model)
	} else if !errors.Is(err, ErrClosed) {
		t.Fatalf("Backup racing Close: %v, want nil or ErrClosed", err)
	}
}

// TestAttackBackupRacingCompact: Compact (and ReleaseOld of the replaced
// file) while Backup streams the old one. Without ReleaseOld the old file
// stays mapped: the backup is whole. With ReleaseOld the caller broke
// ReleaseOld's contract (a read call still running), but a backup must
// still never report success for bytes it did not read from the file.
func TestAttackBackupRacingCompact(t *testing.T) {
	for _, release := range []bool{false, true} {
		t.Run(fmt.Sprint("release=", release), func(t *testing.T) {
			s, model := backupStore(t, filepath.Join(t.TempDir(), "s"))
			w := newStallWriter()
			done := make(chan error, 1)
			go func() {
				_, err := s.Backup(w)
				done <- err
			}()
			<-w.started
			putT(t, s, "after", "compact")
			if err := s.Compact(); err != nil {
				t.Fatal(err)
			}
			if release {
				if _, err := s.ReleaseOld(s.Generation()); err != nil {
					t.Fatal(err)
				}
			}
			close(w.release)
			err := <-done
			if err != nil && !release {
				t.Fatalf("Backup racing Compact: %v", err)
			}
			if err == nil {
				checkBackup(t, w.buf.Bytes(), model)
			}
			model["after"] = "compact"
			checkModel(t, s, model)
		})
	}
}

// TestAttackBackupSinceCrafted: BackupSince given a BackupInfo that is not
// one of this file's (a tail in the middle of an entry, past the end,
// negative, another generation) fails with the documented sentinels, and
// an honest chain of increments rebuilds the store byte for byte, across
// concurrent writes.
func TestAttackBackupSinceCrafted(t *testing.T) {
	s, _ := backupStore(t, filepath.Join(t.TempDir(), "s"))
	var full bytes.Buffer
	info, err := s.Backup(&full)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		mod  func(BackupInfo) BackupInfo
		want error
	}{
		{"mid entry", func(b BackupInfo) BackupInfo { b.Tail -= 7; return b }, ErrCorrupt},
		{"8 bytes in", func(b BackupInfo) BackupInfo { b.Tail = 64; return b }, ErrCorrupt},
		{"past the end", func(b BackupInfo) BackupInfo { b.Tail += 1 << 20; return b }, ErrCorrupt},
		{"negative", func(b BackupInfo) BackupInfo { b.Tail = -20; return b }, ErrCorrupt},
		{"other generation", func(b BackupInfo) BackupInfo { b.Generation += "0"; return b }, ErrGeneration},
		{"empty generation", func(b BackupInfo) BackupInfo { b.Generation = ""; return b }, ErrGeneration},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if _, err := s.BackupSince(&out, c.mod(info)); !errors.Is(err, c.want) {
				t.Fatalf("BackupSince: %v, want %v", err, c.want)
			}
			if out.Len() != 0 {
				t.Fatalf("a refused BackupSince wrote %d bytes", out.Len())
			}
		})
	}
	img := full.Bytes()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 300; i++ {
			if err := s.Put([]byte(fmt.Sprint("c", i)), []byte(fmt.Sprint("v", i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 20; i++ {
		var inc bytes.Buffer
		if info, err = s.BackupSince(&inc, info); err != nil {
			t.Fatal(err)
		}
		img = append(img, inc.Bytes()...)
	}
	wg.Wait()
	var inc bytes.Buffer
	if info, err = s.BackupSince(&inc, info); err != nil {
		t.Fatal(err)
	}
	img = append(img, inc.Bytes()...)
	disk, _ := os.ReadFile(s.Path())
	if !bytes.Equal(img, disk) {
		t.Fatalf("full backup plus increments: %d bytes, the store %d, not the same bytes", len(img), len(disk))
	}
}

// TestAttackBackupOntoStore: BackupFile (simdr FILE backup DEST) given the
// store's own path, or a path that names the same file through a symlinked
// directory, renamed the backup over the live store: the writer went on
// appending to the unlinked old inode, and every write after the backup was
// lost at the next Open. It must refuse, and the store stay whole.
func TestAttackBackupOntoStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	linkDir := filepath.Join(t.TempDir(), "via")
	if err := os.Symlink(dir, linkDir); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{path, filepath.Join(linkDir, "s")} {
		s := reopenT(t, path, nil)
		putT(t, s, "before", "1")
		if _, err := s.BackupFile(dest, nil); err == nil {
			t.Errorf("BackupFile(%s) onto the store itself succeeded", dest)
		}
		putT(t, s, "after", dest)
		s.Close()
		s = reopenT(t, path, nil)
		if got := getT(t, s, "after"); got != dest {
			t.Fatalf("a write after BackupFile(%s) onto the store: %q after reopening", dest, got)
		}
		s.Close()
	}
}

// TestAttackBackupCompactCheckpointMix: writers, Compact in a loop,
// background checkpoints every 64 KiB and BackupFile (incremental when it
// can be) all at once, under -race. Every backup is a valid store holding at
// least every write acknowledged before it began; the store reopens whole
// with whatever checkpoint was left.
func TestAttackBackupCompactCheckpointMix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	s0 := reopenT(t, path, nil)
	model := ckModel(t, s0, ckMinEntries+1000, 21)
	s0.Close()
	s := reopenT(t, path, &Options{CheckpointBytes: 64 << 10})
	var mu sync.Mutex
	acked := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the writer
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k, v := fmt.Sprint("m", i%3000), fmt.Sprint("w", i)
			if err := s.Put([]byte(k), []byte(v)); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			model[k] = v
			acked = i
			mu.Unlock()
		}
	}()
	go func() { // the compactor
		defer wg.Done()
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
		}
	}()
	dest := filepath.Join(t.TempDir(), "backup")
	var prev *BackupInfo
	for round := 0; round < 6; round++ {
		mu.Lock()
		before := acked
		mu.Unlock()
		info, err := s.BackupFile(dest, prev)
		if err != nil {
			t.Fatal(err)
		}
		prev = &info
		b, err := Open(dest, &Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("round %d: the backup does not open: %v", round, err)
		}
		if err := b.Verify(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if before > 0 {
			// the key written by write number before holds it or a later value
			if got := getT(t, b, fmt.Sprint("m", before%3000)); got == "<absent>" {
				t.Fatalf("round %d: write %d, acknowledged before the backup began, is not in it", round, before)
			}
		}
		b.Close()
	}
	close(stop)
	wg.Wait()
	s.Close()
	s2 := reopenT(t, path, nil)
	checkModel(t, s2, model)
}
