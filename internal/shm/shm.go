// Package shm is the shared state file beside a store file: a small file that
// the writer and its followers map MAP_SHARED, holding the writer's committed
// tail (and the metadata of the entry that ends there), the bound of its write
// in flight, a commit counter that followers can sleep on (a futex) and the
// number of sleepers. The layout is in docs/statefile.md.
//
// The file is a cache: nothing in it is data. Every reader checks what it
// reads (a magic number, a version, a per-slot sequence word and checksum) and
// treats anything that does not check as no state at all.
package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Size is the length of the state file. Bytes from Reserved up to Size are
// reserved (zero; the index checkpoint has a file of its own).
const Size = 4096

// Layout offsets (see docs/statefile.md).
const (
	offMagic    = 0   // 8 bytes "simdrshm"
	offVersion  = 8   // uint32 version, uint32 zero
	offSlot0    = 64  // two slots of slotSize bytes
	slotSize    = 128 // of which slotWords*8 are used
	offInflight = 320 // uint64 inflight, uint64 its complement
	offWord     = 384 // uint32 futex word: +1 at every Bump (wraps)
	offWaiters  = 388 // int32 sleepers on offWord
	// Reserved is the first byte of the reserved, zero part of the header.
	Reserved = 512
)

// Version is the layout version this package writes and accepts.
const Version = 1

var magic = [8]byte{'s', 'i', 'm', 'd', 'r', 's', 'h', 'm'}

// slot words, in order.
const (
	wSeq   = iota // odd while the writer rewrites the slot
	wDev          // the store file's device
	wIno          // the store file's inode
	wBoot0        // the boot the writer ran in (Linux boot_id)
	wBoot1        //
	wTail         // the committed tail
	wHash         // metadata of the entry ending at Tail: key hash
	wPrev         // prev
	wCRC          // CRC-32 (low 32 bits)
	wCount        // commits since the file was made
	wSum          // checksum of the words above (but Seq)
	slotWords
)

// Commit is one committed state of the writer.
type Commit struct {
	Dev, Ino uint64    // identity of the store file the state describes
	Boot     [2]uint64 // boot the writer ran in (see BootID)
	Tail     int64     // the committed tail
	Hash     uint64    // metadata of the entry that ends at Tail (zero when Tail is 0)
	Prev     int64
	CRC      uint32
	Count    uint64 // commit counter, increasing
}

// File is an open, mapped state file.
type File struct {
	f        *os.File
	b        []byte
	writable bool
	next     int // the slot the writer writes next
	dev, ino uint64
	closed   atomic.Bool
	faulted  atomic.Bool // a read or store of the mapping faulted (see safe)
	// mu keeps the mapping alive for the methods a Store calls without its
	// write lock (Wait's: Word, Sleep, Wake, Load, Inflight, Valid): they
	// hold it shared, and Close takes it exclusively before unmapping.
	// Without it, a Sleep still in its futex call when Close unmapped f
	// faulted on its way out (SIGSEGV: the whole process), or, had another
	// mapping taken the address meanwhile, wrote into it.
	mu sync.RWMutex
}

// Errors of Create and Open.
var (
	// ErrUnusable: the file exists but must not be used (not a regular
	// file, another owner, several links, too short for a follower).
	ErrUnusable = errors.New("shm: state file unusable")
)

// Create opens (creating it when missing) the state file at path for the
// writer of a store file owned by uid, with permissions perm. A file of the
// wrong size is resized; its content is whatever it held (checked by Load).
// A file with another owner or more than one link fails with ErrUnusable,
// a symbolic link with ELOOP (O_NOFOLLOW); either is left alone.
func Create(path string, perm os.FileMode, uid uint32) (*File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	size, err := check(f, uid)
	if err != nil {
		f.Close()
		return nil, err
	}
	if size != Size {
		if err := f.Truncate(Size); err != nil {
			f.Close()
			return nil, err
		}
	}
	sf, err := newFile(f, true)
	if err != nil {
		f.Close()
	}
	return sf, err
}

