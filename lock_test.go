package simdr

// The one-writer-per-file lock: within a process, across processes, with and
// without Options.LockTimeout, and across a Compact that replaces the file.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// ccOpen opens path with opts or fails the test; the Store is closed at the
// end of the test unless the test closed it.
func ccOpen(t *testing.T, path string, opts *Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ccPut(t *testing.T, s *Store, key, value string) {
	t.Helper()
	if err := s.Put([]byte(key), []byte(value)); err != nil {
		t.Fatal(err)
	}
}

// ccWant fails unless key has value in s ("" for absent).
func ccWant(t *testing.T, s *Store, key, value string) {
	t.Helper()
	e, err := s.Get([]byte(key))
	switch {
	case value == "" && !errors.Is(err, ErrNotFound):
		t.Fatalf("get %q: %v, %v; want ErrNotFound", key, e, err)
	case value != "" && err != nil:
		t.Fatalf("get %q: %v; want %q", key, err, value)
	case value != "" && string(e.Bytes()) != value:
		t.Fatalf("get %q: %q; want %q", key, e.Bytes(), value)
	}
}

// TestLockSecondWriterFailsAtOnce: a second writer in the same process gets
// ErrLocked at once, and the first keeps its lock.
func TestLockSecondWriterFailsAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "k", "v")
	for range 3 {
		_, err := Open(path, nil)
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("second writer: %v, want ErrLocked", err)
		}
	}
	// A failed open must not have taken the lock away from the first writer
	// (closing its descriptor releases nothing it did not hold).
	ccPut(t, w, "k2", "v2")
	if _, err := Open(path, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("third writer: %v, want ErrLocked", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2 := ccOpen(t, path, nil)
	ccWant(t, w2, "k", "v")
	ccWant(t, w2, "k2", "v2")
}

// TestLockTimeoutWaitsForClose: with LockTimeout, a second writer waits for
// the first to close, then sees everything it wrote.
func TestLockTimeoutWaitsForClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "k", "v")
	done := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		// Written before Close: the waiter must see it.
		done <- errors.Join(w.Put([]byte("late"), []byte("write")), w.Close())
	}()
	w2, err := Open(path, &Options{LockTimeout: time.Minute})
	if err != nil {
		t.Fatalf("waiting writer: %v", err)
	}
	defer w2.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ccWant(t, w2, "k", "v")
	ccWant(t, w2, "late", "write")
}

// TestLockTimeoutExpires: a writer waiting on a held lock gives up with
// ErrLocked, and not before the timeout.
func TestLockTimeoutExpires(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ccOpen(t, path, nil)
	const timeout = 150 * time.Millisecond
	start := time.Now()
	_, err := Open(path, &Options{LockTimeout: timeout})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("waiting writer: %v, want ErrLocked", err)
	}
	if waited := time.Since(start); waited < timeout {
		t.Fatalf("gave up after %v, before the %v timeout", waited, timeout)
	}
}

// TestLockReadOnlyTakesNoLock: followers keep neither a writer nor each
// other out.
func TestLockReadOnlyTakesNoLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "k", "v")
	w.Close()
	// Followers opened first do not keep a writer out, nor each other.
	r1 := ccOpen(t, path, &Options{ReadOnly: true})
	r2 := ccOpen(t, path, &Options{ReadOnly: true})
	w = ccOpen(t, path, nil)
	r3 := ccOpen(t, path, &Options{ReadOnly: true})
	ccPut(t, w, "k", "v2")
	for _, r := range []*Store{r1, r2, r3} {
		ccWant(t, r, "k", "v")
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		ccWant(t, r, "k", "v2")
	}
}

