package simdr

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// BackupFile replaces a missing or regular dest, and the file a symbolic
// link names (keeping the link); it refuses, writing nothing, a dest that is
// a FIFO, a directory or a dangling link (the rename would replace it).
func TestBackupFileTarget(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "k", "v")
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	target := filepath.Join(dir, "target")
	if err := os.Symlink(target, link); err != nil { // dangling until target exists
		t.Fatal(err)
	}
	tests := []struct {
		name, dest, wrote string // wrote: the file that must now be a backup
		refused           bool
		mode              fs.FileMode // the type dest must still have
	}{
		{"missing", filepath.Join(dir, "new"), filepath.Join(dir, "new"), false, 0},
		{"regular", regular, regular, false, 0},
		{"fifo", fifo, "", true, fs.ModeNamedPipe},
		{"directory", sub, "", true, fs.ModeDir},
		{"dangling link", link, "", true, fs.ModeSymlink},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.BackupFile(tc.dest, nil)
			if tc.refused != errors.Is(err, fs.ErrInvalid) || (!tc.refused && err != nil) {
				t.Fatalf("BackupFile(%s): %v", tc.name, err)
			}
			if tc.refused {
				if fi, err := os.Lstat(tc.dest); err != nil || fi.Mode().Type() != tc.mode {
					t.Fatalf("dest changed: %v, %v", fi.Mode(), err)
				}
				return
			}
			backupHolds(t, tc.wrote)
		})
	}
	// A link to a regular file: the file is replaced, the link stays.
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BackupFile(link, nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Fatalf("the link was replaced: %v, %v", fi.Mode(), err)
	}
	backupHolds(t, target)
}

// backupHolds checks that the file at path is a backup holding k = v.
func backupHolds(t *testing.T, path string) {
	t.Helper()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkBackup(t, img, map[string]string{"k": "v"})
}

// BackupFile refuses the state file the Store keeps beside its file (by its
// name or a link to it), as it refuses the store file: renamed over it, a
// backup would stand where followers and the next Open look for the state.
func TestBackupFileSideFile(t *testing.T) {
	s, path := openT(t, nil)
	putT(t, s, "k", "v")
	state := statePath(path)
	before, err := os.Stat(state)
	if err != nil {
		t.Skipf("no state file: %v", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(state, link); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{state, link} {
		if _, err := s.BackupFile(dest, nil); !errors.Is(err, ErrSameStore) {
			t.Fatalf("BackupFile(%s): %v, want ErrSameStore", dest, err)
		}
	}
	if after, err := os.Stat(state); err != nil || !os.SameFile(before, after) {
		t.Fatalf("the state file was replaced: %v", err)
	}
}
