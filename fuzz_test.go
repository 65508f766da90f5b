package simdr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/simdr-go/simdr/internal/format"
)

// The fuzz targets run as ordinary tests on their seed corpus (f.Add and
// testdata/fuzz/FuzzXxx); `go test -fuzz=FuzzXxx` explores further (see
// .ci/fuzz and docs/reliability.md).

var relFuzzSeq atomic.Int64

// relFuzzDir returns a directory for the inputs of one fuzz target, on a
// memory file system when there is one (Compact and recovery sync files).
func relFuzzDir(f *testing.F) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "simdr-fuzz-"); err == nil {
			f.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return f.TempDir()
}

// relFuzzPath returns a fresh file path in dir, removed when t ends
// (t.TempDir for each input costs more than most inputs).
func relFuzzPath(t *testing.T, dir string) string {
	p := filepath.Join(dir, fmt.Sprintf("f%d.simdr", relFuzzSeq.Add(1)))
	t.Cleanup(func() {
		os.Remove(p)
		os.Remove(compactPath(p))
	})
	return p
}

// relFuzzSeeds are the seed files: the Rust vectors and a few shapes of damage.
func relFuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	names, _ := filepath.Glob(filepath.Join("testdata", "vectors", "*.bin"))
	for _, n := range names {
		raw, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		if len(raw) > 8192 {
			raw = raw[:8192] // k1000: its first entries, and a torn one
		}
		seeds = append(seeds, raw)
	}
	small, err := os.ReadFile(filepath.Join("testdata", "vectors", "small.bin"))
	if err != nil {
		f.Fatal(err)
	}
	tomb := format.AppendTombstone(nil, 0, Hash([]byte("k")))
	zeroVal := format.AppendEntry(nil, 0, Hash([]byte("z")), make([]byte, 100))
	seeds = append(seeds,
		nil,
		[]byte{0},
		make([]byte, 21),
		make([]byte, 200),
		tomb, // a file that begins with a tombstone
		zeroVal,
		append(slices.Clone(zeroVal), make([]byte, 50)...),
		append(slices.Clone(small), small...),                      // a copy of itself appended
		append(slices.Clone(small[:len(small)-30]), small[:64]...), // torn, then junk
	)
	return seeds
}

// FuzzOpen opens arbitrary bytes as a store file, read-only and writable: the
// open fails with ErrCorrupt (leaving the file as it was) or yields a sound
// store; it never panics or hangs.
func FuzzOpen(f *testing.F) {
	for _, s := range relFuzzSeeds(f) {
		f.Add(s)
	}
	dir := relFuzzDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := relFuzzPath(t, dir)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ro, roErr := Open(path, &Options{ReadOnly: true})
		var roState map[uint64][]byte
		roSize := int64(-1)
		if roErr == nil {
			roState, roSize = relCheckOpened(t, ro, data), ro.Size()
			ro.Close()
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
			t.Fatal("a read-only open changed the file")
		}
		s, err := Open(path, nil)
		if (err == nil) != (roErr == nil) {
			t.Fatalf("read-only open: %v; writable open: %v", roErr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || len(data) == 0 {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
				t.Fatal("a failed open changed the file")
			}
			// Repair keeps the intact entries it finds (often none): a
			// sound store, holding only bytes of the input.
			s, err := Open(path, &Options{Repair: true})
			if err != nil {
				t.Fatalf("repair: %v", err)
			}
			after, _ := os.ReadFile(path)
			state := relCheckOpened(t, s, after)
			s.Close()
			for h, v := range state {
				if !bytes.Contains(data, v) {
					t.Fatalf("repair invented a value for %x", h)
				}
			}
			s, err = Open(path, nil)
			if err != nil {
				t.Fatalf("open after repair: %v", err)
			}
			if again := relCheckOpened(t, s, after); !relSameState(again, state) {
				t.Fatal("the repaired file opens as something else")
			}
			s.Close()
			return
		}
		state := relCheckOpened(t, s, data)
		size := s.Size()
		s.Close()
		if size != roSize || !relSameState(state, roState) {
			t.Fatalf("writable open: %d keys in %d bytes; read-only: %d in %d", len(state), size, len(roState), roSize)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, data[:size]) {
			t.Fatalf("the file after a writable open is %d bytes, want the first %d of the input", len(after), size)
		}
		// Recovery is idempotent, and the recovered store takes writes.
		s, err = Open(path, nil)
		if err != nil {
			t.Fatalf("second open: %v", err)
		}
		if again := relCheckOpened(t, s, data[:size]); s.Size() != size || !relSameState(again, state) {
			t.Fatal("a second open shows something else")
		}
		probe := []byte("written after recovery")
		if err := s.Put(probe, probe); err != nil {
			t.Fatalf("put after recovery: %v", err)
		}
		state[Hash(probe)] = probe
		s.Close()
		s, err = Open(path, nil)
		if err != nil {
			t.Fatalf("open after a write: %v", err)
		}
		after, _ := os.ReadFile(path)
		if got := relCheckOpened(t, s, after); !relSameState(got, state) {
			t.Fatalf("after a write: %d keys, want %d", len(got), len(state))
		}
		s.Close()
	})
}

