// Package mapping maps a store file into memory read-only and grows the
// mapping without ever moving or unmapping bytes a reader may hold.
//
// A Map reserves more address space than the file has bytes (mapping past the
// end of a file is allowed; only touching pages past it faults, and simdr reads
// nothing past its tail). Bytes the writer appends with pwrite appear in the
// mapping through the page cache. When the file outgrows the reservation, a new,
// larger mapping is made and published; the old ones stay mapped until Close, so
// every slice handed out stays valid.
//
// Close does not leave holes where the file was: it replaces the file's pages,
// in place and in one step, with read-only anonymous zero pages, and unmaps
// those only after a grace period (see Close). A read racing Close, or a stale
// slice used soon after it, reads zeros instead of faulting.
package mapping

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
	shut atomic.Bool // done, for Grow's lock-free check
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
// file's size: only bytes below the file's size may be read. After Close it
// returns the same slice, which reads zeros for Grace and then faults.
func (m *Map) Bytes() []byte { return *m.cur.Load() }

// Grow makes sure the mapping covers size bytes, mapping a larger region if it
// must. Only one goroutine (the writer) calls Grow at a time. A size over
// MaxMap fails with an error matching ErrTooLarge that names the limit.
func (m *Map) Grow(size int64) error {
	if p := m.cur.Load(); p != nil && int64(len(*p)) >= size && !m.shut.Load() {
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
	n := uintptr(r)
	p, err := unix.MmapPtr(m.fd, 0, nil, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	b := unsafe.Slice((*byte)(p), n)
	adviseRandom(b)
	m.all = append(m.all, b)
	m.cur.Store(&b)
	return nil
}

// Advise passes an madvise hint for the current mapping (best effort). It
// changes the advice every reader of the mapping relies on: sequential
// readers should ask for read-ahead of their own range instead (WillNeed).
func (m *Map) Advise(advice int) error { return unix.Madvise(m.Bytes(), advice) }

// adviseRandom is the mapping's access policy: MADV_RANDOM, so that a page
// fault reads that page alone. Without it the kernel reads around each
// fault (the device's read-ahead, 128 KiB to several MiB), and a cold Get
// costs megabytes of I/O for a 4 KiB page. Readers that walk the file ask
// for read-ahead of the range ahead of them with WillNeed, which leaves this
// advice alone. Best effort: a kernel that refuses it changes nothing.
func adviseRandom(b []byte) { _ = unix.Madvise(b, unix.MADV_RANDOM) }

// WillNeed starts reading bytes [off, off+n) of the file into the page
// cache, asynchronously (POSIX_FADV_WILLNEED), for a reader about to walk
// them; the mapping's advice is unchanged. The kernel reads at most its
// read-ahead size (often 128 KiB) per call, so the range is asked for in
// pieces of willNeedPiece, top first when down (for a reader walking
// downward, which needs the highest bytes first). Best effort: errors are
// ignored, and a range past the end of the file reads nothing.
//
// A range whose first, middle and last pages are already in the page cache
// is taken for cached whole and not asked for (asking costs a lookup per
// page, which a warm walk would pay for nothing).
func (m *Map) WillNeed(off, n int64, down bool) {
	if n <= 0 || off < 0 || m.cached(off, n) {
		return
	}
	for done := int64(0); done < n; done += willNeedPiece {
		k := min(willNeedPiece, n-done)
		at := off + done
		if down {
			at = off + n - done - k
		}
		if unix.Fadvise(m.fd, at, k, unix.FADV_WILLNEED) != nil {
			return
		}
	}
}

// cached reports whether the pages at the start, middle and end of
// [off, off+n) are in the page cache (mincore on the mapping; false when
// they are not mapped yet or cannot be asked about).
func (m *Map) cached(off, n int64) bool {
	b := m.Bytes()
	page := int64(unix.Getpagesize())
	var vec [1]byte
	for _, at := range []int64{off, off + n/2, off + n - 1} {
		p := at &^ (page - 1)
		if p+page > int64(len(b)) {
			return false
		}
		_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[p])), uintptr(page), uintptr(unsafe.Pointer(&vec[0])))
		if errno != 0 || vec[0]&1 == 0 {
			return false
		}
	}
	return true
}

