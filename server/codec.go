package server

// The request body codecs: pure functions from the bytes of a body (already
// read, within the server's limits) to a simdr.Batch or a list of keys. Each
// format is walked twice: a first pass validates the body and counts what
// decoding it will allocate (without allocating), so that the handler can
// charge that to the server's memory budget before the second pass builds
// the result. Nothing is ever allocated for a length a record claims: a
// claimed length is checked against the bytes actually present first.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/ttlms"
)

// cost is what decoding a body will allocate, from the counting pass.
type cost struct {
	items int   // operations or keys
	puts  int   // of the operations, the puts (ttl or not)
	ttls  int   // of the puts, those with a ttl
	bytes int64 // bytes copied out of the body (unescaped or base64-decoded strings, batch values)
}

// Per-item memory, for the budget: a get-many key is a slice header in the
// key list, an Entry in the result and a hash in GetMany. A batch operation
// is what decoding it and applying it hold at the peak (measured, with a
// margin): its batchOp in the simdr.Batch and the store's pending entry,
// slices that grow by doubling, and a delete's place in Apply's map of the
// keys it deletes; a put also adds its entry's padding and metadata to the
// batch's image of the file (up to 83 bytes, in a slice that grows by
// doubling too); a put with a ttl also its expiry and its expiry record,
// written through the store's buffer. A value (and an unescaped key) is
// held three times at the peak: the image's old and new arrays while it
// grows.
const (
	keyItemBytes = 24 + 40 + 8
	opItemBytes  = 128
	putItemBytes = 192
	ttlItemBytes = 192
	batchCopies  = 3
)

// keys and batch give the bytes a decoded body holds beside the body.
func (c cost) keys() int64 { return int64(c.items)*keyItemBytes + c.bytes }
func (c cost) batch() int64 {
	return int64(c.items)*opItemBytes + int64(c.puts)*putItemBytes + int64(c.ttls)*ttlItemBytes + batchCopies*c.bytes
}

var errTruncated = errors.New("the body ends inside a record")

// walkBinaryBatch calls fn (when not nil) for each record of a binary batch
// body, little-endian: 'P', u32 key length, key, u64 value length, value;
// 'T' (a put with a ttl), the same followed by a u64 ttl in milliseconds
// (1 to 2^63-1); or 'D', u32 key length, key. fn's ttl is 0 but for a 'T'.
func walkBinaryBatch(body []byte, fn func(put bool, key, value []byte, ttl time.Duration)) (cost, error) {
	var c cost
	for i := 0; len(body) > 0; i++ {
		if i == MaxItems {
			return c, errTooMany
		}
		op := body[0]
		body = body[1:]
		if op != opPut && op != opPutTTL && op != opDelete {
			return c, fmt.Errorf("op %d: unknown op byte 0x%02x (want 'P', 'T' or 'D')", i, op)
		}
		key, rest, err := field(body, 4)
		if err != nil {
			return c, fmt.Errorf("op %d: key: %w", i, err)
		}
		body = rest
		var value []byte
		if op != opDelete {
			if value, body, err = field(body, 8); err != nil {
				return c, fmt.Errorf("op %d: value: %w", i, err)
			}
			c.bytes += int64(len(value))
			c.puts++
		}
		var ttl time.Duration
		if op == opPutTTL {
			c.ttls++
			if len(body) < 8 {
				return c, fmt.Errorf("op %d: ttl: %w", i, errTruncated)
			}
			ms := int64(binary.LittleEndian.Uint64(body))
			body = body[8:]
			if ms <= 0 {
				return c, fmt.Errorf("op %d: ttl of %d ms: %w", i, uint64(ms), simdr.ErrInvalidTTL)
			}
			ttl = ttlms.Duration(ms)
		}
		c.items++
		if fn != nil {
			fn(op != opDelete, key, value, ttl)
		}
	}
	return c, nil
}

