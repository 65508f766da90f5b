package simdr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/simdr-go/simdr/internal/format"
	"github.com/simdr-go/simdr/internal/vfs/faultfs"
)

// relFastDir returns a temporary directory on a memory file system when there
// is one (/dev/shm): the damaged-file cases open thousands of files, and each
// recovery syncs the file it cuts.
func relFastDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "simdr-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// ---- Verify and Options.VerifyChecksums ----

// relFlipByte flips one bit of the byte at off in the file at path.
func relFlipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyFindsFlippedPayload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.simdr")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for i := range 6 {
		if err := s.Put(fmt.Appendf(nil, "k%d", i), bytes.Repeat([]byte{byte('a' + i)}, 100+i)); err != nil {
			t.Fatal(err)
		}
		e, _ := s.Get(fmt.Appendf(nil, "k%d", i))
		offs = append(offs, e.Offset())
	}
	if err := s.Put([]byte("k1"), []byte("new k1")); err != nil { // k1's first version is now overwritten
		t.Fatal(err)
	}
	if err := s.Verify(); err != nil {
		t.Fatalf("Verify on a sound file: %v", err)
	}
	s.Close()

	// A live value and an overwritten one, in the middle of the file: Open
	// does not read them, Verify must report both. (k0's first version is the
	// file's first entry: Open checks that one, see TestFirstEntryDamaged.)
	relFlipByte(t, path, offs[2]+50)
	relFlipByte(t, path, offs[1]+3)
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Verify()
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrChecksum) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify = %v, want a *VerifyError matching ErrChecksum and ErrCorrupt", err)
	}
	slices.Sort(ve.Bad)
	if !slices.Equal(ve.Bad, []int64{offs[1], offs[2]}) || ve.BrokenAt != -1 {
		t.Fatalf("Verify: Bad = %v BrokenAt = %d; want [%d %d], -1", ve.Bad, ve.BrokenAt, offs[1], offs[2])
	}
	if !strings.Contains(err.Error(), fmt.Sprint(offs[2])) {
		t.Errorf("message %q does not name offset %d", err, offs[2])
	}
	// Without VerifyChecksums, Get hands out the damaged bytes; Entry.Verify tells.
	e, err := s.Get([]byte("k2"))
	if err != nil || !errors.Is(e.Verify(), ErrChecksum) {
		t.Fatalf("Get k2 = %v, %v; Verify = %v", e, err, e.Verify())
	}
	s.Close()

	s, err = Open(path, &Options{VerifyChecksums: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get([]byte("k2")); !errors.Is(err, ErrChecksum) {
		t.Fatalf("Get with VerifyChecksums = %v, want ErrChecksum", err)
	}
	if _, err := s.GetHash(Hash([]byte("k2"))); !errors.Is(err, ErrChecksum) {
		t.Fatalf("GetHash with VerifyChecksums = %v, want ErrChecksum", err)
	}
	if _, err := s.GetMany([][]byte{[]byte("k1"), []byte("k2")}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("GetMany with VerifyChecksums = %v, want ErrChecksum", err)
	}
	for _, k := range []string{"k0", "k1", "k3", "k4", "k5"} { // k1's live version is sound
		if _, err := s.Get([]byte(k)); err != nil {
			t.Fatalf("Get %s = %v", k, err)
		}
	}
	// A value damaged while the Store is open (the mapping is shared) is seen too.
	relFlipByte(t, path, offs[4])
	if _, err := s.Get([]byte("k4")); !errors.Is(err, ErrChecksum) {
		t.Fatalf("Get k4 after damage = %v, want ErrChecksum", err)
	}
	if err := s.Verify(); !errors.As(err, &ve) || len(ve.Bad) != 3 {
		t.Fatalf("Verify = %v, want 3 bad offsets", err)
	}
}

func TestVerifyFindsBrokenChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.simdr")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ends []int64
	for i := range 5 {
		if err := s.Put(fmt.Appendf(nil, "k%d", i), []byte("value")); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, s.Size())
	}
	// Point the prev of the entry ending at ends[2] past its own end.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(ends[4]))
	if _, err := f.WriteAt(b[:], ends[2]-12); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = s.Verify()
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrCorrupt) || ve.BrokenAt != ends[2] {
		t.Fatalf("Verify = %v, want a broken chain at %d", err, ends[2])
	}
}

// ---- I/O faults through faultfs ----

// relFaultOp is an operation of the I/O fault matrix: it runs against s and,
// on success, applies its effect to the model.
type relFaultOp struct {
	name string
	run  func(s *Store) error
	// entries are what the op appends (for the ambiguous case of a failed
	// rollback); nil for Compact.
	entries []relModelEntry
}

func relBigValue(n int, seed byte) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = byte(i*7) + seed
	}
	return v
}

