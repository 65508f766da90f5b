package simdr

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/simdr-go/simdr/internal/format"
)

// The files in testdata/vectors were written by the Rust original (copied from
// shared/vectors, which TestVectorsMatchShared keeps them equal to).

type vector struct {
	File     string             `json:"file"`
	FileSize int64              `json:"file_size"`
	Expected map[string]*string `json:"expected"`
}

func loadVector(t *testing.T, name string) vector {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "vectors", name))
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// copyVector copies a vector file into a temporary directory and returns the path.
func copyVector(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "vectors", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "store.bin")
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func checkExpected(t *testing.T, s *Store, v vector) {
	t.Helper()
	live := 0
	for k, want := range v.Expected {
		e, err := s.Get([]byte(k))
		if want == nil {
			if err != ErrNotFound || s.Has([]byte(k)) {
				t.Errorf("%s: key %q: got %v, %v; want absent", v.File, k, e, err)
			}
			continue
		}
		live++
		wb, _ := hex.DecodeString(*want)
		if err != nil || !bytes.Equal(e.Bytes(), wb) {
			t.Errorf("%s: key %q: got %x, %v; want %x", v.File, k, e.Bytes(), err, wb)
			continue
		}
		if err := e.Verify(); err != nil {
			t.Errorf("%s: key %q: %v", v.File, k, err)
		}
		if e.Offset()%format.Align != 0 {
			t.Errorf("%s: key %q: offset %d not aligned", v.File, k, e.Offset())
		}
	}
	if s.Len() != live {
		t.Errorf("%s: Len() = %d, want %d", v.File, s.Len(), live)
	}
	n := 0
	for range s.Entries() {
		n++
	}
	if n != live {
		t.Errorf("%s: Entries() yielded %d, want %d", v.File, n, live)
	}
}

