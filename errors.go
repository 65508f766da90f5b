package simdr

import (
	"errors"

	"github.com/simdr-go/simdr/internal/lock"
)

// Sentinel errors. Errors returned by the store wrap these with context; test
// for them with errors.Is.
var (
	// ErrNotFound: the key is absent or deleted.
	ErrNotFound = errors.New("simdr: key not found")
	// ErrClosed: the Store (or Batch target) was closed.
	ErrClosed = errors.New("simdr: store closed")
	// ErrCorrupt: the file is not a store, or an entry in it is damaged.
	ErrCorrupt = errors.New("simdr: file is corrupt")
	// ErrInvalidValue: the value cannot be stored: the format holds neither an
	// empty value nor the single byte 0x00 (it would read as a delete marker).
	ErrInvalidValue = errors.New("simdr: value cannot be stored (empty, or the single byte 0x00)")
	// ErrReadOnly: a write was attempted on a Store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("simdr: store is read-only")
	// ErrLocked: another Store, in this process or another, has the file open for writing.
	ErrLocked = errors.New("simdr: store is locked by another writer")
	// ErrChecksum: a value's bytes do not match the checksum stored with them.
	ErrChecksum = errors.New("simdr: checksum mismatch")
	// ErrSameKey: Rename was asked to rename a key to itself.
	ErrSameKey = errors.New("simdr: source and destination keys are the same")
	// ErrSameStore: Copy or Move was asked to copy into the file it reads from
	// (or BackupFile to write its backup over it).
	ErrSameStore = errors.New("simdr: source and destination are the same store file")
	// ErrViewSize: View was asked for a type whose size does not divide the value's length.
	ErrViewSize = errors.New("simdr: value length is not a multiple of the element size")
	// ErrInvalidTTL: PutTTL (or Batch.PutTTL) was given a ttl that is not positive.
	ErrInvalidTTL = errors.New("simdr: ttl must be positive")
	// ErrReservedKey: the key starts with "\x00simdr.ttl\x00", the prefix of the
	// names under which simdr keeps expiry records (see PutTTL).
	ErrReservedKey = errors.New("simdr: key uses the reserved prefix \\x00simdr.ttl\\x00")
	// ErrFailed: an earlier write failed and could not be rolled back; the Store
	// refuses writes until it is reopened (which recovers the file).
	ErrFailed = errors.New("simdr: store failed and must be reopened")
)

// isLocked maps the lock package's error to ErrLocked.
func isLocked(err error) bool { return errors.Is(err, lock.ErrLocked) }