func relFaultOps() []relFaultOp {
	val := func(n int, seed byte) []byte { return relBigValue(n, seed) }
	h := func(k string) uint64 { return Hash([]byte(k)) }
	var ops []relFaultOp
	ops = append(ops, relFaultOp{"Put", func(s *Store) error { return s.Put([]byte("x"), val(100, 1)) },
		[]relModelEntry{{h("x"), val(100, 1)}}})
	ops = append(ops, relFaultOp{"Put/direct", func(s *Store) error { return s.Put([]byte("base3"), val(directWrite+100, 2)) },
		[]relModelEntry{{h("base3"), val(directWrite+100, 2)}}})
	ops = append(ops, relFaultOp{"Delete", func(s *Store) error { return s.Delete([]byte("base1")) },
		[]relModelEntry{{h: h("base1")}}})
	small := []relModelEntry{{h("b1"), val(10, 3)}, {h: h("base2")}, {h("b2"), val(3000, 4)}, {h("base4"), val(5, 5)}}
	ops = append(ops, relFaultOp{"Apply", func(s *Store) error {
		var b Batch
		b.Put([]byte("b1"), val(10, 3))
		b.Delete([]byte("base2"))
		b.Put([]byte("b2"), val(3000, 4))
		b.Put([]byte("base4"), val(5, 5))
		return s.Apply(&b)
	}, small})
	var large []relModelEntry // past flushAt: written in several calls
	for i := range 6 {
		large = append(large, relModelEntry{h(fmt.Sprint("L", i)), val(200<<10, byte(i))})
	}
	ops = append(ops, relFaultOp{"Apply/large", func(s *Store) error {
		var b Batch
		for i := range 6 {
			b.Put(fmt.Appendf(nil, "L%d", i), val(200<<10, byte(i)))
		}
		return s.Apply(&b)
	}, large})
	ops = append(ops, relFaultOp{"PutReader", func(s *Store) error {
		_, err := s.PutReader([]byte("r"), bytes.NewReader(val(2*streamChunk+777, 9)))
		return err
	}, []relModelEntry{{h("r"), val(2*streamChunk+777, 9)}}})
	ops = append(ops, relFaultOp{"Rename", func(s *Store) error { return s.Rename([]byte("base5"), []byte("renamed")) },
		[]relModelEntry{{h("renamed"), val(90, 5)}, {h: h("base5")}}}) // base5 holds relBigValue(90, 5)
	ops = append(ops, relFaultOp{"Compact", func(s *Store) error { return s.Compact() }, nil})
	return ops
}

// relBaseStore fills a new store with a few keys and returns the model.
func relBaseStore(t *testing.T, s *Store) map[uint64][]byte {
	t.Helper()
	m := map[uint64][]byte{}
	for i := range 8 {
		k := fmt.Appendf(nil, "base%d", i)
		v := relBigValue(10*i+40, byte(i))
		if err := s.Put(k, v); err != nil {
			t.Fatal(err)
		}
		m[Hash(k)] = v
	}
	if err := s.Delete([]byte("base7")); err != nil {
		t.Fatal(err)
	}
	delete(m, Hash([]byte("base7")))
	return m
}

// relCheckModel asserts that s shows exactly m, that every entry verifies and
// that the file on disk ends at the store's tail (a failed write was cut off).
func relCheckModel(t *testing.T, what string, s *Store, m map[uint64][]byte) {
	t.Helper()
	got := relSnapshot(t, s)
	if !relSameState(got, m) {
		t.Fatalf("%s: store shows %d keys, model %d (or values differ)", what, len(got), len(m))
	}
	for h, v := range m {
		e, err := s.GetHash(h)
		if err != nil || !bytes.Equal(e.Bytes(), v) {
			t.Fatalf("%s: GetHash(%x) = %v, %v", what, h, e, err)
		}
	}
}

func relFileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

type relFaultCase struct {
	rule faultfs.Rule
	// rollbackFails: a Truncate fault is armed too, so the failed write
	// cannot be cut off and the Store must refuse writes until reopened.
	rollbackFails bool
}

func (c relFaultCase) String() string {
	r := c.rule
	s := fmt.Sprintf("%v#%d %v", r.Op, r.Nth, r.Err)
	if r.Op == faultfs.WriteAt {
		s += fmt.Sprintf(" keep=%d", r.Keep)
	}
	if r.Match != "" {
		s += " on " + r.Match
	}
	if c.rollbackFails {
		s += " +rollback fails"
	}
	return s
}

