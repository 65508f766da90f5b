package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
)

// TestWatch: simdr FILE watch prints each entry another process commits
// (puts, deletes, a compaction), and exits 0 on SIGINT.
func TestWatch(t *testing.T) {
	path := storePath(t)
	w, err := simdr.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Put([]byte("before"), []byte("x"))
	cmd := exec.Command(bin, path, "watch")
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if l, err := bufio.NewReader(stderr).ReadString('\n'); err != nil || !strings.Contains(l, "watching") {
		t.Fatalf("watch's first stderr line: %q %v", l, err)
	}
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(time.Minute):
			t.Fatal("watch printed nothing")
		}
		return ""
	}
	h := func(k string) string { return fmt.Sprintf("%016x", simdr.Hash([]byte(k))) }
	w.Put([]byte("a"), []byte("hello"))
	if l := next(); l != h("a")+"  put 5" {
		t.Fatalf("put: %q", l)
	}
	var b simdr.Batch
	b.Put([]byte("b"), []byte("12"))
	b.Delete([]byte("a"))
	w.Apply(&b)
	if l := next(); l != h("b")+"  put 2" {
		t.Fatalf("batch put: %q", l)
	}
	if l := next(); l != h("a")+"  delete" {
		t.Fatalf("batch delete: %q", l)
	}
	w.Compact()
	if l := next(); l != "# compacted" {
		t.Fatalf("compact: %q", l)
	}
	w.Put([]byte("c"), []byte("3"))
	if l := next(); l != h("c")+"  put 1" {
		t.Fatalf("put after compact: %q", l)
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch after SIGINT: %v", err)
	}
	_ = syscall.SIGINT
}
