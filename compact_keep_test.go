package simdr

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/simdr-go/simdr/internal/vfs/faultfs"
)

// flipByte flips the bits of the byte at off of the file at path, through a
// second descriptor (the Store's mapping sees it at once).
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// dirNames lists dir's entries, sorted, but for the disposable caches.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		if !isCacheFile(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// isCacheFile reports whether name is one of the disposable files simdr
// keeps beside a store (the state file, the index checkpoint).
func isCacheFile(name string) bool {
	return strings.HasSuffix(name, StateSuffix) || strings.HasSuffix(name, ckSuffix)
}

// TestCompactDamagedValue: Compact never writes a damaged value with a fresh
// checksum. A damaged live value fails Compact with ErrChecksum naming its
// offset, with the file unchanged, and Verify and VerifyChecksums still see
// it; a damaged overwritten value is simply not copied.
func TestCompactDamagedValue(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  string // key whose current value is damaged, or "" for an old value
		wantErr bool
	}{
		{"live value", "k5", true},
		{"live large value", "big", true},
		{"overwritten value", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := openT(t, nil)
			model := map[string]string{}
			for i := 0; i < 20; i++ {
				k, v := fmt.Sprint("k", i), strings.Repeat(fmt.Sprint(i), 10)
				putT(t, s, k, v)
				model[k] = v
			}
			big := strings.Repeat("B", 1<<16) // too long to pack in the index
			putT(t, s, "big", big)
			model["big"] = big
			old, _ := s.Get([]byte("k7"))
			oldOff := old.Offset()
			putT(t, s, "k7", "new7")
			model["k7"] = "new7"
			putT(t, s, "last", "value") // the damage is never in the newest entry
			model["last"] = "value"

			off := oldOff
			if tc.damage != "" {
				e, _ := s.Get([]byte(tc.damage))
				off = e.Offset() + int64(e.Len())/2
			}
			flipByte(t, path, off)
			before, _ := os.ReadFile(path)
			err := s.Compact()
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				checkModel(t, s, model)
				if err := s.Verify(); err != nil {
					t.Fatalf("Verify after compacting away a damaged old value: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrChecksum) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Compact = %v, want ErrChecksum and ErrCorrupt", err)
			}
			e, _ := s.Get([]byte(tc.damage))
			if !strings.Contains(err.Error(), strconv.FormatInt(e.Offset(), 10)) {
				t.Fatalf("error %q does not name offset %d", err, e.Offset())
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Fatal("a failed Compact changed the file")
			}
			if names := dirNames(t, filepath.Dir(path)); len(names) != 1 {
				t.Fatalf("files left beside the store: %v", names)
			}
			if err := s.Verify(); !errors.Is(err, ErrChecksum) {
				t.Fatalf("Verify = %v, want ErrChecksum", err)
			}
			s.Close()
			r := reopenT(t, path, &Options{VerifyChecksums: true})
			if _, err := r.Get([]byte(tc.damage)); !errors.Is(err, ErrChecksum) {
				t.Fatalf("Get with VerifyChecksums = %v, want ErrChecksum", err)
			}
			// Once the damaged key is rewritten, Compact works and the
			// result verifies.
			putT(t, r, tc.damage, "rewritten")
			model[tc.damage] = "rewritten"
			if err := r.Compact(); err != nil {
				t.Fatal(err)
			}
			checkModel(t, r, model)
			if err := r.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCompactSymlink: compacting through a symlink compacts the file it
// names, beside that file; the link stays a link, the lock stays on the file
// every name reaches, and followers of either name see later writes.
func TestCompactSymlink(t *testing.T) {
	realDir, linkDir := t.TempDir(), t.TempDir()
	real := filepath.Join(realDir, "real.simdr")
	link := filepath.Join(linkDir, "link.simdr")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	ffs := faultfs.New(nil)
	s := reopenT(t, link, &Options{fs: ffs})
	for i := 0; i < 50; i++ {
		putT(t, s, fmt.Sprint("k", i%10), fmt.Sprint("v", i))
	}
	fReal := reopenT(t, real, &Options{ReadOnly: true})
	fLink := reopenT(t, link, &Options{ReadOnly: true})
	dirSyncs := ffs.Calls(faultfs.SyncDir)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if n := ffs.Calls(faultfs.SyncDir) - dirSyncs; n != 1 {
		t.Fatalf("Compact synced %d directories, want 1", n)
	}
	if li, err := os.Lstat(link); err != nil || li.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link is no longer a symlink: %v %v", li.Mode(), err)
	}
	if to, _ := os.Readlink(link); to != real {
		t.Fatalf("the link points to %q, want %q", to, real)
	}
	if li, err := os.Lstat(real); err != nil || !li.Mode().IsRegular() {
		t.Fatalf("real file: %v %v", li, err)
	}
	if fi, _ := os.Stat(real); fi.Size() != s.Size() {
		t.Fatalf("the real file is %d bytes, the compacted store %d", fi.Size(), s.Size())
	}
	for _, p := range []string{real, link} {
		if _, err := Open(p, nil); !errors.Is(err, ErrLocked) {
			t.Fatalf("second writer on %s: %v, want ErrLocked", p, err)
		}
	}
	if n := dirNames(t, realDir); len(n) != 1 {
		t.Fatalf("files beside the real file: %v", n)
	}
	if n := dirNames(t, linkDir); len(n) != 1 {
		t.Fatalf("files beside the link: %v", n)
	}
	putT(t, s, "after", "compact")
	for name, f := range map[string]*Store{"real": fReal, "link": fLink} {
		if err := f.Refresh(); err != nil {
			t.Fatal(err)
		}
		if got := getT(t, f, "after"); got != "compact" {
			t.Fatalf("follower of the %s path: after = %q", name, got)
		}
		if got := getT(t, f, "k9"); got != "v49" {
			t.Fatalf("follower of the %s path: k9 = %q", name, got)
		}
	}
	// The directory synced is the real file's: a failure there is reported.
	ffs.Inject(faultfs.Rule{Op: faultfs.SyncDir, Err: syscall.EIO, Match: realDir})
	if err := s.Compact(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Compact with the real directory's fsync failing = %v", err)
	}
	s.Close()
	r := reopenT(t, link, nil)
	if got := getT(t, r, "after"); got != "compact" {
		t.Fatalf("reopened: after = %q", got)
	}
}

// TestCompactDirSyncFailureSticky: Compact fsyncs the directory after its
// rename; when that fails, Compact says so, and the Store refuses writes
// (the rename may not survive a power cut) until it is reopened.
func TestCompactDirSyncFailureSticky(t *testing.T) {
	ffs := faultfs.New(nil)
	path := filepath.Join(t.TempDir(), "s.simdr")
	s := reopenT(t, path, &Options{fs: ffs})
	putT(t, s, "k", "v")
	n := ffs.Calls(faultfs.SyncDir)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if ffs.Calls(faultfs.SyncDir) != n+1 {
		t.Fatalf("Compact made %d directory fsyncs, want 1", ffs.Calls(faultfs.SyncDir)-n)
	}
	ffs.Fail(faultfs.SyncDir, 1, syscall.EIO)
	if err := s.Compact(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Compact = %v, want EIO", err)
	}
	if err := s.Put([]byte("k2"), []byte("v2")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Put after a failed directory fsync = %v, want ErrFailed", err)
	}
	if getT(t, s, "k") != "v" {
		t.Fatal("reads stopped")
	}
	s.Close()
	r := reopenT(t, path, nil)
	checkModel(t, r, map[string]string{"k": "v"})
	putT(t, r, "k2", "v2")
}

// TestCompactHardLinkRefused: a store file with another name is not
// compacted (the other name would keep the old file); the file is unchanged.
func TestCompactHardLinkRefused(t *testing.T) {
	s, path := openT(t, nil)
	putT(t, s, "k", "v1")
	putT(t, s, "k", "v2")
	other := path + ".other"
	if err := os.Link(path, other); err != nil {
		t.Skip("no hard links here:", err)
	}
	before, _ := os.ReadFile(path)
	if err := s.Compact(); !errors.Is(err, ErrHardLinks) {
		t.Fatalf("Compact of a hard-linked file = %v, want ErrHardLinks", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("file changed")
	}
	if _, err := Open(other, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer on the other name: %v, want ErrLocked", err)
	}
	os.Remove(other)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	checkModel(t, s, map[string]string{"k": "v2"})
}

// TestCompactKeepsModeAndOwner: the new file has the old one's mode, owner
// and group.
func TestCompactKeepsModeAndOwner(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o640, 0o604, 0o666} {
		t.Run(mode.String(), func(t *testing.T) {
			s, path := openT(t, nil)
			putT(t, s, "k", "v")
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			if err := s.Compact(); err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != mode {
				t.Fatalf("mode after Compact = %v, want %v", fi.Mode().Perm(), mode)
			}
		})
	}
	t.Run("owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give the file to another user")
		}
		s, path := openT(t, nil)
		putT(t, s, "k", "v")
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := s.Compact(); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 65534 || st.Gid != 65534 {
			t.Fatalf("owner after Compact = %d:%d, want 65534:65534", st.Uid, st.Gid)
		}
	})
}