func relFaultCases(op string) []relFaultCase {
	var cs []relFaultCase
	match := ""
	if op == "Compact" {
		match = ".compact"
	}
	for nth := 1; nth <= 6; nth++ {
		for _, e := range []error{syscall.EIO, syscall.ENOSPC} {
			for _, keep := range []int{0, 7, 1 << 30} { // nothing, part, all of the buffer
				cs = append(cs, relFaultCase{rule: faultfs.Rule{Op: faultfs.WriteAt, Nth: nth, Err: e, Keep: keep, Match: match}})
			}
		}
	}
	cs = append(cs,
		relFaultCase{rule: faultfs.Rule{Op: faultfs.Sync, Err: syscall.EIO, Match: match}},
		relFaultCase{rule: faultfs.Rule{Op: faultfs.WriteAt, Nth: 1, Err: syscall.ENOSPC, Sticky: true, Match: match}},
	)
	if op == "Compact" {
		cs = append(cs,
			relFaultCase{rule: faultfs.Rule{Op: faultfs.OpenFile, Err: syscall.EMFILE, Match: match}},
			relFaultCase{rule: faultfs.Rule{Op: faultfs.Rename, Err: syscall.EIO}},
			relFaultCase{rule: faultfs.Rule{Op: faultfs.SyncDir, Err: syscall.EIO}},
		)
	} else {
		for _, keep := range []int{0, 1 << 30} {
			cs = append(cs,
				relFaultCase{rule: faultfs.Rule{Op: faultfs.WriteAt, Nth: 1, Err: syscall.EIO, Keep: keep}, rollbackFails: true},
				relFaultCase{rule: faultfs.Rule{Op: faultfs.WriteAt, Nth: 2, Err: syscall.EIO, Keep: keep}, rollbackFails: true})
		}
		cs = append(cs, relFaultCase{rule: faultfs.Rule{Op: faultfs.Sync, Err: syscall.EIO}, rollbackFails: true})
	}
	return cs
}

// TestIOFaults makes each kind of write fail at each of its file operations,
// in several ways, and checks that the error is returned, the Store stays
// usable and consistent, and a reopen shows exactly the acknowledged data.
func TestIOFaults(t *testing.T) {
	dir := relFastDir(t)
	tried, fired := 0, 0
	for _, op := range relFaultOps() {
		for _, c := range relFaultCases(op.name) {
			f, ok := relRunFaultCase(t, filepath.Join(dir, fmt.Sprint("f", tried, ".simdr")), op, c)
			tried++
			if f {
				fired++
			}
			if !ok {
				return
			}
		}
	}
	t.Logf("%d I/O fault cases tried, %d of them injected a fault (the others asked for a call the operation does not make)", tried, fired)
}

func relRunFaultCase(t *testing.T, path string, op relFaultOp, c relFaultCase) (fired, ok bool) {
	t.Helper()
	what := fmt.Sprintf("%s with %v", op.name, c)
	ffs := faultfs.New(nil)
	sync := c.rule.Op == faultfs.Sync && op.name != "Compact"
	s, err := Open(path, &Options{fs: ffs, SyncWrites: sync})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	m := relBaseStore(t, s)
	sizeBefore := s.Size()

	ffs.Inject(c.rule)
	if c.rollbackFails {
		ffs.Inject(faultfs.Rule{Op: faultfs.Truncate, Err: syscall.EIO})
	}
	err = op.run(s)
	fired = ffs.Fired() > 0
	ffs.Clear()
	if !fired {
		if err != nil {
			t.Fatalf("%s: no fault injected, yet: %v", what, err)
		}
		relApplyEntries(m, op.entries)
		relCheckModel(t, what+" (no fault)", s, m)
		return false, !t.Failed()
	}
	ambiguous := false // the failed write may be in the file after a reopen
	switch {
	case op.name == "Compact" && c.rule.Op == faultfs.SyncDir:
		// The new file is in place; only its directory entry may not be durable.
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
	case err == nil:
		t.Fatalf("%s: the operation succeeded", what)
	case !errors.Is(err, c.rule.Err):
		t.Fatalf("%s: error %v does not match %v", what, err, c.rule.Err)
	}
	// A failed directory fsync after Compact's rename is sticky too.
	if c.rollbackFails || op.name == "Compact" && c.rule.Op == faultfs.SyncDir {
		// The failed write could not be cut off: writes fail with ErrFailed,
		// reads go on, and a reopen recovers.
		if err := s.Put([]byte("after"), []byte("v")); !errors.Is(err, ErrFailed) {
			t.Fatalf("%s: a write after a failed rollback = %v, want ErrFailed", what, err)
		}
		relCheckModel(t, what, s, m)
		ambiguous = true
	} else if sync {
		// A failed fdatasync is sticky: the write was cut off, and writes and
		// Sync fail with ErrFailed until reopened; reads go on.
		if relFileSize(t, path) != s.Size() || s.Size() != sizeBefore {
			t.Fatalf("%s: file %d bytes, tail %d (was %d): the failed write was not cut off", what, relFileSize(t, path), s.Size(), sizeBefore)
		}
		if err := s.Put([]byte("after"), []byte("v")); !errors.Is(err, ErrFailed) {
			t.Fatalf("%s: a write after a failed sync = %v, want ErrFailed", what, err)
		}
		if err := s.Sync(); !errors.Is(err, ErrFailed) {
			t.Fatalf("%s: Sync after a failed sync = %v, want ErrFailed", what, err)
		}
		relCheckModel(t, what, s, m)
	} else {
		relCheckModel(t, what, s, m)
		if op.name != "Compact" && relFileSize(t, path) != s.Size() {
			t.Fatalf("%s: file is %d bytes, the store's tail %d: the failed write was not cut off", what, relFileSize(t, path), s.Size())
		}
		if s.Size() != sizeBefore && op.name != "Compact" {
			t.Fatalf("%s: tail moved from %d to %d", what, sizeBefore, s.Size())
		}
		if _, err := os.Stat(compactPath(path)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: %s left behind", what, compactPath(path))
		}
		// The Store is usable: the next write works, the operation too.
		if err := s.Put([]byte("after"), []byte("v")); err != nil {
			t.Fatalf("%s: the next write: %v", what, err)
		}
		m[Hash([]byte("after"))] = []byte("v")
		if err := op.run(s); err != nil {
			t.Fatalf("%s: the operation again, without faults: %v", what, err)
		}
		relApplyEntries(m, op.entries)
		relCheckModel(t, what+", then again", s, m)
	}
	if err := s.Close(); err != nil && !c.rollbackFails {
		t.Fatalf("%s: close: %v", what, err)
	}
	s = nil
	r, err := Open(path, nil)
	if err != nil {
		t.Fatalf("%s: reopen: %v", what, err)
	}
	defer r.Close()
	got := relSnapshot(t, r)
	if ambiguous {
		// The reopened store shows the acknowledged data, possibly followed
		// by a prefix of the failed write's entries.
		for k := 0; k <= len(op.entries); k++ {
			if relSameState(got, m) {
				return true, true
			}
			if k < len(op.entries) {
				relApplyEntries(m, op.entries[k:k+1])
			}
		}
		t.Fatalf("%s: reopen shows %d keys: neither the acknowledged data nor a prefix of the failed write after it", what, len(got))
	}
	if !relSameState(got, m) {
		t.Fatalf("%s: reopen shows %d keys, acknowledged %d", what, len(got), len(m))
	}
	return true, !t.Failed()
}

