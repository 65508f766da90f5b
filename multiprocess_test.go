package simdr

// Tests that run the test binary again as a child process: a writer in another
// process while this one follows it read-only, then takes over as the writer.
// The child is a test function that skips unless ccChildEnv names its role.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ccChildEnv names the role a re-executed test binary plays; ccPathEnv the
// store file it works on.
const (
	ccChildEnv = "SIMDR_CONC_CHILD"
	ccPathEnv  = "SIMDR_CONC_PATH"
	ccArgEnv   = "SIMDR_CONC_ARG"
)

// ccHang is how long a parent waits for a child's line before giving up: a
// guard against hangs, not a timing assertion.
const ccHang = 2 * time.Minute

// ccProc is a running child process and the lines it printed on stdout.
type ccProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex
	cond   *sync.Cond
	lines  []string
	eof    bool
	stderr bytes.Buffer  // written by exec's copier; read after Wait
	exited chan struct{} // closed once the child has exited; err is then set
	err    error
}

// ccStartChild runs the test binary's test function test in role, on path.
func ccStartChild(t *testing.T, test, role, path, arg string) *ccProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), ccChildEnv+"="+role, ccPathEnv+"="+path, ccArgEnv+"="+arg)
	p := &ccProc{t: t, cmd: cmd, exited: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	cmd.Stderr = &p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.cond.Broadcast()
			p.mu.Unlock()
		}
		p.mu.Lock()
		p.eof = true
		p.cond.Broadcast()
		p.mu.Unlock()
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.stdin.Close()
		p.wait()
	})
	return p
}

// waitLine waits until the child has printed a line starting with prefix and
// returns it; it fails the test if the child exits first.
func (p *ccProc) waitLine(prefix string) string {
	p.t.Helper()
	timer := time.AfterFunc(ccHang, func() {
		p.mu.Lock()
		p.eof = true // wake the waiter up; it reports the hang
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; ; {
		for ; i < len(p.lines); i++ {
			if strings.HasPrefix(p.lines[i], prefix) {
				return p.lines[i]
			}
		}
		if p.eof {
			p.t.Fatalf("child did not print %q; stdout:\n%s", prefix, strings.Join(p.lines, "\n"))
		}
		p.cond.Wait()
	}
}

// snapshot returns the lines printed so far.
func (p *ccProc) snapshot() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines[:len(p.lines):len(p.lines)]
}

// wait waits for the child to exit and returns its exit error.
func (p *ccProc) wait() error {
	select {
	case <-p.exited:
		return p.err
	case <-time.After(ccHang):
		p.cmd.Process.Kill()
		return errors.New("child did not exit")
	}
}

// ccChildPath is the store file a child works on; it skips the test when the
// binary is not running as a child in role.
func ccChildPath(t *testing.T, role string) string {
	if os.Getenv(ccChildEnv) != role {
		t.Skip("runs only as a child process of another test")
	}
	return os.Getenv(ccPathEnv)
}

// ccMPValue is the value the multi-process writer stores at op number op: its
// header names the key and op, the rest is filler derived from both and the
// position, so a reader can tell whether any value it sees is whole (its
// checksum) and which op wrote it (header and filler).
func ccMPValue(key, op, size int) []byte {
	v := make([]byte, max(size, 24))
	copy(v, fmt.Sprintf("%08d:%012d:", key, op))
	ccFill(v[24:], 24, uint64(key)<<32^uint64(op))
	return v
}

// ccFill fills dst with the filler bytes for positions off, off+1, ... of a
// value: each derived from seed and the position alone.
func ccFill(dst []byte, off int, seed uint64) {
	j := 0
	for ; j < len(dst) && (off+j)%8 != 0; j++ {
		p := off + j
		dst[j] = byte(ccMix(seed^uint64(p/8)) >> (8 * (p % 8)))
	}
	for ; j+8 <= len(dst); j += 8 {
		binary.LittleEndian.PutUint64(dst[j:], ccMix(seed^uint64((off+j)/8)))
	}
	for ; j < len(dst); j++ {
		p := off + j
		dst[j] = byte(ccMix(seed^uint64(p/8)) >> (8 * (p % 8)))
	}
}

// ccMix is splitmix64's finalizer.
func ccMix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// ccMPParse checks a value written by ccMPValue and returns its key and op. It
// checks the filler at both ends; the checksum vouches for the middle.
func ccMPParse(v []byte) (key, op int, err error) {
	if len(v) < 24 || v[8] != ':' || v[21] != ':' {
		return 0, 0, fmt.Errorf("value of %d bytes has no header", len(v))
	}
	key, err1 := strconv.Atoi(string(v[:8]))
	op, err2 := strconv.Atoi(string(v[9:21]))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad header %q", v[:24])
	}
	var want [256]byte
	for _, from := range []int{24, max(24, len(v)-len(want))} {
		w := want[:min(len(want), len(v)-from)]
		ccFill(w, from, uint64(key)<<32^uint64(op))
		if !bytes.Equal(v[from:from+len(w)], w) {
			return 0, 0, fmt.Errorf("value of key %d op %d (%d bytes): filler at %d differs", key, op, len(v), from)
		}
	}
	return key, op, nil
}