// Open opens an existing state file for a follower of a store file owned by
// uid: read-write when it may (so that it can count itself among the
// sleepers), read-only otherwise. It never creates the file. A missing file
// fails with an error matching fs.ErrNotExist; a short one, one with several
// links or another owner with ErrUnusable; a symbolic link with ELOOP.
func Open(path string, uid uint32) (*File, error) {
	writable := true
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.EACCES || err == unix.EROFS || err == unix.EPERM {
		writable = false
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	size, err := check(f, uid)
	if err == nil && size < Size {
		err = fmt.Errorf("%w: %s is %d bytes", ErrUnusable, path, size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	sf, err := newFile(f, writable)
	if err != nil {
		f.Close()
	}
	return sf, err
}

// check returns the size of f, or ErrUnusable when f is not a regular file
// with one link owned by uid.
func check(f *os.File, uid uint32) (int64, error) {
	st, err := stat(f)
	if err != nil {
		return 0, err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return 0, fmt.Errorf("%w: %s is not a regular file", ErrUnusable, f.Name())
	case st.Uid != uid:
		return 0, fmt.Errorf("%w: %s belongs to uid %d, the store to %d", ErrUnusable, f.Name(), st.Uid, uid)
	case st.Nlink != 1:
		return 0, fmt.Errorf("%w: %s has %d links", ErrUnusable, f.Name(), st.Nlink)
	}
	return st.Size, nil
}

func stat(f *os.File) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstat(int(f.Fd()), &st)
	return st, err
}

// newFile maps fd for a File.
func newFile(f *os.File, writable bool) (*File, error) {
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	st, err := stat(f)
	if err != nil {
		return nil, err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, Size, prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shm: mmap %s: %w", f.Name(), err)
	}
	return &File{f: f, b: b, writable: writable, dev: uint64(st.Dev), ino: st.Ino}, nil
}

// Is reports whether the file at path is f's (same device and inode).
func (f *File) Is(path string) bool {
	var st unix.Stat_t
	return unix.Lstat(path, &st) == nil && uint64(st.Dev) == f.dev && st.Ino == f.ino
}

// Writable reports whether f is mapped read-write.
func (f *File) Writable() bool { return f.writable }

// Close unmaps and closes f, once the calls using its mapping have
// returned: it wakes the sleepers of this process first (and, on a
// read-write mapping, moves the futex word so that a Sleep about to wait
// returns at once; a read-only one may wait out its timeout). Calls after
// Close read nothing (zeros, false). Closing twice does nothing.
func (f *File) Close() error {
	if f.closed.Swap(true) {
		return nil
	}
	if f.writable {
		f.safe(func() { atomic.AddUint32(f.futex(), 1) })
	}
	f.wake() // a cut file: EFAULT, no signal
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(unix.Munmap(f.b), f.f.Close())
}

// hold takes a shared hold on f's mapping (released with f.mu.RUnlock), or
// returns false, holding nothing, once Close has begun.
func (f *File) hold() bool {
	f.mu.RLock()
	if f.closed.Load() {
		f.mu.RUnlock()
		return false
	}
	return true
}

func (f *File) word(off int) *uint64 { return (*uint64)(unsafe.Pointer(&f.b[off])) }

func (f *File) slot(i, w int) *uint64 { return f.word(offSlot0 + i*slotSize + w*8) }

// Valid reports whether the header (magic and version) is that of this
// package's layout.
func (f *File) Valid() (ok bool) {
	if !f.hold() {
		return false
	}
	defer f.mu.RUnlock()
	f.safe(func() { ok = f.valid() })
	return ok
}

func (f *File) valid() bool {
	return [8]byte(f.b[offMagic:offMagic+8]) == magic && binary.LittleEndian.Uint32(f.b[offVersion:]) == Version
}

// sum is the slot checksum: a multiply-xorshift fold of the words, seeded
// with the magic number, so that zeros and random bytes fail it.
func sum(w *[slotWords]uint64) uint64 {
	h := binary.LittleEndian.Uint64(magic[:]) ^ Version
	for i := wDev; i < wSum; i++ {
		h ^= w[i]
		h *= 0x9E3779B97F4A7C15
		h ^= h >> 29
	}
	return h
}

// Load returns the newest commit recorded in f, and false when there is none
// that checks (a new, torn or garbage file). It may be called by any process
// at any time: a slot the writer is rewriting is skipped or re-read.
func (f *File) Load() (c Commit, ok bool) {
	if !f.hold() {
		return Commit{}, false
	}
	defer f.mu.RUnlock()
	f.safe(func() { c, ok = f.load() })
	return c, ok
}

func (f *File) load() (Commit, bool) {
	if !f.valid() {
		return Commit{}, false
	}
	var best Commit
	found := false
	for i := range 2 {
		for try := 0; try < 64; try++ {
			c, ok, busy := f.loadSlot(i)
			if busy {
				continue
			}
			if ok && (!found || c.Count > best.Count) {
				best, found = c, true
			}
			break
		}
	}
	return best, found
}

// loadSlot reads slot i; busy is true when the writer was rewriting it.
func (f *File) loadSlot(i int) (c Commit, ok, busy bool) {
	var w [slotWords]uint64
	s1 := atomic.LoadUint64(f.slot(i, wSeq))
	if s1&1 != 0 {
		return Commit{}, false, true
	}
	for j := wDev; j < slotWords; j++ {
		w[j] = atomic.LoadUint64(f.slot(i, j))
	}
	if atomic.LoadUint64(f.slot(i, wSeq)) != s1 {
		return Commit{}, false, true
	}
	if w[wSum] != sum(&w) || w[wCount] == 0 {
		return Commit{}, false, false
	}
	return Commit{
		Dev: w[wDev], Ino: w[wIno], Boot: [2]uint64{w[wBoot0], w[wBoot1]},
		Tail: int64(w[wTail]), Hash: w[wHash], Prev: int64(w[wPrev]), CRC: uint32(w[wCRC]),
		Count: w[wCount],
	}, true, false
}

// Init makes f a fresh state for the writer: it writes the header and c in
// one slot (c.Count is set above any count f held), invalidates the other
// slot, and sets inflight to c.Tail. It returns the count used.
func (f *File) Init(c Commit) (count uint64) {
	f.safe(func() { count = f.init(c) })
	return count
}

func (f *File) init(c Commit) uint64 {
	old, _ := f.load()
	if f.valid() {
		c.Count = max(c.Count, old.Count+1)
	} else {
		c.Count = max(c.Count, 1)
		copy(f.b[offMagic:], magic[:])
		binary.LittleEndian.PutUint32(f.b[offVersion:], Version)
		binary.LittleEndian.PutUint32(f.b[offVersion+4:], 0)
	}
	for i := range 2 { // a torn slot of a dead writer has an odd seq: even it out
		s := atomic.LoadUint64(f.slot(i, wSeq))
		atomic.StoreUint64(f.slot(i, wSeq), s+1)
		atomic.StoreUint64(f.slot(i, wSum), 0) // fails its checksum
		atomic.StoreUint64(f.slot(i, wSeq), (s+2)&^1)
	}
	f.next = 0
	f.store(c)
	f.setInflight(c.Tail)
	return c.Count
}

// Store records c in the slot not holding the newest commit. Only the
// writer (one goroutine, holding the store's lock) calls it.
//
// The slot's sequence word is made odd, the words written, and the sequence
// made even again: a reader that sees the same even sequence before and
// after reading the words has read one commit whole. Locked instructions
// cost about 30 ns each here, so only the sequence words are atomic stores
// (the first one is a full barrier, the second a release); the words between
// are plain stores, kept in order by the compiler (one memory chain) and by
// the processor (x86 stores are not reordered with each other; on weaker
// processors a torn read still fails the checksum).
func (f *File) Store(c Commit) { f.safe(func() { f.store(c) }) }

func (f *File) store(c Commit) {
	i := f.next
	f.next ^= 1
	w := [slotWords]uint64{
		wDev: c.Dev, wIno: c.Ino, wBoot0: c.Boot[0], wBoot1: c.Boot[1],
		wTail: uint64(c.Tail), wHash: c.Hash, wPrev: uint64(c.Prev), wCRC: uint64(c.CRC),
		wCount: c.Count,
	}
	w[wSum] = sum(&w)
	seq := f.slot(i, wSeq)
	s := *seq | 1
	atomic.StoreUint64(seq, s) // odd: being rewritten
	dst := (*[slotWords]uint64)(unsafe.Pointer(seq))
	for j := wDev; j < slotWords; j++ {
		dst[j] = w[j]
	}
	atomic.StoreUint64(seq, s+1)
}

// Inflight returns the bound of the writer's write in flight: no byte at or
// past it was written since the last commit. ok is false when the word and
// its complement disagree (a torn or garbage file).
func (f *File) Inflight() (v int64, ok bool) {
	if !f.hold() {
		return 0, false
	}
	defer f.mu.RUnlock()
	f.safe(func() {
		a := atomic.LoadUint64(f.word(offInflight))
		b := atomic.LoadUint64(f.word(offInflight + 8))
		v, ok = int64(a), a == ^b
	})
	return v, ok
}

// SetInflight sets the bound of the writer's write in flight. A crash between
// its two stores leaves a pair that Inflight reports as not ok.
func (f *File) SetInflight(v int64) { f.safe(func() { f.setInflight(v) }) }

func (f *File) setInflight(v int64) {
	*f.word(offInflight + 8) = ^uint64(v) // plain: ordered before the next store (see Store)
	atomic.StoreUint64(f.word(offInflight), uint64(v))
}

func (f *File) futex() *uint32 { return (*uint32)(unsafe.Pointer(&f.b[offWord])) }

func (f *File) waiters() *int32 { return (*int32)(unsafe.Pointer(&f.b[offWaiters])) }

// Word returns the futex word: it changes at every Bump.
func (f *File) Word() (w uint32) {
	if !f.hold() {
		return 0
	}
	defer f.mu.RUnlock()
	f.safe(func() { w = atomic.LoadUint32(f.futex()) })
	return w
}

// Bump changes the futex word and wakes its sleepers, if any (only then does
// it make a system call). The writer calls it after each commit.
//
// The writer's methods (Init, Store, SetInflight, Bump) take no hold on the
// mapping: the Store calls them under its write lock, as it calls Close.
func (f *File) Bump() {
	if f.closed.Load() {
		return
	}
	waiters := int32(0)
	f.safe(func() {
		atomic.AddUint32(f.futex(), 1)
		waiters = atomic.LoadInt32(f.waiters())
	})
	if waiters != 0 {
		f.wake()
	}
}

// Wake wakes every process sleeping on the futex word. They re-check what
// they wait for, so a spurious wake costs only time.
func (f *File) Wake() {
	if !f.hold() {
		return
	}
	defer f.mu.RUnlock()
	f.wake()
}

// wake is Wake for a caller that keeps the mapping alive.
func (f *File) wake() {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(f.futex())), futexWake, uintptr(1<<31-1), 0, 0, 0)
}

