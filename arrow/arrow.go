// Package simdrarrow (import path github.com/simdr-go/simdr/arrow) turns
// simdr values into Apache Arrow buffers, arrays and record batches without
// copying them.
//
// simdr stores every value at a 64-byte aligned offset of its memory-mapped
// file (docs: FORMAT.md), which is the alignment Arrow asks of its buffers,
// so a value can back an Arrow buffer as it lies in the mapping:
//
//   - Buffer wraps an Entry's bytes as a memory.Buffer;
//   - Array, Int64s, Float64s, ... view a value of fixed-width elements as an
//     Arrow array (no nulls) whose data buffer is the value itself;
//   - EncodeIPC / PutIPC store record batches as an Arrow IPC stream value,
//     and NewReader / ReadAll read them back with every column buffer
//     pointing into the mapping.
//
// The package lives in a module of its own so that the core simdr module
// does not depend on arrow-go.
//
// # Lifetimes
//
// Everything returned here that comes from an Entry (buffers, arrays,
// records, readers) points into the store's read-only mapping and is valid
// exactly as long as the Entry is: until the Store is closed, or until
// Store.ReleaseOld releases the file generation it points into (see
// simdr.Entry). Using it after that is a fault. Release and Retain on these
// objects only count references: Release never frees or unmaps the mapped
// memory, and keeping an array retained does not keep the mapping alive.
// The mapping is read-only: the buffers must not be written to (a write
// faults), so never hand them to code that mutates arrays in place. Copy
// what must outlive the store (for example with array.Concatenate, or by
// encoding it again).
//
// # Cost
//
// Building an array over a value costs a few small allocations (the array
// headers), whatever the value's size: over a 1 MiB value of int64s,
// Int64s takes about 0.4 µs where copying the value into Arrow memory takes
// 0.6-0.95 ms (BenchmarkInt64sZeroCopy/Copy, 2-core machine), and reading a
// 1 MiB record batch back with NewReader takes 7-9 µs against 0.9-1.2 ms
// for the stock ipc.NewReader (BenchmarkIPCReadZeroCopy/Copy).
//
// Elements are read in the machine's byte order (little-endian on amd64 and
// arm64), as simdr.View reads them.
package simdrarrow

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/simdr-go/simdr"
)

// ErrType is returned (wrapped) by Array for a data type that is not a
// fixed-width type whose elements are whole bytes.
var ErrType = errors.New("simdrarrow: not a byte-wide fixed-width type")

// Buffer returns e's value as an Arrow buffer, zero-copy: its Bytes are
// e.Bytes(), 64-byte aligned, read-only. The buffer has no allocator:
// Retain and Release do nothing, and it lives as long as e (see the package
// doc). The zero Entry gives an empty buffer (Len 0).
func Buffer(e simdr.Entry) *memory.Buffer {
	return memory.NewBufferBytes(e.Bytes())
}

// Array returns e's value as an Arrow array of dt with no nulls, zero-copy:
// the array's data buffer is the value's bytes in the mapping. dt must be a
// fixed-width type of whole bytes (the integer and floating-point types,
// Float16, Date32/64, Time32/64, Timestamp, Duration, Decimal32/64/128/256,
// FixedSizeBinary, the interval types); Boolean (bit-packed), dictionary,
// extension, nested and variable-width types fail with ErrType. A value whose length is not a multiple of
// the element size fails with an error matching simdr.ErrViewSize; the zero
// Entry (a missing key) fails with simdr.ErrNotFound. The array lives as
// long as e; releasing it frees nothing.
func Array(e simdr.Entry, dt arrow.DataType) (arrow.Array, error) {
	fw, ok := dt.(arrow.FixedWidthDataType)
	if !ok || fw.BitWidth()%8 != 0 || fw.BitWidth() == 0 {
		return nil, fmt.Errorf("simdrarrow: array of %v: %w", dt, ErrType)
	}
	switch dt.ID() {
	case arrow.BOOL, arrow.DICTIONARY, arrow.EXTENSION, arrow.NULL:
		// bit-packed; needs a dictionary; needs its storage type
		return nil, fmt.Errorf("simdrarrow: array of %v: %w", dt, ErrType)
	}
	if layout := dt.Layout(); len(layout.Buffers) != 2 || layout.Buffers[1].Kind != arrow.KindFixedWidth || layout.Buffers[1].ByteWidth != fw.BitWidth()/8 {
		return nil, fmt.Errorf("simdrarrow: array of %v (layout %v): %w", dt, dt.Layout(), ErrType)
	}
	if !e.Exists() {
		return nil, fmt.Errorf("simdrarrow: array of %v from an absent entry: %w", dt, simdr.ErrNotFound)
	}
	size := fw.BitWidth() / 8
	if e.Len()%size != 0 {
		return nil, fmt.Errorf("simdrarrow: %d bytes as %v (%d bytes each): %w", e.Len(), dt, size, simdr.ErrViewSize)
	}
	data := array.NewData(dt, e.Len()/size, []*memory.Buffer{nil, Buffer(e)}, nil, 0, 0)
	defer data.Release()
	return array.MakeFromData(data), nil
}

