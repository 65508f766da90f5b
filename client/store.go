package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/ttlms"
)

// Store is what a local simdr.Store and a remote server have in common, so
// that code can be written once for both: *Client implements it, and Local
// wraps a *simdr.Store in it. Every method takes a context (a local store
// only checks it before starting) and returns copies or fresh slices.
//
// What does not make sense remotely is left out: zero-copy access (Entry,
// its Bytes, Reader and offsets, View), which points into the server's
// memory mapping; ForEachParallel (Entries streams instead); Refresh,
// Close and Path, which belong to whoever opened the file; and Copy and
// Move to a *simdr.Store (the Client's Copy and Move take any Store).
type Store interface {
	Put(ctx context.Context, key, value []byte) error
	PutTTL(ctx context.Context, key, value []byte, ttl time.Duration) error
	PutReader(ctx context.Context, key []byte, r io.Reader) (int64, error)
	TTL(ctx context.Context, key []byte) (time.Duration, error)
	Get(ctx context.Context, key []byte) ([]byte, error)
	GetHash(ctx context.Context, h uint64) ([]byte, error)
	GetMany(ctx context.Context, keys [][]byte) ([][]byte, error)
	Has(ctx context.Context, key []byte) (bool, error)
	Delete(ctx context.Context, key []byte) error
	DeleteHash(ctx context.Context, h uint64) error
	Apply(ctx context.Context, b *Batch) error
	Rename(ctx context.Context, oldKey, newKey []byte) error
	Entries(ctx context.Context) iter.Seq2[Entry, error]
	Len(ctx context.Context) (int, error)
	Size(ctx context.Context) (int64, error)
	Stats(ctx context.Context) (simdr.Stats, error)
	Verify(ctx context.Context) error
	Compact(ctx context.Context) error
	Sync(ctx context.Context) error
}

var (
	_ Store = (*Client)(nil)
	_ Store = Local(nil)
)

// Local returns s as a Store. Values it returns are copies (Entries'
// values too), so they stay valid after s is closed. s stays the caller's
// to close.
func Local(s *simdr.Store) Store { return localStore{s} }

type localStore struct{ s *simdr.Store }

func (l localStore) Put(ctx context.Context, key, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.s.Put(key, value)
}

func (l localStore) PutTTL(ctx context.Context, key, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.s.PutTTL(key, value, ttl)
}

func (l localStore) TTL(ctx context.Context, key []byte) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return l.s.TTL(key)
}

func (l localStore) PutReader(ctx context.Context, key []byte, r io.Reader) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return l.s.PutReader(key, r)
}

func (l localStore) Get(ctx context.Context, key []byte) ([]byte, error) {
	return l.GetHash(ctx, simdr.Hash(key))
}

func (l localStore) GetHash(ctx context.Context, h uint64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e, err := l.s.GetHash(h)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), e.Bytes()...), nil
}

func (l localStore) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	es, err := l.s.GetMany(keys)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(es))
	for i, e := range es {
		if e.Exists() {
			out[i] = append([]byte(nil), e.Bytes()...)
		}
	}
	return out, nil
}

func (l localStore) Has(ctx context.Context, key []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if _, err := l.s.Get(key); err != nil {
		if errors.Is(err, simdr.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func (l localStore) Delete(ctx context.Context, key []byte) error {
	return l.DeleteHash(ctx, simdr.Hash(key))
}

func (l localStore) DeleteHash(ctx context.Context, h uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.s.DeleteHash(h)
}

// Apply decodes the Batch's records (which Batch itself wrote) into a
// simdr.Batch and applies it.
func (l localStore) Apply(ctx context.Context, b *Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.err != nil {
		return b.err
	}
	var sb simdr.Batch
	buf := b.buf
	for len(buf) > 0 {
		op := buf[0]
		kn := int(binary.LittleEndian.Uint32(buf[1:]))
		key := buf[5 : 5+kn]
		buf = buf[5+kn:]
		if op == 'D' {
			sb.Delete(key)
			continue
		}
		vn := int(binary.LittleEndian.Uint64(buf))
		value := buf[8 : 8+vn]
		buf = buf[8+vn:]
		if op == 'T' {
			ms := int64(binary.LittleEndian.Uint64(buf))
			buf = buf[8:]
			sb.PutTTL(key, value, ttlms.Duration(ms))
			continue
		}
		sb.Put(key, value)
	}
	return l.s.Apply(&sb)
}

func (l localStore) Rename(ctx context.Context, oldKey, newKey []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.s.Rename(oldKey, newKey)
}

func (l localStore) Entries(ctx context.Context) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		for e := range l.s.Entries() {
			if err := ctx.Err(); err != nil {
				yield(Entry{}, err)
				return
			}
			if !yield(Entry{KeyHash: e.KeyHash(), Value: append([]byte(nil), e.Bytes()...)}, nil) {
				return
			}
		}
	}
}

func (l localStore) Len(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := l.open(); err != nil {
		return 0, err
	}
	return l.s.Len(), nil
}

func (l localStore) Size(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := l.open(); err != nil {
		return 0, err
	}
	return l.s.Size(), nil
}

func (l localStore) Stats(ctx context.Context) (simdr.Stats, error) {
	if err := ctx.Err(); err != nil {
		return simdr.Stats{}, err
	}
	if err := l.open(); err != nil {
		return simdr.Stats{}, err
	}
	return l.s.Stats(), nil
}

func (l localStore) Verify(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.s.Verify()
}

func (l localStore) Compact(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.s.Compact()
}

func (l localStore) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.s.Sync()
}

// open reports simdr.ErrClosed once the store is closed, as the server does
// (Len, Size and Stats of a closed store are zeros, not errors, locally).
func (l localStore) open() error {
	if _, err := l.s.GetHash(0); errors.Is(err, simdr.ErrClosed) {
		return fmt.Errorf("client: local store: %w", simdr.ErrClosed)
	}
	return nil
}
