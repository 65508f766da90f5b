package simdr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Compact-kill test: a writer process applies batches (each sets "a"
// and "b" to its number i and adds key k<i>) and compacts every few of
// them, with background checkpoints on, while two follower processes
// Refresh and check what they see; the writer is SIGKILLed at a random
// moment (often inside a Compact), reopened by the test (with or without
// the state file and the checkpoint), written to and compacted again, and
// the followers must then Refresh to exactly the writer's state.

const (
	caCompactEnv = "SIMDR_CRASHATK_COMPACT" // "writer|path" or "follower|path"
	caPrefill    = ckMinEntries             // enough for a checkpoint at Close
)

func caVal(i int) []byte {
	n := 1 + (i*7919)%30000
	v := bytes.Repeat(fmt.Appendf(nil, "v%d|", i), n/2+1)
	return v[:n]
}

// caState checks s against the invariant the writer keeps and returns a:
// a == b, k0..ka present with their values, nothing else but the prefill.
// full checks every key, otherwise a sample.
func caState(s *Store, r *rand.Rand, full bool) (int, error) {
	ga, erra := s.Get([]byte("a"))
	gb, errb := s.Get([]byte("b"))
	a := -1
	switch {
	case errors.Is(erra, ErrNotFound) && errors.Is(errb, ErrNotFound):
	case erra != nil || errb != nil:
		return 0, fmt.Errorf("a: %v, b: %v", erra, errb)
	case !bytes.Equal(ga.Bytes(), gb.Bytes()):
		return 0, fmt.Errorf("torn batch: a=%q b=%q", ga.Bytes(), gb.Bytes())
	default:
		var err error
		if a, err = strconv.Atoi(string(ga.Bytes())); err != nil {
			return 0, fmt.Errorf("a = %q", ga.Bytes())
		}
	}
	extra := 0
	if a >= 0 {
		extra = 2
	}
	if n := s.Len(); n != caPrefill+a+1+extra {
		return a, fmt.Errorf("a=%d, Len %d, want %d", a, n, caPrefill+a+1+extra)
	}
	check := func(j int) error {
		e, err := s.Get(fmt.Appendf(nil, "k%d", j))
		if err != nil {
			return fmt.Errorf("a=%d: k%d: %v", a, j, err)
		}
		if !bytes.Equal(e.Bytes(), caVal(j)) {
			return fmt.Errorf("a=%d: k%d holds a wrong value (%d bytes)", a, j, len(e.Bytes()))
		}
		return nil
	}
	if s.Has(fmt.Appendf(nil, "k%d", a+1)) {
		return a, fmt.Errorf("a=%d, but k%d present", a, a+1)
	}
	if full {
		for j := 0; j <= a; j++ {
			if err := check(j); err != nil {
				return a, err
			}
		}
		if e, err := s.Get([]byte("p0")); err != nil || string(e.Bytes()) != "p0" {
			return a, fmt.Errorf("prefill p0: %v", err)
		}
		return a, s.Verify()
	}
	if a >= 0 {
		for _, j := range []int{a, r.IntN(a + 1)} {
			if err := check(j); err != nil {
				return a, err
			}
		}
	}
	return a, nil
}

// caWrite applies batch i to s.
func caWrite(s *Store, i int) error {
	var b Batch
	b.Put([]byte("a"), []byte(strconv.Itoa(i)))
	b.Put(fmt.Appendf(nil, "k%d", i), caVal(i))
	b.Put([]byte("b"), []byte(strconv.Itoa(i)))
	return s.Apply(&b)
}

// TestCrashAtkCompactFollowChild is the writer or a follower of
// TestCrashAtkCompactFollow; skipped unless re-executed by it.
func TestCrashAtkCompactFollowChild(t *testing.T) {
	spec := os.Getenv(caCompactEnv)
	if spec == "" {
		t.Skip("run by TestCrashAtkCompactFollow")
	}
	role, path, _ := strings.Cut(spec, "|")
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), 7))
	if role == "writer" {
		s, err := Open(path, &Options{CheckpointBytes: 256 << 10})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(3)
		}
		a, err := caState(s, r, false)
		if err != nil {
			fmt.Println("writer open:", err)
			os.Exit(3)
		}
		for i := a + 1; ; i++ {
			if err := caWrite(s, i); err != nil {
				fmt.Println("write:", err)
				os.Exit(3)
			}
			fmt.Printf("ack %d\n", i)
			if i%5 == 0 {
				fmt.Println("compact")
				if err := s.Compact(); err != nil {
					fmt.Println("compact:", err)
					os.Exit(3)
				}
			}
		}
	}
	s, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		fmt.Println("follower open:", err)
		os.Exit(3)
	}
	for {
		_, stopped := os.Stat(path + ".stop")
		if err := s.Refresh(); err != nil {
			fmt.Println("refresh:", err)
			os.Exit(4)
		}
		a, err := caState(s, r, stopped == nil)
		if err != nil {
			fmt.Println("follower:", err)
			os.Exit(4)
		}
		if stopped == nil {
			fmt.Printf("final %d %d\n", a, s.Len())
			s.Close()
			os.Exit(0)
		}
	}
}