// field splits a little-endian length of size bytes (4 or 8) and that many
// bytes off the front of b. The bytes returned alias b.
func field(b []byte, size int) (v, rest []byte, err error) {
	if len(b) < size {
		return nil, nil, errTruncated
	}
	var n uint64
	if size == 4 {
		n = uint64(binary.LittleEndian.Uint32(b))
	} else {
		n = binary.LittleEndian.Uint64(b)
	}
	b = b[size:]
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("length %d exceeds the %d bytes left in the body", n, len(b))
	}
	return b[:n:n], b[n:], nil
}

// walkBinaryKeys calls fn (when not nil) for each key of a binary get-many
// body: u32 key length, key bytes.
func walkBinaryKeys(body []byte, fn func(key []byte)) (cost, error) {
	var c cost
	for len(body) > 0 {
		if c.items == MaxItems {
			return c, errTooMany
		}
		key, rest, err := field(body, 4)
		if err != nil {
			return c, fmt.Errorf("key %d: %w", c.items, err)
		}
		body = rest
		c.items++
		if fn != nil {
			fn(key)
		}
	}
	return c, nil
}

// decodeBatch decodes a /v1/batch body, binary or JSON. The batch copies
// what it keeps; it does not alias body.
func decodeBatch(body []byte, bin bool) (*simdr.Batch, error) {
	b := new(simdr.Batch)
	if err := walkBatch(body, bin, b); err != nil {
		return nil, err
	}
	return b, nil
}

// walkBatch decodes a /v1/batch body, binary or JSON, into s.
func walkBatch(body []byte, bin bool, s batchSink) error {
	if !bin {
		_, err := walkJSONBatch(body, s)
		return err
	}
	_, err := walkBinaryBatch(body, func(put bool, key, value []byte, ttl time.Duration) {
		switch {
		case ttl > 0:
			s.PutTTL(key, value, ttl)
		case put:
			s.Put(key, value)
		default:
			s.Delete(key)
		}
	})
	return err
}

// countBatch validates a /v1/batch body and returns what decoding it costs.
func countBatch(body []byte, bin bool) (cost, error) {
	if bin {
		return walkBinaryBatch(body, nil)
	}
	return walkJSONBatch(body, nil)
}

// decodeKeys decodes a /v1/get-many body, binary or JSON. The keys may alias
// body.
func decodeKeys(body []byte, bin bool) ([][]byte, error) {
	c, err := countKeys(body, bin)
	if err != nil {
		return nil, err
	}
	keys := make([][]byte, 0, c.items)
	if bin {
		walkBinaryKeys(body, func(k []byte) { keys = append(keys, k) })
		return keys, nil
	}
	arena := make([]byte, 0, c.bytes)
	_, err = walkJSONKeys(body, func(k []byte) { keys = append(keys, k) }, &arena)
	return keys, err
}

// countKeys validates a /v1/get-many body and returns what decoding it costs.
func countKeys(body []byte, bin bool) (cost, error) {
	if bin {
		return walkBinaryKeys(body, nil)
	}
	return walkJSONKeys(body, nil, nil)
}

// --- JSON ---
//
// The JSON bodies have a fixed shape (objects of string fields, one array),
// so they are read by a small scanner rather than encoding/json: it counts
// items as it goes, allocates only what it returns, and refuses strings that
// are not valid UTF-8 or hold a lone surrogate escape ("\ud800"), which
// encoding/json would silently turn into U+FFFD.

// errNotUTF8 marks a string that is not valid Unicode.
var errNotUTF8 = errors.New("not valid UTF-8")

type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// atEnd reports whether only white space is left.
func (s *scanner) atEnd() bool {
	s.ws()
	return s.pos == len(s.data)
}

// peek returns the next byte after white space, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos == len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("JSON at byte %d: %s", s.pos, fmt.Sprintf(format, args...))
}

func (s *scanner) expect(c byte) error {
	switch got := s.peek(); {
	case got == c:
		s.pos++
		return nil
	case got == 0:
		return s.errorf("unexpected end, want %q", c)
	default:
		return s.errorf("unexpected %q, want %q", got, c)
	}
}

