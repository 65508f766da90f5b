package simdr

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/vfs"
	"golang.org/x/sys/unix"
)

// ErrGeneration: an incremental backup was asked for since a backup of
// another generation of the store file (it was compacted, or replaced by
// another program, since): only a full backup can follow.
var ErrGeneration = errors.New("simdr: the store file is not the one the earlier backup was taken of (compacted or replaced since): take a full backup")

// BackupInfo describes a backup written by Backup or BackupSince.
type BackupInfo struct {
	// Generation names the store file the backup was taken of. It changes
	// when Compact (this program's or the Rust original's) replaces the file:
	// an incremental backup needs the same generation. It is the file's
	// device, inode and birth time, in hex.
	Generation string `json:"generation"`
	// From is where the bytes written begin in the store file: 0 for a full
	// backup, the earlier backup's Tail for an incremental one.
	From int64 `json:"from"`
	// Tail is where they end: everything committed when the call began. A
	// full backup is a valid store file of exactly Tail bytes; an
	// incremental one appended to the backup it follows makes one.
	Tail int64 `json:"tail"`
}

// Backup writes a consistent copy of the store file to w: every entry
// committed when the call began, as a valid store file (the same bytes as
// the store's first Tail bytes). Readers and writers go on meanwhile; the
// bytes stream from the mapping (no copy, constant memory). Writes made
// after the call began are not in the backup. A Close, or a ReleaseOld of
// the file being read, during the call makes it fail with an error matching
// ErrClosed (the bytes written to w are then not a backup).
func (s *Store) Backup(w io.Writer) (BackupInfo, error) {
	info, err := s.backup(w, nil)
	if err != nil {
		return info, fmt.Errorf("simdr: backup: %w", err)
	}
	return info, nil
}

// BackupSince writes only what was committed after the backup described by
// since (a BackupInfo from Backup or BackupSince of this store file): the
// bytes from since.Tail to the committed tail. Appended to the earlier
// backup, they make a full backup byte for byte. It fails with an error
// matching ErrGeneration when the store file is not the one since was taken
// of (a Compact happened in between), and with ErrCorrupt when since.Tail
// is not the end of an entry of this file. Nothing new since gives an
// empty increment (From == Tail).
func (s *Store) BackupSince(w io.Writer, since BackupInfo) (BackupInfo, error) {
	info, err := s.backup(w, &since)
	if err != nil {
		return info, fmt.Errorf("simdr: backup since %d: %w", since.Tail, err)
	}
	return info, nil
}

func (s *Store) backup(w io.Writer, since *BackupInfo) (BackupInfo, error) {
	g := s.cur.Load()
	if g == nil {
		return BackupInfo{}, ErrClosed
	}
	tail := g.tail.Load() // committed: the bytes below never change
	info := BackupInfo{Generation: generation(g), Tail: tail}
	data := g.m.Bytes()
	if int64(len(data)) < tail {
		return BackupInfo{}, ErrClosed // closed meanwhile
	}
	if since != nil {
		if since.Generation != info.Generation {
			return BackupInfo{}, ErrGeneration
		}
		var on bool
		if guardFault(func() { on = onChain(data, tail, since.Tail) }) {
			return BackupInfo{}, s.backupCut(g, tail)
		}
		if since.Tail > tail || !on {
			return BackupInfo{}, fmt.Errorf("no entry of this file ends at %d: %w", since.Tail, ErrCorrupt)
		}
		info.From = since.Tail
	}
	const chunk = 1 << 20
	ra := g.newReadAhead(info.From, tail, true) // read-ahead: see readahead.go
	for off := info.From; off < tail; {
		ra.at(off)
		n := min(chunk, tail-off)
		var err error
		if guardFault(func() { _, err = w.Write(data[off : off+n]) }) {
			return BackupInfo{}, s.backupCut(g, tail)
		}
		if err != nil {
			if fileCut(g, tail) { // a file's write(2) from a cut mapping fails with EFAULT
				return BackupInfo{}, s.backupCut(g, tail)
			}
			return BackupInfo{}, err
		}
		off += n
	}
	// A cut in the middle of a page reads as zeros, without a fault: those
	// zeros are not the store's entries.
	if fileCut(g, tail) {
		return BackupInfo{}, s.backupCut(g, tail)
	}
	// Backup takes no lock: Close (or ReleaseOld) may have swapped the
	// mapping for zero pages while w read it. Every Write has returned, so
	// if g is still mapped now, every byte came from the file.
	if !s.holds(g) {
		return BackupInfo{}, errReleased
	}
	return info, nil
}

// fileCut reports whether g's file is now shorter than tail: another program
// cut it under the Store.
func fileCut(g *gen, tail int64) bool {
	size, err := g.f.Size()
	return err == nil && size < tail
}

// backupCut is the error of a backup whose reads of g faulted or found the
// file shorter than tail: unmapped by Close or ReleaseOld, or cut by another
// program.
func (s *Store) backupCut(g *gen, tail int64) error {
	if !s.holds(g) {
		return errReleased
	}
	return fmt.Errorf("the store file was cut below %d by another program: %w", tail, ErrCorrupt)
}

// errReleased is what a backup whose file was unmapped under it reports.
var errReleased = fmt.Errorf("the store was closed, or its file released by ReleaseOld, while the backup read it: %w", ErrClosed)

// holds reports whether g is still mapped: the current generation, or one
// that Compact replaced and ReleaseOld has not released (Close releases
// every one).
func (s *Store) holds(g *gen) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	cur := s.cur.Load()
	if cur == nil {
		return false
	}
	if cur == g {
		return true
	}
	for _, o := range s.old {
		if o == g {
			return true
		}
	}
	return false
}

