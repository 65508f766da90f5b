package simdrarrow

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/endian"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/simdr-go/simdr"
)

func testSchema() *arrow.Schema {
	return arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "score", Type: arrow.PrimitiveTypes.Float64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
}

func testRecord(t testing.TB, base int64, n int) arrow.RecordBatch {
	t.Helper()
	b := array.NewRecordBuilder(memory.NewGoAllocator(), testSchema())
	defer b.Release()
	for i := range n {
		if i%5 == 3 {
			b.Field(0).(*array.Int64Builder).AppendNull()
			b.Field(2).(*array.StringBuilder).AppendNull()
		} else {
			b.Field(0).(*array.Int64Builder).Append(base + int64(i))
			b.Field(2).(*array.StringBuilder).Append("name-" + string(rune('a'+i%26)))
		}
		b.Field(1).(*array.Float64Builder).Append(float64(i) / 4)
	}
	return b.NewRecordBatch()
}

// buffersInside checks every non-empty buffer of every column (validity
// bitmaps, offsets, values) of recs lies inside e's bytes, and returns how
// many it checked.
func buffersInside(t *testing.T, e simdr.Entry, recs []arrow.RecordBatch) (inside, outside int) {
	t.Helper()
	for _, rec := range recs {
		for _, col := range rec.Columns() {
			for _, buf := range col.Data().Buffers() {
				if buf == nil || buf.Len() == 0 {
					continue
				}
				if BufferInside(e, buf) {
					inside++
					if p := uintptr(unsafe.Pointer(unsafe.SliceData(buf.Bytes()))); p%8 != 0 {
						t.Errorf("buffer at %#x is not 8-byte aligned", p)
					}
				} else {
					outside++
				}
			}
		}
	}
	return inside, outside
}

func TestIPCZeroCopy(t *testing.T) {
	s := openStore(t)
	r1, r2 := testRecord(t, 0, 100), testRecord(t, 1000, 37)
	defer r1.Release()
	defer r2.Release()
	if err := PutIPC(s, []byte("batches"), testSchema(), r1, r2); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get([]byte("batches"))
	if err != nil {
		t.Fatal(err)
	}
	schema, recs, err := ReadAll(e)
	if err != nil {
		t.Fatal(err)
	}
	if !schema.Equal(testSchema()) || len(recs) != 2 {
		t.Fatalf("schema %v, %d records", schema, len(recs))
	}
	for i, want := range []arrow.RecordBatch{r1, r2} {
		if !array.RecordEqual(recs[i], want) {
			t.Fatalf("record %d differs:\n%v\nwant\n%v", i, recs[i], want)
		}
	}
	in, out := buffersInside(t, e, recs)
	// per record: id (validity, values), score (values), name (validity, offsets, data)
	if out != 0 || in != 12 {
		t.Fatalf("%d buffers inside the entry, %d outside (copied); want 12, 0", in, out)
	}
	for _, r := range recs {
		r.Release()
	}
	if string(e.Bytes()[:4]) != "\xff\xff\xff\xff" {
		t.Fatal("entry changed after Release")
	}

	// The baseline: the stock stream reader copies every body, so the same
	// check sees its buffers outside the entry (the check discriminates).
	rr, err := ipc.NewReader(bytes.NewReader(e.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Release()
	if !rr.Next() {
		t.Fatal(rr.Err())
	}
	if in, out := buffersInside(t, e, []arrow.RecordBatch{rr.RecordBatch()}); in != 0 || out != 6 {
		t.Fatalf("stock reader: %d inside, %d outside; want 0, 6", in, out)
	}
}

// Compressed streams still read, but their buffers are decompressed into
// fresh memory: outside the entry.
func TestIPCCompressedCopies(t *testing.T) {
	s := openStore(t)
	rec := testRecord(t, 0, 200)
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(testSchema()), ipc.WithZstd())
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Close()
	e := put(t, s, "z", buf.Bytes())
	_, recs, err := ReadAll(e)
	if err != nil {
		t.Fatal(err)
	}
	defer recs[0].Release()
	if !array.RecordEqual(recs[0], rec) {
		t.Fatal("compressed record differs")
	}
	if in, _ := buffersInside(t, e, recs); in != 0 {
		t.Fatalf("%d decompressed buffers inside the entry", in)
	}
}

func TestIPCErrors(t *testing.T) {
	s := openStore(t)
	rec := testRecord(t, 0, 50)
	defer rec.Release()
	good, err := EncodeIPC(testSchema(), rec)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		v    []byte
	}{
		{"garbage", []byte("this is not arrow")},
		{"short", []byte{0xff, 0xff}},
		{"huge metadata length", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"negative metadata length", []byte{0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x80}},
		{"cut in the body", good[:len(good)-40]},
		{"schema only, cut", good[:12]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := put(t, s, tt.name, tt.v)
			if _, recs, err := ReadAll(e); !errors.Is(err, ErrIPC) || recs != nil {
				t.Fatalf("got %d records, %v; want ErrIPC", len(recs), err)
			}
		})
	}
	if _, _, err := ReadAll(simdr.Entry{}); !errors.Is(err, simdr.ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
	if _, err := NewReader(simdr.Entry{}); !errors.Is(err, simdr.ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
}

// Every prefix and every single-byte change of a stream reads without a
// panic: an error, or records that pass ValidateFull.
func TestIPCCorruptNoPanic(t *testing.T) {
	rec := testRecord(t, 0, 20)
	defer rec.Release()
	good, err := EncodeIPC(testSchema(), rec)
	if err != nil {
		t.Fatal(err)
	}
	try := func(b []byte) {
		_, recs, err := readAll(b)
		if err == nil {
			for _, r := range recs {
				r.Release()
			}
		}
	}
	for n := range len(good) {
		try(good[:n])
	}
	for i := range good {
		for _, x := range []byte{0xff, 0x80, 0x01} {
			b := bytes.Clone(good)
			b[i] ^= x
			try(b)
		}
	}
}

// BenchmarkIPCReadZeroCopy and BenchmarkIPCReadCopy read a 1 MiB record
// batch stored as a value: with NewReader, and (the baseline) with the
// stock ipc.NewReader, which copies each message body.
func benchIPC(b *testing.B) simdr.Entry {
	s := openStore(b)
	bld := array.NewInt64Builder(memory.NewGoAllocator())
	for i := range 1 << 17 {
		bld.Append(int64(i))
	}
	col := bld.NewArray()
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Int64}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, int64(col.Len()))
	if err := PutIPC(s, []byte("b"), schema, rec); err != nil {
		b.Fatal(err)
	}
	e, err := s.Get([]byte("b"))
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func BenchmarkIPCReadZeroCopy(b *testing.B) {
	e := benchIPC(b)
	b.SetBytes(int64(e.Len()))
	b.ReportAllocs()
	for b.Loop() {
		rr, err := NewReader(e)
		if err != nil {
			b.Fatal(err)
		}
		for rr.Next() {
			sink += rr.RecordBatch().NumRows()
		}
		rr.Release()
	}
}

