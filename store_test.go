package simdr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPutGetDeleteReopen(t *testing.T) {
	s, path := openT(t, nil)
	model := map[string]string{}
	for _, op := range []struct {
		del  bool
		k, v string
	}{
		{false, "a", "1"}, {false, "b", "two"}, {false, "", "empty key is a key"},
		{false, "a", "one again"}, {true, "b", ""}, {true, "never there", ""},
		{false, "c", strings.Repeat("x", 100000)}, {false, "zeros", "\x00\x00\x00"},
	} {
		if op.del {
			if err := s.Delete([]byte(op.k)); err != nil {
				t.Fatal(err)
			}
			delete(model, op.k)
		} else {
			putT(t, s, op.k, op.v)
			model[op.k] = op.v
		}
		checkModel(t, s, model)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopenT(t, path, nil)
	checkModel(t, s, model) // Len counts live keys only after a reopen too
}

func TestDeleteAbsentWritesNothing(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "k", "v")
	size := s.Size()
	for _, k := range []string{"absent", "also absent"} {
		if err := s.Delete([]byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete([]byte("k")); err != nil {
		t.Fatal(err)
	}
	size2 := s.Size()
	if size2 != size+21 {
		t.Fatalf("size after deleting a live key: %d, want %d", size2, size+21)
	}
	if err := s.Delete([]byte("k")); err != nil || s.Size() != size2 {
		t.Fatalf("second delete: %v, size %d", err, s.Size())
	}
}

func TestInvalidValues(t *testing.T) {
	s, _ := openT(t, nil)
	for _, v := range [][]byte{nil, {}, {0}} {
		if err := s.Put([]byte("k"), v); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("Put(%x) = %v, want ErrInvalidValue", v, err)
		}
		if _, err := s.PutReader([]byte("k"), bytes.NewReader(v)); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("PutReader(%x) = %v, want ErrInvalidValue", v, err)
		}
	}
	if s.Size() != 0 || s.Len() != 0 {
		t.Fatalf("invalid values wrote something: size %d len %d", s.Size(), s.Len())
	}
	for _, v := range [][]byte{{1}, {0, 0}, {0xff}} {
		if err := s.Put([]byte("k"), v); err != nil {
			t.Errorf("Put(%x) = %v", v, err)
		}
	}
}

func TestBatch(t *testing.T) {
	s, path := openT(t, nil)
	putT(t, s, "old", "x")
	var b Batch
	b.Put([]byte("a"), []byte("1"))
	b.Delete([]byte("a"))
	b.Put([]byte("a"), []byte("2"))
	b.Delete([]byte("old"))
	b.Delete([]byte("old")) // deleted twice: one tombstone
	b.Delete([]byte("nothing"))
	b.Put([]byte("b"), []byte("3"))
	if b.Len() != 7 {
		t.Fatalf("Len = %d", b.Len())
	}
	if err := s.Apply(&b); err != nil {
		t.Fatal(err)
	}
	model := map[string]string{"a": "2", "b": "3"}
	checkModel(t, s, model)
	st := s.Stats()
	if st.Tombstones != 2 { // one for a (in-batch), one for old
		t.Fatalf("tombstones = %d, want 2", st.Tombstones)
	}

	// A batch holding an invalid value writes nothing.
	b.Reset()
	b.Put([]byte("c"), []byte("ok"))
	b.Put([]byte("d"), []byte{0})
	size := s.Size()
	if err := s.Apply(&b); !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("Apply with invalid value = %v", err)
	}
	if s.Size() != size || s.Has([]byte("c")) {
		t.Fatal("invalid batch wrote something")
	}
	// Reset clears the error; an empty batch writes nothing.
	b.Reset()
	if err := s.Apply(&b); err != nil || s.Size() != size {
		t.Fatalf("empty batch: %v", err)
	}
	// The batch copied its values: changing the caller's buffer after Put changes nothing.
	buf := []byte("mutable")
	b.Put([]byte("m"), buf)
	copy(buf, "XXXXXXX")
	if err := s.Apply(&b); err != nil {
		t.Fatal(err)
	}
	model["m"] = "mutable"
	checkModel(t, s, model)
	s.Close()
	checkModel(t, reopenT(t, path, nil), model)
}

