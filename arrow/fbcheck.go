package simdrarrow

import (
	"encoding/binary"
	"errors"
)

// checkMeta bounds-checks the flatbuffer metadata of one IPC message before
// arrow-go decodes it. arrow-go trusts the lengths of the vectors it finds
// there (it allocates a slice of as many fields, children or key-value pairs
// as a vector claims) and follows child tables without a depth limit, so a
// damaged value could make it allocate gigabytes or recurse until the stack
// overflows, neither of which a recover catches. This walk checks that every
// vector arrow-go sizes an allocation by fits in the metadata, and that
// nesting stays under maxDepth (cycles included).
func checkMeta(b []byte) error {
	root, ok := fbOffset(b, 0)
	if !ok {
		return errFB
	}
	msg, ok := fbTableAt(b, root)
	if !ok {
		return errFB
	}
	if err := msg.checkKVs(4); err != nil {
		return err
	}
	htype, _ := msg.u8(1)
	h, present, ok := msg.table(2)
	if !ok {
		return errFB
	}
	if !present {
		return nil
	}
	switch htype {
	case 1: // Schema
		return checkSchema(h)
	case 2: // DictionaryBatch: id(0), data(1), isDelta(2)
		rb, present, ok := h.table(1)
		if !ok {
			return errFB
		}
		if present {
			return checkRecordBatch(rb)
		}
	case 3: // RecordBatch
		return checkRecordBatch(h)
	}
	return nil
}

const maxDepth = 64 // arrow-go's own limit on nested arrays

var errFB = errors.New("malformed flatbuffer metadata")

func checkSchema(s fbTable) error {
	// endianness(0), fields(1), custom_metadata(2), features(3)
	if err := s.checkKVs(2); err != nil {
		return err
	}
	if _, _, ok := s.vector(3, 8); !ok {
		return errFB
	}
	return s.checkFields(1, 0)
}

func (t fbTable) checkFields(slot, depth int) error {
	if depth > maxDepth {
		return errors.New("schema nested too deep")
	}
	start, n, ok := t.vector(slot, 4)
	if !ok {
		return errFB
	}
	for i := range n {
		p, ok := fbOffset(t.b, start+4*i)
		if !ok {
			return errFB
		}
		f, ok := fbTableAt(t.b, p)
		if !ok {
			return errFB
		}
		// name(0), nullable(1), type_type(2), type(3), dictionary(4),
		// children(5), custom_metadata(6)
		if _, _, ok := f.vector(0, 1); !ok {
			return errFB
		}
		if err := f.checkKVs(6); err != nil {
			return err
		}
		if typ, present, ok := f.table(3); !ok {
			return errFB
		} else if present {
			// Timestamp's timezone (slot 1, a string) and Union's typeIds
			// (slot 1, [int]): both vectors at slot 1.
			if tt, _ := f.u8(2); tt == 10 || tt == 14 {
				if _, _, ok := typ.vector(1, 1); !ok {
					return errFB
				}
			}
		}
		if d, present, ok := f.table(4); !ok {
			return errFB
		} else if present {
			if _, _, ok := d.table(1); !ok {
				return errFB
			}
		}
		if err := f.checkFields(5, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func checkRecordBatch(rb fbTable) error {
	// length(0), nodes(1) [16-byte structs], buffers(2) [16-byte structs],
	// compression(3), variadicBufferCounts(4) [long]
	for _, v := range [][2]int{{1, 16}, {2, 16}, {4, 8}} {
		if _, _, ok := rb.vector(v[0], v[1]); !ok {
			return errFB
		}
	}
	if _, _, ok := rb.table(3); !ok {
		return errFB
	}
	return nil
}

// checkKVs checks a [KeyValue] vector at slot (key(0), value(1) strings).
func (t fbTable) checkKVs(slot int) error {
	start, n, ok := t.vector(slot, 4)
	if !ok {
		return errFB
	}
	for i := range n {
		p, ok := fbOffset(t.b, start+4*i)
		if !ok {
			return errFB
		}
		kv, ok := fbTableAt(t.b, p)
		if !ok {
			return errFB
		}
		for s := range 2 {
			if _, _, ok := kv.vector(s, 1); !ok {
				return errFB
			}
		}
	}
	return nil
}

type fbTable struct {
	b       []byte
	pos, vt int // the table, its vtable
	vtSize  int
}

// fbOffset reads the uoffset at p and returns the position it points to.
func fbOffset(b []byte, p int) (int, bool) {
	if p < 0 || p+4 > len(b) {
		return 0, false
	}
	q := int64(p) + int64(binary.LittleEndian.Uint32(b[p:]))
	if q >= int64(len(b)) {
		return 0, false
	}
	return int(q), true
}

func fbTableAt(b []byte, pos int) (fbTable, bool) {
	if pos < 0 || pos+4 > len(b) {
		return fbTable{}, false
	}
	vt := int64(pos) - int64(int32(binary.LittleEndian.Uint32(b[pos:])))
	if vt < 0 || vt+4 > int64(len(b)) {
		return fbTable{}, false
	}
	size := int(binary.LittleEndian.Uint16(b[vt:]))
	if size < 4 || vt+int64(size) > int64(len(b)) {
		return fbTable{}, false
	}
	return fbTable{b: b, pos: pos, vt: int(vt), vtSize: size}, true
}

// field returns the position of slot's value, 0 when absent.
func (t fbTable) field(slot int) (int, bool) {
	o := 4 + 2*slot
	if o+2 > t.vtSize {
		return 0, true
	}
	off := int(binary.LittleEndian.Uint16(t.b[t.vt+o:]))
	if off == 0 {
		return 0, true
	}
	if t.pos+off >= len(t.b) {
		return 0, false
	}
	return t.pos + off, true
}

func (t fbTable) u8(slot int) (byte, bool) {
	p, ok := t.field(slot)
	if !ok || p == 0 {
		return 0, ok
	}
	return t.b[p], true
}

func (t fbTable) table(slot int) (sub fbTable, present, ok bool) {
	p, ok := t.field(slot)
	if !ok || p == 0 {
		return fbTable{}, false, ok
	}
	q, ok := fbOffset(t.b, p)
	if !ok {
		return fbTable{}, true, false
	}
	sub, ok = fbTableAt(t.b, q)
	return sub, true, ok
}

// vector returns the start and length of the vector at slot, checking that
// its n elements of elem bytes fit in the buffer. An absent vector is empty.
func (t fbTable) vector(slot, elem int) (start, n int, ok bool) {
	p, ok := t.field(slot)
	if !ok || p == 0 {
		return 0, 0, ok
	}
	q, ok := fbOffset(t.b, p)
	if !ok || q+4 > len(t.b) {
		return 0, 0, false
	}
	count := int64(binary.LittleEndian.Uint32(t.b[q:]))
	if int64(q)+4+count*int64(elem) > int64(len(t.b)) {
		return 0, 0, false
	}
	return q + 4, int(count), true
}
