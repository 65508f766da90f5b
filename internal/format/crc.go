package format

import (
	"encoding/binary"
	"hash/crc32"
	"sync"
)

// CRC-32 arithmetic for FindTail. A CRC-32 is linear over GF(2): the checksum
// of a range can be derived from running checksums of the data before it
// (crc(a‖b) = crcShift(crc(a), len b) ^ crc(b), zlib's crc32_combine), and
// each byte step of the register can be undone (unfeed), so that a running
// checksum can move backwards as cheaply as forwards.

// crcShift returns the CRC-32 (IEEE) of a message with checksum crc followed
// by n zero bytes, minus the checksum of those n zero bytes alone: crc
// multiplied by x^(8n) modulo the polynomial (zlib's crc32_combine). Each set
// bit of n costs one multiplication by a constant, four table look-ups.
func crcShift(crc uint32, n int64) uint32 {
	mulOnce.Do(buildMul)
	for k := 3; n != 0; n, k = n>>1, k+1 {
		if n&1 != 0 {
			t := &mulTab[k&31]
			crc = t[0][crc&0xff] ^ t[1][crc>>8&0xff] ^ t[2][crc>>16&0xff] ^ t[3][crc>>24]
		}
	}
	return crc
}

// crcUnshift undoes crcShift(crc, n) for n < 2^32: crc multiplied by
// x^(-8n) modulo the polynomial (x is invertible: the polynomial's constant
// term is 1). One multiplication by a constant per set bit of n.
func crcUnshift(crc uint32, n int64) uint32 {
	mulOnce.Do(buildMul)
	for k := 0; n != 0; n, k = n>>1, k+1 {
		if n&1 != 0 {
			t := &invTab[k]
			crc = t[0][crc&0xff] ^ t[1][crc>>8&0xff] ^ t[2][crc>>16&0xff] ^ t[3][crc>>24]
		}
	}
	return crc
}

// x2n[k] is x^(2^k) modulo the reflected IEEE polynomial. The sequence
// repeats with period 32 (zlib's x2n_table).
var x2n = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for k := 1; k < 32; k++ {
		p = multModP(p, p)
		t[k] = p
	}
	return t
}()

// mulTab[k][j][b] is multModP(x2n[k], b<<8j): multiplying by x2n[k] is linear,
// so its product with any word is the xor of four look-ups (128 KiB, built at
// the first use).
// invTab[k] is the same for x^(-8·2^k).
var (
	mulTab  *[32][4][256]uint32
	invTab  *[32][4][256]uint32
	mulOnce sync.Once
)

func buildMul() {
	var inv [32]uint32 // x^(-8·2^k)
	inv[0] = unstep(1<<31, 0)
	for k := 1; k < 32; k++ {
		inv[k] = multModP(inv[k-1], inv[k-1])
	}
	fill := func(c uint32, t *[4][256]uint32) {
		for j := range t {
			row := &t[j]
			for bit := 0; bit < 8; bit++ {
				row[1<<bit] = multModP(c, uint32(1)<<(8*j+bit))
			}
			for b := 1; b < 256; b++ {
				if low := b & -b; low != b {
					row[b] = row[low] ^ row[b^low]
				}
			}
		}
	}
	t, u := new([32][4][256]uint32), new([32][4][256]uint32)
	for k := range t {
		fill(x2n[k], &t[k])
		fill(inv[k], &u[k])
	}
	mulTab, invTab = t, u
}

// multModP multiplies a and b modulo the reflected IEEE polynomial.
func multModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crc32.IEEE
		} else {
			b >>= 1
		}
	}
	return p
}

// The register r of the reflected CRC-32 takes a byte b as
// r' = crcTab[(r^b)&0xff] ^ r>>8. The top byte of r' is that of the table
// entry alone, and the table's top bytes are all distinct, so the step can be
// undone: unTop names the entry from r'>>24. Four steps over the word w
// (little-endian) are r' = F(r ^ w) with F linear (four steps over zero
// bytes), so r = F⁻¹(r') ^ w: unfeedTab holds F⁻¹ and F⁻² by bytes.
var (
	crcTab    = crc32.MakeTable(crc32.IEEE)
	unTop     [256]uint8
	unfeedTab [8][256]uint32 // [0:4]: F⁻¹ of byte j; [4:8]: F⁻² of byte j
)

func init() {
	for i, v := range crcTab {
		unTop[v>>24] = uint8(i)
	}
	for j := range 4 {
		for b := range 256 {
			v := uint32(b) << (8 * j)
			for range 4 {
				v = unstep(v, 0)
			}
			unfeedTab[j][b] = v
			for range 4 {
				v = unstep(v, 0)
			}
			unfeedTab[4+j][b] = v
		}
	}
}

// unstep undoes one register step that took byte b.
func unstep(r uint32, b byte) uint32 {
	i := uint32(unTop[r>>24])
	return (r^crcTab[i])<<8 | (i ^ uint32(b))
}

