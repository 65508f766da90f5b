package simdr

import (
	"fmt"
	"io"
	"unsafe"

	"github.com/simdr-go/simdr/internal/format"
)

// Entry is a stored value, as returned by Get: a small value type that points
// into the store's memory mapping. The zero Entry is the absent value
// (Exists is false).
//
// An Entry and the slice from Bytes stay valid, and their bytes unchanged,
// until the Store is closed: through later writes of the same key, growth of
// the file, and Compact. After Close they must not be used. Close swaps the
// file's pages for zero pages rather than unmapping them at once, so that a
// read racing Close cannot crash the process: for about two seconds after
// Close a stale Entry reads zeros (Verify then fails with ErrChecksum), and
// only after that does using it fault.
// Using them after ReleaseOld released the file generation they point into
// is a fault too (see there).
//
// A file cut under the Store: if another process truncates the store file
// below a value while it is mapped, reading that value's bytes (Bytes,
// Reader, WriteTo, Verify, View) touches pages past the new end of the file
// and raises SIGBUS, which kills the process. simdr guards its own reads (Get
// and Stats return or count an error matching ErrCorrupt, the writer refuses
// further writes with ErrFailed), but not the caller's reads of a zero-copy
// slice. Only the writer should ever change the file; a program that must
// survive other processes cutting it can copy values out under
// runtime/debug.SetPanicOnFault(true) with a recover, which turns the fault
// into a panic (see docs/reliability.md).
type Entry struct {
	b    []byte // the payload; its capacity covers the metadata after it
	hash uint64
	off  int64
}

// Bytes returns the value, zero-copy: the slice points into the read-only
// mapping of the file. It must not be written to (the mapping is read-only:
// a write faults), and it is valid until the Store is closed. Its capacity is
// its length, so append copies. The first byte is 64-byte aligned in memory.
func (e Entry) Bytes() []byte { return e.b[:len(e.b):len(e.b)] }

// Len returns the value's length in bytes.
func (e Entry) Len() int { return len(e.b) }

// Exists reports whether e holds a value (false for the zero Entry, as GetMany
// gives for a missing key).
func (e Entry) Exists() bool { return e.b != nil }

// KeyHash returns the XXH3-64 hash of the key the value was stored under.
func (e Entry) KeyHash() uint64 { return e.hash }

// Offset returns the position of the value's first byte in the file.
func (e Entry) Offset() int64 { return e.off }

// Checksum returns the CRC-32 (IEEE) stored with the value.
func (e Entry) Checksum() uint32 {
	n := len(e.b)
	if cap(e.b) < n+format.MetaSize {
		return 0 // the zero Entry
	}
	return format.ReadMeta(e.b[n : n+format.MetaSize]).CRC
}

// Verify recomputes the value's checksum and returns an error matching
// ErrChecksum when it differs from the stored one.
func (e Entry) Verify() error {
	if got, want := format.Checksum(e.b), e.Checksum(); got != want {
		return fmt.Errorf("value at offset %d: stored crc %08x, computed %08x: %w", e.off, want, got, ErrChecksum)
	}
	return nil
}

// String describes the entry (not its bytes).
func (e Entry) String() string {
	if !e.Exists() {
		return "simdr.Entry(absent)"
	}
	return fmt.Sprintf("simdr.Entry(hash=%016x offset=%d len=%d crc=%08x)", e.hash, e.off, len(e.b), e.Checksum())
}

// Reader returns a reader over the value (Read, ReadAt, Seek), reading
// straight from the mapping.
func (e Entry) Reader() *io.SectionReader {
	return io.NewSectionReader(bytesReaderAt(e.Bytes()), 0, int64(len(e.b)))
}

// WriteTo writes the value to w, straight from the mapping (Entry is an
// io.WriterTo, so io.Copy(w, entry) streams it).
func (e Entry) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(e.Bytes())
	if err == nil && n != len(e.b) {
		err = io.ErrShortWrite
	}
	return int64(n), err
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("simdr: negative offset %d", off)
	}
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Number is the set of fixed-size element types View can reinterpret a value as.
type Number interface {
	~int8 | ~uint8 | ~int16 | ~uint16 | ~int32 | ~uint32 | ~int64 | ~uint64 |
		~float32 | ~float64 | ~complex64 | ~complex128
}

// View reinterprets e's bytes as a slice of T, zero-copy. The value's first
// byte is 64-byte aligned, so every T is aligned. The elements are in the
// machine's byte order (little-endian on amd64 and arm64, as the Rust original
// writes them). View fails with ErrViewSize when the value's length is not a
// multiple of T's size. The slice is read-only and lives as long as e.
func View[T Number](e Entry) ([]T, error) {
	var zero T
	size := int(unsafe.Sizeof(zero))
	if len(e.b)%size != 0 {
		return nil, fmt.Errorf("view %d bytes as %T (%d bytes each): %w", len(e.b), zero, size, ErrViewSize)
	}
	if len(e.b) == 0 {
		return nil, nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(e.b))), len(e.b)/size), nil
}