// null consumes a JSON null if one is next.
func (s *scanner) null() bool {
	if s.peek() == 'n' && len(s.data)-s.pos >= 4 && string(s.data[s.pos:s.pos+4]) == "null" {
		s.pos += 4
		return true
	}
	return false
}

// str reads a JSON string and returns its raw content (between the quotes)
// and whether it holds escapes. A string that is not valid UTF-8, or whose
// escapes make a lone surrogate, fails with errNotUTF8 (after the string has
// been consumed, so that the caller can say which field it was).
func (s *scanner) str() (raw []byte, escaped bool, err error) {
	if err := s.expect('"'); err != nil {
		return nil, false, err
	}
	start := s.pos
	bad := false
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			raw = s.data[start:s.pos]
			s.pos++
			if bad || !utf8.Valid(raw) {
				return raw, escaped, errNotUTF8
			}
			return raw, escaped, nil
		case c < 0x20:
			return nil, false, s.errorf("control character 0x%02x in a string", c)
		case c == '\\':
			escaped = true
			if s.pos+1 >= len(s.data) {
				return nil, false, s.errorf("unexpected end in an escape")
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				r, ok := hex4(s.data[s.pos+2:])
				if !ok {
					return nil, false, s.errorf("bad \\u escape")
				}
				s.pos += 6
				switch {
				case r >= 0xDC00 && r <= 0xDFFF:
					bad = true // a low surrogate alone
				case r >= 0xD800 && r <= 0xDBFF:
					lo, ok := rune(0), false
					if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
						lo, ok = hex4(s.data[s.pos+2:])
					}
					if ok && lo >= 0xDC00 && lo <= 0xDFFF {
						s.pos += 6
					} else {
						bad = true // a high surrogate not followed by a low one
					}
				}
			default:
				return nil, false, s.errorf("bad escape \\%c", s.data[s.pos+1])
			}
		default:
			s.pos++
		}
	}
	return nil, false, s.errorf("unexpected end in a string")
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape appends the string a valid raw JSON string content stands for.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		e := raw[i+1]
		i += 2
		switch e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw[i:])
			i += 4
			if r >= 0xD800 && r <= 0xDBFF { // valid: a low surrogate follows
				lo, _ := hex4(raw[i+2:])
				i += 6
				r = (r-0xD800)<<10 | (lo - 0xDC00) + 0x10000
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
	}
	return dst
}

// jstr is one string (or number) field of a JSON object, as read.
type jstr struct {
	set     bool // present and not null
	raw     []byte
	escaped bool
	notUTF8 bool
	number  bool // raw is a JSON number, not a string's content
}

// number reads a JSON number (RFC 8259's grammar) and returns its text.
func (s *scanner) number() ([]byte, error) {
	s.ws()
	start := s.pos
	digits := func() int {
		n := 0
		for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.pos < len(s.data) && s.data[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(s.data) && s.data[s.pos] == '0':
		s.pos++
	case digits() == 0:
		return nil, s.errorf("bad number")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return nil, s.errorf("bad number")
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return nil, s.errorf("bad number")
		}
	}
	return s.data[start:s.pos], nil
}

// object reads a JSON object whose fields are all strings (or null), each
// named in names, into out (out[i] for names[i]); a field whose bit is set
// in numeric may also be a number. Unknown and repeated fields are refused.
func (s *scanner) object(names []string, out []jstr, numeric int) error {
	clear(out)
	seen := 0
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		i, err := s.fieldName(names, &seen)
		if err != nil {
			return err
		}
		switch c := s.peek(); {
		case s.null():
		case numeric&(1<<i) != 0 && (c == '-' || c >= '0' && c <= '9'):
			raw, err := s.number()
			if err != nil {
				return fmt.Errorf("field %q: %w", names[i], err)
			}
			out[i] = jstr{set: true, raw: raw, number: true}
		default:
			raw, esc, err := s.str()
			if err != nil && !errors.Is(err, errNotUTF8) {
				return fmt.Errorf("field %q: %w", names[i], err)
			}
			out[i] = jstr{set: true, raw: raw, escaped: esc, notUTF8: err != nil}
		}
		if done, err := s.next('}'); done || err != nil {
			return err
		}
	}
}