// TestCompactLeavesUserFiles: neither Open nor Compact removes a file that
// is not a leftover of this store's own Compact: a user's FILE.compact, a
// store named "x.compact" beside "x", a file named like a leftover of
// another file.
func TestCompactLeavesUserFiles(t *testing.T) {
	dir := t.TempDir()
	x := filepath.Join(dir, "x")
	s := reopenT(t, x, nil)
	putT(t, s, "k", "v")
	s.Close()
	fi, _ := os.Stat(x)
	ino := fi.Sys().(*syscall.Stat_t).Ino
	users := map[string][]byte{
		"data.simdr.compact":                        []byte("a user's file"),
		".x.simdr.compact":                          []byte("no inode"),
		fmt.Sprintf(".x.%x.simdr.compact.bak", ino): []byte("another suffix"),
		fmt.Sprintf(".x.%x.simdr.compact", ino+1):   []byte("another file's"),
	}
	for n, b := range users {
		os.WriteFile(filepath.Join(dir, n), b, 0o644)
	}
	// A store named x.compact, beside x.
	xc := reopenT(t, x+".compact", nil)
	putT(t, xc, "mine", "yes")
	xc.Close()

	s = reopenT(t, x, nil)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = reopenT(t, x, nil)
	checkModel(t, s, map[string]string{"k": "v"})
	for n, b := range users {
		if got, err := os.ReadFile(filepath.Join(dir, n)); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s: %q, %v", n, got, err)
		}
	}
	xc = reopenT(t, x+".compact", nil)
	checkModel(t, xc, map[string]string{"mine": "yes"})
}

