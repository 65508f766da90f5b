package simdr

// The forged-upload attack (issue 14): a value whose bytes hold, at the end
// of every 1 MiB chunk PutReader writes, a 20-byte record claiming prev = the
// tail before the upload and the CRC of the bytes before it. Read past the
// writer's committed tail, each such record is a valid entry. Followers and
// recovery must never take it for one. Also: the state file is a disposable
// cache (deleted, truncated, garbage, stale: only time is lost).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/shm"
)

// sfForger yields a value of chunks streamChunk-byte chunks, each ending
// with a forged entry record for key "evil" (prev = tail, the store's tail
// before the upload, and the CRC of every value byte before the record). Before
// each chunk past the first, it sends on ready (when not nil) and waits on
// next: false makes it fail (an aborted upload), true go on.
type sfForger struct {
	tail   int64
	chunks int
	n      int // chunks yielded
	crc    uint32
	fill   func([]byte)
	ready  chan<- int
	next   <-chan bool
	buf    []byte
	off    int
}

func sfRandomFill(seed uint64) func([]byte) {
	r := rand.New(rand.NewPCG(seed, 1))
	return func(b []byte) {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
}

func (f *sfForger) Read(p []byte) (int, error) {
	if f.off == len(f.buf) {
		if f.n == f.chunks {
			return 0, io.EOF
		}
		if f.n > 0 && f.ready != nil {
			f.ready <- f.n
			if !<-f.next {
				return 0, errors.New("upload aborted")
			}
		}
		f.buf = sfForgedChunk(f.buf[:0], f.tail, &f.crc, f.fill)
		f.n++
		f.off = 0
	}
	n := copy(p, f.buf[f.off:])
	f.off += n
	return n, nil
}

// sfForgedChunk appends one chunk: filler, then the forged record.
func sfForgedChunk(dst []byte, tail int64, crc *uint32, fill func([]byte)) []byte {
	body := make([]byte, streamChunk-format.MetaSize)
	if fill != nil {
		fill(body)
	}
	*crc = crc32.Update(*crc, crc32.IEEETable, body)
	rec := format.AppendMeta(nil, format.Meta{Hash: Hash([]byte("evil")), Prev: tail, CRC: *crc})
	*crc = crc32.Update(*crc, crc32.IEEETable, rec)
	return append(append(dst, body...), rec...)
}

// sfNoEvil fails if s shows the forged key or an entry it cannot verify.
func sfNoEvil(t *testing.T, what string, s *Store) {
	t.Helper()
	if s.Has([]byte("evil")) {
		t.Fatalf("%s: the forged key is visible (Size %d)", what, s.Size())
	}
	if err := s.Verify(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestForgedUploadFollower: a follower refreshing while a PutReader streams
// a forged value sees no "evil" key, and keeps following afterwards: the
// upload's own key once committed, and later writes.
func TestForgedUploadFollower(t *testing.T) {
	for _, abort := range []bool{false, true} {
		t.Run(fmt.Sprint("abort=", abort), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			w := ccOpen(t, path, nil)
			ccPut(t, w, "a", "1")
			r := ccOpen(t, path, &Options{ReadOnly: true})
			ready, next := make(chan int, 64), make(chan bool)
			t.Cleanup(sync.OnceFunc(func() { close(next) })) // a failed test aborts the upload
			f := &sfForger{tail: w.Size(), chunks: 4, fill: sfRandomFill(1), ready: ready, next: next}
			done := make(chan error, 1)
			go func() {
				_, err := w.PutReader([]byte("big"), f)
				done <- err
			}()
			for range f.chunks - 1 {
				<-ready // the chunks before are in the file, each ending with a record
				if err := r.Refresh(); err != nil {
					t.Fatal(err)
				}
				sfNoEvil(t, "mid-upload", r)
				if r.Size() != f.tail {
					t.Fatalf("mid-upload: follower moved to %d, committed %d", r.Size(), f.tail)
				}
				next <- !abort
				if abort {
					break
				}
			}
			err := <-done
			if abort != (err != nil) {
				t.Fatalf("PutReader: %v", err)
			}
			if err := r.Refresh(); err != nil {
				t.Fatal(err)
			}
			sfNoEvil(t, "after the upload", r)
			if e, err := r.Get([]byte("big")); abort == (err == nil) || (!abort && e.Len() != f.chunks*streamChunk) {
				t.Fatalf("after the upload: big: %v", err)
			}
			ccPut(t, w, "after", "2")
			if err := r.Refresh(); err != nil {
				t.Fatal(err)
			}
			ccWant(t, r, "after", "2")
			if r.Size() != w.Size() {
				t.Fatalf("follower at %d, writer at %d", r.Size(), w.Size())
			}
		})
	}
}

// sfChild is the writer of the child-process forged uploads: it puts "a",
// prints READY, then streams a forged value; after each chunk it prints
// "CHUNK n" and waits for a line: "go" for the next chunk, "abort" to make
// the upload fail (PutReader rolls the file back), then prints "DONE err".
func TestForgedUploadWriterChild(t *testing.T) {
	path := ccChildPath(t, "forge-writer")
	s, err := Open(path, nil)
	if err != nil {
		fmt.Printf("FAIL open: %v\n", err)
		t.Fatal(err)
	}
	if err := s.Put([]byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	fmt.Println("READY", s.Size())
	in := bufio.NewScanner(os.Stdin)
	ready, next := make(chan int), make(chan bool)
	go func() {
		for n := range ready {
			fmt.Println("CHUNK", n)
			if !in.Scan() {
				next <- false
				continue
			}
			next <- in.Text() == "go"
		}
	}()
	_, err = s.PutReader([]byte("big"), &sfForger{tail: s.Size(), chunks: 64, fill: sfRandomFill(2), ready: ready, next: next})
	fmt.Println("DONE", err)
	in.Scan() // wait to be told to exit
	s.Close()
}

// TestForgedUploadAbortInChild: a child process aborts a forged upload after
// the follower (this process) refreshed over its records. The rollback cuts
// the file; the follower must not have taken a record for an entry (whose
// bytes would then be gone: SIGBUS on the next read of it).
func TestForgedUploadAbortInChild(t *testing.T) {
	if os.Getenv(ccChildEnv) != "" {
		t.Skip("not in a child")
	}
	path := filepath.Join(t.TempDir(), "s")
	child := ccStartChild(t, "TestForgedUploadWriterChild", "forge-writer", path, "")
	tail, _ := strconv.ParseInt(strings.Fields(child.waitLine("READY"))[1], 10, 64)
	r := ccOpen(t, path, &Options{ReadOnly: true, VerifyChecksums: true})
	for i := 1; i <= 3; i++ {
		child.waitLine(fmt.Sprint("CHUNK ", i))
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		sfNoEvil(t, "mid-upload", r)
		if r.Size() != tail {
			t.Fatalf("mid-upload: follower at %d, committed %d", r.Size(), tail)
		}
		cmd := "go"
		if i == 3 {
			cmd = "abort"
		}
		fmt.Fprintln(child.stdin, cmd)
	}
	child.waitLine("DONE")
	// The file is cut back: reading every entry must not fault.
	for e := range r.Entries() {
		if err := e.Verify(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	sfNoEvil(t, "after the abort", r)
	ccSameState(t, "after the abort", r, map[string]string{"a": "1"})
	fmt.Fprintln(child.stdin, "exit")
	if err := child.wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, child.stderr.String())
	}
}

// TestForgedUploadKillThenOpen: the writer is SIGKILLed mid-upload, its
// file ending at a forged record. Neither a follower's Open nor the next
// writer's recovery may keep the forged key.
func TestForgedUploadKillThenOpen(t *testing.T) {
	if os.Getenv(ccChildEnv) != "" {
		t.Skip("not in a child")
	}
	path := filepath.Join(t.TempDir(), "s")
	child := ccStartChild(t, "TestForgedUploadWriterChild", "forge-writer", path, "")
	tail, _ := strconv.ParseInt(strings.Fields(child.waitLine("READY"))[1], 10, 64)
	r := ccOpen(t, path, &Options{ReadOnly: true})
	for i := 1; i < 3; i++ {
		child.waitLine(fmt.Sprint("CHUNK ", i))
		fmt.Fprintln(child.stdin, "go")
	}
	child.waitLine("CHUNK 3")
	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.wait()
	if fi, _ := os.Stat(path); fi.Size() != tail+format.Prepad(tail)+3*streamChunk {
		t.Fatalf("file of %d bytes, want it to end at the third record", fi.Size())
	}
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	sfNoEvil(t, "follower after the kill", r)

	for _, opts := range []*Options{{ReadOnly: true}, nil} {
		s, err := Open(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		if g := s.cur.Load(); opts != nil {
			// What the state tells recovery: committed at the tail before the
			// upload, and every byte past it the dead writer's own.
			committed, own, ok := s.stateHint(g, tail+format.Prepad(tail)+3*streamChunk)
			if committed != tail || !own || !ok {
				t.Fatalf("stateHint after the kill: %d %v %v, want %d true true", committed, own, ok, tail)
			}
		}
		sfNoEvil(t, fmt.Sprintf("open %+v after the kill", opts), s)
		ccSameState(t, "after the kill", s, map[string]string{"a": "1"})
		if s.Size() != tail {
			t.Fatalf("open after the kill: tail %d, want %d", s.Size(), tail)
		}
		s.Close()
	}
	if fi, _ := os.Stat(path); fi.Size() != tail {
		t.Fatalf("the writer left %d bytes, want %d", fi.Size(), tail)
	}
}

// sfVouches reports whether s's state file describes s's current file.
func sfVouches(s *Store) bool {
	g := s.cur.Load()
	if g == nil {
		return false
	}
	c, _, ok := s.stateCommit(g)
	return ok && c.Tail == g.tail.Load()
}

// TestStateFileDisposable: whatever happened to the state file between two
// runs (deleted, truncated, garbage, stale because a program that does not
// keep it appended to the store or compacted it, or another store's), the
// writer and followers open to exactly the data, and the writer rebuilds it.
func TestStateFileDisposable(t *testing.T) {
	type env struct {
		path, state string
		want        map[string]string
	}
	cases := []struct {
		name string
		do   func(t *testing.T, e *env)
	}{
		{"intact", func(t *testing.T, e *env) {}},
		{"deleted", func(t *testing.T, e *env) { os.Remove(e.state) }},
		{"empty", func(t *testing.T, e *env) { os.Truncate(e.state, 0) }},
		{"truncated", func(t *testing.T, e *env) { os.Truncate(e.state, 100) }},
		{"zeros", func(t *testing.T, e *env) { os.WriteFile(e.state, make([]byte, shm.Size), 0o644) }},
		{"garbage", func(t *testing.T, e *env) {
			b := make([]byte, shm.Size)
			sfRandomFill(3)(b)
			os.WriteFile(e.state, b, 0o644)
		}},
		{"garbage with a valid header", func(t *testing.T, e *env) {
			b := ccFileBytes(t, e.state)
			sfRandomFill(4)(b[64:])
			os.WriteFile(e.state, b, 0o644)
		}},
		{"longer", func(t *testing.T, e *env) {
			f, _ := os.OpenFile(e.state, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(make([]byte, 10000))
			f.Close()
		}},
		{"stale: appended by another program", func(t *testing.T, e *env) {
			tail := int64(len(ccFileBytes(t, e.path)))
			var b []byte
			for i := range 3 {
				k, v := fmt.Sprint("rust", i), strings.Repeat("r", 100+i)
				b = format.AppendEntry(b, tail+int64(len(b)), Hash([]byte(k)), []byte(v))
				e.want[k] = v
			}
			ccAppendRaw(t, e.path, tail, b)
		}},
		{"stale: compacted by another program", func(t *testing.T, e *env) {
			tmp := e.path + ".bk"
			c := ccOpen(t, tmp, nil)
			for k, v := range e.want {
				if k != "k3" {
					ccPut(t, c, k, v)
				}
			}
			delete(e.want, "k3")
			c.Close()
			os.Remove(statePath(tmp))
			if err := os.Rename(tmp, e.path); err != nil {
				t.Fatal(err)
			}
		}},
		{"another store's", func(t *testing.T, e *env) {
			other := e.path + ".other"
			o := ccOpen(t, other, nil)
			ccPut(t, o, "x", "y")
			o.Close()
			if err := os.Rename(statePath(other), e.state); err != nil {
				t.Fatal(err)
			}
		}},
		{"a symbolic link", func(t *testing.T, e *env) {
			os.Remove(e.state)
			os.Symlink(e.path, e.state) // must not be followed (it would clobber the store)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{path: filepath.Join(t.TempDir(), "s"), want: map[string]string{}}
			e.state = statePath(e.path)
			w := ccOpen(t, e.path, nil)
			for i := range 10 {
				k, v := fmt.Sprint("k", i), strings.Repeat(fmt.Sprint(i), 50)
				ccPut(t, w, k, v)
				e.want[k] = v
			}
			if !sfVouches(w) {
				t.Fatal("the writer keeps no state")
			}
			w.Close()
			storeBefore := ccFileBytes(t, e.path)
			tc.do(t, e)
			symlink := tc.name == "a symbolic link"
			if !symlink {
				storeBefore = ccFileBytes(t, e.path)
			}

			// A follower before any writer: it reads or ignores the state.
			r := ccOpen(t, e.path, &Options{ReadOnly: true})
			ccSameState(t, "follower", r, e.want)
			if err := r.Refresh(); err != nil {
				t.Fatal(err)
			}
			ccSameState(t, "follower refreshed", r, e.want)

			w = ccOpen(t, e.path, nil)
			ccSameState(t, "writer", w, e.want)
			if !bytes.Equal(storeBefore, ccFileBytes(t, e.path)) {
				t.Fatal("the store file changed")
			}
			ccPut(t, w, "new", "1")
			e.want["new"] = "1"
			if symlink {
				if sfVouches(w) {
					t.Fatal("the writer uses a state file behind a symbolic link")
				}
			} else if !sfVouches(w) {
				t.Fatal("the writer did not rebuild the state")
			}
			if err := r.Refresh(); err != nil {
				t.Fatal(err)
			}
			ccSameState(t, "follower after the writer's open", r, e.want)
			if !symlink && !sfVouches(r) {
				t.Fatal("the follower does not use the rebuilt state")
			}
			r.Close()
			w.Close()
			w = ccOpen(t, e.path, nil)
			ccSameState(t, "reopened", w, e.want)
			w.Close()
		})
	}
}

// TestStateFollowsCompact: after Compact the state names the new file, and
// followers refresh through it (not by scanning) from the next write on.
func TestStateFollowsCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	want := map[string]string{}
	for i := range 50 {
		k := fmt.Sprint("k", i%20)
		want[k] = fmt.Sprint(i)
		ccPut(t, w, k, want[k])
	}
	r := ccOpen(t, path, &Options{ReadOnly: true})
	for round := range 3 {
		if err := w.Compact(); err != nil {
			t.Fatal(err)
		}
		if err := r.Refresh(); err != nil { // the new file, before any write to it
			t.Fatal(err)
		}
		ccSameState(t, "after compact", r, want)
		ccPut(t, w, "after", fmt.Sprint(round))
		want["after"] = fmt.Sprint(round)
		if !sfVouches(w) {
			t.Fatal("the state does not name the compacted file")
		}
		if err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
		ccSameState(t, "write after compact", r, want)
		if !sfVouches(r) {
			t.Fatal("the follower does not use the state after Compact")
		}
	}
}

// TestStateFileFollowerCannotOpen: a follower that cannot read the state file
// (another user's, or mode 000) still follows, by scanning.
func TestStateFileFollowerCannotOpen(t *testing.T) {
	if os.Getuid() == 0 {
		t.Log("root reads any file: the mode-000 case only checks that the follower works")
	}
	path := filepath.Join(t.TempDir(), "s")
	w := ccOpen(t, path, nil)
	ccPut(t, w, "a", "1")
	if err := os.Chmod(statePath(path), 0); err != nil {
		t.Fatal(err)
	}
	r := ccOpen(t, path, &Options{ReadOnly: true})
	ccPut(t, w, "b", "2")
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	ccSameState(t, "follower without the state", r, map[string]string{"a": "1", "b": "2"})
}

// TestStateFileOtherBoot: a state written in another boot (a power cut may
// have lost the data it vouches for) is never trusted: recovery scans.
func TestStateFileOtherBoot(t *testing.T) {
	s, path := openT(t, nil)
	putT(t, s, "a", "1")
	s.Close()
	f, err := shm.Create(statePath(path), 0o644, uint32(os.Getuid()))
	if err != nil {
		t.Fatal(err)
	}
	c, ok := f.Load()
	if !ok {
		t.Fatal("no state after a writer's Close")
	}
	c.Boot = [2]uint64{c.Boot[0] ^ 1, c.Boot[1]}
	f.Store(c)
	f.Close()
	r := reopenT(t, path, &Options{ReadOnly: true})
	defer r.Close()
	if _, _, ok := r.stateHint(r.cur.Load(), r.Size()); ok {
		t.Fatal("stateHint trusted a state from another boot")
	}
	if getT(t, r, "a") != "1" {
		t.Fatal("the store after an untrusted state")
	}
}