func TestClosedStore(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	var b Batch
	b.Put([]byte("x"), []byte("y"))
	for name, err := range map[string]error{
		"Put":     s.Put([]byte("k"), []byte("v")),
		"Delete":  s.Delete([]byte("k")),
		"Apply":   s.Apply(&b),
		"Sync":    s.Sync(),
		"Get":     func() error { _, err := s.Get([]byte("k")); return err }(),
		"Compact": s.Compact(),
		"PutReader": func() error {
			_, err := s.PutReader([]byte("k"), strings.NewReader("v"))
			return err
		}(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if s.Has([]byte("k")) || s.Len() != 0 {
		t.Error("Has/Len after Close")
	}
	for range s.Entries() {
		t.Fatal("Entries after Close yields")
	}
}

func TestNilArguments(t *testing.T) {
	s, _ := openT(t, nil)
	if err := s.Apply(nil); err != nil {
		t.Fatalf("Apply(nil) = %v", err)
	}
	if _, err := s.PutReader([]byte("k"), nil); !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("PutReader(nil reader) = %v", err)
	}
	if err := s.Put(nil, []byte("nil key")); err != nil {
		t.Fatal(err)
	}
	if getT(t, s, "") != "nil key" {
		t.Fatal("nil key and empty key differ")
	}
	if err := s.Copy([]byte(""), nil); err == nil {
		t.Fatal("Copy to a nil store succeeded")
	}
	if s.Len() != 1 {
		t.Fatalf("Len = %d", s.Len())
	}
}

// TestPermissionDenied: a file the OS lets us open only for reading fails a
// writable Open with an error matching os.ErrPermission, and opens read-only.
func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores file permissions")
	}
	s, path := openT(t, nil)
	putT(t, s, "k", "v")
	s.Close()
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Open of a read-only file = %v, want ErrPermission", err)
	}
	ro := reopenT(t, path, &Options{ReadOnly: true})
	if getT(t, ro, "k") != "v" {
		t.Fatal("read-only open of a 0444 file")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	// Not a store: text with no valid chain.
	junk := filepath.Join(dir, "junk")
	content := []byte(strings.Repeat("this is not a store file\n", 10))
	os.WriteFile(junk, content, 0o644)
	if _, err := Open(junk, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open(junk) = %v, want ErrCorrupt", err)
	}
	if got, _ := os.ReadFile(junk); !bytes.Equal(got, content) {
		t.Fatal("failed Open changed the file")
	}
	// Repair cuts it back to its longest valid prefix (here: nothing).
	s, err := Open(junk, &Options{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 || s.Size() != 0 {
		t.Fatalf("repaired: len %d size %d", s.Len(), s.Size())
	}
	s.Close()
	// A directory, a missing parent, a missing file read-only.
	for name, p := range map[string]string{
		"dir":            dir,
		"missing parent": filepath.Join(dir, "no", "such"),
	} {
		if _, err := Open(p, nil); err == nil {
			t.Errorf("Open(%s) succeeded", name)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing"), &Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open of a missing file = %v, want ErrNotExist", err)
	}
}

// TestTornTailEveryOffset writes entries, then cuts the file at every offset
// inside its last entry: Open recovers every earlier entry and cuts the file.
func TestTornTailEveryOffset(t *testing.T) {
	s, path := openT(t, nil)
	putT(t, s, "a", "alpha")
	putT(t, s, "b", strings.Repeat("b", 100))
	good := s.Size()
	putT(t, s, "c", strings.Repeat("\x00", 70)+"c")
	full := s.Size()
	s.Close()
	data, _ := os.ReadFile(path)
	for n := good; n < full; n++ {
		os.WriteFile(path, data[:n], 0o644)
		s, err := Open(path, nil)
		if err != nil {
			t.Fatalf("cut at %d: %v", n, err)
		}
		checkModel(t, s, map[string]string{"a": "alpha", "b": strings.Repeat("b", 100)})
		if s.Size() != good {
			t.Fatalf("cut at %d: size %d, want %d", n, s.Size(), good)
		}
		s.Close()
		if fi, _ := os.Stat(path); fi.Size() != good {
			t.Fatalf("cut at %d: file not cut back (%d)", n, fi.Size())
		}
	}
}

func TestView(t *testing.T) {
	s, _ := openT(t, nil)
	vals := []float64{1.5, -2, 3e100}
	b := make([]byte, 0, 24)
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	if err := s.Put([]byte("f"), b); err != nil {
		t.Fatal(err)
	}
	e, _ := s.Get([]byte("f"))
	fs, err := View[float64](e)
	if err != nil || len(fs) != 3 || fs[0] != 1.5 || fs[2] != 3e100 {
		t.Fatalf("View[float64] = %v, %v", fs, err)
	}
	if e.Offset()%64 != 0 {
		t.Fatalf("payload at %d, not 64-byte aligned", e.Offset())
	}
	if _, err := View[uint16](e); err != nil {
		t.Fatal(err)
	}
	putT(t, s, "odd", "12345")
	e, _ = s.Get([]byte("odd"))
	if _, err := View[uint32](e); !errors.Is(err, ErrViewSize) {
		t.Fatalf("View on 5 bytes = %v, want ErrViewSize", err)
	}
	if v, err := View[uint64](Entry{}); err != nil || len(v) != 0 {
		t.Fatalf("View of a zero Entry = %v, %v", v, err)
	}
}

func TestEntryAccessors(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "k", "hello world")
	e, err := s.Get([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Len() != 11 || !e.Exists() || e.KeyHash() != Hash([]byte("k")) || e.Verify() != nil {
		t.Fatalf("accessors: %v", e)
	}
	if e.Checksum() != 0x0d4a1185 { // crc32("hello world")
		t.Fatalf("checksum %08x", e.Checksum())
	}
	var sb strings.Builder
	if n, err := e.WriteTo(&sb); err != nil || n != 11 || sb.String() != "hello world" {
		t.Fatalf("WriteTo: %d %v %q", n, err, sb.String())
	}
	r := e.Reader()
	buf := make([]byte, 5)
	if _, err := r.ReadAt(buf, 6); err != nil || string(buf) != "world" {
		t.Fatalf("ReadAt: %v %q", err, buf)
	}
	if _, err := r.Seek(-5, 2); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Read(buf); string(buf[:n]) != "world" {
		t.Fatalf("Seek+Read: %q", buf[:n])
	}
	if e.String() == "" {
		t.Fatal("String empty")
	}
}

// TestSlicesSurviveGrowth keeps slices from early Gets and checks them after
// the file has outgrown several mapping reservations.
func TestSlicesSurviveGrowth(t *testing.T) {
	s, _ := openT(t, nil)
	putT(t, s, "first", "first value")
	e, _ := s.Get([]byte("first"))
	held := e.Bytes()
	big := bytes.Repeat([]byte{7}, 8<<20)
	for i := 0; i < 20; i++ { // 160 MiB: past the 64 MiB and 128 MiB reservations
		if err := s.Put([]byte("big"), big); err != nil {
			t.Fatal(err)
		}
	}
	if string(held) != "first value" {
		t.Fatalf("held slice reads %q", held)
	}
	e, _ = s.Get([]byte("big"))
	if !bytes.Equal(e.Bytes(), big) {
		t.Fatal("big value wrong")
	}
}

func TestSyncWrites(t *testing.T) {
	s, path := openT(t, &Options{SyncWrites: true})
	putT(t, s, "k", "v")
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if s.Path() != path {
		t.Fatalf("Path = %q", s.Path())
	}
}