func ccMPKey(k int) []byte { return []byte(fmt.Sprintf("mp-key-%d", k)) }

// ccMPKeys is how many keys the multi-process writer works on.
const ccMPKeys = 300

// TestMultiProcessWriterChild is the writer of TestMultiProcessFollow, run in
// a child process until it is killed. Every op it writes is numbered; before
// writing it announces the op ("OP n P key size", "OP n D key", "OP n C" for a
// Compact; a batch announces each of its ops), and once the write returns it
// prints "ACK n" with the number of the last op written.
func TestMultiProcessWriterChild(t *testing.T) {
	path := ccChildPath(t, "mp-writer")
	s, err := Open(path, nil)
	if err != nil {
		fmt.Printf("FAIL open: %v\n", err)
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "READY")
	out.Flush()
	r := rand.New(rand.NewPCG(1, 2))
	size := func() int {
		switch x := r.IntN(100); {
		case x < 2:
			return 300<<10 + r.IntN(100<<10) // written straight from the caller's slice
		case x < 10:
			return 2000 + r.IntN(20000)
		default:
			return 24 + r.IntN(200)
		}
	}
	live := make(map[int]bool)
	var b Batch
	for op := 1; ; {
		k := r.IntN(ccMPKeys)
		first := op
		switch x := r.IntN(100); {
		case x < 60:
			n := size()
			fmt.Fprintf(out, "OP %d P %d %d\n", op, k, n)
			out.Flush()
			err = s.Put(ccMPKey(k), ccMPValue(k, op, n))
			live[k] = true
			op++
		case x < 72:
			if !live[k] {
				continue
			}
			fmt.Fprintf(out, "OP %d D %d\n", op, k)
			out.Flush()
			err = s.Delete(ccMPKey(k))
			delete(live, k)
			op++
		case x < 84:
			b.Reset()
			for i, n := 0, 1+r.IntN(8); i < n; i++ {
				k := r.IntN(ccMPKeys)
				if live[k] && r.IntN(3) == 0 {
					b.Delete(ccMPKey(k))
					delete(live, k)
					fmt.Fprintf(out, "OP %d D %d\n", op, k)
				} else {
					n := size()
					b.Put(ccMPKey(k), ccMPValue(k, op, n))
					live[k] = true
					fmt.Fprintf(out, "OP %d P %d %d\n", op, k, n)
				}
				op++
			}
			out.Flush()
			err = s.Apply(&b)
		case x < 85:
			n := 1<<20 + r.IntN(1<<20) // more than PutReader's 1 MiB chunk
			fmt.Fprintf(out, "OP %d P %d %d\n", op, k, n)
			out.Flush()
			_, err = s.PutReader(ccMPKey(k), bytes.NewReader(ccMPValue(k, op, n)))
			live[k] = true
			op++
		case x < 86:
			fmt.Fprintf(out, "OP %d C\n", op)
			out.Flush()
			err = s.Compact()
			op++
		default:
			if e, err := s.Get(ccMPKey(k)); err == nil {
				if _, _, err := ccMPParse(e.Bytes()); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		if err != nil {
			fmt.Fprintf(out, "FAIL op %d: %v\n", first, err)
			out.Flush()
			t.Fatal(err)
		}
		fmt.Fprintf(out, "ACK %d\n", op-1)
		out.Flush()
	}
}

// ccMPOp is one op the child writer announced.
type ccMPOp struct {
	kind byte // 'P', 'D' or 'C'
	key  int
}

// ccMPHistory holds the ops the child announced, in order, and how many it
// acknowledged; it tells whether a state a reader saw is the state after
// some prefix of the ops.
type ccMPHistory struct {
	ops   []ccMPOp // op n is ops[n-1]
	acked int
	fail  string
}

// add takes in the child's lines.
func (h *ccMPHistory) add(lines []string) {
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[0] == "OP":
			n, _ := strconv.Atoi(f[1])
			o := ccMPOp{kind: f[2][0]}
			if o.kind != 'C' && len(f) >= 4 {
				o.key, _ = strconv.Atoi(f[3])
			}
			if n == len(h.ops)+1 {
				h.ops = append(h.ops, o)
			}
		case len(f) == 2 && f[0] == "ACK":
			h.acked, _ = strconv.Atoi(f[1])
		case len(f) > 0 && f[0] == "FAIL":
			h.fail = l
		}
	}
}