// relCheckOpened checks a store opened on data and returns what it shows.
// The chain must be whole and end in an entry whose checksum holds. Open does
// not read the values below the newest entry (that is Verify's job, and
// VerifyChecksums'): each live entry either verifies or is listed by Verify.
func relCheckOpened(t *testing.T, s *Store, data []byte) map[uint64][]byte {
	t.Helper()
	size := s.Size()
	if size < 0 || size > int64(len(data)) {
		t.Fatalf("Size %d for %d bytes", size, len(data))
	}
	if size > 0 {
		e, ok := format.Decode(data, size)
		if !ok || !e.Valid(data) {
			t.Fatalf("the entry ending at the tail %d does not verify", size)
		}
	}
	bad := map[int64]bool{}
	if err := s.Verify(); err != nil {
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.BrokenAt != -1 {
			t.Fatalf("Verify = %v: the chain Open accepted is broken", err)
		}
		for _, off := range ve.Bad {
			bad[off] = true
		}
	}
	m := map[uint64][]byte{}
	for e := range s.Entries() {
		if _, dup := m[e.KeyHash()]; dup {
			t.Fatalf("key hash %x listed twice", e.KeyHash())
		}
		if e.Offset()%format.Align != 0 || e.Offset()+int64(e.Len())+format.MetaSize > size || e.Len() == 0 {
			t.Fatalf("entry %v outside the store's %d bytes", e, size)
		}
		if !bytes.Equal(e.Bytes(), data[e.Offset():e.Offset()+int64(e.Len())]) {
			t.Fatalf("entry %v does not show the file's bytes", e)
		}
		if verr := e.Verify(); (verr != nil) != bad[e.Offset()] {
			t.Fatalf("entry %v: Verify says %v, Store.Verify listed it: %v", e, verr, bad[e.Offset()])
		}
		g, err := s.GetHash(e.KeyHash())
		if err != nil || g.Offset() != e.Offset() {
			t.Fatalf("GetHash(%x) = %v, %v; Entries gave %v", e.KeyHash(), g, err, e)
		}
		m[e.KeyHash()] = bytes.Clone(e.Bytes())
	}
	if s.Len() != len(m) {
		t.Fatalf("Len() = %d, Entries yielded %d", s.Len(), len(m))
	}
	return m
}

// FuzzFindTail checks the recovery scan itself on arbitrary bytes against a
// plain one that tries every candidate without what FindTail remembers.
//
// Its seeds include the shapes of torn tail that cost the scan most (see
// internal/format.BenchmarkFindTail): one word repeated (a valid chain end,
// small offsets), several chain ends cycled, small integers, fake first
// entries, and chains of records whose checksums fail.
func FuzzFindTail(f *testing.F) {
	for _, s := range relFuzzSeeds(f) {
		f.Add(s)
	}
	for _, s := range relTornSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		L, found := format.FindTail(data, 0)
		if len(data) <= 4096 { // the plain scan is quadratic
			want := int64(0)
			for c := int64(len(data)); c > 0; c-- {
				if format.Chain(data, 0, c) {
					want = c
					break
				}
			}
			if L != want || found != (want > 0 || len(data) == 0) {
				t.Fatalf("FindTail = %d, %v; the plain scan finds %d", L, found, want)
			}
		}
		if found != (L > 0 || len(data) == 0) {
			t.Fatalf("FindTail = %d, %v for %d bytes", L, found, len(data))
		}
		if L == 0 {
			return
		}
		var ends []int64
		last := L
		format.Walk(data, 0, L, func(e format.Entry) bool {
			if e.Prev >= last || e.Next() != last {
				t.Fatalf("entry ending at %d links to %d", last, e.Prev)
			}
			ends = append(ends, e.Prev)
			last = e.Prev
			return true
		})
		if last != 0 {
			t.Fatalf("the chain from %d stops at %d", L, last)
		}
		if l2, ok := format.FindTail(data[:L], 0); l2 != L || !ok {
			t.Fatalf("FindTail of its own result = %d, %v; want %d", l2, ok, L)
		}
		// From any point of the chain (a follower's known tail), the scan
		// finds the same end.
		for _, floor := range ends {
			if l2, ok := format.FindTail(data, floor); l2 != L || !ok {
				t.Fatalf("FindTail from %d = %d, %v; want %d", floor, l2, ok, L)
			}
		}
	})
}

