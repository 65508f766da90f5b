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

	"github.com/simdr-go/simdr/internal/format"
)

// The crash test runs a child process (this test binary, re-executed into
// TestCrashChild) that applies a random, seeded sequence of Puts, Deletes,
// batches, PutReaders and (in some rounds) Compacts, printing "ack N" on
// stdout after operation N returns. The parent regenerates the same sequence,
// kills the child with SIGKILL at a random moment, reopens the file and checks
// it against its model. See docs/reliability.md for what is asserted.

const (
	relCrashEnv       = "SIMDR_CRASH_CHILD" // "path|seed|sync|compact"
	relCrashLives     = 4                   // kills per file before starting a fresh one
	relCrashMaxBefore = 120                 // kill after at most this many acks
)

// Kinds of crash-test operations.
const (
	relCopPut = iota
	relCopDel
	relCopBatch
	relCopReader
	relCopCompact
	relCopRename
)

type relCrashElem struct {
	key []byte
	val []byte // nil: a delete
}

type relCrashOp struct {
	kind  int
	elems []relCrashElem // one for put, delete and reader; many for a batch
}

// relModelEntry is an entry the model expects in the file: a value, or a
// tombstone when val is nil.
type relModelEntry struct {
	h   uint64
	val []byte
}

// relCrashGen yields the operations of one child life, the same in the parent
// and the child.
type relCrashGen struct {
	r       *rand.Rand
	compact bool
}

func relNewCrashGen(seed uint64, compact bool) *relCrashGen {
	return &relCrashGen{r: rand.New(rand.NewPCG(seed, 0x5eed)), compact: compact}
}

func relCrashValue(r *rand.Rand) []byte {
	var n int
	switch p := r.IntN(100); {
	case p < 70:
		n = 1 + r.IntN(200)
	case p < 90:
		n = 200 + r.IntN(8000)
	case p < 98:
		n = 8000 + r.IntN(64000)
	default:
		n = directWrite + r.IntN(200<<10) // written straight from the caller's slice
	}
	v := make([]byte, n)
	if r.IntN(20) != 0 || n == 1 { // else: an all-zero value
		for i := 0; i < n; i += 8 {
			var w [8]byte
			u := r.Uint64()
			for j := range w {
				w[j] = byte(u >> (8 * j))
			}
			copy(v[i:], w[:])
		}
	}
	if !format.ValueOK(v) {
		v[0] = 1
	}
	return v
}

func (g *relCrashGen) key() []byte { return fmt.Appendf(nil, "k%d", g.r.IntN(48)) }

func (g *relCrashGen) next() relCrashOp {
	r := g.r
	p := r.IntN(100)
	switch {
	case g.compact && p < 3:
		return relCrashOp{kind: relCopCompact}
	case p < 8:
		return relCrashOp{kind: relCopRename, elems: []relCrashElem{{key: g.key()}, {key: g.key()}}}
	case p < 45:
		return relCrashOp{kind: relCopPut, elems: []relCrashElem{{g.key(), relCrashValue(r)}}}
	case p < 62:
		return relCrashOp{kind: relCopDel, elems: []relCrashElem{{key: g.key()}}}
	case p < 88:
		n := 1 + r.IntN(16)
		large := p >= 84 // 1 to 4 MiB: written in several calls
		if large {
			n = 8 + r.IntN(32)
		}
		op := relCrashOp{kind: relCopBatch}
		for range n {
			switch {
			case r.IntN(10) < 3:
				op.elems = append(op.elems, relCrashElem{key: g.key()})
			case large:
				v := relCrashValue(r)
				for len(v) < 60<<10 {
					v = append(v, relCrashValue(r)...)
				}
				op.elems = append(op.elems, relCrashElem{g.key(), v[:min(len(v), 150<<10)]})
			default:
				op.elems = append(op.elems, relCrashElem{g.key(), relCrashValue(r)})
			}
		}
		return op
	default:
		return relCrashOp{kind: relCopReader, elems: []relCrashElem{{g.key(), relCrashValue(r)}}}
	}
}

// entries returns the entries op appends to a store holding m (a delete of a
// key without a value appends nothing). m is not changed.
func (op relCrashOp) entries(m map[uint64][]byte) []relModelEntry {
	if op.kind == relCopRename {
		from, to := Hash(op.elems[0].key), Hash(op.elems[1].key)
		v, ok := m[from]
		if !ok || from == to {
			return nil
		}
		return []relModelEntry{{to, v}, {h: from}}
	}
	var out []relModelEntry
	over := map[uint64]bool{} // liveness changed within the op
	for _, e := range op.elems {
		h := Hash(e.key)
		if e.val != nil {
			out = append(out, relModelEntry{h, e.val})
			over[h] = true
			continue
		}
		live, ok := over[h]
		if !ok {
			_, live = m[h]
		}
		if live {
			out = append(out, relModelEntry{h: h})
		}
		over[h] = false
	}
	return out
}

