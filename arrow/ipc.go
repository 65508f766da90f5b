package simdrarrow

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/simdr-go/simdr"
)

// ErrIPC is returned (wrapped) for a value that is not a well-formed Arrow
// IPC stream, or one that cannot be read without copying (a byte order other
// than the machine's).
var ErrIPC = errors.New("simdrarrow: bad Arrow IPC stream")

// EncodeIPC encodes recs as one Arrow IPC stream (the schema message, one
// message per record batch, the end-of-stream marker), ready to be stored
// as a value. Every record must have the given schema. The result is never
// empty, so it can always be stored.
func EncodeIPC(schema *arrow.Schema, recs ...arrow.RecordBatch) ([]byte, error) {
	if schema == nil {
		return nil, errors.New("simdrarrow: encode: nil schema")
	}
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	for i, rec := range recs {
		if err := w.Write(rec); err != nil {
			w.Close()
			return nil, fmt.Errorf("simdrarrow: encode record %d: %w", i, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("simdrarrow: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// PutIPC stores recs under key as one Arrow IPC stream value (EncodeIPC,
// then s.Put). Read it back zero-copy with NewReader or ReadAll on the
// Entry that s.Get returns.
func PutIPC(s *simdr.Store, key []byte, schema *arrow.Schema, recs ...arrow.RecordBatch) error {
	b, err := EncodeIPC(schema, recs...)
	if err != nil {
		return err
	}
	if err := s.Put(key, b); err != nil {
		return fmt.Errorf("simdrarrow: put ipc stream: %w", err)
	}
	return nil
}

// NewMessageReader returns an ipc.MessageReader over an Arrow IPC stream
// held in b, zero-copy: each message's metadata and body are sub-slices of
// b (the stock ipc.NewReader instead allocates a buffer for every message
// body and copies the stream into it). The stream ends at the end-of-stream
// marker or at the end of b. A message that does not fit in b is an error
// matching ErrIPC. b must stay valid and unchanged while the reader and
// everything read through it are in use; for an Entry's bytes that is the
// Entry's lifetime (see the package doc).
func NewMessageReader(b []byte) ipc.MessageReader {
	r := &messageReader{b: b}
	r.refs.Add(1)
	return r
}

type messageReader struct {
	b    []byte
	pos  int
	refs atomic.Int64
	msg  *ipc.Message
}

func (r *messageReader) Retain() { r.refs.Add(1) }

func (r *messageReader) Release() {
	if r.refs.Add(-1) == 0 && r.msg != nil {
		r.msg.Release()
		r.msg = nil
	}
}

func (r *messageReader) Message() (msg *ipc.Message, err error) {
	defer func() {
		if p := recover(); p != nil { // flatbuffer decoding of garbage
			msg, err = nil, fmt.Errorf("%w: message at byte %d: invalid metadata: %v", ErrIPC, r.pos, p)
			r.pos = len(r.b)
		}
	}()
	if r.msg != nil {
		r.msg.Release()
		r.msg = nil
	}
	rest := r.b[r.pos:]
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if len(rest) < 4 {
		return nil, fmt.Errorf("%w: %d stray bytes at byte %d", ErrIPC, len(rest), r.pos)
	}
	start := r.pos
	n := binary.LittleEndian.Uint32(rest)
	hdr := 4
	switch n {
	case 0:
		return nil, io.EOF
	case 0xFFFFFFFF:
		if len(rest) < 8 {
			return nil, fmt.Errorf("%w: truncated message length at byte %d", ErrIPC, start)
		}
		n = binary.LittleEndian.Uint32(rest[4:])
		hdr = 8
		if n == 0 {
			return nil, io.EOF
		}
	}
	metaLen := int64(int32(n))
	if metaLen < 4 || metaLen > int64(len(rest)-hdr) {
		return nil, fmt.Errorf("%w: message at byte %d: metadata length %d with %d bytes left", ErrIPC, start, metaLen, len(rest)-hdr)
	}
	metaBytes := rest[hdr : hdr+int(metaLen)]
	if err := checkMeta(metaBytes); err != nil {
		return nil, fmt.Errorf("%w: message at byte %d: %w", ErrIPC, start, err)
	}
	meta := memory.NewBufferBytes(metaBytes)
	probe := ipc.NewMessage(meta, memory.NewBufferBytes(nil))
	bodyLen := probe.BodyLen()
	probe.Release()
	left := int64(len(rest)) - int64(hdr) - metaLen
	if bodyLen < 0 || bodyLen > left {
		return nil, fmt.Errorf("%w: message at byte %d: body length %d with %d bytes left", ErrIPC, start, bodyLen, left)
	}
	off := hdr + int(metaLen)
	body := memory.NewBufferBytes(rest[off : off+int(bodyLen)])
	r.pos += off + int(bodyLen)
	r.msg = ipc.NewMessage(meta, body)
	return r.msg, nil
}

// NewReader returns an Arrow IPC stream reader over e's value, zero-copy:
// the column buffers of the record batches it yields (validity bitmaps,
// offsets, values, dictionaries) are sub-slices of e's bytes in the
// mapping, 8-byte aligned (the IPC body alignment; e itself is 64-byte
// aligned). What the reader does allocate: the decoded schema and the Go
// structs of each array (headers, not data); the buffers of a compressed
// stream (LZ4/ZSTD), which are decompressed into fresh memory from
// ipc.WithAllocator's allocator; and concatenated delta dictionaries.
//
// The reader does not validate the arrays it builds: call
// array.ValidateFull on what comes from an untrusted value, or use ReadAll,
// which does. A stream in the other byte order would have to be swapped in
// place, which the read-only mapping forbids: NewReader refuses it with
// ErrIPC. opts are passed to the ipc reader (WithEnsureNativeEndian is
// overridden). The reader and its records live as long as e; Release frees
// no mapped memory.
func NewReader(e simdr.Entry, opts ...ipc.Option) (*ipc.Reader, error) {
	if !e.Exists() {
		return nil, fmt.Errorf("simdrarrow: ipc reader over an absent entry: %w", simdr.ErrNotFound)
	}
	return newReader(e.Bytes(), opts...)
}

func newReader(b []byte, opts ...ipc.Option) (*ipc.Reader, error) {
	opts = append(opts[:len(opts):len(opts)], ipc.WithEnsureNativeEndian(false))
	rr, err := ipc.NewReaderFromMessageReader(NewMessageReader(b), opts...)
	if err != nil {
		if errors.Is(err, ErrIPC) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrIPC, err)
	}
	if !rr.Schema().IsNativeEndian() {
		rr.Release()
		return nil, fmt.Errorf("%w: stream is not in the machine's byte order (reading it would need a copy)", ErrIPC)
	}
	return rr, nil
}

// ReadAll reads every record batch of the IPC stream in e's value
// (NewReader), checks each column with array.ValidateFull, and returns the
// schema and the records, zero-copy as NewReader says. The caller should
// Release each record when done (it frees no mapped memory); the records
// live as long as e. A malformed stream or an invalid array gives an error
// matching ErrIPC, and no records.
func ReadAll(e simdr.Entry, opts ...ipc.Option) (*arrow.Schema, []arrow.RecordBatch, error) {
	if !e.Exists() {
		return nil, nil, fmt.Errorf("simdrarrow: read ipc stream of an absent entry: %w", simdr.ErrNotFound)
	}
	return readAll(e.Bytes(), opts...)
}

func readAll(b []byte, opts ...ipc.Option) (*arrow.Schema, []arrow.RecordBatch, error) {
	rr, err := newReader(b, opts...)
	if err != nil {
		return nil, nil, err
	}
	defer rr.Release()
	var recs []arrow.RecordBatch
	fail := func(err error) (*arrow.Schema, []arrow.RecordBatch, error) {
		for _, r := range recs {
			r.Release()
		}
		return nil, nil, err
	}
	for rr.Next() {
		rec := rr.RecordBatch()
		for i, col := range rec.Columns() {
			if err := validate(col); err != nil {
				return fail(fmt.Errorf("%w: record %d column %d: %w", ErrIPC, len(recs), i, err))
			}
		}
		rec.Retain()
		recs = append(recs, rec)
	}
	if err := rr.Err(); err != nil {
		return fail(fmt.Errorf("%w: record %d: %w", ErrIPC, len(recs), err))
	}
	return rr.Schema(), recs, nil
}

// validate is array.ValidateFull, which itself can panic on some invalid
// arrays (a string offset past its data): the panic becomes an error.
func validate(col arrow.Array) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("invalid array: %v", p)
		}
	}()
	return array.ValidateFull(col)
}
