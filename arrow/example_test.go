package simdrarrow_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/simdr-go/simdr"
	simdrarrow "github.com/simdr-go/simdr/arrow"
)

func Example() {
	dir, _ := os.MkdirTemp("", "simdrarrow")
	defer os.RemoveAll(dir)
	s, err := simdr.Open(filepath.Join(dir, "ex.simdr"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close() // everything read below is valid until here

	// A value of little-endian float64s is an Arrow array, in place.
	raw := make([]byte, 0, 24)
	for _, f := range []float64{1.5, 2.5, 4} {
		raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(f))
	}
	s.Put([]byte("temps"), raw)
	e, _ := s.Get([]byte("temps"))
	temps, _ := simdrarrow.Float64s(e)
	fmt.Println(temps, simdrarrow.BufferInside(e, temps.Data().Buffers()[1]))
	temps.Release() // frees nothing: the bytes are the store's

	// A record batch stored as an Arrow IPC stream, read back zero-copy.
	schema := arrow.NewSchema([]arrow.Field{{Name: "city", Type: arrow.BinaryTypes.String}}, nil)
	b := array.NewRecordBuilder(memory.NewGoAllocator(), schema)
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"Oslo", "Lima"}, nil)
	rec := b.NewRecordBatch()
	b.Release()
	if err := simdrarrow.PutIPC(s, []byte("cities"), schema, rec); err != nil {
		fmt.Println(err)
		return
	}
	rec.Release()
	e, _ = s.Get([]byte("cities"))
	_, recs, err := simdrarrow.ReadAll(e)
	if err != nil {
		fmt.Println(err)
		return
	}
	col := recs[0].Column(0).(*array.String)
	fmt.Println(col.Value(1), simdrarrow.BufferInside(e, col.Data().Buffers()[2]))
	recs[0].Release()
	// Output:
	// [1.5 2.5 4] true
	// Lima true
}