func relApplyEntries(m map[uint64][]byte, es []relModelEntry) {
	for _, e := range es {
		if e.val == nil {
			delete(m, e.h)
		} else {
			m[e.h] = e.val
		}
	}
}

func (op relCrashOp) run(s *Store, b *Batch) error {
	switch op.kind {
	case relCopPut:
		return s.Put(op.elems[0].key, op.elems[0].val)
	case relCopDel:
		return s.Delete(op.elems[0].key)
	case relCopReader:
		_, err := s.PutReader(op.elems[0].key, bytes.NewReader(op.elems[0].val))
		return err
	case relCopCompact:
		return s.Compact()
	case relCopRename:
		err := s.Rename(op.elems[0].key, op.elems[1].key)
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrSameKey) {
			return nil // nothing written, as the model expects
		}
		return err
	}
	b.Reset()
	for _, e := range op.elems {
		if e.val == nil {
			b.Delete(e.key)
		} else {
			b.Put(e.key, e.val)
		}
	}
	return s.Apply(b)
}

// TestCrashChild is the child process of TestCrash; it is skipped unless
// re-executed by it.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(relCrashEnv)
	if spec == "" {
		t.Skip("run by TestCrash")
	}
	f := strings.Split(spec, "|")
	seed, _ := strconv.ParseUint(f[1], 10, 64)
	s, err := Open(f[0], &Options{SyncWrites: f[2] == "1"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	g := relNewCrashGen(seed, f[3] == "1")
	var b Batch
	for i := 0; ; i++ {
		op := g.next()
		if op.kind == relCopBatch || op.kind == relCopReader {
			fmt.Fprintf(os.Stdout, "begin %d\n", i) // a cue for the parent to kill mid-write
		}
		if err := op.run(s, &b); err != nil {
			fmt.Fprintf(os.Stderr, "child op %d: %v\n", i, err)
			os.Exit(3)
		}
		fmt.Fprintf(os.Stdout, "ack %d\n", i)
	}
}

// relSnapshot reads every live entry of s, checking each one's checksum.
func relSnapshot(t *testing.T, s *Store) map[uint64][]byte {
	t.Helper()
	m := map[uint64][]byte{}
	for e := range s.Entries() {
		if err := e.Verify(); err != nil {
			t.Fatalf("entry %v: %v", e, err)
		}
		if _, dup := m[e.KeyHash()]; dup {
			t.Fatalf("key hash %x listed twice", e.KeyHash())
		}
		m[e.KeyHash()] = bytes.Clone(e.Bytes())
	}
	if s.Len() != len(m) {
		t.Fatalf("Len() = %d, Entries yielded %d", s.Len(), len(m))
	}
	if err := s.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return m
}

func relSameState(a, b map[uint64][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for h, v := range a {
		if w, ok := b[h]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SIMDR_CRASH_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (SIMDR_CRASH_SEED=%d to replay)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 1))
	var (
		path      string
		model     map[uint64][]byte
		start     int64 // the file's size when the current life began
		stats     [2]int
		inFlight  int // rounds that showed part or all of the in-flight operation
		totalAcks int
		midBatch  int // rounds that showed a strict prefix of a batch
		repaired  int // rounds whose file held no valid chain (the first append torn)
		torn      int // rounds that left a torn write for Open to cut
	)
	for round := range crashRounds {
		life := round % relCrashLives
		group := round / relCrashLives
		sync, compact := group%2 == 1, group%4 >= 2
		if life == 0 {
			path = filepath.Join(t.TempDir(), "crash.simdr")
			model, start = map[uint64][]byte{}, 0
		}
		opSeed := r.Uint64()
		acks := relCrashRound(t, r, path, opSeed, sync, compact)
		stats[relB2i(sync)]++
		totalAcks += acks

		// Regenerate the child's operations: acks of them returned.
		g := relNewCrashGen(opSeed, compact)
		var expect []relModelEntry // every entry appended by the acknowledged ops
		compacted := false
		for range acks {
			op := g.next()
			compacted = compacted || op.kind == relCopCompact
			es := op.entries(model)
			expect = append(expect, es...)
			relApplyEntries(model, es)
		}
		flight := g.next()
		fes := flight.entries(model)
		compacted = compacted || flight.kind == relCopCompact
		what := fmt.Sprintf("round %d (sync=%v compact=%v, %d acks, in flight: kind %d, %d entries)",
			round, sync, compact, acks, flight.kind, len(fes))

		raw, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		// A read-only open shows the same and leaves the file as it is.
		ro, err := Open(path, &Options{ReadOnly: true})
		var roState map[uint64][]byte
		if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: read-only open: %v", what, err)
		}
		if err == nil {
			roState = relSnapshot(t, ro)
			ro.Close()
			if after, _ := os.ReadFile(path); !bytes.Equal(after, raw) {
				t.Fatalf("%s: a read-only open changed the file", what)
			}
		}
		s, err := Open(path, nil)
		if err != nil {
			// Only a crash in the very first append of a new file leaves no
			// valid chain; Repair cuts it back.
			if !errors.Is(err, ErrCorrupt) || start != 0 || acks != 0 {
				t.Fatalf("%s: reopen: %v", what, err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, raw) {
				t.Fatalf("%s: a failed open changed the file", what)
			}
			repaired++
			if s, err = Open(path, &Options{Repair: true}); err != nil {
				t.Fatalf("%s: repair: %v", what, err)
			}
		}
		got := relSnapshot(t, s)
		if roState != nil && !relSameState(roState, got) {
			t.Fatalf("%s: the read-only open showed %d keys, the writer %d", what, len(roState), len(got))
		}
		// got must be the model after the acknowledged operations and a
		// prefix (possibly empty, possibly whole) of the one in flight.
		j := -1
		for k := 0; k <= len(fes); k++ {
			if relSameState(got, model) {
				j = k
				break
			}
			if k < len(fes) {
				relApplyEntries(model, fes[k:k+1])
			}
		}
		if j < 0 {
			t.Fatalf("%s: the reopened store (%d keys) is no prefix of the operations", what, len(got))
		}
		model = got
		if j > 0 {
			inFlight++
		}
		if j > 0 && j < len(fes) {
			midBatch++
		}
		size := s.Size()
		if int64(len(raw)) > size {
			torn++
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() != size {
			t.Fatalf("%s: file not cut back to its tail %d: %v %v", what, size, fi.Size(), err)
		}
		if !compacted {
			// Without a Compact the file must hold exactly the entries appended,
			// in order: those of the acknowledged operations, then a prefix of
			// the in-flight one's.
			relCheckEntryPrefix(t, what, s, start, expect, fes)
		}
		start = size
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d crash rounds (%d without SyncWrites, %d with), %d acknowledged operations; %d rounds showed part or all of the operation in flight, %d a strict prefix of a batch, %d a torn write, %d needed Repair",
		crashRounds, stats[0], stats[1], totalAcks, inFlight, midBatch, torn, repaired)
}

func relB2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// relCheckEntryPrefix walks the chain of s from its tail down to start and
// compares the entries with expect followed by a prefix of flight.
func relCheckEntryPrefix(t *testing.T, what string, s *Store, start int64, expect, flight []relModelEntry) {
	t.Helper()
	g := s.cur.Load()
	data := g.m.Bytes()[:s.Size()]
	var got []format.Entry
	end := s.Size()
	format.Walk(data, start, s.Size(), func(e format.Entry) bool {
		got = append(got, e)
		end = e.Prev
		return true
	})
	if end != start {
		t.Fatalf("%s: chain from %d ends at %d, not at %d", what, s.Size(), end, start)
	}
	if len(got) < len(expect) || len(got) > len(expect)+len(flight) {
		t.Fatalf("%s: %d entries appended, want %d to %d", what, len(got), len(expect), len(expect)+len(flight))
	}
	all := append(append([]relModelEntry(nil), expect...), flight...)
	for i := range got {
		e, w := got[len(got)-1-i], all[i]
		if e.Hash != w.h || e.Tombstone != (w.val == nil) || (w.val != nil && !bytes.Equal(data[e.Start:e.End], w.val)) {
			t.Fatalf("%s: entry %d (at %d) is not the one written", what, i, e.Start)
		}
	}
}

// relCrashRound runs one child life and kills it; it returns how many operations
// the child acknowledged.
func relCrashRound(t *testing.T, r *rand.Rand, path string, seed uint64, sync, compact bool) (acks int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%d|%d", relCrashEnv, path, seed, relB2i(sync), relB2i(compact)))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A safety net only: the child never stops by itself.
	safety := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer safety.Stop()

	// Kill after the killAt-th ack, or (onBegin) once the child announces
	// that it starts a batch or a PutReader after that many acks: the kill
	// then often lands in the middle of the write.
	killAt := r.IntN(relCrashMaxBefore + 1)
	onBegin := r.IntN(4) != 0
	pause := time.Duration(0)
	switch {
	case onBegin:
		pause = time.Duration(r.IntN(300)) * time.Microsecond
	case r.IntN(2) == 0:
		pause = time.Duration(r.IntN(2000)) * time.Microsecond
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			if pause > 0 {
				time.Sleep(pause)
			}
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	if killAt == 0 && !onBegin {
		kill()
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "begin "); ok {
			if i, err := strconv.Atoi(n); err != nil || i != acks {
				t.Fatalf("child began %q after %d acks", line, acks)
			}
			if onBegin && acks >= killAt {
				kill()
			}
			continue
		}
		n, ok := strings.CutPrefix(line, "ack ")
		if !ok {
			continue
		}
		if i, err := strconv.Atoi(n); err != nil || i != acks {
			t.Fatalf("child acknowledged %q after %d acks", line, acks)
		}
		acks++
		if acks == killAt && !onBegin {
			kill()
		}
	}
	werr := cmd.Wait()
	var ee *exec.ExitError
	if !killed || !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended by itself (%v) after %d acks: %s", werr, acks, stderr.String())
	}
	return acks
}