func BenchmarkIPCReadCopy(b *testing.B) {
	e := benchIPC(b)
	b.SetBytes(int64(e.Len()))
	b.ReportAllocs()
	for b.Loop() {
		rr, err := ipc.NewReader(bytes.NewReader(e.Bytes()))
		if err != nil {
			b.Fatal(err)
		}
		for rr.Next() {
			sink += rr.RecordBatch().NumRows()
		}
		rr.Release()
	}
}

// A dictionary-encoded column: its indices and its dictionary's buffers
// (from the stream's dictionary batch) both point into the entry.
func TestIPCDictionaryZeroCopy(t *testing.T) {
	s := openStore(t)
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}
	schema := arrow.NewSchema([]arrow.Field{{Name: "tag", Type: dt}}, nil)
	bld := array.NewDictionaryBuilder(memory.NewGoAllocator(), dt).(*array.BinaryDictionaryBuilder)
	for i := range 40 {
		if err := bld.AppendString([]string{"red", "green", "blue"}[i%3]); err != nil {
			t.Fatal(err)
		}
	}
	col := bld.NewArray()
	bld.Release()
	defer col.Release()
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, int64(col.Len()))
	defer rec.Release()
	if err := PutIPC(s, []byte("dict"), schema, rec); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get([]byte("dict"))
	if err != nil {
		t.Fatal(err)
	}
	_, recs, err := ReadAll(e)
	if err != nil {
		t.Fatal(err)
	}
	defer recs[0].Release()
	if !array.RecordEqual(recs[0], rec) {
		t.Fatal("dictionary record differs")
	}
	got := recs[0].Column(0).(*array.Dictionary)
	if in, out := buffersInside(t, e, recs); in != 1 || out != 0 {
		t.Fatalf("indices: %d inside, %d outside", in, out)
	}
	for _, buf := range got.Dictionary().Data().Buffers() {
		if buf != nil && buf.Len() > 0 && !BufferInside(e, buf) {
			t.Fatal("dictionary buffer copied")
		}
	}
}

// A stream in the other byte order would have to be swapped in place, which
// the read-only mapping forbids: it is refused, not faulted on.
func TestIPCOtherEndianRefused(t *testing.T) {
	s := openStore(t)
	other := endian.BigEndian
	if endian.IsBigEndian {
		other = endian.LittleEndian
	}
	schema := arrow.NewSchemaWithEndian([]arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Int64}}, nil, other)
	b := array.NewInt64Builder(memory.NewGoAllocator())
	b.AppendValues([]int64{1, 2, 3}, nil)
	col := b.NewArray()
	defer col.Release()
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, 3)
	defer rec.Release()
	if err := PutIPC(s, []byte("be"), schema, rec); err != nil {
		t.Fatal(err)
	}
	e, _ := s.Get([]byte("be"))
	if _, _, err := ReadAll(e); !errors.Is(err, ErrIPC) {
		t.Fatalf("other byte order: %v, want ErrIPC", err)
	}
}
