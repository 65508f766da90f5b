package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/akrylysov/pogreb"
	"github.com/cockroachdb/pebble/v2"
	"github.com/dgraph-io/badger/v4"
	"github.com/simdr-go/simdr"
	bolt "go.etcd.io/bbolt"
)

// kv is what the harness needs from a store. Every adapter uses the store's
// ordinary public API the way its documentation suggests.
type kv interface {
	// PutBatch writes keys[i] → vals[i] as one batch (one transaction or
	// write batch where the store has one), without syncing to disk.
	PutBatch(keys, vals [][]byte) error
	// Sync makes everything written so far durable (fsync or equivalent).
	Sync() error
	// Get looks key up and reports the value's length and first 8 bytes
	// (little-endian), read from the value the store hands back.
	Get(key []byte) (n int, head uint64, err error)
	// Put writes one key without syncing.
	Put(key, val []byte) error
	// Close closes the store.
	Close() error
}

// streamer is implemented by the stores that can take and give a value as a
// stream, whatever its size, without holding it in memory.
type streamer interface {
	PutStream(key []byte, r io.Reader) (int64, error)
	GetStream(key []byte, w io.Writer) (int64, error)
}

// concurrent is implemented by stores that must be told that writes will run
// concurrently with reads (the map baseline takes a lock then).
type concurrent interface{ setConcurrent() }

// errNA marks a workload a store does not support.
var errNA = errors.New("n/a")

// storeDef describes one store under test.
type storeDef struct {
	name     string
	module   string // Go module path, for the version table
	baseline bool   // a physical-limit baseline rather than a store
	open     func(dir string) (kv, error)
	note     string // configuration used, for the report
}

var allStores = []storeDef{
	{name: "simdr", module: "github.com/simdr-go/simdr", open: openSimdr,
		note: "defaults (writes reach the OS page cache; `Sync` = fdatasync); load uses `Batch` + `Apply`"},
	{name: "map", baseline: true, open: openMap,
		note: "Go `map[uint64]uint64` keyed by `simdr.Hash(key)` (the same XXH3-64 per lookup as simdr) to where the value was copied, in 64 MiB slabs (no allocation per value, so that 100M keys fit in memory); an `RWMutex` only in the mixed workload"},
	{name: "file", baseline: true, open: openFile,
		note: "one plain file holding the bytes simdr's file holds, laid out the same way (each value padded to 64 bytes, then 20 bytes of metadata): each batch of 1,000 records is one `write`, then one `fdatasync`; big value: 1 MiB writes then `fsync`, read back with 1 MiB reads"},
	{name: "bbolt", module: "go.etcd.io/bbolt", open: openBolt,
		note: "`NoSync: true` (so the load's one sync is `DB.Sync`), one bucket, a batch = one `Update` transaction, `View` per Get"},
	{name: "pogreb", module: "github.com/akrylysov/pogreb", open: openPogreb,
		note: "defaults (no background sync); no batch API, so a batch is 1,000 `Put` calls; one `Sync`"},
	{name: "badger", module: "github.com/dgraph-io/badger/v4", open: openBadger,
		note: "defaults (`SyncWrites: false`, 256 MiB block cache, values below 1 MiB kept in the LSM tree), logger off; a batch = one `Update` transaction, `View` + `Item.Value` per Get"},
	{name: "pebble", module: "github.com/cockroachdb/pebble/v2", open: openPebble,
		note: "defaults but a 256 MiB block cache (the same budget as badger's default; pebble's default is 8 MiB), logger off; a batch = one `Batch` committed `NoSync`, the load's last batch committed `Sync`"},
}

func findStore(name string) (storeDef, bool) {
	for _, s := range allStores {
		if s.name == name {
			return s, true
		}
	}
	return storeDef{}, false
}

func head8(v []byte) uint64 {
	if len(v) < 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(v)
}

// ---- simdr ----

type simdrKV struct {
	s *simdr.Store
	b simdr.Batch
}

func openSimdr(dir string) (kv, error) {
	s, err := simdr.Open(filepath.Join(dir, "data.simdr"), nil)
	if err != nil {
		return nil, err
	}
	return &simdrKV{s: s}, nil
}

func (k *simdrKV) PutBatch(keys, vals [][]byte) error {
	k.b.Reset()
	for i := range keys {
		k.b.Put(keys[i], vals[i])
	}
	return k.s.Apply(&k.b)
}

func (k *simdrKV) Sync() error { return k.s.Sync() }

func (k *simdrKV) Get(key []byte) (int, uint64, error) {
	e, err := k.s.Get(key)
	if err != nil {
		return 0, 0, err
	}
	v := e.Bytes()
	return len(v), head8(v), nil
}

func (k *simdrKV) Put(key, val []byte) error { return k.s.Put(key, val) }
func (k *simdrKV) Close() error              { return k.s.Close() }

func (k *simdrKV) PutStream(key []byte, r io.Reader) (int64, error) {
	n, err := k.s.PutReader(key, r)
	if err != nil {
		return n, err
	}
	return n, k.s.Sync()
}

