package simdr

import "github.com/simdr-go/simdr/internal/vfs"

// writebackEvery is how much the writer lets pile up in the page cache
// before it asks the kernel to start writing it out (vfs.Writeback). The
// kernel would otherwise wait for its dirty-page thresholds (gigabytes on
// a machine with memory), and a load's final Sync would then wait for all
// of it at once; written back as it goes, the disk works while the writer
// does, and Sync waits for the last few MiB. (RocksDB's bytes_per_sync.)
const writebackEvery = 8 << 20

// startWriteback is vfs.Writeback (a variable for tests).
var startWriteback = vfs.Writeback

// writeback starts the writeback of each whole writebackEvery-aligned
// stretch of the file that a's commit completed. Its entries are in the
// file (pwrite returned), and below the tail, their pages are not written
// again (the file only grows at its end).
func (a *appender) writeback() {
	if a.s.opts.SyncWrites { // with SyncWrites, each commit waited for its own
		return
	}
	if lo, hi := a.start/writebackEvery, a.tail/writebackEvery; hi > lo {
		startWriteback(a.g.f, lo*writebackEvery, (hi-lo)*writebackEvery)
	}
}
