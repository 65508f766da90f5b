package vfs

import "golang.org/x/sys/unix"

// Writeback asks the kernel to start writing the dirty pages of f in
// [off, off+n) to disk, without waiting for them (sync_file_range with
// SYNC_FILE_RANGE_WRITE), so that a later Sync has less left to wait for
// and the disk works while the writer goes on. It is a hint: it promises no
// durability, errors are ignored, and a File other than the real one (a
// test's) does nothing.
func Writeback(f File, off, n int64) {
	if of, ok := f.(osFile); ok && n > 0 {
		unix.SyncFileRange(int(of.File.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
	}
}
