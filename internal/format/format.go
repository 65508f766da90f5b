// Package format encodes and decodes the simdr / SIMD R Drive file format
// (shared/FORMAT.md): 64-byte aligned payloads, each followed by 20 bytes of
// metadata (XXH3-64 key hash, the previous tail, CRC-32 IEEE of the payload),
// and one-byte tombstones. It is pure: bytes in, bytes out, no I/O.
package format

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/zeebo/xxh3"
)

const (
	// Align is the alignment of every payload's first byte in the file.
	Align = 64
	// MetaSize is the size of the metadata record that ends every entry.
	MetaSize = 20
	// TombstoneSize is the size of a whole delete marker: one zero byte and its metadata.
	TombstoneSize = 1 + MetaSize
	// TombstoneCRC is the CRC-32 of the single zero byte a tombstone holds.
	TombstoneCRC uint32 = 0xD202EF8D
	// MaxOffset is the largest file offset the store addresses (2^48-1, 256 TiB).
	MaxOffset = 1<<48 - 1
)

var zeros [Align]byte

// Prepad returns how many zero bytes round x up to a multiple of Align.
func Prepad(x int64) int64 { return (Align - x%Align) % Align }

// Hash is the key hash the format stores: XXH3-64, seed 0, default secret.
func Hash(key []byte) uint64 { return xxh3.Hash(key) }

// Checksum is the payload checksum the format stores: CRC-32 with the IEEE polynomial.
func Checksum(payload []byte) uint32 { return crc32.ChecksumIEEE(payload) }

// Meta is a decoded metadata record.
type Meta struct {
	Hash uint64 // XXH3-64 of the key
	Prev int64  // the tail before the entry: where the entry (and its pre-pad) begins
	CRC  uint32 // CRC-32 of the payload
}

// PutMeta writes m into b[:MetaSize].
func PutMeta(b []byte, m Meta) {
	_ = b[MetaSize-1]
	binary.LittleEndian.PutUint64(b[0:8], m.Hash)
	binary.LittleEndian.PutUint64(b[8:16], uint64(m.Prev))
	binary.LittleEndian.PutUint32(b[16:20], m.CRC)
}

// ReadMeta decodes the metadata record in b[:MetaSize].
func ReadMeta(b []byte) Meta {
	_ = b[MetaSize-1]
	return Meta{
		Hash: binary.LittleEndian.Uint64(b[0:8]),
		Prev: int64(binary.LittleEndian.Uint64(b[8:16])),
		CRC:  binary.LittleEndian.Uint32(b[16:20]),
	}
}

// ValueOK reports whether a value can be stored: the format cannot hold an
// empty value, nor the single byte 0x00 (it would read as a tombstone).
func ValueOK(v []byte) bool { return len(v) > 1 || (len(v) == 1 && v[0] != 0) }

// EntrySize returns how many bytes an entry of n payload bytes appended at tail takes,
// pre-pad included.
func EntrySize(tail int64, n int) int64 { return Prepad(tail) + int64(n) + MetaSize }

// AppendEntry appends to dst the bytes of a value entry for payload appended at
// tail: pre-pad, payload, metadata. It returns the extended buffer.
func AppendEntry(dst []byte, tail int64, hash uint64, payload []byte) []byte {
	dst = AppendPrepad(dst, tail)
	dst = append(dst, payload...)
	return AppendMeta(dst, Meta{Hash: hash, Prev: tail, CRC: Checksum(payload)})
}

// AppendPrepad appends the zero bytes that align a payload appended at tail.
func AppendPrepad(dst []byte, tail int64) []byte { return append(dst, zeros[:Prepad(tail)]...) }

// AppendMeta appends the 20 bytes of m to dst.
func AppendMeta(dst []byte, m Meta) []byte {
	var b [MetaSize]byte
	PutMeta(b[:], m)
	return append(dst, b[:]...)
}

// AppendTombstone appends a delete marker for hash, appended at tail.
func AppendTombstone(dst []byte, tail int64, hash uint64) []byte {
	dst = append(dst, 0)
	return AppendMeta(dst, Meta{Hash: hash, Prev: tail, CRC: TombstoneCRC})
}

// Entry describes one entry found in a file: the region [Start, End) is its
// payload (a single zero byte for a tombstone), End+MetaSize is the tail after it.
type Entry struct {
	Meta
	Start     int64 // first payload byte
	End       int64 // one past the last payload byte; the metadata begins here
	Tombstone bool
}

// Next is the offset at which the entry's successor in the file begins: End+MetaSize.
func (e Entry) Next() int64 { return e.End + MetaSize }

// Decode reads the entry whose metadata ends at tail in data (tail ≤ len(data)).
// It checks the structure only (not the checksum): ok is false when no entry can end there.
func Decode(data []byte, tail int64) (e Entry, ok bool) {
	if tail < MetaSize+1 || tail > int64(len(data)) {
		return Entry{}, false
	}
	end := tail - MetaSize
	m := ReadMeta(data[end:tail])
	e.Meta, e.End = m, end
	if m.Prev < 0 || m.Prev >= end {
		return Entry{}, false
	}
	if end-m.Prev == 1 && (data[m.Prev] == 0 || m.CRC == TombstoneCRC) {
		// A one-byte entry holding 0x00 is a tombstone. One whose byte is
		// not 0x00 but whose checksum is TombstoneCRC is a damaged tombstone:
		// only the byte 0x00 has that checksum, so no one-byte value carries
		// it. It stays a tombstone (the key stays deleted, never a value
		// "\x01"); Intact tells it apart.
		e.Start, e.Tombstone = m.Prev, true
		return e, true
	}
	e.Start = m.Prev + Prepad(m.Prev)
	if e.Start >= end {
		return Entry{}, false
	}
	return e, true
}

// Valid reports whether e's checksum matches its bytes in data. For a
// tombstone it checks the stored checksum only (TombstoneCRC): a damaged
// tombstone, whose byte is not 0x00, is Valid (it still links the chain and
// deletes its key) but not Intact.
func (e Entry) Valid(data []byte) bool {
	if e.Tombstone {
		return e.CRC == TombstoneCRC
	}
	return Checksum(data[e.Start:e.End]) == e.CRC
}

// Intact reports whether e is whole in data: a value whose checksum matches
// its bytes, or a tombstone with its checksum and its zero byte.
func (e Entry) Intact(data []byte) bool {
	if e.Tombstone {
		return e.CRC == TombstoneCRC && data[e.Start] == 0
	}
	return Checksum(data[e.Start:e.End]) == e.CRC
}