// TestLockFollowsCompact: Compact replaces the file; the lock moves with it.
// A second writer stays out, including one that opened (and waits on) the
// old file before the Compact; once the first closes, it gets in, on the new
// file, and sees everything.
func TestLockFollowsCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	for i := range 100 {
		ccPut(t, w, fmt.Sprint("k", i), fmt.Sprint("v", i))
	}
	type result struct {
		s   *Store
		err error
	}
	waiter := make(chan result, 1)
	go func() {
		s, err := Open(path, &Options{LockTimeout: time.Minute})
		waiter <- result{s, err}
	}()
	time.Sleep(20 * time.Millisecond) // most likely waiting on the old file by now
	for i := range 50 {
		if err := w.Delete([]byte(fmt.Sprint("k", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Compact(); err != nil {
		t.Fatal(err)
	}
	ccPut(t, w, "after", "compact")
	if _, err := Open(path, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer open after Compact: %v, want ErrLocked", err)
	}
	select {
	case r := <-waiter:
		t.Fatalf("a waiting writer got in while the first still writes: %v", r.err)
	default:
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := <-waiter
	if r.err != nil {
		t.Fatalf("waiting writer: %v", r.err)
	}
	defer r.s.Close()
	if r.s.Len() != 51 {
		t.Fatalf("waiting writer sees %d keys, want 51", r.s.Len())
	}
	ccWant(t, r.s, "after", "compact")
	ccWant(t, r.s, "k3", "")
	ccWant(t, r.s, "k70", "v70")
	ccPut(t, r.s, "mine", "now")
	if _, err := Open(path, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer open beside the new writer: %v, want ErrLocked", err)
	}
	if _, err := os.Stat(compactPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("compaction file left behind: %v", err)
	}
}

// TestLockHolderChild is the child of the cross-process lock tests. As
// "lock-holder" it opens the store as the writer, writes, prints LOCKED and
// holds the lock until its stdin closes (or it is killed). As "lock-waiter" it
// first checks it is locked out, prints WAITING, then waits for the lock with
// a long timeout, writes and prints OPENED.
func TestLockHolderChild(t *testing.T) {
	role := os.Getenv(ccChildEnv)
	if role != "lock-holder" && role != "lock-waiter" {
		t.Skip("runs only as a child process of another test")
	}
	path := os.Getenv(ccPathEnv)
	if role == "lock-waiter" {
		if _, err := Open(path, nil); !errors.Is(err, ErrLocked) {
			fmt.Printf("FAIL first open: %v\n", err)
			return
		}
		fmt.Println("WAITING")
		s, err := Open(path, &Options{LockTimeout: 2 * time.Minute})
		if err != nil {
			fmt.Printf("FAIL waiting open: %v\n", err)
			return
		}
		if err := s.Put([]byte("child"), []byte("was here")); err != nil {
			fmt.Printf("FAIL put: %v\n", err)
			return
		}
		if err := s.Close(); err != nil {
			fmt.Printf("FAIL close: %v\n", err)
			return
		}
		fmt.Println("OPENED")
		return
	}
	s, err := Open(path, nil)
	if err != nil {
		fmt.Printf("FAIL open: %v\n", err)
		return
	}
	if err := s.Put([]byte("holder"), []byte(strconv.Itoa(os.Getpid()))); err != nil {
		fmt.Printf("FAIL put: %v\n", err)
		return
	}
	fmt.Println("LOCKED")
	var b [1]byte
	os.Stdin.Read(b[:]) // until the parent closes stdin or kills us
	s.Close()
	fmt.Println("RELEASED")
}

// TestLockAcrossProcesses: a child process holding the lock keeps this
// process's writers out, with or without a timeout, but not its followers;
// once the child is killed with SIGKILL (no Close), the lock is free.
func TestLockAcrossProcesses(t *testing.T) {
	if os.Getenv(ccChildEnv) != "" {
		t.Skip("not in a child")
	}
	path := filepath.Join(t.TempDir(), "s")
	child := ccStartChild(t, "TestLockHolderChild", "lock-holder", path, "")
	if l := child.waitLine("LOCKED"); l != "LOCKED" {
		t.Fatal(l)
	}
	if _, err := Open(path, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer open beside the child: %v, want ErrLocked", err)
	}
	if _, err := Open(path, &Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("waiting writer open beside the child: %v, want ErrLocked", err)
	}
	r := ccOpen(t, path, &Options{ReadOnly: true})
	ccWant(t, r, "holder", strconv.Itoa(child.cmd.Process.Pid))

	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.wait()
	// The kernel released the lock when the process died: no wait needed.
	w := ccOpen(t, path, nil)
	ccWant(t, w, "holder", strconv.Itoa(child.cmd.Process.Pid))
	ccPut(t, w, "parent", "took over")
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	ccWant(t, r, "parent", "took over")
}

// TestLockChildWaitsForParent: this process holds the lock; a child is locked
// out, then waits with LockTimeout and gets in once this process closes.
func TestLockChildWaitsForParent(t *testing.T) {
	if os.Getenv(ccChildEnv) != "" {
		t.Skip("not in a child")
	}
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "parent", "first")
	child := ccStartChild(t, "TestLockHolderChild", "lock-waiter", path, "")
	if l := child.waitLine("WAITING"); l != "WAITING" {
		t.Fatal(l)
	}
	for _, l := range child.snapshot() {
		if len(l) >= 4 && l[:4] == "FAIL" {
			t.Fatal(l)
		}
	}
	time.Sleep(50 * time.Millisecond) // let it wait a little (either way, it must get in)
	ccPut(t, w, "parent", "second")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if l := child.waitLine("OPENED"); l != "OPENED" {
		t.Fatal(l)
	}
	if err := child.wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, child.stderr.String())
	}
	w = ccOpen(t, path, nil)
	ccWant(t, w, "parent", "second")
	ccWant(t, w, "child", "was here")
}
