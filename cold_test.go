package simdr

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Helpers for reads from a cold page cache (BenchmarkCold, TestColdGet).
// They evict one file's pages with POSIX_FADV_DONTNEED rather than drop
// the whole machine's cache (/proc/sys/vm/drop_caches, root only): that
// needs no privilege and leaves the other processes on a shared machine
// alone. The kernel keeps pages a process has mapped, so a store must be
// closed before its file is evicted.

// evict writes path's dirty pages back and drops the file's pages from the
// page cache. It reports how many of the file's pages are still cached
// afterwards (pages mapped elsewhere stay), or an error.
func evict(path string) (left int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return 0, err
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return 0, err
	}
	return cachedPages(f)
}

// cachedPages counts the pages of f that are in the page cache (mincore).
func cachedPages(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return 0, err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(b)
	page := int64(unix.Getpagesize())
	vec := make([]byte, (fi.Size()+page-1)/page)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return 0, errno
	}
	var n int64
	for _, v := range vec {
		n += int64(v & 1)
	}
	return n, nil
}

// evictStore evicts a closed store's file and its checkpoint (when there
// is one), failing tb when a tenth of a percent of the store's pages or
// more stay cached.
func evictStore(tb testing.TB, path string) {
	tb.Helper()
	left, err := evict(path)
	if err != nil {
		tb.Fatalf("evicting %s: %v", path, err)
	}
	if fi, err := os.Stat(path); err == nil && left*1000 > fi.Size()/4096+1 {
		tb.Fatalf("%d pages of %s stay cached after POSIX_FADV_DONTNEED", left, path)
	}
	if _, err := os.Stat(checkpointPath(path)); err == nil {
		if _, err := evict(checkpointPath(path)); err != nil {
			tb.Fatalf("evicting the checkpoint: %v", err)
		}
	}
}

// readBytes is what this process has had read from storage so far
// (read_bytes in /proc/self/io: page faults on mappings count too), or -1
// without per-task I/O accounting.
func readBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("read_bytes: ")); ok {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// majorFaults is how many page faults this process has had that read
// from storage.
func majorFaults() int64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return ru.Majflt
}

// TestColdReads: with the file's pages evicted, each Get reads about one
// page from storage, not the read-ahead around it (up to 8 MiB on some
// disks, which a mapping with the default advice reads at each fault),
// while the walkers (Verify, Entries, Open's walk) still have the file read
// ahead of them: they fault on few of its pages (a walk over a mapping
// advised MADV_RANDOM and not read ahead would fault on each).
func TestColdReads(t *testing.T) {
	if readBytes() < 0 || majorFaults() < 0 {
		t.Skip("no per-task I/O accounting (/proc/self/io, getrusage)")
	}
	path := filepath.Join(t.TempDir(), "cold")
	const n = 200_000 // a 25 MiB file: several times any device's read-ahead
	loadBench(t, path, n)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := os.Stat(checkpointPath(path))
	if err != nil {
		t.Fatal(err)
	}
	pages := fi.Size() / 4096
	const gets = 200
	k := make([]byte, 8)
	for _, tc := range []struct {
		name       string
		checkpoint bool // open with the checkpoint (else Open walks the file)
		read       func(s *Store) error
	}{
		{"get", true, func(s *Store) error {
			rnd := rand.New(rand.NewPCG(3, 4))
			for range gets {
				e, err := s.Get(benchKey(k, rnd.IntN(n)))
				if err != nil {
					return err
				}
				coldSink += int(e.Bytes()[0])
			}
			return nil
		}},
		{"verify", true, func(s *Store) error { return s.Verify() }},
		{"entries", true, func(s *Store) error {
			for e := range s.Entries() {
				coldSink += int(e.Bytes()[0])
			}
			return nil
		}},
		{"open-walk", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.checkpoint {
				os.Remove(checkpointPath(path))
			}
			evictStore(t, path)
			read0, maj0 := readBytes(), majorFaults()
			s, err := Open(path, &Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if tc.read != nil {
				if tc.name != "get" { // the Gets' figure counts Open's reads too
					read0, maj0 = readBytes(), majorFaults()
				}
				if err := tc.read(s); err != nil {
					t.Fatal(err)
				}
			}
			read, maj := readBytes()-read0, majorFaults()-maj0
			t.Logf("%d KiB read from storage, %d major faults (file: %d pages)", read>>10, maj, pages)
			if tc.name == "get" {
				// The checkpoint, then a page a Get and one per 64 KiB of the
				// checkpoint's table that Open samples: 4 % of the file.
				// Reading around each fault (128 KiB at least) would read
				// all of it.
				if read -= ck.Size(); read > fi.Size()/8 {
					t.Fatalf("Open and %d cold Gets read %d KiB of a %d KiB file from storage (besides the checkpoint), want ≤ %d KiB", gets, read>>10, fi.Size()>>10, fi.Size()>>13)
				}
				return
			}
			if read < fi.Size()/2 {
				t.Fatalf("read %d KiB of a %d KiB file from storage: it was not evicted, or Open read it", read>>10, fi.Size()>>10)
			}
			if maj > pages/8 {
				t.Fatalf("%d major faults over a file of %d pages: not read ahead", maj, pages)
			}
		})
	}
}

// median returns the median of d (0 for none); d is sorted.
func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}