// unfeed returns the checksum of a message whose checksum with p appended is
// crc: it removes p from the end.
func unfeed(crc uint32, p []byte) uint32 {
	r := ^crc
	t := &unfeedTab
	for len(p) >= 8 {
		w := binary.LittleEndian.Uint64(p[len(p)-8:])
		lo, hi := uint32(w), uint32(w>>32)
		r = t[4][r&0xff] ^ t[5][r>>8&0xff] ^ t[6][r>>16&0xff] ^ t[7][r>>24] ^
			t[0][hi&0xff] ^ t[1][hi>>8&0xff] ^ t[2][hi>>16&0xff] ^ t[3][hi>>24] ^ lo
		p = p[:len(p)-8]
	}
	for i := len(p) - 1; i >= 0; i-- {
		r = unstep(r, p[i])
	}
	return ^r
}

// sums gives the running checksums of data from floor: crc(floor..x) for any
// x, and from them the checksum of any range. A torn tail can hold a great
// many positions whose 20 bytes read as metadata, each claiming a payload
// that can be as long as the file; checking each from scratch is quadratic.
//
// sums keeps a few cursors (the running checksum at one offset each) that it
// moves to the offsets asked, forwards by crc32.Update or backwards by
// unfeed: FindTail asks at descending offsets close together (candidate
// heads, and the first entries their links lead to, a little below), so that
// costs what separates them. For a far offset it starts from the nearest of
// its marks, the running checksums every step bytes from floor, computed once
// as far as asked and at most sumsMaxMarks of them (2 MiB); step grows with
// the span of data so that they stay below that.
type sums struct {
	floor   int64
	step    int64
	marks   []uint32 // marks[i]: checksum of data[floor : floor+i*step]
	cursors [sumsCursors]cursor
	clock   uint64
}

// cursor is the checksum of data[floor:at], when ok; used orders cursors
// for reuse.
type cursor struct {
	at   int64
	cur  uint32
	ok   bool
	used uint64
}

const (
	sumsFrom     = 256     // shorter ranges are checked directly
	sumsStep     = 256     // the smallest step between marks
	sumsMaxMarks = 1 << 19 // the step grows so that marks stay below this
	sumsCursors  = 4
	// unfeedCost is how many times a byte costs more to unfeed than to feed
	// (crc32.Update uses carry-less multiplication) here; measured about 4.
	unfeedCost = 4
)

// upto returns the checksum of data[c.floor:x].
func (c *sums) upto(data []byte, x int64) uint32 {
	c.init(data)
	i := (x - c.floor) / c.step
	mark := c.floor + i*c.step
	best, cost := -1, x-mark+1 // from the mark below x (computing the marks is paid once)
	lru := 0
	for k := range c.cursors {
		u := &c.cursors[k]
		if !u.ok {
			lru = k
			continue
		}
		if u.used < c.cursors[lru].used && c.cursors[lru].ok {
			lru = k
		}
		d := x - u.at
		if d < 0 {
			d = -d * unfeedCost
		}
		if d < cost {
			best, cost = k, d
		}
	}
	c.clock++
	if best < 0 {
		u := &c.cursors[lru]
		u.cur, u.at, u.ok, u.used = c.fromMarks(data, x), x, true, c.clock
		return u.cur
	}
	u := &c.cursors[best]
	if x >= u.at {
		u.cur = crc32.Update(u.cur, crcTab, data[u.at:x])
	} else {
		u.cur = unfeed(u.cur, data[x:u.at])
	}
	u.at, u.used = x, c.clock
	return u.cur
}

func (c *sums) init(data []byte) {
	if c.marks == nil {
		c.step = max(sumsStep, (int64(len(data))-c.floor)/sumsMaxMarks+1)
		c.marks = make([]uint32, 1, (int64(len(data))-c.floor)/c.step+2)
	}
}

// fromMarks returns the checksum of data[c.floor:x] from the mark below x,
// computing the marks as far as needed, leaving the cursors alone.
func (c *sums) fromMarks(data []byte, x int64) uint32 {
	c.init(data)
	i := (x - c.floor) / c.step
	for j := int64(len(c.marks)); j <= i; j++ {
		p := c.floor + (j-1)*c.step
		c.marks = append(c.marks, crc32.Update(c.marks[j-1], crcTab, data[p:p+c.step]))
	}
	return crc32.Update(c.marks[i], crcTab, data[c.floor+i*c.step:x])
}

// checksum returns Checksum(data[start:end]), start ≥ c.floor.
func (c *sums) checksum(data []byte, start, end int64) uint32 {
	if end-start < sumsFrom {
		return Checksum(data[start:end])
	}
	if start == c.floor {
		return c.upto(data, end)
	}
	// crc(floor:end) = crc(floor:start) shifted over end-start bytes, xor crc(start:end).
	return c.upto(data, end) ^ crcShift(c.fromMarks(data, start), end-start)
}
