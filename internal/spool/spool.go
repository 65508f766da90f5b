// Package spool holds a value on its way into a store in an anonymous
// temporary file, and maps that file so that the value can be passed to
// Store.PutTTL as a slice without being read into the heap.
//
// It exists because the library streams only values without an expiry
// (Store.PutReader): a value given with a TTL (the CLI's write --ttl from
// stdin, the server's large PUT with ?ttl=) is spooled, mapped and stored
// with PutTTL, which writes a large value straight from the slice it is
// given. Memory then holds page-cache pages of the spool, which the kernel
// may reclaim, not a copy of the value.
package spool

import (
	"errors"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// Create makes an anonymous temporary file in dir: it is unlinked at once,
// so it goes away with its descriptor whatever happens to the process.
func Create(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, ".simdr-spool-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ErrEmpty is Map's error for a file of no bytes (which cannot be mapped,
// and is no storable value either).
var ErrEmpty = errors.New("spool: empty file")

// Map maps the whole of f read-only and returns its bytes and the function
// that unmaps them, to be called once. The bytes are valid until then, and only
// while nothing truncates f (a spool is the caller's alone: nothing does).
// A file of no bytes fails with ErrEmpty.
func Map(f *os.File) (b []byte, unmap func() error, err error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	size := fi.Size()
	switch {
	case size == 0:
		return nil, nil, ErrEmpty
	case size > math.MaxInt:
		return nil, nil, fmt.Errorf("spool: %d bytes do not fit the address space", size)
	}
	b, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: mmap %d bytes: %w", size, err)
	}
	_ = unix.Madvise(b, unix.MADV_SEQUENTIAL) // read once, front to back
	return b, func() error { return unix.Munmap(b) }, nil
}