func caSpawn(t *testing.T, role, path string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashAtkCompactFollowChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), caCompactEnv+"="+role+"|"+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

func TestCrashAtkCompactFollow(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SIMDR_CRASH_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (SIMDR_CRASH_SEED=%d to replay)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 3))
	dir := t.TempDir()
	path := filepath.Join(dir, "s.simdr")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	for j := range caPrefill {
		b.Put(fmt.Appendf(nil, "p%d", j), fmt.Appendf(nil, "p%d", j))
	}
	if err := s.Apply(&b); err != nil {
		t.Fatal(err)
	}
	s.Close() // writes a checkpoint
	if _, err := os.Stat(checkpointPath(path)); err != nil {
		t.Fatalf("no checkpoint after the prefill: %v", err)
	}
	acked, inCompact := -1, 0
	const rounds = 4
	for round := range rounds {
		os.Remove(path + ".stop")
		type follower struct {
			cmd *exec.Cmd
			out *bufio.Scanner
		}
		var fs []follower
		for range 2 {
			cmd, out := caSpawn(t, "follower", path)
			fs = append(fs, follower{cmd, out})
		}
		w, wout := caSpawn(t, "writer", path)
		kill := 3 + r.IntN(12) // acks before the kill
		n := 0
		for n < kill && wout.Scan() {
			line := wout.Text()
			if line == "compact" {
				continue
			}
			i, err := strconv.Atoi(strings.TrimPrefix(line, "ack "))
			if err != nil {
				t.Fatalf("round %d: writer: %s", round, line)
			}
			acked = i
			n++
		}
		time.Sleep(time.Duration(r.IntN(30)) * time.Millisecond) // often inside a Compact
		w.Process.Signal(syscall.SIGKILL)
		last := ""
		for wout.Scan() {
			last = wout.Text()
			if i, err := strconv.Atoi(strings.TrimPrefix(last, "ack ")); err == nil {
				acked = i // printed before the kill landed
			}
		}
		if last == "compact" {
			inCompact++
		}
		w.Wait()
		how := r.IntN(4)
		if how&1 != 0 {
			os.Remove(statePath(path))
		}
		if how&2 != 0 {
			os.Remove(checkpointPath(path))
		}
		what := fmt.Sprintf("round %d (kill after %d acks, last ack %d, state removed %v, checkpoint removed %v)", round, n, acked, how&1 != 0, how&2 != 0)
		s, err := Open(path, nil)
		if err != nil {
			t.Fatalf("%s: reopen: %v", what, err)
		}
		a, err := caState(s, r, true)
		if err != nil {
			t.Fatalf("%s: reopened: %v", what, err)
		}
		if a != acked && a != acked+1 {
			t.Fatalf("%s: reopened at a=%d", what, a)
		}
		for i := a + 1; i <= a+3; i++ {
			if err := caWrite(s, i); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Compact(); err != nil {
			t.Fatal(err)
		}
		acked = a + 3
		if err := caWrite(s, acked+1); err != nil {
			t.Fatal(err)
		}
		acked++
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(path+".stop", nil, 0o644)
		for k, f := range fs {
			var last string
			for f.out.Scan() {
				last = f.out.Text()
			}
			err := f.cmd.Wait()
			if err != nil || last != fmt.Sprintf("final %d %d", acked, caPrefill+acked+3) {
				t.Fatalf("%s: follower %d: %q, %v; want final %d", what, k, last, err, acked)
			}
		}
	}
	t.Logf("%d rounds, %d killed inside a Compact", rounds, inCompact)
}