// onChain reports whether walking the chain back from tail meets t (an
// entry ends there, or t is 0): the walk covers only what lies above t.
func onChain(data []byte, tail, t int64) bool {
	found := t == tail || t == 0
	format.Walk(data, t, tail, func(e format.Entry) bool {
		if e.Prev == t {
			found = true
		}
		return e.Prev > t
	})
	return found
}

// generation names g's file: device, inode and, where the file system
// keeps it, birth time (an inode number can be reused by a later file).
func generation(g *gen) string {
	dev, ino, _, _ := fileID(g.fi)
	var birth int64
	var sx unix.Statx_t
	if err := unix.Statx(int(g.f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_BTIME, &sx); err == nil && sx.Mask&unix.STATX_BTIME != 0 {
		birth = sx.Btime.Sec*1e9 + int64(sx.Btime.Nsec)
	}
	return fmt.Sprintf("%x-%x-%x", dev, ino, birth)
}

// BackupFile writes a backup of s to the file dest and returns what it
// covers. When prev describes the backup dest holds now (from an earlier
// BackupFile or Backup into it) and the store is of the same generation,
// only what came since is read from the store: dest is copied and the
// increment appended. Otherwise (prev nil, another generation, or dest not
// what prev says) a full backup is written. Either way the result is
// written to a temporary file beside dest, synced, and renamed over dest,
// so that an interrupted backup never leaves a dest that is not a whole
// store file; the directory is synced too. A dest that is the store file
// itself, its state file or its index checkpoint (by any path or link)
// fails with ErrSameStore. A symbolic link is
// followed (the file it names is replaced, the link kept), and a dest that
// exists and is not a regular file (a FIFO, a device, a directory) fails
// with an error matching fs.ErrInvalid, nothing written.
func (s *Store) BackupFile(dest string, prev *BackupInfo) (BackupInfo, error) {
	info, err := s.backupFile(dest, prev)
	if err != nil {
		return info, fmt.Errorf("simdr: backup to %s: %w", dest, err)
	}
	return info, nil
}

func (s *Store) backupFile(dest string, prev *BackupInfo) (_ BackupInfo, err error) {
	if dest, err = backupTarget(dest); err != nil {
		return BackupInfo{}, err
	}
	if g := s.cur.Load(); g == nil {
		return BackupInfo{}, ErrClosed
	} else if fi, err := os.Stat(dest); err == nil && os.SameFile(fi, g.fi) {
		// Renaming the backup over the live store would leave its writer
		// appending to an unlinked file.
		return BackupInfo{}, fmt.Errorf("dest is the store file itself: %w", ErrSameStore)
	} else if err == nil && sideFile(s.path, fi) {
		// Nor over the state file or the checkpoint the Store keeps beside
		// it: followers and the next Open would find a backup there.
		return BackupInfo{}, fmt.Errorf("dest is a file the store keeps beside it: %w", ErrSameStore)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*.simdr-backup")
	if err != nil {
		return BackupInfo{}, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var info BackupInfo
	incremental := false
	if prev != nil && prev.Generation == s.generationNow() {
		if old, oerr := os.OpenFile(dest, os.O_RDONLY|unix.O_NONBLOCK, 0); oerr == nil {
			fi, serr := old.Stat() // swapped for a FIFO since the check: not regular, not read
			if serr == nil && fi.Mode().IsRegular() && fi.Size() == prev.Tail {
				_, cerr := io.Copy(tmp, old) // copy_file_range where the system has it
				incremental = cerr == nil
			}
			old.Close()
		}
	}
	if incremental {
		info, err = s.backup(tmp, prev)
		if errors.Is(err, ErrGeneration) || errors.Is(err, ErrCorrupt) {
			incremental = false
		} else if err != nil {
			return BackupInfo{}, err
		}
	}
	if !incremental {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return BackupInfo{}, err
		}
		if err := tmp.Truncate(0); err != nil {
			return BackupInfo{}, err
		}
		if info, err = s.backup(tmp, nil); err != nil {
			return BackupInfo{}, err
		}
	}
	if err := tmp.Sync(); err != nil {
		return BackupInfo{}, err
	}
	if err := tmp.Close(); err != nil {
		return BackupInfo{}, err
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return BackupInfo{}, err
	}
	if err := vfs.OS.SyncDir(filepath.Dir(dest)); err != nil {
		return info, fmt.Errorf("backup written, but the directory sync failed: %w", err)
	}
	return info, nil
}

// sideFile reports whether fi is the state file or the index checkpoint of
// the store at path (under any name or link).
func sideFile(path string, fi os.FileInfo) bool {
	for _, p := range []string{statePath(path), checkpointPath(path)} {
		if si, err := os.Stat(p); err == nil && os.SameFile(si, fi) {
			return true
		}
	}
	return false
}

// backupTarget is the file BackupFile writes for dest: the file a symbolic
// link names (the backup replaces that file, not the link), refused with an
// error matching fs.ErrInvalid unless it is missing or a regular file (a
// FIFO, a device such as /dev/null, a directory would be replaced by the
// rename, and a FIFO could block the read of an earlier backup).
func backupTarget(dest string) (string, error) {
	if p, err := filepath.EvalSymlinks(dest); err == nil {
		dest = p
	}
	fi, err := os.Lstat(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return dest, nil
	case err != nil:
		return "", err
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("dest %s is not a regular file (%v): %w", dest, fi.Mode().Type(), fs.ErrInvalid)
	}
	return dest, nil
}

// generationNow is the generation of the current file ("" when closed).
func (s *Store) generationNow() string {
	g := s.cur.Load()
	if g == nil {
		return ""
	}
	return generation(g)
}