// TestCompactFileCut: another process cutting the store file makes Compact
// fail with ErrCorrupt, never crash (SIGBUS on the cut pages of the mapping),
// and leaves no temporary file.
func TestCompactFileCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(size int64) int64
	}{
		{"to empty", func(int64) int64 { return 0 }},
		{"to a page boundary", func(size int64) int64 { return size / 2 &^ 4095 }},
		{"mid-page", func(size int64) int64 { return size/2&^4095 + 100 }},
		{"last entry's metadata", func(size int64) int64 { return size - 5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := openT(t, nil)
			for i := 0; i < 400; i++ {
				putT(t, s, fmt.Sprint("k", i), strings.Repeat("x", 200))
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(tc.cut(s.Size())); err != nil {
				t.Fatal(err)
			}
			if err := s.Compact(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Compact of a cut file = %v, want ErrCorrupt", err)
			}
			if n := dirNames(t, filepath.Dir(path)); len(n) != 1 {
				t.Fatalf("files left beside the store: %v", n)
			}
		})
	}
}

// heldDeleted returns how many files under dir this process holds open
// although they were unlinked, and their allocated bytes.
func heldDeleted(t *testing.T, dir string) (n int, bytes int64) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	dir, _ = filepath.EvalSymlinks(dir)
	for _, fd := range fds {
		p := filepath.Join("/proc/self/fd", fd.Name())
		to, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(to, dir+"/") || !strings.HasSuffix(to, " (deleted)") {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil {
			n++
			bytes += st.Blocks * 512
		}
	}
	return n, bytes
}