func (k *simdrKV) GetStream(key []byte, w io.Writer) (int64, error) {
	e, err := k.s.Get(key)
	if err != nil {
		return 0, err
	}
	return e.WriteTo(w)
}

// ---- map baseline ----

// mapKV is a Go map from a key's hash to where its value was copied, in
// slabs of slabBytes: the values are held in memory as compactly as a
// program can (no allocation, header or GC scan per value), so that 100M
// keys fit in memory (a separately allocated value each took 20 GB there).
type mapKV struct {
	m     map[uint64]uint64 // hash → slab<<52 | offset<<26 | length
	slabs [][]byte
	mu    *sync.RWMutex // set for the mixed workload
}

const (
	slabBits  = 26
	slabBytes = 1 << slabBits // a value is at most this long
	slabMask  = slabBytes - 1
	maxSlabs  = 1 << (64 - 2*slabBits)
)

func openMap(string) (kv, error) { return &mapKV{m: make(map[uint64]uint64)}, nil }

// add copies v into the slabs and returns where it is.
func (k *mapKV) add(v []byte) (uint64, error) {
	if len(v) > slabBytes {
		return 0, fmt.Errorf("map: a %d-byte value is over the %d-byte slab", len(v), slabBytes)
	}
	last := len(k.slabs) - 1
	if last < 0 || len(k.slabs[last])+len(v) > slabBytes {
		if last+1 == maxSlabs {
			return 0, fmt.Errorf("map: over %d slabs of %d bytes", maxSlabs, slabBytes)
		}
		k.slabs = append(k.slabs, make([]byte, 0, slabBytes))
		last++
	}
	at := len(k.slabs[last])
	k.slabs[last] = append(k.slabs[last], v...)
	return uint64(last)<<(2*slabBits) | uint64(at)<<slabBits | uint64(len(v)), nil
}

func (k *mapKV) PutBatch(keys, vals [][]byte) error {
	for i := range keys {
		at, err := k.add(vals[i])
		if err != nil {
			return err
		}
		k.m[simdr.Hash(keys[i])] = at
	}
	return nil
}

func (k *mapKV) Sync() error { return nil }

func (k *mapKV) Get(key []byte) (int, uint64, error) {
	h := simdr.Hash(key)
	if k.mu == nil {
		return k.get(h)
	}
	k.mu.RLock() // the slabs may grow meanwhile
	n, head, err := k.get(h)
	k.mu.RUnlock()
	return n, head, err
}

func (k *mapKV) get(h uint64) (int, uint64, error) {
	at, ok := k.m[h]
	if !ok {
		return 0, 0, errors.New("map: not found")
	}
	off, n := at>>slabBits&slabMask, at&slabMask
	v := k.slabs[at>>(2*slabBits)][off : off+n]
	return len(v), head8(v), nil
}

func (k *mapKV) Put(key, val []byte) error {
	h := simdr.Hash(key)
	k.mu.Lock()
	defer k.mu.Unlock()
	at, err := k.add(val)
	if err == nil {
		k.m[h] = at
	}
	return err
}

func (k *mapKV) setConcurrent() { k.mu = new(sync.RWMutex) }
func (k *mapKV) Close() error   { k.m, k.slabs = nil, nil; return nil }

// ---- plain file baseline ----

type fileKV struct {
	path string
	f    *os.File
	buf  []byte
	tail int64 // bytes written so far
}

func openFile(dir string) (kv, error) {
	p := filepath.Join(dir, "plain.dat")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &fileKV{path: p, f: f}, nil
}

// PutBatch writes the bytes simdr's file would hold for the batch, laid out
// the same way (each value after zeros up to a multiple of 64, then 20 bytes
// where simdr puts its metadata: here the key's first bytes), with one write:
// the physical limit of a store that writes what simdr writes.
func (k *fileKV) PutBatch(keys, vals [][]byte) error {
	k.buf = k.buf[:0]
	var zeros [64]byte
	for i := range keys {
		pad := (64 - (k.tail+int64(len(k.buf)))%64) % 64
		k.buf = append(k.buf, zeros[:pad]...)
		k.buf = append(k.buf, vals[i]...)
		var meta [20]byte
		copy(meta[:], keys[i])
		k.buf = append(k.buf, meta[:]...)
	}
	_, err := k.f.Write(k.buf)
	k.tail += int64(len(k.buf))
	return err
}

func (k *fileKV) Sync() error                     { return syscall.Fdatasync(int(k.f.Fd())) }
func (k *fileKV) Get([]byte) (int, uint64, error) { return 0, 0, errNA }
func (k *fileKV) Put([]byte, []byte) error        { return errNA }
func (k *fileKV) Close() error                    { return k.f.Close() }

// onlyWriter hides the file's ReadFrom so that io.CopyBuffer uses our buffer.
type onlyWriter struct{ io.Writer }

// onlyReader hides the file's WriteTo so that io.CopyBuffer uses our buffer.
type onlyReader struct{ io.Reader }

