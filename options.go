package simdr

import (
	"time"

	"github.com/simdr-go/simdr/internal/vfs"
)

// Options configures Open. The zero value (and a nil *Options) is the default:
// a writable store, created if missing, writes flushed to the operating system
// but not synced to disk, no waiting for another writer's lock.
type Options struct {
	// SyncWrites makes every Put, Delete, Apply and PutReader wait for its
	// bytes to reach the disk (fdatasync) before returning. Off, a write is in
	// the operating system's page cache when it returns: it survives the
	// process crashing, not the machine losing power. Sync flushes on demand.
	SyncWrites bool

	// ReadOnly opens the file without writing to it, ever: no lock is taken
	// (only probed, when the file holds no complete entry yet, to tell a
	// writer's first append from a corrupt file), a torn tail is ignored
	// rather than cut, writes return ErrReadOnly. Any
	// number of read-only Stores may follow one writer; Refresh brings one up
	// to date. The file must exist.
	ReadOnly bool

	// LockTimeout is how long Open waits for another writer to release the
	// file. Zero fails at once with ErrLocked.
	LockTimeout time.Duration

	// VerifyChecksums makes Get, GetHash and GetMany recompute each value's
	// CRC-32 and fail with ErrChecksum on a mismatch. It costs a pass over
	// every value read.
	VerifyChecksums bool

	// Repair lets Open cut a file in which no valid entry chain can be found
	// back to its longest valid prefix, which may be empty. Without it such a
	// file fails to open with ErrCorrupt and is left untouched. (A torn tail
	// after valid entries is always cut back, Repair or not.)
	Repair bool

	// CheckpointBytes is how much new data (bytes appended to the file)
	// makes the writer save a checkpoint of its index in the background,
	// beside the store (<path>-simdr-index), so that the next Open loads the
	// index instead of walking the whole file. Zero means 1 GiB; a negative
	// value turns background checkpoints off. A checkpoint is also written at
	// Close when enough entries were added since the last one. Checkpoints are
	// a cache: a missing or stale one only makes Open walk more of the file.
	CheckpointBytes int64

	fs vfs.FS // file system; tests swap in a fault-injecting one
}

func (o *Options) fsys() vfs.FS {
	if o.fs != nil {
		return o.fs
	}
	return vfs.OS
}
