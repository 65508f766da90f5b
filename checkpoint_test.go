package simdr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/simdr-go/simdr/internal/format"
)

// ckModel fills a store with n keys (some overwritten, some deleted) and
// returns what it holds.
func ckModel(t testing.TB, s *Store, n int, seed uint64) map[string]string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	model := map[string]string{}
	var b Batch
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("k%d", r.IntN(n))
		if r.IntN(10) == 0 {
			b.Delete([]byte(k))
			delete(model, k)
		} else {
			v := fmt.Sprintf("v%d-%d", i, r.Uint64())
			b.Put([]byte(k), []byte(v))
			model[k] = v
		}
		if b.Len() == 1000 || i == n-1 {
			if err := s.Apply(&b); err != nil {
				t.Fatal(err)
			}
			b.Reset()
		}
	}
	return model
}

// checkStore compares s with model, and its counters with a store opened
// without the checkpoint.
func checkStore(t *testing.T, s *Store, model map[string]string) {
	t.Helper()
	checkModel(t, s, model)
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for e := range s.Entries() {
		_ = e
		n++
	}
	if n != len(model) || s.Len() != len(model) {
		t.Fatalf("Entries %d, Len %d, want %d", n, s.Len(), len(model))
	}
}

// statsWithoutCheckpoint opens path after moving its checkpoint away.
func statsWithoutCheckpoint(t *testing.T, path string) Stats {
	t.Helper()
	ck := checkpointPath(path)
	data, err := os.ReadFile(ck)
	if err == nil {
		os.Remove(ck)
		defer os.WriteFile(ck, data, 0o600)
	}
	s, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.Stats()
}

func TestCheckpointReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck")
	s := reopenT(t, path, nil)
	model := ckModel(t, s, 3*ckMinEntries, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(checkpointPath(path)); err != nil {
		t.Fatalf("Close wrote no checkpoint: %v", err)
	}
	s = reopenT(t, path, nil)
	if g := s.cur.Load(); g.ck == nil {
		t.Fatal("Open did not use the checkpoint")
	}
	checkStore(t, s, model)
	want := statsWithoutCheckpoint(t, path)
	got := s.Stats()
	got.IndexBytes, want.IndexBytes = 0, 0
	if got != want {
		t.Fatalf("stats with checkpoint %+v, without %+v", got, want)
	}
	// Writes after the checkpoint: walked on the next Open.
	putT(t, s, "after", "x")
	model["after"] = "x"
	s.Delete([]byte("k1"))
	delete(model, "k1")
	fi0, _ := os.Stat(checkpointPath(path))
	s.Close()
	fi1, _ := os.Stat(checkpointPath(path))
	if !os.SameFile(fi0, fi1) || !fi0.ModTime().Equal(fi1.ModTime()) {
		t.Fatal("a Close after two small writes rewrote the checkpoint")
	}
	s = reopenT(t, path, &Options{ReadOnly: true})
	checkStore(t, s, model)
	if tail, err := s.checkpointStats(); err != nil || tail >= s.Size() {
		t.Fatalf("checkpoint tail %d (%v), store %d: want the delta walked", tail, err, s.Size())
	}
}

