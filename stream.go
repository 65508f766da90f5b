package simdr

import (
	"fmt"
	"hash/crc32"
	"io"

	"github.com/simdr-go/simdr/internal/format"
)

// streamChunk is the buffer PutReader streams through, whatever the value's size.
const streamChunk = 1 << 20

// PutReader stores the bytes r yields until io.EOF as the value of key, and
// returns how many it stored. It holds at most a 1 MiB buffer in memory,
// whatever the value's size. If r fails, or yields nothing (or the single
// byte 0x00: ErrInvalidValue), PutReader returns the error and the store is
// exactly as before: the partial entry is cut off the file and never visible,
// before or after a reopen. If r panics, the partial entry is cut off the
// same way before the panic goes on (the Store stays usable).
//
// Get calls from other goroutines are not blocked while r is read; other
// writes wait for PutReader to finish.
func (s *Store) PutReader(key []byte, r io.Reader) (int64, error) {
	if r == nil {
		return 0, fmt.Errorf("simdr: put reader: nil reader: %w", ErrInvalidValue)
	}
	if reserved(key) {
		return 0, fmt.Errorf("simdr: put reader: %w", ErrReservedKey)
	}
	h := Hash(key)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g, err := s.writable()
	if err != nil {
		return 0, fmt.Errorf("simdr: put reader: %w", err)
	}
	if s.chunk == nil {
		s.chunk = make([]byte, streamChunk)
	}
	a := s.begin(g)
	a.dropRecord(h) // the new value has no expiry
	prev := a.tail
	a.s.buf = format.AppendPrepad(a.s.buf, prev)
	a.flush()
	var (
		total int64
		crc   uint32
		first byte
	)
	// A panic in r unwinds through here: cut the partial entry off the file
	// as for an error (the panic goes on, with its stack, once this returns).
	panicked := true
	defer func() {
		if panicked {
			if a.err == nil {
				a.err = fmt.Errorf("reader panicked after %d bytes", total)
			}
			a.rollback()
		}
	}()
	for a.err == nil {
		n, rerr := readFull(r, s.chunk)
		if n > 0 {
			if total == 0 {
				first = s.chunk[0]
			}
			crc = crc32.Update(crc, crc32.IEEETable, s.chunk[:n])
			a.writeAt(s.chunk[:n], a.written)
			a.written += int64(n)
			total += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			a.err = fmt.Errorf("reading value after %d bytes: %w", total, rerr)
		}
	}
	panicked = false
	if a.err == nil && (total == 0 || (total == 1 && first == 0)) {
		a.err = fmt.Errorf("%d bytes: %w", total, ErrInvalidValue)
	}
	if a.err != nil {
		a.rollback()
		return 0, fmt.Errorf("simdr: put reader: %w", a.err)
	}
	end := a.written
	a.s.buf = format.AppendMeta(a.s.buf, format.Meta{Hash: h, Prev: prev, CRC: crc})
	a.s.ops = append(a.s.ops, pending{hash: h, pos: pack(end, total)})
	a.tail = end + format.MetaSize
	if err := a.commit(); err != nil {
		return 0, fmt.Errorf("simdr: put reader: %w", err)
	}
	return total, nil
}

// readFull reads into buf until it is full or r returns an error, which it
// passes through unchanged. Unlike io.ReadFull it never turns an early io.EOF
// into io.ErrUnexpectedEOF, so an io.ErrUnexpectedEOF from r (a truncated
// HTTP body, say) stays an error instead of passing for the end of the value.
func readFull(r io.Reader, buf []byte) (n int, err error) {
	for n < len(buf) && err == nil {
		var nn int
		nn, err = r.Read(buf[n:])
		n += nn
	}
	return n, err
}
