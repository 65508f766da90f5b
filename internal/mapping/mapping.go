// Package mapping maps a store file into memory read-only and grows the
// mapping without ever moving or unmapping bytes a reader may hold.
//
// A Map reserves more address space than the file has bytes (mapping past the
// end of a file is allowed; only touching pages past it faults, and simdr reads
// nothing past its tail). Bytes the writer appends with pwrite appear in the
// mapping through the page cache. When the file outgrows the reservation, a new,
// larger mapping is made and published; the old ones stay mapped until Close, so
// every slice handed out stays valid.
package mapping

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Grow after Close.
var ErrClosed = errors.New("mapping: closed")

// MinReserve is the smallest reservation: address space, not memory.
const MinReserve = 64 << 20

// Map is a growing read-only mapping of one file.
type Map struct {
	fd   int
	cur  atomic.Pointer[[]byte]
	mu   sync.Mutex
	all  [][]byte // every mapping made, unmapped at Close
	done bool
}

// New maps fd with room for at least size bytes. A size over MaxMap fails
// with an error matching ErrTooLarge.
func New(fd uintptr, size int64) (*Map, error) {
	m := &Map{fd: int(fd)}
	if err := m.Grow(size); err != nil {
		return nil, err
	}
	return m, nil
}

// MaxMap is the largest file a Map maps: 1 GiB where int is 32 bits (a
// 32-bit process has 2 to 4 GiB of address space, and mmap's length is an
// int), 2^48 bytes (the format's limit) on 64-bit platforms.
const MaxMap = 1 << (30 + 18*(strconv.IntSize/64))

// maxMap is MaxMap for a platform whose int has intSize bits.
func maxMap(intSize int) int64 {
	if intSize == 32 {
		return 1 << 30
	}
	return 1 << 48
}

// ErrTooLarge: the file is larger than a Map can map on this platform.
var ErrTooLarge = errors.New("mapping: file too large to map on this platform")

// Reserve returns the reservation made for a file of size bytes: the next power
// of two at or above twice the size, at least MinReserve and at most MaxMap
// (0 when size is over MaxMap).
func Reserve(size int64) int64 { return reserve(size, strconv.IntSize) }

// reserve is Reserve for a platform whose int has intSize bits.
func reserve(size int64, intSize int) int64 {
	limit := maxMap(intSize)
	if size > limit {
		return 0
	}
	r := int64(MinReserve)
	for r < 2*size && r < limit {
		r <<= 1
	}
	return min(r, limit)
}

// Bytes returns the current mapping. Its length is the reservation, not the
// file's size: only bytes below the file's size may be read.
func (m *Map) Bytes() []byte { return *m.cur.Load() }

// Grow makes sure the mapping covers size bytes, mapping a larger region if it
// must. Only one goroutine (the writer) calls Grow at a time. A size over
// MaxMap fails with an error matching ErrTooLarge that names the limit.
func (m *Map) Grow(size int64) error {
	if p := m.cur.Load(); p != nil && int64(len(*p)) >= size {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		return ErrClosed
	}
	r := Reserve(size)
	if r == 0 {
		return fmt.Errorf("%d bytes, over the %d bytes (%d MiB) a %d-bit process maps: %w", size, int64(MaxMap), int64(MaxMap)>>20, strconv.IntSize, ErrTooLarge)
	}
	b, err := unix.Mmap(m.fd, 0, int(r), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	m.all = append(m.all, b)
	m.cur.Store(&b)
	return nil
}

// Advise passes an madvise hint for the current mapping (best effort).
func (m *Map) Advise(advice int) error { return unix.Madvise(m.Bytes(), advice) }

// Close unmaps every mapping. Slices into them must not be used afterwards.
func (m *Map) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		return nil
	}
	m.done = true
	var none []byte
	m.cur.Store(&none) // Bytes after Close: empty, never a dangling slice
	var first error
	for _, b := range m.all {
		if err := unix.Munmap(b); err != nil && first == nil {
			first = err
		}
	}
	m.all = nil
	return first
}
