package simdr

// A writer of expiring keys in another process, followed by this one and
// killed at random moments: every kind of write that takes or keeps an
// expiry (PutTTL, Batch.PutTTL, PutExpiresAt in the past and the future,
// plain puts and deletes over keys with one, Rename, Copy and Move both
// ways, Compact), a follower refreshed all along on a clock that moves, and
// reopens after each kill with and without the state file and the index
// checkpoint.

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simdr-go/simdr/internal/format"
)

// atkProcRole is the child's role (multiprocess_test.go's ccStartChild);
// its argument is "other|seed|start|count|clock ms".
const atkProcRole = "ttl-proc-writer"

// atkProcKeys is how many keys the child writes.
const atkProcKeys = 16

// atkProcOp is one caller operation of the child.
type atkProcOp struct {
	kind  byte // 't' PutTTL, 'p' Put, 'r' PutReader, 'd' Delete, 'n' Rename, 'c' Copy to other, 'm' Move to other, 'M' Move from other, 'C' Compact, 'b' batch
	k, k2 string
	v     string
	ms    int64 // 't': the ttl; 'e' (in a batch, PutExpiresAt): the expiry less the clock
	batch []atkProcOp
}

// atkProcGen returns op i of the child's run seeded by seed (each op from
// its own generator, so that a run can start at any op).
func atkProcGen(seed uint64, i int) atkProcOp {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	key := func() string { return fmt.Sprintf("k%d", r.IntN(atkProcKeys)) }
	val := func(j int) string {
		n := 1 + r.IntN(30)
		switch r.IntN(40) {
		case 0:
			n = directWrite + r.IntN(4096) // written apart from its record
		case 1, 2:
			n = 5000 + r.IntN(20000)
		}
		return fmt.Sprintf("%d.%d.", i, j) + strings.Repeat("v", n)
	}
	ttl := func() int64 { return 1 + r.Int64N(2000) }
	switch n := r.IntN(40); {
	case n < 10:
		return atkProcOp{kind: 't', k: key(), v: val(0), ms: ttl()}
	case n < 15:
		return atkProcOp{kind: 'p', k: key(), v: val(0)}
	case n < 16:
		return atkProcOp{kind: 'r', k: key(), v: val(0)}
	case n < 20:
		return atkProcOp{kind: 'd', k: key()}
	case n < 24:
		return atkProcOp{kind: 'n', k: key(), k2: key()}
	case n < 26:
		return atkProcOp{kind: 'c', k: key()}
	case n < 28:
		return atkProcOp{kind: 'm', k: key()}
	case n < 30:
		return atkProcOp{kind: 'M', k: key()}
	case n < 31:
		return atkProcOp{kind: 'C'}
	default:
		op := atkProcOp{kind: 'b'}
		for j := range 1 + r.IntN(5) {
			switch r.IntN(4) {
			case 0:
				op.batch = append(op.batch, atkProcOp{kind: 't', k: key(), v: val(j), ms: ttl()})
			case 1:
				op.batch = append(op.batch, atkProcOp{kind: 'e', k: key(), v: val(j), ms: r.Int64N(3000) - 1000})
			case 2:
				op.batch = append(op.batch, atkProcOp{kind: 'p', k: key(), v: val(j)})
			default:
				op.batch = append(op.batch, atkProcOp{kind: 'd', k: key()})
			}
		}
		return op
	}
}

func (op atkProcOp) String() string {
	if op.kind == 'b' {
		return fmt.Sprint("batch", op.batch)
	}
	v := op.v
	if len(v) > 10 {
		v = fmt.Sprintf("%s...(%d)", v[:10], len(v))
	}
	return fmt.Sprintf("%c %s %s %q %d", op.kind, op.k, op.k2, v, op.ms)
}