func (k *fileKV) PutStream(_ []byte, r io.Reader) (int64, error) {
	n, err := io.CopyBuffer(onlyWriter{k.f}, r, make([]byte, 1<<20))
	if err != nil {
		return n, err
	}
	return n, k.f.Sync()
}

func (k *fileKV) GetStream(_ []byte, w io.Writer) (int64, error) {
	f, err := os.Open(k.path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.CopyBuffer(w, onlyReader{f}, make([]byte, 1<<20))
}

// ---- bbolt ----

var boltBucket = []byte("bench")

type boltKV struct{ db *bolt.DB }

func openBolt(dir string) (kv, error) {
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o644, &bolt.Options{NoSync: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &boltKV{db: db}, nil
}

func (k *boltKV) PutBatch(keys, vals [][]byte) error {
	return k.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucket)
		for i := range keys {
			if err := b.Put(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (k *boltKV) Sync() error { return k.db.Sync() }

func (k *boltKV) Get(key []byte) (n int, h uint64, err error) {
	err = k.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(boltBucket).Get(key)
		if v == nil {
			return errors.New("bbolt: not found")
		}
		n, h = len(v), head8(v)
		return nil
	})
	return
}

func (k *boltKV) Put(key, val []byte) error {
	return k.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(boltBucket).Put(key, val) })
}

func (k *boltKV) Close() error { return k.db.Close() }

// ---- pogreb ----

type pogrebKV struct{ db *pogreb.DB }

func openPogreb(dir string) (kv, error) {
	db, err := pogreb.Open(filepath.Join(dir, "pogreb"), &pogreb.Options{})
	if err != nil {
		return nil, err
	}
	return &pogrebKV{db: db}, nil
}

func (k *pogrebKV) PutBatch(keys, vals [][]byte) error {
	for i := range keys {
		if err := k.db.Put(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return nil
}

func (k *pogrebKV) Sync() error { return k.db.Sync() }

func (k *pogrebKV) Get(key []byte) (int, uint64, error) {
	v, err := k.db.Get(key)
	if err != nil {
		return 0, 0, err
	}
	if v == nil {
		return 0, 0, errors.New("pogreb: not found")
	}
	return len(v), head8(v), nil
}

func (k *pogrebKV) Put(key, val []byte) error { return k.db.Put(key, val) }
func (k *pogrebKV) Close() error              { return k.db.Close() }

// ---- badger ----

type badgerKV struct{ db *badger.DB }

func openBadger(dir string) (kv, error) {
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "badger")).WithLogger(nil))
	if err != nil {
		return nil, err
	}
	return &badgerKV{db: db}, nil
}

func (k *badgerKV) PutBatch(keys, vals [][]byte) error {
	return k.db.Update(func(txn *badger.Txn) error {
		for i := range keys {
			if err := txn.Set(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (k *badgerKV) Sync() error { return k.db.Sync() }

func (k *badgerKV) Get(key []byte) (n int, h uint64, err error) {
	err = k.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			n, h = len(v), head8(v)
			return nil
		})
	})
	return
}

func (k *badgerKV) Put(key, val []byte) error {
	return k.db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) })
}

func (k *badgerKV) Close() error { return k.db.Close() }

// ---- pebble ----

type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Errorf(string, ...interface{}) {}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "pebble: "+format+"\n", args...)
	os.Exit(2)
}

type pebbleKV struct {
	db    *pebble.DB
	cache interface{ Unref() }
}

func openPebble(dir string) (kv, error) {
	cache := pebble.NewCache(256 << 20)
	db, err := pebble.Open(filepath.Join(dir, "pebble"), &pebble.Options{Cache: cache, Logger: quietLogger{}})
	if err != nil {
		cache.Unref()
		return nil, err
	}
	return &pebbleKV{db: db, cache: cache}, nil
}

func (k *pebbleKV) PutBatch(keys, vals [][]byte) error {
	b := k.db.NewBatch()
	defer b.Close()
	for i := range keys {
		if err := b.Set(keys[i], vals[i], nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.NoSync)
}

// Sync syncs the write-ahead log (what a batch committed with pebble.Sync does).
func (k *pebbleKV) Sync() error { return k.db.LogData(nil, pebble.Sync) }

func (k *pebbleKV) Get(key []byte) (int, uint64, error) {
	v, closer, err := k.db.Get(key)
	if err != nil {
		return 0, 0, err
	}
	n, h := len(v), head8(v)
	return n, h, closer.Close()
}

func (k *pebbleKV) Put(key, val []byte) error { return k.db.Set(key, val, pebble.NoSync) }

func (k *pebbleKV) Close() error {
	err := k.db.Close()
	k.cache.Unref()
	return err
}

// crcWriter is the sink a streamed value is read into: it reads every byte.
type crcWriter struct{ crc uint32 }

func (c *crcWriter) Write(p []byte) (int, error) {
	c.crc = crc32.Update(c.crc, crc32.IEEETable, p)
	return len(p), nil
}