// TestCheckpointDisposable: a checkpoint deleted, cut, filled with garbage,
// bit-flipped anywhere, or stale (the store appended to by another program,
// cut back, or replaced) never changes what Open shows.
func TestCheckpointDisposable(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	s := reopenT(t, base, nil)
	model := ckModel(t, s, 2*ckMinEntries, 2)
	s.Close()
	storeBytes, _ := os.ReadFile(base)
	ckBytes, err := os.ReadFile(checkpointPath(base))
	if err != nil {
		t.Fatal(err)
	}
	// An entry appended by a program that knows nothing of checkpoints.
	appended := format.AppendEntry(nil, int64(len(storeBytes)), Hash([]byte("rust")), []byte("appended"))
	cases := []struct {
		name  string
		ck    func() []byte
		store func() []byte
		extra map[string]string // expected changes to the model
		used  bool              // whether Open may use the checkpoint
	}{
		{name: "intact", ck: func() []byte { return ckBytes }, used: true},
		{name: "missing"},
		{name: "empty", ck: func() []byte { return nil }},
		{name: "header only", ck: func() []byte { return ckBytes[:ckHeaderSize] }},
		{name: "cut", ck: func() []byte { return ckBytes[:len(ckBytes)-64] }},
		{name: "garbage", ck: func() []byte {
			b := make([]byte, len(ckBytes))
			r := rand.New(rand.NewPCG(3, 3))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}},
		{name: "flipped header", ck: func() []byte { return flipped(ckBytes, 33) }},
		{name: "flipped table", ck: func() []byte { return flipped(ckBytes, ckHeaderSize+len(ckBytes)/3) }},
		{name: "flipped table end", ck: func() []byte { return flipped(ckBytes, len(ckBytes)-1) }},
		{name: "store appended", ck: func() []byte { return ckBytes },
			store: func() []byte { return append(bytes.Clone(storeBytes), appended...) },
			extra: map[string]string{"rust": "appended"}, used: true},
		{name: "store cut", ck: func() []byte { return ckBytes },
			store: func() []byte { return cutToEntries(t, storeBytes, 10) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			sb := storeBytes
			if c.store != nil {
				sb = c.store()
			}
			if err := os.WriteFile(path, sb, 0o644); err != nil {
				t.Fatal(err)
			}
			if c.ck != nil {
				if err := os.WriteFile(checkpointPath(path), c.ck(), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// The checkpoint names the base file's identity: rewrite it for
			// this copy, as if written for it, keeping the damage.
			if c.ck != nil && len(c.ck()) >= ckHeaderSize {
				retarget(t, path)
			}
			want := model
			if c.store != nil && c.extra == nil {
				want = modelOf(t, path)
			}
			if c.extra != nil {
				want = map[string]string{}
				for k, v := range model {
					want[k] = v
				}
				for k, v := range c.extra {
					want[k] = v
				}
			}
			for _, ro := range []bool{true, false} {
				s, err := Open(path, &Options{ReadOnly: ro})
				if err != nil {
					t.Fatal(err)
				}
				if used := s.cur.Load().ck != nil; used && !c.used {
					t.Fatalf("read-only %v: Open used a bad checkpoint", ro)
				}
				checkModel(t, s, want)
				if s.Len() != len(want) {
					t.Fatalf("Len %d, want %d", s.Len(), len(want))
				}
				s.Close()
			}
		})
	}
}

// TestCheckpointAfterCompact: Compact makes a new file; the old checkpoint
// no longer matches it and is not used.
func TestCheckpointAfterCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c")
	s := reopenT(t, path, nil)
	model := ckModel(t, s, 2*ckMinEntries, 4)
	s.Close()
	s = reopenT(t, path, &Options{CheckpointBytes: -1})
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	putT(t, s, "new", "1")
	model["new"] = "1"
	s.Close()
	s = reopenT(t, path, nil)
	checkStore(t, s, model)
	s.Close()
}

// TestCheckpointBackground: background checkpoints taken while writes go on
// (each covering a tail noted before the copy, possibly holding later
// states) give the exact index once what follows is replayed.
func TestCheckpointBackground(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b")
	s := reopenT(t, path, &Options{CheckpointBytes: 1 << 20})
	model := ckModel(t, s, 4*ckMinEntries, 5)
	s.ckWG.Wait()
	if s.ckTail == 0 {
		t.Fatal("no background checkpoint was taken")
	}
	// Reopen read-only beside the writer: it loads the background checkpoint.
	r := reopenT(t, path, &Options{ReadOnly: true})
	if r.cur.Load().ck == nil {
		t.Fatal("the follower did not use the background checkpoint")
	}
	checkStore(t, r, model)
	r.Close()
	s.Close()
}

func flipped(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x10
	return c
}

// cutToEntries cuts a store image to its first n entries.
func cutToEntries(t *testing.T, data []byte, n int) []byte {
	var ends []int64
	format.Walk(data, 0, int64(len(data)), func(e format.Entry) bool {
		ends = append(ends, e.Next())
		return true
	})
	return bytes.Clone(data[:ends[len(ends)-n]])
}

// retarget rewrites the identity in path's checkpoint header to path's
// file, keeping everything else (damage included) as it is.
func retarget(t *testing.T, path string) {
	t.Helper()
	ck := checkpointPath(path)
	b, err := os.ReadFile(ck)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := decodeCkHeader(b)
	if !ok {
		return // a damaged header stays damaged
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	h.dev, h.ino, _, _ = fileID(fi)
	copy(b, h.encode()[:ckHeaderSize])
	if err := os.WriteFile(ck, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// modelOf reads every live key of the store at path, opened without any
// checkpoint, as a model keyed like ckModel's keys.
func modelOf(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(tmp, data, 0o644)
	s, err := Open(tmp, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := map[string]string{}
	for i := 0; i < 4*ckMinEntries; i++ {
		k := fmt.Sprintf("k%d", i)
		if e, err := s.Get([]byte(k)); err == nil {
			m[k] = string(e.Bytes())
		}
	}
	return m
}

const ckCrashEnv = "SIMDR_CKCRASH_CHILD"

// TestCheckpointCrashChild is the child of TestCheckpointCrash: it writes
// batches with background checkpoints every 256 KiB, printing "ack N" after
// each batch N returns, until it is killed.
func TestCheckpointCrashChild(t *testing.T) {
	path := os.Getenv(ckCrashEnv)
	if path == "" {
		t.Skip("child of TestCheckpointCrash")
	}
	s, err := Open(path, &Options{CheckpointBytes: 256 << 10})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var b Batch
	for n := 0; ; n++ {
		for i := 0; i < 500; i++ {
			k := (n*500 + i) % 150_000
			b.Put(fmt.Appendf(nil, "k%d", k), fmt.Appendf(nil, "v%d-%d", k, n))
		}
		if n%7 == 3 {
			b.Delete(fmt.Appendf(nil, "k%d", (n*500+1)%150_000))
		}
		if err := s.Apply(&b); err != nil {
			fmt.Println("apply:", err)
			os.Exit(2)
		}
		b.Reset()
		fmt.Printf("ack %d\n", n)
	}
}

// ckCrashModel is the state after batches 0..acked of the child.
func ckCrashModel(acked int) map[string]string {
	m := map[string]string{}
	for n := 0; n <= acked; n++ {
		for i := 0; i < 500; i++ {
			k := (n*500 + i) % 150_000
			m[fmt.Sprintf("k%d", k)] = fmt.Sprintf("v%d-%d", k, n)
		}
		if n%7 == 3 {
			delete(m, fmt.Sprintf("k%d", (n*500+1)%150_000))
		}
	}
	return m
}

// TestCheckpointCrash: SIGKILL a writer that takes background checkpoints;
// the reopened store (checkpoint plus the walk of what follows it) holds
// every acknowledged batch, and at most the one in flight besides.
func TestCheckpointCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "crash")
	for round, kills := range []int{300, 420, 700} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCheckpointCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), ckCrashEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		acked := -1
		for sc.Scan() {
			if _, err := fmt.Sscanf(sc.Text(), "ack %d", &acked); err != nil {
				t.Fatalf("child: %s", sc.Text())
			}
			if acked == kills {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() {
			fmt.Sscanf(sc.Text(), "ack %d", &acked)
		}
		cmd.Wait()
		s, err := Open(path, &Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if s.cur.Load().ck == nil {
			t.Errorf("round %d: no checkpoint was used", round)
		}
		want, next := ckCrashModel(acked), ckCrashModel(acked+1)
		if s.Len() != len(want) && s.Len() != len(next) {
			t.Fatalf("round %d: Len %d, want %d or %d", round, s.Len(), len(want), len(next))
		}
		m := want
		if e, err := s.Get(fmt.Appendf(nil, "k%d", ((acked+1)*500)%150_000)); err == nil &&
			string(e.Bytes()) == fmt.Sprintf("v%d-%d", ((acked+1)*500)%150_000, acked+1) {
			m = next // the batch in flight made it whole
		}
		checkModel(t, s, m)
		s.Close()
		// The writer's own Open (it recovers the file) agrees; the next round
		// goes on from this state.
		w := reopenT(t, path, nil)
		checkModel(t, w, m)
		w.Close()
		os.Remove(path) // each round starts afresh: the model has no memory
		os.Remove(checkpointPath(path))
	}
}

// TestCheckpointForged: a checkpoint whose checksums hold but whose
// positions point past its tail (crafted, not damaged) is refused, so no
// Get can read outside the file.
func TestCheckpointForged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	s := reopenT(t, path, nil)
	model := ckModel(t, s, 2*ckMinEntries, 6)
	s.Close()
	b, err := os.ReadFile(checkpointPath(path))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := decodeCkHeader(b)
	table := b[ckHeaderSize:]
	for i := 0; i+16 <= len(table); i += 16 {
		if v := byteOrder.Uint64(table[i+8:]); v != 0 {
			byteOrder.PutUint64(table[i+8:], v|0xfff_ffff_ffff) // far past the file
			break
		}
	}
	h.tableCRC = crc32.ChecksumIEEE(table)
	copy(b, h.encode())
	os.WriteFile(checkpointPath(path), b, 0o600)
	s = reopenT(t, path, nil)
	if s.cur.Load().ck != nil {
		t.Fatal("Open used a forged checkpoint")
	}
	checkStore(t, s, model)
	s.Close()
}

// errNoCheckpoint is what a checkpoint that cannot be used reports.
var errNoCheckpoint = errors.New("no usable checkpoint")

// checkpointStats describes the checkpoint beside a store, for tests:
// whether one exists and matches, and the tail it covers.
func (s *Store) checkpointStats() (tail int64, err error) {
	g := s.cur.Load()
	if g == nil {
		return 0, ErrClosed
	}
	ck := s.openCheckpoint(g, g.tail.Load())
	if ck == nil {
		return 0, errNoCheckpoint
	}
	defer ck.close()
	return ck.h.tail, nil
}