func TestVectorsOpen(t *testing.T) {
	for _, name := range []string{"worked_example", "worked_example.reopened", "small", "k1000"} {
		t.Run(name, func(t *testing.T) {
			v := loadVector(t, name+".json")
			p := copyVector(t, v.File)
			for _, ro := range []bool{false, true} {
				s, err := Open(p, &Options{ReadOnly: ro})
				if err != nil {
					t.Fatal(err)
				}
				checkExpected(t, s, v)
				if s.Size() != v.FileSize {
					t.Errorf("Size() = %d, want %d", s.Size(), v.FileSize)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestVectorsRecover(t *testing.T) {
	for _, name := range []string{"small_trunc1", "small_trunc5", "small_trunc20", "small_trunc21", "small_garbage7"} {
		t.Run(name, func(t *testing.T) {
			v := loadVector(t, name+".json")
			p := copyVector(t, name+".input.bin")
			s, err := Open(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkExpected(t, s, v)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(p)
			want, _ := os.ReadFile(filepath.Join("testdata", "vectors", v.File))
			if !bytes.Equal(got, want) {
				t.Errorf("recovered file differs from the original's: %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

// writeAndCompare runs ops against a new store and compares its bytes with a vector file.
func writeAndCompare(t *testing.T, file string, ops func(s *Store) error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "w.bin")
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ops(s); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	want, err := os.ReadFile(filepath.Join("testdata", "vectors", file))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: written bytes differ from the original's (%d vs %d bytes)\n got %x\nwant %x", file, len(got), len(want), got, want)
	}
}

func k1000Value(i int) []byte {
	n := 1 + (i*37)%300
	v := make([]byte, n)
	for j := range v {
		v[j] = byte((i*7 + j*13 + 1) % 256)
	}
	if n == 1 && v[0] == 0 {
		v[0] = 0xff
	}
	return v
}

func TestVectorsWriteIdentical(t *testing.T) {
	t.Run("worked_example", func(t *testing.T) {
		writeAndCompare(t, "worked_example.bin", func(s *Store) error {
			return firstErr(s.Put([]byte("k1"), []byte("hello")), s.Put([]byte("k2"), []byte("world")), s.Delete([]byte("k1")))
		})
	})
	t.Run("worked_example_batch", func(t *testing.T) {
		writeAndCompare(t, "worked_example.bin", func(s *Store) error {
			var b Batch
			b.Put([]byte("k1"), []byte("hello"))
			b.Put([]byte("k2"), []byte("world"))
			b.Delete([]byte("k1"))
			return s.Apply(&b)
		})
	})
	t.Run("small", func(t *testing.T) {
		writeAndCompare(t, "small.bin", func(s *Store) error {
			return firstErr(
				s.Put([]byte("alpha"), []byte("hello")),
				s.Put([]byte("beta"), []byte("world!")),
				s.Put([]byte("gamma"), []byte{1, 2, 3}),
				s.Put([]byte("alpha"), []byte("HELLO again, overwritten")),
				s.Delete([]byte("beta")))
		})
	})
	t.Run("k1000", func(t *testing.T) {
		writeAndCompare(t, "k1000.bin", func(s *Store) error {
			for i := range 1000 {
				if err := s.Put(fmt.Appendf(nil, "key-%04d", i), k1000Value(i)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	t.Run("k1000_batch", func(t *testing.T) {
		writeAndCompare(t, "k1000.bin", func(s *Store) error {
			var b Batch
			for i := range 1000 {
				b.Put(fmt.Appendf(nil, "key-%04d", i), k1000Value(i))
			}
			return s.Apply(&b)
		})
	})
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func TestVectorsHashes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "vectors", "hashes.json"))
	if err != nil {
		t.Fatal(err)
	}
	var hv struct {
		Vectors []struct {
			Input string `json:"input_hex"`
			XXH3  string `json:"xxh3_64"`
			CRC   string `json:"crc32_le_bytes_hex"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &hv); err != nil {
		t.Fatal(err)
	}
	if len(hv.Vectors) == 0 {
		t.Fatal("no hash vectors")
	}
	for _, v := range hv.Vectors {
		in, _ := hex.DecodeString(v.Input)
		checkHashes(t, in, v.XXH3, v.CRC)
	}
	lines, err := os.ReadFile(filepath.Join("testdata", "vectors", "hash_lengths_0_2100.txt"))
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for line := range strings.Lines(string(lines)) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, _ := strconv.Atoi(f[0])
		in := make([]byte, n)
		for j := range in {
			in[j] = byte((j*31 + 7) % 256)
		}
		checkHashes(t, in, f[1], f[2])
		count++
	}
	if count != 2101 {
		t.Errorf("checked %d lengths, want 2101", count)
	}
}

func checkHashes(t *testing.T, in []byte, xxh, crcLE string) {
	t.Helper()
	if got := fmt.Sprintf("%016x", Hash(in)); got != xxh {
		t.Errorf("xxh3(%d bytes) = %s, want %s", len(in), got, xxh)
	}
	var b [4]byte
	c := format.Checksum(in)
	b[0], b[1], b[2], b[3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
	if got := hex.EncodeToString(b[:]); got != crcLE {
		t.Errorf("crc32(%d bytes) stored as %s, want %s", len(in), got, crcLE)
	}
}

// TestVectorsMatchShared keeps testdata/vectors equal to shared/vectors when
// the shared folder is beside the repository (as it is in CI).
func TestVectorsMatchShared(t *testing.T) {
	shared := filepath.Join("..", "shared", "vectors")
	ents, err := os.ReadDir(shared)
	if err != nil {
		t.Skipf("no %s beside the repository: %v", shared, err)
	}
	for _, e := range ents {
		want, _ := os.ReadFile(filepath.Join(shared, e.Name()))
		got, err := os.ReadFile(filepath.Join("testdata", "vectors", e.Name()))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("testdata/vectors/%s differs from %s (%v): copy it again", e.Name(), shared, err)
		}
	}
}