// match returns the smallest prefix length P >= from at which the key state
// after ops[:P] is seen (key → op number of its value), or -1.
func (h *ccMPHistory) match(seen map[int]int, from int) int {
	state := make(map[int]int)
	diff := len(seen) // keys whose state differs from seen
	mismatch := func(k int) bool { return state[k] != seen[k] }
	for p := 0; p <= len(h.ops); p++ {
		if p > 0 {
			if o := h.ops[p-1]; o.kind != 'C' {
				before := mismatch(o.key)
				if o.kind == 'P' {
					state[o.key] = p
				} else {
					delete(state, o.key)
				}
				if after := mismatch(o.key); before != after {
					if after {
						diff++
					} else {
						diff--
					}
				}
			}
		}
		if p >= from && diff == 0 {
			return p
		}
	}
	return -1
}

// ccSeen reads the state of s (key → op of its value), checking every value
// it meets is whole.
func ccSeen(t *testing.T, s *Store) map[int]int {
	t.Helper()
	seen := make(map[int]int)
	for e := range s.Entries() {
		if err := e.Verify(); err != nil {
			t.Fatalf("entry %v: %v", e, err)
		}
		k, op, err := ccMPParse(e.Bytes())
		if err != nil {
			t.Fatalf("entry %v: %v", e, err)
		}
		if e.KeyHash() != Hash(ccMPKey(k)) {
			t.Fatalf("value of key %d stored under another key's hash", k)
		}
		if _, dup := seen[k]; dup {
			t.Fatalf("key %d seen twice", k)
		}
		seen[k] = op
	}
	if len(seen) != s.Len() {
		t.Fatalf("Entries gave %d keys, Len says %d", len(seen), s.Len())
	}
	return seen
}