// relTornSeeds are a small store followed by torn tails of the shapes that
// cost FindTail most, under the 4096 bytes the plain scan is compared to.
func relTornSeeds(f *testing.F) [][]byte {
	var base []byte
	var ends []int64
	for i := range 12 {
		v := relBigValue(1+i*13, byte(i))
		if i%5 == 4 {
			base = format.AppendTombstone(base, int64(len(base)), uint64(i))
		} else {
			base = format.AppendEntry(base, int64(len(base)), uint64(i), v)
		}
		ends = append(ends, int64(len(base)))
	}
	tail := uint64(len(base))
	le := binary.LittleEndian
	var seeds [][]byte
	shape := func(n int, fill func(b []byte)) {
		b := make([]byte, n)
		fill(b)
		seeds = append(seeds, append(slices.Clone(base), b...))
	}
	for _, w := range []uint64{tail, uint64(ends[3]), 0, 1, 64, tail - 1} {
		shape(2400, func(b []byte) {
			for i := 0; i+8 <= len(b); i += 8 {
				le.PutUint64(b[i:], w)
			}
		})
	}
	shape(2400, func(b []byte) { // several chain ends cycled
		for i, k := 0, 0; i+24 <= len(b); i, k = i+24, k+1 {
			le.PutUint64(b[i:], 0x3333)
			le.PutUint64(b[i+8:], uint64(ends[k%len(ends)]))
		}
	})
	for _, second := range []func(i int) uint64{
		func(int) uint64 { return 0 },
		func(i int) uint64 { return uint64(i / 16) },
		func(int) uint64 { return tail },
	} {
		shape(2400, func(b []byte) { // small integers
			for i := 0; i+16 <= len(b); i += 16 {
				le.PutUint64(b[i:], uint64(i+1))
				le.PutUint64(b[i+8:], second(i))
			}
		})
	}
	shape(2400, func(b []byte) { // fake first entries beneath heads
		for k := 0; (k+1)*40 <= len(b); k++ {
			o := k * 40
			le.PutUint64(b[o:], 0x1111)
			le.PutUint32(b[o+16:], 7)
			le.PutUint64(b[o+20:], 0x2222)
			if k >= 2 {
				le.PutUint64(b[o+28:], tail+uint64(o)-60)
			}
			le.PutUint32(b[o+36:], 9)
		}
	})
	for _, d := range []int{1, 3} {
		shape(2400, func(b []byte) { // chains of records whose checksums fail
			start := tail + uint64(format.Prepad(int64(tail)))
			for i := 0; ; i++ {
				o := start + uint64(i)*64
				if o+64 > tail+uint64(len(b)) {
					break
				}
				prev := tail
				if i >= d {
					prev = o - uint64(d-1)*64
				}
				m := b[o+44-tail:]
				le.PutUint64(m, uint64(i))
				le.PutUint64(m[8:], prev)
				le.PutUint32(m[16:], 1)
			}
		})
	}
	return seeds
}

// relOpReader decodes a fuzz input into operations.
type relOpReader struct{ b []byte }

func (r *relOpReader) more() bool { return len(r.b) > 0 }

func (r *relOpReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *relOpReader) key() []byte { return fmt.Appendf(nil, "key%d", r.byte()%8) }

// value decodes a value; now and then an invalid one (empty, or 0x00).
func (r *relOpReader) value() []byte {
	c := r.byte()
	var n int
	switch {
	case c == 255:
		return nil
	case c == 254:
		return []byte{0}
	case c >= 248:
		n = int(c-247) * 20000 // up to 140 KB
	default:
		n = 1 + int(c)
	}
	fill := r.byte()
	v := make([]byte, n)
	for i := range v {
		v[i] = fill + byte(i*int(fill|1))
	}
	return v
}

// relFailReader yields value, then fails with errFuzzRead when fail is set.
type relFailReader struct {
	r    io.Reader
	fail bool
}

var errFuzzRead = errors.New("fuzz reader failed")

func (f *relFailReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF && f.fail {
		return n, errFuzzRead
	}
	return n, err
}

