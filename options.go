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

	// Repair lets Open salvage a damaged file. Without it, Open cuts only a
	// torn tail (the write a crash left unfinished, or bytes appended after
	// the last entry); a file whose chain is damaged below intact entries,
	// or that holds no valid chain at all, fails with ErrCorrupt and is left
	// byte for byte as it was.
	//
	// With Repair, every intact entry survives, in its order: the entries
	// of the longest valid chain, then every entry above it whose checksum
	// holds, found by scanning forward from each entry's end (an entry whose
	// stored prev is damaged is found by its payload checksum and relinked;
	// past damaged bytes, the scan resumes at the next entry that verifies).
	// A value whose checksum fails is kept, with its stored checksum, when
	// the entries on both sides link to it (dropping it would bring back an
	// older value of its key); a tombstone whose byte or checksum is damaged
	// is written whole (its key stays deleted). Everything else is dropped:
	// a torn tail is still just cut, and a file with no intact entry becomes
	// empty. When nothing below the last kept entry is dropped, the links are
	// rewritten in place and the file cut and synced; otherwise the kept
	// entries are written into a new file beside it, which is synced and
	// renamed over the store (mode kept, owner kept when allowed, a symlink
	// followed, the directory synced). A file with other hard links is not
	// replaced: the open fails. Store.Repaired reports what changed (sizes,
	// dropped ranges, kept and relinked counts). A read-only open never
	// repairs. Copy the file first if its damaged bytes matter.
	Repair bool

	// CheckpointBytes is how much new data (bytes appended to the file)
	// makes the writer save a checkpoint of its index in the background,
	// beside the store (<path>-simdr-index), so that the next Open loads the
	// index instead of walking the whole file. Zero means 1 GiB; a negative
	// value turns background checkpoints off. A checkpoint is also written at
	// Close when enough entries were added since the last one. Checkpoints are
	// a cache: a missing or stale one only makes Open walk more of the file.
	CheckpointBytes int64

	// Clock is the time that PutTTL measures expiry against and reads check
	// it with; nil means time.Now. A Store never sees its clock go back: it
	// uses the latest time it was given, so a key reported expired stays
	// expired even if the clock is set back.
	Clock func() time.Time

	fs vfs.FS // file system; tests swap in a fault-injecting one
}

func (o *Options) fsys() vfs.FS {
	if o.fs != nil {
		return o.fs
	}
	return vfs.OS
}