// run does op on s (other: the second store), at clock now (Unix ms).
func (op atkProcOp) run(s, other *Store, now int64) error {
	notFound := func(err error) error {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	switch op.kind {
	case 't':
		return s.PutTTL([]byte(op.k), []byte(op.v), time.Duration(op.ms)*time.Millisecond)
	case 'p':
		return s.Put([]byte(op.k), []byte(op.v))
	case 'r':
		_, err := s.PutReader([]byte(op.k), strings.NewReader(op.v))
		return err
	case 'd':
		return s.Delete([]byte(op.k))
	case 'n':
		if op.k == op.k2 {
			return nil
		}
		return notFound(s.Rename([]byte(op.k), []byte(op.k2)))
	case 'c':
		return notFound(s.Copy([]byte(op.k), other))
	case 'm':
		return notFound(s.Move([]byte(op.k), other))
	case 'M':
		return notFound(other.Move([]byte(op.k), s))
	case 'C':
		return s.Compact()
	}
	var b Batch
	for _, o := range op.batch {
		switch o.kind {
		case 't':
			b.PutTTL([]byte(o.k), []byte(o.v), time.Duration(o.ms)*time.Millisecond)
		case 'e':
			b.PutExpiresAt([]byte(o.k), []byte(o.v), time.UnixMilli(now+o.ms))
		case 'p':
			b.Put([]byte(o.k), []byte(o.v))
		default:
			b.Delete([]byte(o.k))
		}
	}
	return s.Apply(&b)
}

// atkProcModel is what the two stores hold: each key's value and expiry,
// keys expired by the writer's clock left out (no one sees them again: the
// followers' clocks are ahead of it).
type atkProcModel struct{ main, other map[string]atkState }

func (m atkProcModel) clone() atkProcModel {
	c := atkProcModel{map[string]atkState{}, map[string]atkState{}}
	for k, v := range m.main {
		c.main[k] = v
	}
	for k, v := range m.other {
		c.other[k] = v
	}
	return c
}

// apply returns the model after op, run at now; with steps, also the
// model after each op of a batch (what a crash without the state file may
// leave of it).
func (op atkProcOp) apply(m atkProcModel, now int64) (after atkProcModel, steps []atkProcModel) {
	out := m.clone()
	set := func(to map[string]atkState, k string, st atkState) {
		if st.exp != 0 && st.exp <= now {
			delete(to, k) // expired at once
			return
		}
		to[k] = st
	}
	switch op.kind {
	case 't':
		set(out.main, op.k, atkState{op.v, now + op.ms})
	case 'p', 'r':
		set(out.main, op.k, atkState{op.v, 0})
	case 'd':
		delete(out.main, op.k)
	case 'n':
		if st, ok := out.main[op.k]; ok && op.k != op.k2 {
			out.main[op.k2] = st
			delete(out.main, op.k)
		}
	case 'c', 'm':
		if st, ok := out.main[op.k]; ok {
			out.other[op.k] = st
			if op.kind == 'm' {
				delete(out.main, op.k)
			}
		}
	case 'M':
		if st, ok := out.other[op.k]; ok {
			out.main[op.k] = st
			delete(out.other, op.k)
		}
	case 'b':
		for _, o := range op.batch {
			switch o.kind {
			case 'e':
				set(out.main, o.k, atkState{o.v, max(now+o.ms, 1)})
			default:
				out, _ = o.apply(out, now)
			}
			steps = append(steps, out.clone())
		}
	}
	return out, steps
}

// atkProcView is a store's keys as ttlView shows them, from a model at a
// reader's clock now.
func atkProcView(m map[string]atkState, now int64) string {
	v := ttlView{keys: map[uint64]string{}}
	for k, st := range m {
		if st.exp == 0 || st.exp > now {
			v.keys[Hash([]byte(k))] = atkProcShort(st.v, st.exp)
		}
	}
	v.n = len(v.keys)
	return v.String()
}

// atkProcShort is how a view names a value (unique by its op's prefix) and
// its expiry.
func atkProcShort(v string, exp int64) string {
	if len(v) > 12 {
		v = fmt.Sprintf("%s+%d", v[:12], len(v))
	}
	return fmt.Sprintf("%s@%d", v, exp)
}

// atkProcSee is viewTTL with values shortened as atkProcView does.
func atkProcSee(t *testing.T, s *Store, where string) string {
	t.Helper()
	names := make([]string, atkProcKeys)
	for i := range names {
		names[i] = fmt.Sprintf("k%d", i)
	}
	v := viewTTL(t, s, names, where)
	for h, s := range v.keys {
		at := strings.LastIndexByte(s, '@')
		exp, _ := strconv.ParseInt(s[at+1:], 10, 64)
		v.keys[h] = atkProcShort(s[:at], exp)
	}
	return v.String()
}

// TestAttackTTLProcWriter is the child of TestAttackTTLProc (skipped unless
// run by it): it runs ops start.. of a seed on its store and the other one,
// printing "begin i" and "ack i", then "done", and waits to be killed.
func TestAttackTTLProcWriter(t *testing.T) {
	path := ccChildPath(t, atkProcRole)
	f := strings.Split(os.Getenv(ccArgEnv), "|")
	seed, _ := strconv.ParseUint(f[1], 10, 64)
	start, _ := strconv.Atoi(f[2])
	count, _ := strconv.Atoi(f[3])
	now, _ := strconv.ParseInt(f[4], 10, 64)
	clock := func() time.Time { return time.UnixMilli(now) }
	s, err := Open(path, &Options{Clock: clock})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	other, err := Open(f[0], &Options{Clock: clock})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	fmt.Println("ready")
	for i := start; i < start+count; i++ {
		fmt.Printf("begin %d\n", i)
		if err := atkProcGen(seed, i).run(s, other, now); err != nil {
			fmt.Printf("error op %d: %v\n", i, err)
			os.Exit(3)
		}
		fmt.Printf("ack %d\n", i)
		if i%2 == 0 {
			time.Sleep(time.Millisecond) // let the follower follow
		}
	}
	fmt.Println("done")
	select {}
}

// TestAttackTTLProc: lives of a child writer (see TestAttackTTLProcWriter),
// each killed with SIGKILL after a random number of ops. While it writes,
// this process follows it read-only on a clock ahead of the writer's, which
// moves on between refreshes: every refresh must show exactly the writer's
// keys after some whole number of its ops (the state file: a write is
// whole or absent), no sooner than the last one shown, with their expiries,
// only those still alive at the follower's clock, Len agreeing, no record
// nor the marker as a key. In one life of three the state file is removed
// once the writer has it open: the follower scans, and each key must hold a
// state some op gave it. After each kill the follower refreshes, then the
// store is opened read-only and as the writer (in turn without the state
// file, without the index checkpoint, with both), both of them and the
// other store holding what the acknowledged ops gave, or the op in flight
// (part of a batch in flight without the state file); and again once the
// clock has moved past more expiries.
func TestAttackTTLProc(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	seed := atkSeed(t)
	r := rand.New(rand.NewPCG(seed, 99))
	dir := t.TempDir()
	path, otherPath := dir+"/main.simdr", dir+"/other.simdr"
	const (
		base  = int64(1_700_000_000_000)
		lives = 9
		ahead = 1000 // the follower's clock, ahead of the writer's (ms)
	)
	clock := &fakeClock{}
	clock.ms.Store(base)
	model := atkProcModel{map[string]atkState{}, map[string]atkState{}}
	for _, p := range []string{path, otherPath} {
		s, err := Open(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	next, seen, scans := 0, 0, 0 // the next op, refreshes that saw something new
	for life := range lives {
		wnow := base + int64(life)*10_000 // the writer's clock this life
		clock.ms.Store(wnow + ahead)
		// Keys that expired since the last life are gone for the writer too.
		for _, m := range []map[string]atkState{model.main, model.other} {
			maps.DeleteFunc(m, func(_ string, st atkState) bool { return st.exp != 0 && st.exp <= wnow })
		}
		count := 40 + r.IntN(160)
		killAt := next + 1 + r.IntN(count)
		arg := fmt.Sprintf("%s|%d|%d|%d|%d", otherPath, seed, next, count, wnow)
		child := ccStartChild(t, "TestAttackTTLProcWriter", atkProcRole, path, arg)
		child.waitLine("ready")
		stateless := life%3 == 1
		if stateless {
			os.Remove(path + StateSuffix) // the writer has it mapped; the follower cannot find it
			scans++
		}
		f, err := Open(path, clock.opts(&Options{ReadOnly: true}))
		if err != nil {
			t.Fatal(err)
		}
		// The models after each op of the life, from the model at its start;
		// history: every state each key of main had (stateless check).
		models := []atkProcModel{model}
		history := map[string]map[atkState]bool{}
		note := func(m atkProcModel) {
			for i := range atkProcKeys {
				k := fmt.Sprintf("k%d", i)
				if history[k] == nil {
					history[k] = map[atkState]bool{}
				}
				history[k][m.main[k]] = true
			}
		}
		note(model)
		for i := next; i < next+count; i++ {
			after, steps := atkProcGen(seed, i).apply(models[len(models)-1], wnow)
			for _, st := range steps {
				note(st)
			}
			note(after)
			models = append(models, after)
		}
		acked := func() int { // ops acknowledged, of the life
			n := 0
			for _, l := range child.snapshot() {
				if strings.HasPrefix(l, "ack ") {
					n++
				}
			}
			return n
		}
		at, killed := 0, false // the model the follower was last found at
		// Len callers beside the refreshes (a recount takes the write lock
		// that Refresh holds, and opens a seq window).
		stop, lens := make(chan struct{}), make(chan error, 1)
		go func() {
			defer close(lens)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if n := f.Len(); n < 0 || n > atkProcKeys {
					lens <- fmt.Errorf("Len = %d", n)
					return
				}
				runtime.Gosched()
			}
		}()
		for !killed {
			if acked() >= killAt-next {
				time.Sleep(time.Duration(r.IntN(300)) * time.Microsecond)
				child.cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
			select {
			case <-child.exited:
				if !killed {
					t.Fatalf("life %d: the child exited: %v\n%s\n%s", life, child.err, strings.Join(child.snapshot(), "\n"), child.stderr.String())
				}
			default:
			}
			if err := f.Refresh(); err != nil {
				t.Fatalf("life %d: Refresh: %v", life, err)
			}
			got := atkProcSee(t, f, fmt.Sprintf("life %d, follower", life))
			now := clock.ms.Load()
			if stateless {
				atkProcHistory(t, f, history, now, life)
			} else {
				// (The acks read so far may lag behind the writer.)
				top := len(models) - 1
				j := at
				for ; j <= top && atkProcView(models[j].main, now) != got; j++ {
				}
				if j > top {
					best, bd := 0, 1<<30
					for jj := at; jj <= top; jj++ {
						if d := atkProcDiff(atkProcView(models[jj].main, now), got); len(d) < bd {
							best, bd = jj, len(d)
						}
					}
					t.Logf("nearest: after %d ops of the life (op %d), gen %d: %s", best, next+best-1, f.Generation(), atkProcDiff(atkProcView(models[best].main, now), got))
					atkProcDump(t, f, path)
					for jj := max(best-3, 0); jj < min(best+3, count); jj++ {
						t.Logf("op %d: %v", next+jj, atkProcGen(seed, next+jj))
					}
					t.Fatalf("life %d, follower at clock +%d, after op %d: %s\nafter op %d it was %s",
						life, now-wnow, next+at, got, next+at, atkProcView(models[at].main, now))
				}
				if j > at {
					seen++
				}
				at = j
			}
			if clock.ms.Load() < wnow+3*ahead { // below the next life's clock, which the mark of the path would keep from going back
				clock.add(time.Millisecond)
			}
		}
		close(stop)
		if err := <-lens; err != nil {
			t.Fatalf("life %d: a Len beside the refreshes: %v", life, err)
		}
		werr := child.wait()
		var ee *exec.ExitError
		if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("life %d: child: %v\n%s", life, werr, child.stderr.String())
		}
		for _, l := range child.snapshot() {
			if strings.HasPrefix(l, "error") {
				t.Fatalf("life %d: child: %s", life, l)
			}
		}
		// The op in flight, if any, and what the file may hold of it.
		n := acked()
		begun := false
		for _, l := range child.snapshot() {
			begun = l == fmt.Sprintf("begin %d", next+n)
		}
		want := []atkProcModel{models[n]}
		var inFlight atkProcOp
		if begun {
			inFlight = atkProcGen(seed, next+n)
			after, steps := inFlight.apply(models[n], wnow)
			want = append(want, after)
			if stateless {
				want = append(want, steps...)
			}
			// Move: the copy is synced before the source's tombstone.
			if inFlight.kind == 'm' || inFlight.kind == 'M' {
				both := after.clone()
				if inFlight.kind == 'm' {
					both.main = models[n].main
				} else {
					both.other = models[n].other
				}
				want = append(want, both)
			}
		}
		if err := f.Refresh(); err != nil {
			t.Fatalf("life %d: Refresh after the kill: %v", life, err)
		}
		now := clock.ms.Load()
		if !stateless {
			got := atkProcSee(t, f, fmt.Sprintf("life %d, follower after the kill", life))
			ok := false
			for _, w := range want {
				ok = ok || atkProcView(w.main, now) == got
			}
			if !ok {
				t.Fatalf("life %d: after the kill (%d acks, in flight %v: %v) the follower holds %s; acknowledged: %s",
					life, n, begun, inFlight, got, atkProcView(models[n].main, now))
			}
		}
		f.Close()
		switch life % 3 {
		case 0:
			os.Remove(path + StateSuffix)
		case 2:
			os.Remove(checkpointPath(path))
		}
		// Reopen, read-only then as the writer, at the follower's clock
		// and later; the first model that matches both stores goes on.
		var views [2]string
		for i, o := range []Options{{ReadOnly: true}, {}} {
			s, err := Open(path, clock.opts(&o))
			if err != nil {
				t.Fatalf("life %d: Open(%+v): %v", life, o, err)
			}
			views[i] = atkProcSee(t, s, fmt.Sprintf("life %d, reopened %+v", life, o))
			if err := s.Verify(); err != nil {
				t.Fatalf("life %d: Verify: %v", life, err)
			}
			s.Close()
		}
		if views[0] != views[1] {
			t.Fatalf("life %d: read-only %s, as the writer %s", life, views[0], views[1])
		}
		o, err := Open(otherPath, clock.opts(&Options{}))
		if err != nil {
			t.Fatal(err)
		}
		other := atkProcSee(t, o, fmt.Sprintf("life %d, the other store", life))
		o.Close()
		found := -1
		for i, w := range want {
			if atkProcView(w.main, now) == views[1] && atkProcView(w.other, now) == other {
				found = i
				break
			}
		}
		if found < 0 {
			s := reopenT(t, path, clock.opts(&Options{ReadOnly: true}))
			t.Logf("clock %d (+%d), the store's %d", now, now-wnow, s.now())
			atkProcDump(t, s, path)
			t.Fatalf("life %d (%d acks, in flight %v: %v): reopened %s, other %s; acknowledged %s, other %s",
				life, n, begun, inFlight, views[1], other, atkProcView(models[n].main, now), atkProcView(models[n].other, now))
		}
		model = want[found]
		next += n
		if begun {
			next++ // the op in flight is done with, whatever it left
		}
		// More expiries: the counts are counted again.
		clock.add(time.Duration(ahead) * time.Millisecond)
		s := reopenT(t, path, clock.opts(&Options{}))
		if got, w := atkProcSee(t, s, "later"), atkProcView(model.main, clock.ms.Load()); got != w {
			t.Fatalf("life %d, later: %s, want %s", life, got, w)
		}
		s.Close()
	}
	t.Logf("%d lives (%d without the state file), %d ops, %d refreshes that found writes", lives, scans, next, seen)
}

// atkProcHistory checks, for a follower without the state file (which may
// stop inside a batch), that each key of f holds a state the writer gave it.
func atkProcHistory(t *testing.T, f *Store, history map[string]map[atkState]bool, now int64, life int) {
	t.Helper()
	for k, states := range history {
		var st atkState
		e, err := f.Get([]byte(k))
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			t.Fatal(err)
		default:
			st = atkState{string(e.Bytes()), atkExp(f, k)}
		}
		if states[st] {
			continue
		}
		// Absent at now: any state of k that expired by now.
		if st == (atkState{}) {
			expired := false
			for s := range states {
				expired = expired || s.exp != 0 && s.exp <= now
			}
			if expired {
				continue
			}
		}
		t.Fatalf("life %d, follower without the state file: %s holds %v, a state no op gave it", life, k, st)
	}
}

// atkProcDiff lists what differs between two views (debugging).
func atkProcDiff(want, got string) string {
	w := strings.Fields(want[strings.IndexByte(want, '{')+1 : len(want)-1])
	g := strings.Fields(got[strings.IndexByte(got, '{')+1 : len(got)-1])
	var out []string
	for _, x := range w {
		if !slices.Contains(g, x) {
			out = append(out, "-"+x)
		}
	}
	for _, x := range g {
		if !slices.Contains(w, x) {
			out = append(out, "+"+x)
		}
	}
	return strings.Join(out, " ")
}

// atkProcDump logs, for each key, what follower f holds and the entries of
// the file (debugging).
func atkProcDump(t *testing.T, f *Store, path string) {
	g := f.cur.Load()
	x := g.x.Load()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Log(err)
		return
	}
	t.Logf("follower tail %d, file %d bytes, gen %d", g.tail.Load(), len(data), g.num)
	for i := range atkProcKeys {
		k := fmt.Sprintf("k%d", i)
		h := Hash([]byte(k))
		v, ok := g.ix.Get(h)
		var st uint64
		if x != nil {
			st = x.state(h)
		}
		rv, rok := g.ix.Get(recordHash(h))
		line := fmt.Sprintf("%s %016x: ix %v end %d, x %d; record ix %v end %d; file:", k, h, ok, endOf(v), st, rok, endOf(rv))
		format.Walk(data, 0, g.tail.Load(), func(e format.Entry) bool {
			switch e.Hash {
			case h:
				line += fmt.Sprintf(" v%d(%v)", e.End, e.Tombstone)
			case recordHash(h):
				r, _ := decodeRecord(e.Hash, data[e.Start:e.End])
				line += fmt.Sprintf(" r%d(%v,b%d,e%d)", e.End, e.Tombstone, r.bound, r.exp)
			}
			return true
		})
		t.Log(line)
	}
}