// TestIOFaultDiskFull fills a small "disk" (a size limit on the file) with
// random writes: each one that does not fit fails with ENOSPC and changes
// nothing; after the disk grows, writes go on, and a reopen shows exactly
// the acknowledged ones.
func TestIOFaultDiskFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "full.simdr")
	ffs := faultfs.New(nil)
	s, err := Open(path, &Options{fs: ffs})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	ffs.SetLimit(256 << 10)
	r := rand.New(rand.NewPCG(6, 6))
	m := map[uint64][]byte{}
	g := relNewCrashGen(7, false)
	full, ok := 0, 0
	var b Batch
	for i := 0; i < 400; i++ {
		op := g.next()
		es := op.entries(m)
		err := op.run(s, &b)
		switch {
		case err == nil:
			relApplyEntries(m, es)
			ok++
		case errors.Is(err, syscall.ENOSPC):
			full++
		default:
			t.Fatalf("op %d: %v", i, err)
		}
		if s.Size() != relFileSize(t, path) {
			t.Fatalf("op %d: file %d bytes, tail %d", i, relFileSize(t, path), s.Size())
		}
		if i == 300 {
			relCheckModel(t, "disk full", s, m)
			ffs.SetLimit(0)
		}
		_ = r
	}
	relCheckModel(t, "after the disk grew", s, m)
	s.Close()
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	relCheckModel(t, "reopened", s, m)
	if full == 0 || ok < 100 {
		t.Fatalf("%d writes failed with ENOSPC, %d succeeded: the test did not fill the disk", full, ok)
	}
	t.Logf("disk full: %d writes refused with ENOSPC, %d acknowledged", full, ok)
}

// TestIOFaultOpenRecovery: a torn tail that Open cannot cut (Truncate fails)
// fails the open and leaves the file as it was; the next open recovers.
func TestIOFaultOpenRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.simdr")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := relBaseStore(t, s)
	s.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("torn tail"))
	f.Close()
	raw, _ := os.ReadFile(path)
	for _, op := range []faultfs.Op{faultfs.Truncate, faultfs.Sync, faultfs.OpenFile} {
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		ffs := faultfs.New(nil)
		ffs.Fail(op, 1, syscall.EIO)
		if s, err := Open(path, &Options{fs: ffs}); err == nil || !errors.Is(err, syscall.EIO) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("%v fault: Open = %v, want EIO", op, err)
		}
		if op != faultfs.Sync { // a failed sync comes after the cut
			if after, _ := os.ReadFile(path); !bytes.Equal(after, raw) {
				t.Fatalf("%v fault: the failed open changed the file", op)
			}
		}
	}
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	relCheckModel(t, "recovered", s, m)
	if relFileSize(t, path) != s.Size() {
		t.Fatal("torn tail not cut")
	}
}

// ---- Damaged files ----

// relLayout is a store file built one entry per operation, with the model
// after each entry.
type relLayout struct {
	name   string
	raw    []byte
	ends   []int64             // ends[i]: the tail after entry i; ends[-1] is 0
	states []map[uint64][]byte // states[i]: the model after entry i
	last   []relModelEntry     // each entry, as the model sees it
}

func (l *relLayout) end(i int) int64 {
	if i < 0 {
		return 0
	}
	return l.ends[i]
}

func (l *relLayout) state(i int) map[uint64][]byte {
	if i < 0 {
		return map[uint64][]byte{}
	}
	return l.states[i]
}