// willNeedPiece is the most one WillNeed call asks of the kernel: the
// smallest common read-ahead size, so that no part is silently dropped.
const willNeedPiece = 128 << 10

// Close ends the mapping; Grow fails afterwards. Bytes keeps returning the
// same slice, so that a reader racing Close never slices out of bounds.
//
// Each mapping's pages up to the file's current size are replaced, in place
// and atomically (mmap with MAP_FIXED), by read-only anonymous zero pages,
// and the rest of the reservation is unmapped at once. The zero pages are
// unmapped Grace later (or sooner when more than MaxRetired regions wait, so
// that closing many Maps cannot exhaust vm.max_map_count). Until then, a read
// racing Close, or a slice used after it, reads zeros instead of faulting;
// afterwards it faults. The zero pages cost address space and one kernel
// mapping each, no memory: untouched, they hold no page, and a read maps the
// shared zero page.
func (m *Map) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		return nil
	}
	m.done = true
	m.shut.Store(true)
	keep := int64(-1) // what a slice may point into: the file's size, page-rounded
	var st unix.Stat_t
	if unix.Fstat(m.fd, &st) == nil {
		page := int64(unix.Getpagesize())
		keep = (st.Size + page - 1) / page * page
	}
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, b := range m.all {
		p, n := unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b))
		z := n
		if keep >= 0 && uintptr(keep) < n {
			z = uintptr(keep)
		}
		if z > 0 {
			_, err := unix.MmapPtr(-1, 0, p, z, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED)
			if err != nil {
				// Could not swap in zeros: unmap now, as before.
				note(unix.MunmapPtr(p, n))
				continue
			}
			retire(p, z)
		}
		if z < n {
			note(unix.MunmapPtr(unsafe.Add(p, z), n-z))
		}
	}
	m.all = nil
	return first
}

// Grace is how long the zero pages that replace a closed Map's file pages stay
// mapped (see Close): far longer than any read in flight takes to see that its
// Store is closed, short enough that closing many Maps in a row holds few
// mappings at once.
var Grace = 2 * time.Second

// MaxRetired bounds how many regions of zero pages wait for their grace
// period to end; past it the oldest are unmapped early. It keeps closed Maps
// to a small share of the default vm.max_map_count (65,530).
var MaxRetired = 8192

type region struct {
	p    unsafe.Pointer
	n    uintptr
	free time.Time // unmapped at or after this time
}

var retired struct {
	sync.Mutex
	q []region // oldest first
}

// retire schedules the zero pages [p, p+n) for unmapping after Grace.
func retire(p unsafe.Pointer, n uintptr) {
	retired.Lock()
	retired.q = append(retired.q, region{p, n, time.Now().Add(Grace)})
	sweepLocked(time.Now())
	retired.Unlock()
	time.AfterFunc(Grace, sweep)
}

func sweep() {
	retired.Lock()
	sweepLocked(time.Now())
	retired.Unlock()
}

// sweepLocked unmaps the regions whose grace has ended, and the oldest ones
// beyond MaxRetired.
func sweepLocked(now time.Time) {
	i := 0
	for ; i < len(retired.q); i++ {
		r := retired.q[i]
		if len(retired.q)-i <= MaxRetired && now.Before(r.free) {
			break
		}
		unix.MunmapPtr(r.p, r.n) // best effort: nothing to report it to
	}
	retired.q = append(retired.q[:0], retired.q[i:]...)
}

// Retired returns how many regions of zero pages wait to be unmapped (for tests).
func Retired() int {
	retired.Lock()
	defer retired.Unlock()
	return len(retired.q)
}
