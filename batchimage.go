package simdr

import (
	"encoding/binary"

	"github.com/simdr-go/simdr/internal/format"
)

// A Batch holds its puts as the bytes the file will hold, so that Apply
// writes them straight from the Batch instead of copying every value a
// second time into the write buffer. Every payload starts on a multiple of
// format.Align, so the padding before each entry but the first depends only
// on the entries before it in the batch, not on where the batch lands:
// data[imgHead:] is the image of the batch's entries from the first
// payload on, padding, payloads and metadata (hash, checksum) all in place
// but for each entry's prev link (the file offset where it begins), which
// Apply fills in. The first imgHead bytes stay zero: the first entry's
// padding, as much of it as the file's tail needs.
const imgHead = format.Align

// appendImage appends the entry of a put of value under h to b.data and
// returns where the value lies in it.
func (b *Batch) appendImage(h uint64, value []byte) (start, end int) {
	if len(b.data) == 0 {
		b.data = append(b.data, make([]byte, imgHead)...)
	}
	b.data = format.AppendPrepad(b.data, int64(len(b.data)))
	start = len(b.data)
	b.data = append(b.data, value...)
	end = len(b.data)
	b.data = format.AppendMeta(b.data, format.Meta{Hash: h, CRC: format.Checksum(value)})
	return start, end
}

// crcOf returns the checksum appendImage stored for op's value.
func (b *Batch) crcOf(op batchOp) uint32 {
	return binary.LittleEndian.Uint32(b.data[op.end+16:])
}

// putImage adds every op of b, all puts, to a: the image written as it lies
// in b.data, after the prev links are filled in for where it lands.
func (a *appender) putImage(b *Batch) {
	if a.err != nil {
		return
	}
	a.flush() // nothing buffered before a batch; kept for safety
	pad := format.Prepad(a.tail)
	base := a.tail + pad - imgHead // the file offset of b.data[0]
	prev := a.tail
	for _, op := range b.ops {
		binary.LittleEndian.PutUint64(b.data[op.end+8:], uint64(prev))
		end := base + int64(op.end)
		a.s.ops = append(a.s.ops, pending{hash: op.hash, pos: pack(end, int64(op.end-op.start))})
		prev = end + format.MetaSize
	}
	img := b.data[imgHead-pad:]
	copy(a.meta[:], img[len(img)-format.MetaSize:])
	a.writeAt(img, a.tail)
	a.written = prev // all of it may be in the file, even on failure (see flush)
	a.tail = prev
}