// relBuildLayout writes entries (a nil value is a delete of a live key) and
// records the file.
func relBuildLayout(t *testing.T, name string, entries []relModelEntry, keys map[uint64]string) *relLayout {
	t.Helper()
	path := filepath.Join(relFastDir(t), name)
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &relLayout{name: name, last: entries}
	m := map[uint64][]byte{}
	for _, e := range entries {
		if e.val == nil {
			if _, ok := m[e.h]; !ok {
				t.Fatalf("layout %s deletes a key without a value", name)
			}
			err = s.DeleteHash(e.h)
		} else {
			err = s.putHash(e.h, e.val)
		}
		if err != nil {
			t.Fatal(err)
		}
		relApplyEntries(m, []relModelEntry{e})
		l.ends = append(l.ends, s.Size())
		l.states = append(l.states, maps.Clone(m))
	}
	s.Close()
	if l.raw, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if int64(len(l.raw)) != l.ends[len(l.ends)-1] {
		t.Fatal("layout size")
	}
	return l
}

func relLayouts(t *testing.T) []*relLayout {
	r := rand.New(rand.NewPCG(42, 42))
	h := func(i int) uint64 { return Hash(fmt.Appendf(nil, "key%d", i)) }
	randVal := func(n int) []byte {
		v := make([]byte, n)
		for i := range v {
			v[i] = byte(r.Uint32())
		}
		return v
	}
	var mixed []relModelEntry
	live := map[int]bool{}
	for i := range 30 {
		k := r.IntN(10)
		if live[k] && i%4 == 3 {
			mixed = append(mixed, relModelEntry{h: h(k)})
			live[k] = false
			continue
		}
		n := 1 + r.IntN(300)
		if i%7 == 0 {
			n = 3000 + r.IntN(3000)
		}
		mixed = append(mixed, relModelEntry{h(k), randVal(n)})
		live[k] = true
	}
	endVal := append(slices.Clone(mixed), relModelEntry{h(100), randVal(300)}, relModelEntry{h: h(100)}, relModelEntry{h(101), randVal(1500)})
	endTomb := append(slices.Clone(mixed), relModelEntry{h(100), randVal(64)}, relModelEntry{h(101), randVal(1)}, relModelEntry{h: h(100)})
	endZeros := append(slices.Clone(mixed), relModelEntry{h(100), randVal(200)}, relModelEntry{h(101), randVal(20)}, relModelEntry{h(102), make([]byte, 700)})
	return []*relLayout{
		relBuildLayout(t, "ends-with-value", endVal, nil),
		relBuildLayout(t, "ends-with-tombstone", endTomb, nil),
		relBuildLayout(t, "ends-with-zero-value", endZeros, nil),
		relBuildLayout(t, "one-entry", []relModelEntry{{h(1), randVal(100)}}, nil),
		relBuildLayout(t, "two-entries", []relModelEntry{{h(1), randVal(10)}, {h(2), randVal(100)}}, nil),
	}
}

// relRecoveryChecker opens damaged files and counts the cases.
type relRecoveryChecker struct {
	t     *testing.T
	path  string
	cases int
}