// fieldName reads `"name":` for one of names, refusing repeats (seen is a
// bit set of the names read so far).
func (s *scanner) fieldName(names []string, seen *int) (int, error) {
	raw, esc, err := s.str()
	if err != nil {
		return 0, s.errorf("bad field name")
	}
	i := -1
	for j, n := range names {
		if !esc && string(raw) == n {
			i = j
		}
	}
	if i < 0 {
		return 0, fmt.Errorf("unknown field %q", raw)
	}
	if *seen&(1<<i) != 0 {
		return 0, fmt.Errorf("field %q given twice", names[i])
	}
	*seen |= 1 << i
	return i, s.expect(':')
}

// next reads the ',' between members or the closing byte; done once closed.
func (s *scanner) next(closing byte) (done bool, err error) {
	switch c := s.peek(); c {
	case ',':
		s.pos++
		return false, nil
	case closing:
		s.pos++
		return true, nil
	case 0:
		return false, s.errorf("unexpected end, want ',' or %q", closing)
	default:
		return false, s.errorf("unexpected %q, want ',' or %q", c, closing)
	}
}

// topArray reads `{"name": [elements]}` (or null for no elements) for one
// of names, calling elem for each element with the index of the name given.
// Only one of names may be present. Nothing may follow the object.
func (s *scanner) topArray(names []string, elem func(which int) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	seen := 0
	if s.peek() != '}' {
		for {
			which, err := s.fieldName(names, &seen)
			if err != nil {
				return err
			}
			if seen&(seen-1) != 0 {
				return fmt.Errorf("give %s, not several", joinOr(names))
			}
			if !s.null() {
				if err := s.expect('['); err != nil {
					return err
				}
				if s.peek() == ']' {
					s.pos++
				} else {
					for {
						if err := elem(which); err != nil {
							return err
						}
						if done, err := s.next(']'); done || err != nil {
							if err != nil {
								return err
							}
							break
						}
					}
				}
			}
			if done, err := s.next('}'); done || err != nil {
				if err != nil {
					return err
				}
				break
			}
		}
	} else {
		s.pos++
	}
	if !s.atEnd() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func joinOr(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += " or "
		}
		s += `"` + n + `"`
	}
	return s
}

// text returns the bytes of a string field given as UTF-8 text, unescaped
// into *arena if it has escapes (arena nil: only count them in c).
func text(f jstr, arena *[]byte, c *cost) []byte {
	if !f.escaped {
		return f.raw
	}
	c.bytes += int64(len(f.raw))
	if arena == nil {
		return nil
	}
	start := len(*arena)
	*arena = unescape(*arena, f.raw)
	return (*arena)[start:len(*arena):len(*arena)]
}

// b64 decodes a base64 string field into *arena (arena nil: only check it
// and count its bytes in c).
func b64(f jstr, arena *[]byte, c *cost) ([]byte, error) {
	if f.notUTF8 {
		return nil, errors.New("not valid base64")
	}
	src := f.raw
	if f.escaped { // rare: base64 with \u escapes; unescape into a scratch copy
		src = unescape(nil, f.raw)
	}
	n := base64.StdEncoding.DecodedLen(len(src))
	c.bytes += int64(n)
	if arena == nil && bytes.ContainsAny(src, "\r\n") { // ignored by the decoder: chunks would not align
		if _, err := base64.StdEncoding.DecodeString(string(src)); err != nil {
			return nil, errors.New("not valid base64")
		}
		return nil, nil
	}
	if arena == nil {
		// Validate without keeping the result: decode into a small buffer.
		var buf [512]byte
		for len(src) > 0 {
			chunk := min(len(src), 512/3*4)
			if _, err := base64.StdEncoding.Decode(buf[:], src[:chunk]); err != nil {
				return nil, errors.New("not valid base64")
			}
			src = src[chunk:]
		}
		return nil, nil
	}
	start := len(*arena)
	out, err := base64.StdEncoding.AppendDecode(*arena, src)
	if err != nil {
		return nil, errors.New("not valid base64")
	}
	*arena = out
	return out[start:len(out):len(out)], nil
}