// FuzzOps runs an operation sequence decoded from the input (Put, Delete,
// Apply, PutReader, Rename, Compact, reopen, read-only open) and checks the
// store against a map after each one.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 1, 10, 7, 3, 1, 0, 2, 20, 3})
	f.Add([]byte{0, 1, 255, 0, 1, 254, 0, 2, 250, 9, 6, 7, 0})
	f.Add([]byte{4, 5, 0, 1, 5, 1, 1, 3, 2, 0, 0, 1, 0, 9, 1, 2, 6})
	f.Add([]byte{5, 3, 200, 4, 0, 5, 3, 100, 4, 1, 9, 3, 4, 8, 7, 6, 0})
	f.Add([]byte{0, 0, 249, 1, 0, 1, 249, 2, 3, 0, 6, 7, 9, 1, 1, 8, 3, 1})
	dir := relFuzzDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := relFuzzPath(t, dir)
		r := &relOpReader{b: data}
		sync := false
		s, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close() }()
		m := map[uint64][]byte{}
		put := func(h uint64, v []byte) { m[h] = v }
		var b Batch
		for n := 0; r.more() && n < 48; n++ {
			c := r.byte()
			var what string
			var touched []uint64
			switch c % 10 {
			case 0, 1, 2:
				k, v := r.key(), r.value()
				what = fmt.Sprintf("put %s (%d bytes)", k, len(v))
				err := s.Put(k, v)
				if !format.ValueOK(v) {
					if !errors.Is(err, ErrInvalidValue) {
						t.Fatalf("%s: %v, want ErrInvalidValue", what, err)
					}
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				put(Hash(k), v)
				touched = append(touched, Hash(k))
			case 3:
				k := r.key()
				what = fmt.Sprintf("delete %s", k)
				if err := s.Delete(k); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				delete(m, Hash(k))
				touched = append(touched, Hash(k))
			case 4:
				b.Reset()
				next := maps.Clone(m)
				valid := true
				k := int(r.byte() % 6)
				for range k {
					key := r.key()
					touched = append(touched, Hash(key))
					if r.byte()%3 == 0 {
						b.Delete(key)
						delete(next, Hash(key))
						continue
					}
					v := r.value()
					valid = valid && format.ValueOK(v)
					b.Put(key, v)
					next[Hash(key)] = v
				}
				what = fmt.Sprintf("apply %d ops", b.Len())
				err := s.Apply(&b)
				if !valid {
					if !errors.Is(err, ErrInvalidValue) {
						t.Fatalf("%s: %v, want ErrInvalidValue", what, err)
					}
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				m = next
			case 5:
				k, v := r.key(), r.value()
				fail := r.byte()%4 == 0
				what = fmt.Sprintf("put reader %s (%d bytes, fail %v)", k, len(v), fail)
				n, err := s.PutReader(k, &relFailReader{r: bytes.NewReader(v), fail: fail})
				switch {
				case fail:
					if !errors.Is(err, errFuzzRead) {
						t.Fatalf("%s: %v, want the reader's error", what, err)
					}
				case !format.ValueOK(v):
					if !errors.Is(err, ErrInvalidValue) {
						t.Fatalf("%s: %v, want ErrInvalidValue", what, err)
					}
				case err != nil || n != int64(len(v)):
					t.Fatalf("%s: %d, %v", what, n, err)
				default:
					put(Hash(k), v)
				}
				touched = append(touched, Hash(k))
			case 6:
				what = "compact"
				if err := s.Compact(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			case 7:
				what = "reopen"
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				sync = !sync
				if s, err = Open(path, &Options{SyncWrites: sync, VerifyChecksums: true}); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			case 8:
				what = "read-only open"
				ro, err := Open(path, &Options{ReadOnly: true})
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				got := relSnapshot(t, ro)
				ro.Close()
				if !relSameState(got, m) {
					t.Fatalf("%s: %d keys, want %d", what, len(got), len(m))
				}
			case 9:
				from, to := r.key(), r.key()
				what = fmt.Sprintf("rename %s %s", from, to)
				err := s.Rename(from, to)
				v, ok := m[Hash(from)]
				switch {
				case bytes.Equal(from, to):
					if !errors.Is(err, ErrSameKey) {
						t.Fatalf("%s: %v, want ErrSameKey", what, err)
					}
				case !ok:
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("%s: %v, want ErrNotFound", what, err)
					}
				case err != nil:
					t.Fatalf("%s: %v", what, err)
				default:
					put(Hash(to), v)
					delete(m, Hash(from))
				}
				touched = append(touched, Hash(from), Hash(to))
			}
			for _, h := range touched {
				e, err := s.GetHash(h)
				want, ok := m[h]
				if ok != (err == nil) || (ok && !bytes.Equal(e.Bytes(), want)) {
					t.Fatalf("after %s: key %x: %v, %v; model has %v", what, h, e, err, ok)
				}
			}
			if s.Len() != len(m) {
				t.Fatalf("after %s: Len %d, model %d", what, s.Len(), len(m))
			}
		}
		if got := relSnapshot(t, s); !relSameState(got, m) {
			t.Fatalf("at the end: %d keys, want %d", len(got), len(m))
		}
		s.Close()
		if s, err = Open(path, nil); err != nil {
			t.Fatal(err)
		}
		if got := relSnapshot(t, s); !relSameState(got, m) {
			t.Fatalf("reopened: %d keys, want %d", len(got), len(m))
		}
	})
}
