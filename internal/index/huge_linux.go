package index

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on the platforms simdr
// runs on (x86-64, arm64 with 4 KiB pages).
const hugePage = 2 << 20

// hugePages turns adviseHuge on (a variable for benchmarks).
var hugePages = true

// adviseHuge asks the kernel to back the memory of groups with transparent
// huge pages (MADV_HUGEPAGE over the 2 MiB-aligned range that covers it, a
// hint that changes no byte of memory: best effort, errors ignored). A
// lookup in a large index misses the TLB on almost every probe with 4 KiB
// pages, and under virtualization each miss walks two page tables; with
// huge pages the TLB covers 512 times the memory. Small shards are left
// alone. The range may take in neighbouring heap objects, which is
// harmless: the advice only lets the kernel use huge pages there.
func adviseHuge(groups []group) {
	n := uintptr(len(groups)) * unsafe.Sizeof(group{})
	if n < hugePage/4 || !hugePages {
		return
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(groups)))
	lo, hi := p&^(hugePage-1), (p+n+hugePage-1)&^(hugePage-1)
	// Addresses, not a slice: the range is not one Go object, and a slice
	// over it could point the garbage collector at free memory.
	unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, unix.MADV_HUGEPAGE)
}