// pick returns a key given as text (name) or base64 (name_b64): exactly one.
func pick(txt, enc jstr, name string, arena *[]byte, c *cost) ([]byte, error) {
	switch {
	case txt.set && enc.set:
		return nil, fmt.Errorf("both %s and %s_b64 given", name, name)
	case txt.set:
		if txt.notUTF8 {
			return nil, fmt.Errorf("%s is not valid UTF-8 (invalid bytes or a lone surrogate): send it as %s_b64", name, name)
		}
		v := text(txt, arena, c)
		if v == nil {
			v = []byte{}
		}
		return v, nil
	case enc.set:
		v, err := b64(enc, arena, c)
		if err != nil {
			return nil, fmt.Errorf("%s_b64: %w", name, err)
		}
		if v == nil {
			v = []byte{}
		}
		return v, nil
	}
	return nil, fmt.Errorf("missing %s (or %s_b64)", name, name)
}

var opFields = []string{"op", "key", "key_b64", "value", "value_b64", "ttl_ms"}

// fieldTTL is the index of "ttl_ms" in opFields, the one numeric field.
const fieldTTL = 5

// batchSink is what a decoded batch goes to: a *simdr.Batch, or the
// cluster's list of operations.
type batchSink interface {
	Put(key, value []byte)
	PutTTL(key, value []byte, ttl time.Duration)
	Delete(key []byte)
}

// ttlMs reads a batch op's ttl_ms: a positive integer of milliseconds,
// written with digits only (no sign, fraction or exponent), at most
// 2^63-1.
func ttlMs(f jstr) (time.Duration, error) {
	if !f.number {
		return 0, fmt.Errorf("ttl_ms is a string, not a number (%w)", simdr.ErrInvalidTTL)
	}
	var ms int64
	for _, d := range f.raw {
		if d < '0' || d > '9' || ms > (math.MaxInt64-int64(d-'0'))/10 {
			return 0, badTTLms(f.raw)
		}
		ms = ms*10 + int64(d-'0')
	}
	if ms == 0 {
		return 0, badTTLms(f.raw)
	}
	return ttlms.Duration(ms), nil
}

// badTTLms is the error for a ttl_ms that is a number but not a valid ttl.
func badTTLms(raw []byte) error {
	if len(raw) > 24 {
		raw = append(raw[:24:24], "..."...)
	}
	return fmt.Errorf("ttl_ms %s is not a positive integer of milliseconds (%w)", raw, simdr.ErrInvalidTTL)
}