// TestMultiProcessFollow: a child process writes (puts of every size, deletes,
// batches, streamed values, compactions) and reports each acknowledged op,
// while this process follows it read-only with Refresh in a loop. Every state
// the follower sees must be whole (every value verifies) and must be the state
// after some prefix of the child's ops that includes every op acknowledged
// before the Refresh began. The child is then killed mid-write; this process
// opens the file as the writer and must find the state after a prefix that
// includes every acknowledged op.
func TestMultiProcessFollow(t *testing.T) {
	if os.Getenv(ccChildEnv) != "" {
		t.Skip("not in a child")
	}
	path := filepath.Join(t.TempDir(), "mp.simdr")
	child := ccStartChild(t, "TestMultiProcessWriterChild", "mp-writer", path, "0")
	child.waitLine("READY")

	// While the child writes, a second writer is locked out.
	if _, err := Open(path, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer open beside the child: %v, want ErrLocked", err)
	}
	r, err := Open(path, &Options{ReadOnly: true, VerifyChecksums: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	var (
		hist     ccMPHistory
		nread    int
		refresh  int
		kept     []Entry // entries from earlier states, read again at the end
		keptCopy [][]byte
		compacts int
	)
	// Follow until both enough refreshes and enough of the child's ops (so
	// enough compactions) have gone by.
	rounds, minOps := 200, 4000
	switch {
	case ccLong():
		rounds, minOps = 2000, 60000
	case testing.Short():
		rounds, minOps = 50, 1000
	}
	for refresh < rounds || hist.acked < minOps {
		lines := child.snapshot()
		hist.add(lines[nread:])
		nread = len(lines)
		if hist.fail != "" {
			t.Fatalf("child: %s", hist.fail)
		}
		acked := hist.acked
		if err := r.Refresh(); err != nil {
			t.Fatalf("refresh %d: %v", refresh, err)
		}
		refresh++
		seen := ccSeen(t, r)
		// The state seen is after a prefix of the ops no shorter than what was
		// acknowledged before Refresh; the ops it includes may not all be
		// acknowledged yet: wait for their lines.
		for {
			p := hist.match(seen, acked)
			if p >= 0 {
				break
			}
			lines := child.snapshot()
			if len(lines) == nread {
				child.mu.Lock()
				eof := child.eof
				child.mu.Unlock()
				if eof {
					t.Fatalf("refresh %d: state of %d keys is not the state after a prefix of %d..%d ops", refresh, len(seen), acked, len(hist.ops))
				}
				time.Sleep(time.Millisecond)
			}
			hist.add(lines[nread:])
			nread = len(lines)
		}
		if refresh%10 == 0 {
			for e := range r.Entries() {
				kept = append(kept, e)
				keptCopy = append(keptCopy, bytes.Clone(e.Bytes()))
				break
			}
		}
		if refresh%25 == 0 {
			time.Sleep(20 * time.Millisecond) // let the child get ahead
		}
	}
	for _, o := range hist.ops {
		if o.kind == 'C' {
			compacts++
		}
	}

	// Kill the writer mid-write: every acknowledged op is in the page cache.
	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.wait()
	hist.add(child.snapshot()[nread:])
	if hist.fail != "" {
		t.Fatalf("child: %s", hist.fail)
	}

	// The follower's old slices, into files the child has since compacted
	// away, are still whole.
	for i, e := range kept {
		if !bytes.Equal(e.Bytes(), keptCopy[i]) {
			t.Fatalf("slice kept from an earlier refresh changed")
		}
	}

	w, err := Open(path, nil)
	if err != nil {
		t.Fatalf("writer open after the child died: %v", err)
	}
	defer w.Close()
	if err := w.Verify(); err != nil {
		t.Fatal(err)
	}
	seen := ccSeen(t, w)
	if p := hist.match(seen, hist.acked); p < 0 {
		t.Fatalf("after the child died: state of %d keys is not the state after a prefix of %d..%d ops", len(seen), hist.acked, len(hist.ops))
	}
	// The follower catches up with what the new writer sees.
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	rs := ccSeen(t, r)
	if len(rs) != len(seen) {
		t.Fatalf("follower sees %d keys, writer %d", len(rs), len(seen))
	}
	for k, op := range seen {
		if rs[k] != op {
			t.Fatalf("key %d: follower sees op %d, writer %d", k, rs[k], op)
		}
	}
	t.Logf("%d refreshes over %d acknowledged ops (%d compactions); %d live keys at the end", refresh, hist.acked, compacts, len(seen))
}