// check writes raw and opens it, read-only then writable. want is the state
// and size the store must recover to; a want size of 0 with raw not empty
// means no valid chain is left: Open must fail with ErrCorrupt leaving the
// file byte-identical, and Repair must cut it to empty.
func (c *relRecoveryChecker) check(what string, raw []byte, want map[uint64][]byte, size int64) {
	t := c.t
	t.Helper()
	c.cases++
	if err := os.WriteFile(c.path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	corrupt := size == 0 && len(raw) > 0
	for _, ro := range []bool{true, false} {
		s, err := Open(c.path, &Options{ReadOnly: ro})
		after, rerr := os.ReadFile(c.path)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if corrupt {
			if !errors.Is(err, ErrCorrupt) {
				if err == nil {
					s.Close()
				}
				t.Fatalf("%s (read-only %v): Open = %v, want ErrCorrupt", what, ro, err)
			}
			if !bytes.Equal(after, raw) {
				t.Fatalf("%s (read-only %v): a failed open changed the file", what, ro)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s (read-only %v): Open = %v, want a store of %d bytes", what, ro, err, size)
		}
		got := relSnapshot(t, s)
		gotSize := s.Size()
		s.Close()
		if gotSize != size || !relSameState(got, want) {
			t.Fatalf("%s (read-only %v): recovered %d keys in %d bytes, want %d keys in %d bytes",
				what, ro, len(got), gotSize, len(want), size)
		}
		wantFile := raw
		if !ro {
			wantFile = raw[:size]
		}
		if !bytes.Equal(after, wantFile) {
			t.Fatalf("%s (read-only %v): file is %d bytes after the open, want %d, untouched below", what, ro, len(after), len(wantFile))
		}
	}
	if corrupt {
		// Repair keeps what is intact (often nothing: the file becomes
		// empty; a relinked entry when only its prev was damaged), and
		// the repaired file opens as it is. damage_test.go checks that
		// nothing is invented or lost.
		s, err := Open(c.path, &Options{Repair: true})
		if err != nil {
			t.Fatalf("%s: repair: %v", what, err)
		}
		got, size := relSnapshot(t, s), s.Size()
		if err := s.Verify(); err != nil && !errors.Is(err, ErrChecksum) {
			t.Fatalf("%s: repaired file: Verify = %v", what, err)
		}
		s.Close()
		if s, err = Open(c.path, nil); err != nil {
			t.Fatalf("%s: open after repair: %v", what, err)
		}
		if s.Size() != size || !relSameState(relSnapshot(t, s), got) {
			t.Fatalf("%s: the repaired file opens as something else", what)
		}
		s.Close()
	}
}

// TestDamagedFiles damages store files the ways a crash, a lost write or bad
// storage can, and checks that Open recovers to the last intact entry (or
// fails with ErrCorrupt, leaving the file as it was): never a bogus entry,
// never a panic.
func TestDamagedFiles(t *testing.T) {
	c := &relRecoveryChecker{t: t, path: filepath.Join(relFastDir(t), "damaged.simdr")}
	r := rand.New(rand.NewPCG(1, 2))
	for _, l := range relLayouts(t) {
		n := len(l.ends)
		full, fullState := l.end(n-1), l.state(n-1)
		prev, prevState := l.end(n-2), l.state(n-2)
		// The original file.
		c.check(l.name, l.raw, fullState, full)

		// Cut at every byte offset of the last three entries.
		for L := l.end(n - 4); L <= full; L++ {
			i := n - 1
			for l.end(i) > L {
				i--
			}
			c.check(fmt.Sprintf("%s cut at %d", l.name, L), l.raw[:L], l.state(i), l.end(i))
		}

		// Flip every bit of the last entry's metadata. The checksum covers
		// the payload, not the metadata: a flipped key-hash bit leaves an
		// intact entry under another key hash (a limit of the format). Any
		// other flip must lose the last entry, and only it.
		for bit := 0; bit < format.MetaSize*8; bit++ {
			raw := slices.Clone(l.raw)
			raw[full-format.MetaSize+int64(bit/8)] ^= 1 << (bit % 8)
			what := fmt.Sprintf("%s meta bit %d flipped", l.name, bit)
			if bit < 64 {
				last := l.last[n-1]
				last.h ^= 1 << bit
				want := maps.Clone(prevState)
				relApplyEntries(want, []relModelEntry{last})
				c.check(what, raw, want, full)
				continue
			}
			if p := prev ^ 1<<(bit-64); bit < 128 && l.last[n-1].val != nil && p < full && p+format.Prepad(p) == prev+format.Prepad(prev) {
				// A flip in the pre-pad bits of prev: the entry is intact
				// (same payload), only its link is damaged. Open refuses
				// to cut it; Repair relinks it.
				c.checkBroken(what, raw, fullState, full)
				continue
			}
			c.check(what, raw, prevState, prev)
		}

		// Append zero bytes (a file grown without its data), random bytes,
		// and a copy of each earlier entry, and of the whole file.
		for _, k := range []int{1, 19, 20, 21, 63, 64, 65, 100, 4096, 4096 + 21} {
			c.check(fmt.Sprintf("%s + %d zeros", l.name, k), append(slices.Clone(l.raw), make([]byte, k)...), fullState, full)
		}
		for _, k := range []int{1, 7, 20, 21, 22, 64, 333, 4096} {
			for range 3 {
				junk := make([]byte, k)
				for i := range junk {
					junk[i] = byte(r.Uint32())
				}
				c.check(fmt.Sprintf("%s + %d random bytes", l.name, k), append(slices.Clone(l.raw), junk...), fullState, full)
			}
		}
		for i := range n {
			c.check(fmt.Sprintf("%s + a copy of entry %d", l.name, i),
				append(slices.Clone(l.raw), l.raw[l.end(i-1):l.end(i)]...), fullState, full)
		}
		c.check(l.name+" + a copy of itself", append(slices.Clone(l.raw), l.raw...), fullState, full)

		// A torn last entry whose bytes are zeros: the file has its size but
		// not its data, all of it or its last k bytes, or only the payload.
		for k := int64(1); k <= full-prev; k++ {
			raw := slices.Clone(l.raw)
			clear(raw[full-k:])
			if k <= format.MetaSize && bytes.Equal(raw, l.raw) {
				continue
			}
			c.check(fmt.Sprintf("%s last %d bytes zeroed", l.name, k), raw, prevState, prev)
		}
		if e := l.last[n-1]; e.val != nil && !relAllZeroBytes(e.val) {
			raw := slices.Clone(l.raw)
			clear(raw[full-format.MetaSize-int64(len(e.val)) : full-format.MetaSize])
			c.check(l.name+" last payload zeroed", raw, prevState, prev)
		}
		if n >= 2 {
			// The last two entries lost.
			raw := slices.Clone(l.raw)
			clear(raw[l.end(n-3):])
			c.check(l.name+" last two entries zeroed", raw, l.state(n-3), l.end(n-3))
		}
	}
	t.Logf("%d damaged-file cases opened (each read-only and writable)", c.cases)
}

func relAllZeroBytes(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestOpenTornNumericTail: a torn value (1 MiB) of small integers holds, every
// 16 bytes, 20 bytes that read as metadata with prev 0 (or another small
// offset), each claiming a payload as long as the file. Open used to check
// each of those candidates from scratch: quadratic, hours for a torn value of
// a few megabytes. It must recover at once. The last two patterns are
// crafted: candidates whose prev leads to a fake first entry (prev 0) inside
// the torn bytes, and candidates whose prev cycles through the real entry
// ends (many different starts, each with a sound chain beneath).
func TestOpenTornNumericTail(t *testing.T) {
	for pat := range 5 {
		path := filepath.Join(t.TempDir(), "n.simdr")
		s, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint64][]byte{}
		var ends []uint64
		for i := range 40 {
			k, v := fmt.Appendf(nil, "base%d", i), relBigValue(10+i, byte(i))
			if err := s.Put(k, v); err != nil {
				t.Fatal(err)
			}
			m[Hash(k)] = v
			ends = append(ends, uint64(s.Size()))
		}
		size := s.Size()
		s.Close()
		torn := make([]byte, 1<<20)
		le := binary.LittleEndian
		switch pat {
		case 0, 1, 2:
			for i := 0; i+16 <= len(torn); i += 16 {
				le.PutUint64(torn[i:], uint64(i+1))
				switch pat {
				case 1:
					le.PutUint64(torn[i+8:], uint64(i/16)) // every small offset
				case 2:
					le.PutUint64(torn[i+8:], uint64(size)) // the real tail
				}
			}
		case 3:
			// 40-byte records: (h, 0, crc) ends a fake first entry; (h, the
			// end of the fake first entry two records back, crc) a head.
			for k := 0; (k+1)*40 <= len(torn); k++ {
				o := k * 40
				le.PutUint64(torn[o:], 0x1111)
				le.PutUint32(torn[o+16:], 7)
				le.PutUint64(torn[o+20:], 0x2222)
				if k >= 2 {
					le.PutUint64(torn[o+28:], uint64(size)+uint64(o)-60)
				}
				le.PutUint32(torn[o+36:], 9)
			}
		case 4:
			for i, k := 0, 0; i+24 <= len(torn); i, k = i+24, k+1 {
				le.PutUint64(torn[i:], 0x3333)
				le.PutUint64(torn[i+8:], ends[k%len(ends)])
			}
		}
		f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		f.Write(torn)
		f.Close()
		s, err = Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		relCheckModel(t, fmt.Sprint("torn numeric tail ", pat), s, m)
		if s.Size() != size {
			t.Fatalf("recovered to %d, want %d", s.Size(), size)
		}
		s.Close()
	}
}

// TestFirstEntryDamaged: the chain checks the checksum of the file's first
// entry (a lost write can zero a later entry's metadata so that it reads as a
// first entry), so a damaged first value leaves no valid chain. Yet when the
// chain above it is intact from the end of the file, the store opens whole
// (read-only too, the file untouched): Verify lists the first value.
func TestFirstEntryDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "first.simdr")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := relBaseStore(t, s)
	s.Close()
	relFlipByte(t, path, 5)
	raw, _ := os.ReadFile(path)
	for _, ro := range []bool{true, false} {
		s, err := Open(path, &Options{ReadOnly: ro})
		if err != nil {
			t.Fatalf("Open (read-only %v) = %v", ro, err)
		}
		var ve *VerifyError
		if err := s.Verify(); !errors.As(err, &ve) || !slices.Equal(ve.Bad, []int64{0}) || ve.BrokenAt != -1 {
			t.Fatalf("Verify = %v, want the first value listed", err)
		}
		if s.Size() != int64(len(raw)) {
			t.Fatalf("opened %d bytes of %d", s.Size(), len(raw))
		}
		for h, v := range m {
			e, err := s.GetHash(h)
			if err != nil {
				t.Fatalf("GetHash(%x) = %v", h, err)
			}
			if e.Offset() != 0 && !bytes.Equal(e.Bytes(), v) {
				t.Fatalf("GetHash(%x) shows other bytes", h)
			}
		}
		s.Close()
		if after, _ := os.ReadFile(path); !bytes.Equal(after, raw) {
			t.Fatal("the open changed the file")
		}
	}
}