const (
	futexWait = 0 // FUTEX_WAIT, without FUTEX_PRIVATE_FLAG: across processes
	futexWake = 1 // FUTEX_WAKE
)

// Sleep sleeps until the futex word differs from v, a Wake, or timeout,
// whichever comes first (spurious returns are possible). A follower mapped
// read-only cannot count itself among the sleepers: the writer then does not
// wake it, and Sleep lasts its whole timeout unless the word has changed.
func (f *File) Sleep(v uint32, timeout time.Duration) {
	if !f.hold() {
		time.Sleep(timeout)
		return
	}
	defer f.mu.RUnlock()
	if f.writable {
		if !f.safe(func() { atomic.AddInt32(f.waiters(), 1) }) {
			time.Sleep(timeout) // the file was cut under us: do not spin
			return
		}
		defer f.safe(func() { atomic.AddInt32(f.waiters(), -1) })
	}
	var w uint32
	if !f.safe(func() { w = atomic.LoadUint32(f.futex()) }) {
		time.Sleep(timeout) // the file was cut under us: do not spin
		return
	}
	if w != v {
		return
	}
	ts := unix.NsecToTimespec(int64(timeout))
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(f.futex())), futexWait, uintptr(v), uintptr(unsafe.Pointer(&ts)), 0, 0)
	if errno == syscall.EFAULT { // the file was cut under us: do not spin
		time.Sleep(timeout)
	}
}

var boot struct {
	once sync.Once
	id   [2]uint64
}

// BootID returns the Linux boot_id (/proc/sys/kernel/random/boot_id) as two
// words, or zeros when it cannot be read. A state written in another boot may
// have reached the disk only in part (a power cut), so it is not trusted.
func BootID() [2]uint64 {
	boot.once.Do(func() {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err != nil {
			return
		}
		var hex []byte
		for _, c := range b {
			switch {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
				hex = append(hex, c)
			}
		}
		if len(hex) != 32 {
			return
		}
		for i, c := range hex {
			d := uint64(c - '0')
			if c >= 'a' {
				d = uint64(c-'a') + 10
			}
			boot.id[i/16] = boot.id[i/16]<<4 | d
		}
	})
	return boot.id
}
