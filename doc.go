// Package simdr is an embedded key/value store in one append-only file,
// memory-mapped, with zero-copy reads. It implements the design and the file
// format of SIMD R Drive (the Rust crate rust-simd-r-drive): files move freely
// between the two.
//
// A value is stored as raw bytes under a key; Get hands back an Entry whose
// Bytes point straight into the mapped file, with no copy and no allocation.
// Every value starts 64-byte aligned, so View can reinterpret it as a slice of
// numbers.
//
// # What lives how long
//
// An Entry (and every slice from it) stays valid and unchanged until the Store
// is closed: later writes append, never overwrite; growth maps a larger region
// and keeps the old one; Compact keeps the old file mapped. After Close an
// Entry must not be used: it reads zeros for a grace period of about two
// seconds, then faults (see Store.Close); so must one from a file generation
// released by ReleaseOld (which a long-running process calls to give back the
// disk space of the files Compact replaced). The slices are read-only:
// writing to one faults.
//
// # Concurrency
//
// A Store is safe for concurrent use. Get, GetHash, GetMany, Has, Len, Size,
// Entries, ForEachParallel and Stats take no lock. Writes are serialized
// inside the Store, and across processes by an exclusive flock on the file:
// a second writer gets ErrLocked. Read-only Stores (Options.ReadOnly) may
// follow the writer from any process and catch up with Refresh. Readers see
// every write (a batch, Rename, Move) whole. Close may run beside other calls:
// they return ErrClosed, never panic.
//
// # Durability
//
// A write returns once its bytes are in the operating system (they survive the
// process, not a power cut); Options.SyncWrites or Sync make them durable. A
// crash can tear the last write: Open cuts the file back to its last complete
// entry, checked by its CRC-32. A batch is atomic to concurrent readers, but a
// crash in the middle of one keeps the prefix of its entries that reached the
// file.
//
// # Keys
//
// Keys are not stored, only their XXH3-64 hash: two keys with the same hash are
// the same key. Values cannot be empty, nor the single byte 0x00 (the format's
// delete marker): both fail with ErrInvalidValue.
//
// # Expiring keys
//
// PutTTL (and Batch.PutTTL) stores a value that every read stops finding once
// its time is up (by Options.Clock); TTL tells the time left. The value stays
// the raw bytes stored; the expiry is a separate 32-byte entry under a
// reserved key hash, which the Rust original reads as an ordinary value (see
// docs/ttl.md). Keys starting with "\x00simdr.ttl\x00" are reserved for it:
// writes refuse them with ErrReservedKey.
package simdr