// walkJSONBatch validates and counts a JSON batch body, and when b is not
// nil adds its operations to b:
//
//	{"ops": [{"op": "put", "key": "k", "value": "v", "ttl_ms": 60000}, {"op": "delete", "key_b64": "aw=="}]}
func walkJSONBatch(body []byte, b batchSink) (cost, error) {
	var c cost
	s := scanner{data: body}
	var f [6]jstr
	var scratch []byte
	var arena *[]byte
	if b != nil {
		arena = &scratch
	}
	err := s.topArray([]string{"ops"}, func(int) error {
		i := c.items
		if i == MaxItems {
			return errTooMany
		}
		if err := s.object(opFields, f[:], 1<<fieldTTL); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		scratch = scratch[:0]
		key, err := pick(f[1], f[2], "key", arena, &c)
		if err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		op := string(f[0].raw)
		switch {
		case !f[0].set:
			return fmt.Errorf("op %d: missing op", i)
		case f[0].escaped || f[0].notUTF8 || (op != "put" && op != "delete"):
			return fmt.Errorf("op %d: op must be \"put\" or \"delete\", not %q", i, f[0].raw)
		case op == "delete":
			if f[3].set || f[4].set {
				return fmt.Errorf("op %d: a delete has no value", i)
			}
			if f[fieldTTL].set {
				return fmt.Errorf("op %d: a delete has no ttl_ms", i)
			}
			if b != nil {
				b.Delete(key)
			}
		default:
			n0 := c.bytes
			value, err := pick(f[3], f[4], "value", arena, &c)
			if err != nil {
				return fmt.Errorf("op %d: %w", i, err)
			}
			if c.bytes == n0 { // not copied out of the body, but copied into the batch
				c.bytes += int64(len(f[3].raw))
			}
			var ttl time.Duration
			if f[fieldTTL].set {
				if ttl, err = ttlMs(f[fieldTTL]); err != nil {
					return fmt.Errorf("op %d: %w", i, err)
				}
				c.ttls++
			}
			c.puts++
			switch {
			case b == nil:
			case ttl > 0:
				b.PutTTL(key, value, ttl)
			default:
				b.Put(key, value)
			}
		}
		c.items++
		return nil
	})
	return c, err
}

// walkJSONKeys validates and counts a JSON get-many body, calling fn (when
// not nil) for each key; keys with escapes or in base64 are decoded into
// *arena, which must then have room for cost.bytes more bytes (so that the
// keys already returned are not moved):
//
//	{"keys": ["a", "b"]}   or   {"keys_b64": ["YQ==", "Yg=="]}
func walkJSONKeys(body []byte, fn func([]byte), arena *[]byte) (cost, error) {
	var c cost
	s := scanner{data: body}
	err := s.topArray([]string{"keys", "keys_b64"}, func(which int) error {
		i := c.items
		if i == MaxItems {
			return errTooMany
		}
		if s.null() {
			return fmt.Errorf("key %d: null is not a key", i)
		}
		raw, esc, err := s.str()
		notUTF8 := errors.Is(err, errNotUTF8)
		if err != nil && !notUTF8 {
			return fmt.Errorf("key %d: %w", i, err)
		}
		f := jstr{set: true, raw: raw, escaped: esc, notUTF8: notUTF8}
		var k []byte
		if which == 0 {
			if notUTF8 {
				return fmt.Errorf("key %d is not valid UTF-8 (invalid bytes or a lone surrogate): send keys as keys_b64", i)
			}
			k = text(f, arena, &c)
		} else if k, err = b64(f, arena, &c); err != nil {
			return fmt.Errorf("key %d: %w", i, err)
		}
		if fn != nil {
			if k == nil {
				k = []byte{}
			}
			fn(k)
		}
		c.items++
		return nil
	})
	return c, err
}

// renameFields are the fields of a /v1/rename body.
var renameFields = []string{"from", "from_b64", "to", "to_b64"}

// decodeRename decodes {"from": "a", "to": "b"} (or from_b64, to_b64).
func decodeRename(body []byte) (from, to []byte, err error) {
	s := scanner{data: body}
	var f [4]jstr
	if err := s.object(renameFields, f[:], 0); err != nil {
		return nil, nil, err
	}
	if !s.atEnd() {
		return nil, nil, errors.New("trailing data after the JSON value")
	}
	var arena []byte
	var c cost
	if from, err = pick(f[0], f[1], "from", &arena, &c); err != nil {
		return nil, nil, err
	}
	arena = nil // from may alias the old arena
	if to, err = pick(f[2], f[3], "to", &arena, &c); err != nil {
		return nil, nil, err
	}
	if err := checkKey(from); err != nil {
		return nil, nil, err
	}
	if err := checkKey(to); err != nil {
		return nil, nil, err
	}
	return from, to, nil
}