// TestCompactReleaseOld: the files Compact replaced stay open (their disk
// space held) until ReleaseOld releases them; ReleaseOld(below) releases only
// the generations numbered below, never the current one.
func TestCompactReleaseOld(t *testing.T) {
	s, path := openT(t, nil)
	dir := filepath.Dir(path)
	val := strings.Repeat("v", 1000)
	fill := func(round int) {
		for i := 0; i < 1000; i++ { // 1 MB, all garbage after the next round
			putT(t, s, fmt.Sprint("k", i), fmt.Sprint(round, val))
		}
	}
	if s.Generation() != 0 {
		t.Fatalf("Generation at Open = %d", s.Generation())
	}
	for round := 1; round <= 5; round++ {
		fill(round)
		if err := s.Compact(); err != nil {
			t.Fatal(err)
		}
		if s.Generation() != uint64(round) {
			t.Fatalf("Generation after %d compactions = %d", round, s.Generation())
		}
	}
	n, held := heldDeleted(t, dir)
	if n != 5 || held < 5*s.Size() {
		t.Fatalf("before ReleaseOld: %d replaced files held, %d bytes; want 5, ≥ %d", n, held, 5*s.Size())
	}
	cur, _ := s.Get([]byte("k1"))
	want := string(cur.Bytes())
	if r, err := s.ReleaseOld(2); r != 2 || err != nil {
		t.Fatalf("ReleaseOld(2) = %d, %v; want 2", r, err)
	}
	if n, _ := heldDeleted(t, dir); n != 3 {
		t.Fatalf("after ReleaseOld(2): %d replaced files held, want 3", n)
	}
	if r, err := s.ReleaseOld(1 << 62); r != 3 || err != nil {
		t.Fatalf("ReleaseOld(all) = %d, %v; want 3", r, err)
	}
	if n, held := heldDeleted(t, dir); n != 0 || held != 0 {
		t.Fatalf("after ReleaseOld: %d replaced files held (%d bytes), want 0", n, held)
	}
	if r, err := s.ReleaseOld(s.Generation()); r != 0 || err != nil {
		t.Fatalf("ReleaseOld again = %d, %v", r, err)
	}
	// The current generation is untouched: its slices, reads and writes.
	if string(cur.Bytes()) != want || getT(t, s, "k1") != want {
		t.Fatal("current generation's value changed")
	}
	fill(6)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReleaseOld(10); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReleaseOld after Close = %v, want ErrClosed", err)
	}
	if s.Generation() != 0 {
		t.Fatal("Generation after Close")
	}
	s = reopenT(t, path, nil)
	if getT(t, s, "k999") != fmt.Sprint(6, val) {
		t.Fatal("lost a write")
	}
}

// TestReleaseOldFollower: a follower's Refresh after the writer compacted
// moves it to a new generation too, and ReleaseOld lets the old file go.
func TestReleaseOldFollower(t *testing.T) {
	s, path := openT(t, nil)
	putT(t, s, "k", "v1")
	f := reopenT(t, path, &Options{ReadOnly: true})
	putT(t, s, "k", "v2")
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReleaseOld(s.Generation()); err != nil {
		t.Fatal(err)
	}
	if n, _ := heldDeleted(t, filepath.Dir(path)); n != 1 {
		t.Fatalf("%d replaced files held, want 1 (the follower's)", n)
	}
	if err := f.Refresh(); err != nil {
		t.Fatal(err)
	}
	if f.Generation() != 1 || getT(t, f, "k") != "v2" {
		t.Fatalf("follower: generation %d, k = %q", f.Generation(), getT(t, f, "k"))
	}
	if r, err := f.ReleaseOld(f.Generation()); r != 1 || err != nil {
		t.Fatalf("follower ReleaseOld = %d, %v", r, err)
	}
	if n, _ := heldDeleted(t, filepath.Dir(path)); n != 0 {
		t.Fatalf("%d replaced files held, want 0", n)
	}
}

// TestCompactPathReplaced: when the path no longer names the file the Store
// has open (a file moved over it, or a symlink retargeted), Compact refuses
// and leaves the file the path names alone.
func TestCompactPathReplaced(t *testing.T) {
	for _, viaLink := range []bool{false, true} {
		t.Run(fmt.Sprint("symlink=", viaLink), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "s.simdr")
			open := path
			if viaLink {
				open = filepath.Join(dir, "link")
				os.Symlink(path, open)
			}
			s := reopenT(t, open, nil)
			putT(t, s, "k", "v")
			other := filepath.Join(dir, "other")
			os.WriteFile(other, []byte("someone else's file"), 0o644)
			if viaLink {
				os.Remove(open)
				os.Symlink(other, open)
			} else {
				os.Rename(other, path)
				other = path
			}
			if err := s.Compact(); err == nil || !strings.Contains(err.Error(), "no longer names") {
				t.Fatalf("Compact after the path was replaced = %v", err)
			}
			if b, _ := os.ReadFile(other); string(b) != "someone else's file" {
				t.Fatalf("the file the path names now was changed: %q", b)
			}
		})
	}
}