func typed[A arrow.Array](e simdr.Entry, dt arrow.DataType) (A, error) {
	var zero A
	arr, err := Array(e, dt)
	if err != nil {
		return zero, err
	}
	return arr.(A), nil
}

// Int64s is Array(e, arrow.PrimitiveTypes.Int64), typed. Same errors and
// lifetime as Array.
func Int64s(e simdr.Entry) (*array.Int64, error) {
	return typed[*array.Int64](e, arrow.PrimitiveTypes.Int64)
}

// Uint64s is Array(e, arrow.PrimitiveTypes.Uint64), typed. Same errors and
// lifetime as Array.
func Uint64s(e simdr.Entry) (*array.Uint64, error) {
	return typed[*array.Uint64](e, arrow.PrimitiveTypes.Uint64)
}

// Int32s is Array(e, arrow.PrimitiveTypes.Int32), typed. Same errors and
// lifetime as Array.
func Int32s(e simdr.Entry) (*array.Int32, error) {
	return typed[*array.Int32](e, arrow.PrimitiveTypes.Int32)
}

// Uint32s is Array(e, arrow.PrimitiveTypes.Uint32), typed. Same errors and
// lifetime as Array.
func Uint32s(e simdr.Entry) (*array.Uint32, error) {
	return typed[*array.Uint32](e, arrow.PrimitiveTypes.Uint32)
}

// Int16s is Array(e, arrow.PrimitiveTypes.Int16), typed. Same errors and
// lifetime as Array.
func Int16s(e simdr.Entry) (*array.Int16, error) {
	return typed[*array.Int16](e, arrow.PrimitiveTypes.Int16)
}

// Uint16s is Array(e, arrow.PrimitiveTypes.Uint16), typed. Same errors and
// lifetime as Array.
func Uint16s(e simdr.Entry) (*array.Uint16, error) {
	return typed[*array.Uint16](e, arrow.PrimitiveTypes.Uint16)
}

// Int8s is Array(e, arrow.PrimitiveTypes.Int8), typed. Same errors and
// lifetime as Array.
func Int8s(e simdr.Entry) (*array.Int8, error) {
	return typed[*array.Int8](e, arrow.PrimitiveTypes.Int8)
}

// Uint8s is Array(e, arrow.PrimitiveTypes.Uint8), typed. Same errors and
// lifetime as Array.
func Uint8s(e simdr.Entry) (*array.Uint8, error) {
	return typed[*array.Uint8](e, arrow.PrimitiveTypes.Uint8)
}

// Float64s is Array(e, arrow.PrimitiveTypes.Float64), typed. Same errors and
// lifetime as Array.
func Float64s(e simdr.Entry) (*array.Float64, error) {
	return typed[*array.Float64](e, arrow.PrimitiveTypes.Float64)
}

// Float32s is Array(e, arrow.PrimitiveTypes.Float32), typed. Same errors and
// lifetime as Array.
func Float32s(e simdr.Entry) (*array.Float32, error) {
	return typed[*array.Float32](e, arrow.PrimitiveTypes.Float32)
}

// inside reports whether the n bytes at p lie inside b (used by tests and
// by BufferInside).
func inside(b []byte, p unsafe.Pointer, n int) bool {
	if len(b) == 0 || p == nil {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	hi := lo + uintptr(len(b))
	q := uintptr(p)
	return q >= lo && q+uintptr(n) <= hi
}

// BufferInside reports whether buf's bytes lie inside e's value in the
// mapping, that is, whether buf shares e's memory rather than holding a copy.
// An empty or nil buffer is inside nothing (false).
func BufferInside(e simdr.Entry, buf *memory.Buffer) bool {
	if buf == nil || buf.Len() == 0 {
		return false
	}
	b := buf.Bytes()
	return inside(e.Bytes(), unsafe.Pointer(unsafe.SliceData(b)), len(b))
}