// relPowerImage builds a file a power cut could leave: the durable content
// (as of the last sync), plus a random subset of the 4 KiB pages written since
// (after is the file as the OS had it), the rest of the new length zero-filled
// (a file grown without its data). The length is the durable one, the new one
// or a page boundary in between.
func relPowerImage(r *rand.Rand, durable, after []byte) []byte {
	const page = 4096
	size := len(after)
	switch r.IntN(3) {
	case 0:
		size = len(durable)
	case 1:
		if len(after) > len(durable) {
			size = min(len(after), (len(durable)/page+1+r.IntN((len(after)-len(durable))/page+1))*page)
		}
	}
	img := make([]byte, size)
	copy(img, durable)
	for p := 0; p < size; p += page {
		end := min(p+page, size)
		if end > len(durable) || !bytes.Equal(durable[p:end], after[p:min(end, len(after))]) {
			if r.IntN(2) == 0 {
				copy(img[p:end], after[p:min(end, len(after))])
			}
		}
	}
	return img
}

// TestPowerCut simulates power cuts through faultfs: for each write, images
// made of what the last sync made durable plus a random subset of the pages
// written since. With SyncWrites every acknowledged write must survive; in
// every mode the store must open (or, with nothing durable yet, fail with
// ErrCorrupt), and its entries must be a prefix of those written, in order,
// the synced ones intact. An unsynced entry below the newest may show with a
// value whose pages were lost: Verify must list it (see docs/reliability.md).
func TestPowerCut(t *testing.T) {
	dir := relFastDir(t)
	r := rand.New(rand.NewPCG(11, 12))
	images, damaged := 0, 0
	for _, sync := range []bool{true, false} {
		path := filepath.Join(dir, fmt.Sprint("p", sync, ".simdr"))
		img := filepath.Join(dir, "image.simdr")
		ffs := faultfs.New(nil)
		s, err := Open(path, &Options{fs: ffs, SyncWrites: sync})
		if err != nil {
			t.Fatal(err)
		}
		g := relNewCrashGen(r.Uint64(), false)
		m := map[uint64][]byte{}
		var written []relModelEntry // every entry appended, in order
		synced := 0                 // how many of them the last sync covered
		var b Batch
		for i := range 60 {
			op := g.next()
			es := op.entries(m)
			durable := ffs.Durable(path)
			if err := op.run(s, &b); err != nil {
				t.Fatal(err)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			all := append(slices.Clone(written), es...)
			for range 3 {
				raw := relPowerImage(r, durable, after)
				images++
				what := fmt.Sprintf("sync=%v op %d image %d (%d bytes, %d durable)", sync, i, images, len(raw), len(durable))
				damaged += relCheckPowerImage(t, what, img, raw, all, synced)
			}
			relApplyEntries(m, es)
			written = all
			if sync || i%10 == 9 {
				if !sync {
					if err := s.Sync(); err != nil {
						t.Fatal(err)
					}
				}
				synced = len(written)
			}
		}
		s.Close()
	}
	t.Logf("%d power-cut images opened; %d showed an unsynced value with lost pages, which Verify listed", images, damaged)
}

// relCheckPowerImage opens raw and checks its entries against written, the
// first synced of which must be intact. It returns 1 when the image showed an
// entry whose value failed its checksum.
func relCheckPowerImage(t *testing.T, what, path string, raw []byte, written []relModelEntry, synced int) int {
	t.Helper()
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, nil)
	repaired := false
	if err != nil {
		if !errors.Is(err, ErrCorrupt) || synced > 0 {
			t.Fatalf("%s: open: %v", what, err)
		}
		if s, err = Open(path, &Options{Repair: true}); err != nil {
			t.Fatalf("%s: repair: %v", what, err)
		}
		repaired = true
	}
	defer s.Close()
	bad := map[int64]bool{}
	if err := s.Verify(); err != nil {
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.BrokenAt >= 0 {
			t.Fatalf("%s: Verify: %v", what, err)
		}
		for _, off := range ve.Bad {
			bad[off] = true
		}
	}
	data := s.cur.Load().m.Bytes()[:s.Size()]
	var got []format.Entry
	format.Walk(data, 0, s.Size(), func(e format.Entry) bool {
		got = append(got, e)
		return true
	})
	slices.Reverse(got)
	if repaired {
		// Repair keeps every intact entry it finds, also above lost pages:
		// the entries written, in order, some perhaps missing.
		j := 0
		for i, e := range got {
			for j < len(written) && (written[j].h != e.Hash || (written[j].val == nil) != e.Tombstone ||
				(!e.Tombstone && !bad[e.Start] && !bytes.Equal(data[e.Start:e.End], written[j].val))) {
				j++
			}
			if j == len(written) {
				t.Fatalf("%s: repaired entry %d is not one written, in order", what, i)
			}
			j++
		}
		return 0
	}
	if len(got) < synced || len(got) > len(written) {
		t.Fatalf("%s: %d entries, want %d to %d", what, len(got), synced, len(written))
	}
	lost := 0
	for i, e := range got {
		w := written[i]
		if e.Hash != w.h || e.Tombstone != (w.val == nil) {
			t.Fatalf("%s: entry %d is not the one written", what, i)
		}
		if w.val == nil || bytes.Equal(data[e.Start:e.End], w.val) {
			continue
		}
		// A value whose pages were lost: only unsynced, never the newest
		// (Open checks that one), always listed by Verify.
		if i < synced || i == len(got)-1 || int(e.End-e.Start) != len(w.val) || !bad[e.Start] {
			t.Fatalf("%s: entry %d (synced: %v) shows a wrong value", what, i, i < synced)
		}
		lost = 1
	}
	return lost
}
