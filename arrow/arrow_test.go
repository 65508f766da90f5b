package simdrarrow

import (
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/simdr-go/simdr"
)

func openStore(t testing.TB) *simdr.Store {
	t.Helper()
	s, err := simdr.Open(filepath.Join(t.TempDir(), "a.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t testing.TB, s *simdr.Store, key string, v []byte) simdr.Entry {
	t.Helper()
	if err := s.Put([]byte(key), v); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func le64(xs ...uint64) []byte {
	b := make([]byte, 8*len(xs))
	for i, x := range xs {
		binary.LittleEndian.PutUint64(b[8*i:], x)
	}
	return b
}

// dataPtrInside checks that arr's data buffer (buffer 1) starts inside e's
// bytes and covers exactly the value: the proof that nothing was copied.
func dataPtrInside(t *testing.T, e simdr.Entry, arr arrow.Array) {
	t.Helper()
	buf := arr.Data().Buffers()[1]
	if !BufferInside(e, buf) {
		t.Fatalf("%v: data buffer %p (len %d) is not inside the entry's bytes %p (len %d): copied", arr.DataType(), unsafe.SliceData(buf.Bytes()), buf.Len(), unsafe.SliceData(e.Bytes()), e.Len())
	}
	if unsafe.SliceData(buf.Bytes()) != unsafe.SliceData(e.Bytes()) {
		t.Fatalf("%v: data buffer does not start at the value's first byte", arr.DataType())
	}
}

func TestBufferZeroCopy(t *testing.T) {
	s := openStore(t)
	e := put(t, s, "k", []byte("hello arrow"))
	buf := Buffer(e)
	if string(buf.Bytes()) != "hello arrow" || buf.Len() != e.Len() {
		t.Fatalf("buffer %q", buf.Bytes())
	}
	if !BufferInside(e, buf) || unsafe.SliceData(buf.Bytes()) != unsafe.SliceData(e.Bytes()) {
		t.Fatal("buffer does not share the entry's bytes")
	}
	if p := uintptr(unsafe.Pointer(unsafe.SliceData(buf.Bytes()))); p%64 != 0 {
		t.Fatalf("buffer at %#x is not 64-byte aligned", p)
	}
	buf.Retain()
	buf.Release()
	buf.Release() // no allocator: Release frees nothing, however often
	if string(e.Bytes()) != "hello arrow" {
		t.Fatal("entry bytes changed after Release")
	}
	if Buffer(simdr.Entry{}).Len() != 0 {
		t.Fatal("zero Entry: want an empty buffer")
	}
	if BufferInside(e, nil) || BufferInside(simdr.Entry{}, buf) {
		t.Fatal("BufferInside of nothing must be false")
	}
}

func TestArrayTypes(t *testing.T) {
	s := openStore(t)
	raw := le64(1, math.MaxUint64, 1<<40, math.Float64bits(-2.5))
	e := put(t, s, "nums", raw)
	tests := []struct {
		name  string
		get   func(simdr.Entry) (arrow.Array, error)
		n     int
		check func(arrow.Array) bool
	}{
		{"int64", func(e simdr.Entry) (arrow.Array, error) { return Int64s(e) }, 4, func(a arrow.Array) bool {
			v := a.(*array.Int64).Int64Values()
			return v[0] == 1 && v[1] == -1 && v[2] == 1<<40
		}},
		{"uint64", func(e simdr.Entry) (arrow.Array, error) { return Uint64s(e) }, 4, func(a arrow.Array) bool {
			return a.(*array.Uint64).Value(1) == math.MaxUint64
		}},
		{"float64", func(e simdr.Entry) (arrow.Array, error) { return Float64s(e) }, 4, func(a arrow.Array) bool {
			return a.(*array.Float64).Value(3) == -2.5
		}},
		{"int32", func(e simdr.Entry) (arrow.Array, error) { return Int32s(e) }, 8, func(a arrow.Array) bool {
			v := a.(*array.Int32)
			return v.Value(0) == 1 && v.Value(1) == 0 && v.Value(2) == -1
		}},
		{"uint32", func(e simdr.Entry) (arrow.Array, error) { return Uint32s(e) }, 8, func(a arrow.Array) bool {
			return a.(*array.Uint32).Value(5) == 1<<8
		}},
		{"float32", func(e simdr.Entry) (arrow.Array, error) { return Float32s(e) }, 8, func(a arrow.Array) bool {
			return a.(*array.Float32).Value(0) == math.Float32frombits(1)
		}},
		{"int16", func(e simdr.Entry) (arrow.Array, error) { return Int16s(e) }, 16, func(a arrow.Array) bool {
			return a.(*array.Int16).Value(4) == -1
		}},
		{"uint16", func(e simdr.Entry) (arrow.Array, error) { return Uint16s(e) }, 16, func(a arrow.Array) bool {
			return a.(*array.Uint16).Value(0) == 1
		}},
		{"int8", func(e simdr.Entry) (arrow.Array, error) { return Int8s(e) }, 32, func(a arrow.Array) bool {
			return a.(*array.Int8).Value(8) == -1
		}},
		{"uint8", func(e simdr.Entry) (arrow.Array, error) { return Uint8s(e) }, 32, func(a arrow.Array) bool {
			return a.(*array.Uint8).Value(0) == 1
		}},
		{"timestamp", func(e simdr.Entry) (arrow.Array, error) { return Array(e, arrow.FixedWidthTypes.Timestamp_ns) }, 4, func(a arrow.Array) bool {
			return a.(*array.Timestamp).Value(0) == 1
		}},
		{"decimal128", func(e simdr.Entry) (arrow.Array, error) {
			return Array(e, &arrow.Decimal128Type{Precision: 38, Scale: 0})
		}, 2, func(a arrow.Array) bool { return a.(*array.Decimal128).Value(0).LowBits() == 1 }},
		{"fixed_size_binary", func(e simdr.Entry) (arrow.Array, error) {
			return Array(e, &arrow.FixedSizeBinaryType{ByteWidth: 16})
		}, 2, func(a arrow.Array) bool { return a.(*array.FixedSizeBinary).Value(1)[0] == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arr, err := tt.get(e)
			if err != nil {
				t.Fatal(err)
			}
			defer arr.Release()
			if arr.Len() != tt.n || arr.NullN() != 0 {
				t.Fatalf("len %d nulls %d, want %d, 0", arr.Len(), arr.NullN(), tt.n)
			}
			if !tt.check(arr) {
				t.Fatalf("wrong values: %v", arr)
			}
			if err := array.ValidateFull(arr); err != nil {
				t.Fatal(err)
			}
			dataPtrInside(t, e, arr)
		})
	}
}

func TestArrayErrors(t *testing.T) {
	s := openStore(t)
	e := put(t, s, "odd", []byte("12345"))
	tests := []struct {
		name string
		e    simdr.Entry
		dt   arrow.DataType
		want error
	}{
		{"size", e, arrow.PrimitiveTypes.Int64, simdr.ErrViewSize},
		{"size32", e, arrow.PrimitiveTypes.Float32, simdr.ErrViewSize},
		{"absent", simdr.Entry{}, arrow.PrimitiveTypes.Int64, simdr.ErrNotFound},
		{"bool", e, arrow.FixedWidthTypes.Boolean, ErrType},
		{"string", e, arrow.BinaryTypes.String, ErrType},
		{"list", e, arrow.ListOf(arrow.PrimitiveTypes.Int8), ErrType},
		{"null", e, arrow.Null, ErrType},
		{"dictionary", e, &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}, ErrType},
		{"fixed_size_list", e, arrow.FixedSizeListOf(5, arrow.PrimitiveTypes.Int8), ErrType},
		{"run_end_encoded", e, arrow.RunEndEncodedOf(arrow.PrimitiveTypes.Int32, arrow.PrimitiveTypes.Int8), ErrType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arr, err := Array(tt.e, tt.dt)
			if !errors.Is(err, tt.want) || arr != nil {
				t.Fatalf("got %v, %v; want %v", arr, err, tt.want)
			}
		})
	}
	if _, err := Int64s(e); !errors.Is(err, simdr.ErrViewSize) {
		t.Fatalf("Int64s: %v", err)
	}
	if a, err := Uint8s(e); err != nil || a.Len() != 5 {
		t.Fatalf("Uint8s: %v %v", a, err)
	}
}

// The arrays stay valid through later writes of the same key and growth of
// the file, as the Entry does.
func TestArrayOutlivesOverwrite(t *testing.T) {
	s := openStore(t)
	e := put(t, s, "k", le64(7, 8, 9))
	arr, err := Int64s(e)
	if err != nil {
		t.Fatal(err)
	}
	defer arr.Release()
	big := make([]byte, 1<<20)
	for i := range 8 {
		big[0] = byte(i + 1)
		put(t, s, "k", big)
	}
	if v := arr.Int64Values(); v[0] != 7 || v[2] != 9 {
		t.Fatalf("values changed: %v", v)
	}
}

var sink int64

func benchValue(b *testing.B) simdr.Entry {
	s := openStore(b)
	raw := make([]byte, 1<<20) // 131,072 int64
	for i := 0; i < len(raw); i += 8 {
		binary.LittleEndian.PutUint64(raw[i:], uint64(i))
	}
	return put(b, s, "v", raw)
}

// BenchmarkInt64sZeroCopy and BenchmarkInt64sCopy build an Int64 array over
// a 1 MiB value: in place, and (the baseline) copied into Arrow memory.
func BenchmarkInt64sZeroCopy(b *testing.B) {
	e := benchValue(b)
	b.SetBytes(int64(e.Len()))
	b.ReportAllocs()
	for b.Loop() {
		arr, err := Int64s(e)
		if err != nil {
			b.Fatal(err)
		}
		sink += arr.Value(arr.Len() - 1)
		arr.Release()
	}
}

func BenchmarkInt64sCopy(b *testing.B) {
	e := benchValue(b)
	mem := memory.NewGoAllocator()
	b.SetBytes(int64(e.Len()))
	b.ReportAllocs()
	for b.Loop() {
		buf := memory.NewResizableBuffer(mem)
		buf.Resize(e.Len())
		copy(buf.Bytes(), e.Bytes())
		data := array.NewData(arrow.PrimitiveTypes.Int64, e.Len()/8, []*memory.Buffer{nil, buf}, nil, 0, 0)
		arr := array.NewInt64Data(data)
		sink += arr.Value(arr.Len() - 1)
		arr.Release()
		data.Release()
		buf.Release()
	}
}
