package simdr

import (
	"fmt"
	"time"

	"github.com/simdr-go/simdr/internal/format"
)

// Batch collects puts and deletes that Apply writes together: one write call,
// one flush (and one sync with Options.SyncWrites). Other goroutines see all of
// a batch or none of it. A Batch is not safe for concurrent use; it may be
// reused after Reset.
//
// On a crash in the middle of Apply, the format (which has no commit record)
// keeps any prefix of the batch's entries, in order, that reached the file
// whole: a batch is atomic to readers of a running Store, not across a crash.
type Batch struct {
	ops  []batchOp
	data []byte       // the values, copied
	ttls []expirySpec // the expiries of the ops with ttl set, in order
	err  error        // the first invalid value
}

type batchOp struct {
	hash       uint64
	start, end int // value in data
	del        bool
	ttl        bool // the next of ttls is its expiry (PutTTL, PutExpiresAt)
}

// expirySpec is when a batch op's value expires: ttl after Apply writes it,
// or at a given time (Unix ms) when at is not 0.
type expirySpec struct {
	ttl time.Duration
	at  int64
}

// Put adds a put of value under key. value is copied. An empty value or the
// single byte 0x00 makes the whole batch fail in Apply with ErrInvalidValue,
// and a key with the reserved prefix with ErrReservedKey (see Store.PutTTL).
func (b *Batch) Put(key, value []byte) {
	b.reserved(key)
	b.PutHash(format.Hash(key), value)
}

// PutTTL adds a put of value under key that expires ttl after Apply writes it
// (see Store.PutTTL). A ttl that is not positive makes the whole batch fail in
// Apply with ErrInvalidTTL; the value is checked as Put checks it.
func (b *Batch) PutTTL(key, value []byte, ttl time.Duration) {
	b.Put(key, value)
	if ttl <= 0 && b.err == nil {
		b.err = fmt.Errorf("batch op %d: ttl %v: %w", len(b.ops)-1, ttl, ErrInvalidTTL)
	}
	b.ops[len(b.ops)-1].ttl = true
	b.ttls = append(b.ttls, expirySpec{ttl: ttl})
}

// PutExpiresAt adds a put of value under key that expires at at, by the
// Store's clock (Options.Clock), to the millisecond. Unlike PutTTL it does not
// depend on when Apply runs: replicas that apply the same batch at different
// times give the key the same expiry. A time not after the Store's clock
// when Apply runs writes a value that is already expired (reads do not find
// it; Compact drops it). The value is checked as Put checks it.
func (b *Batch) PutExpiresAt(key, value []byte, at time.Time) {
	b.reserved(key)
	b.PutHashExpiresAt(format.Hash(key), value, at)
}

// PutHashExpiresAt is PutExpiresAt for a caller that already has the key's hash.
func (b *Batch) PutHashExpiresAt(h uint64, value []byte, at time.Time) {
	b.PutHash(h, value)
	b.ops[len(b.ops)-1].ttl = true
	b.ttls = append(b.ttls, expirySpec{at: min(max(at.UnixMilli(), 1), maxExpiry)})
}

// reserved fails the batch when key has the reserved prefix.
func (b *Batch) reserved(key []byte) {
	if reserved(key) && b.err == nil {
		b.err = fmt.Errorf("batch op %d: %w", len(b.ops), ErrReservedKey)
	}
}

// PutHash is Put for a caller that already has the key's hash.
func (b *Batch) PutHash(h uint64, value []byte) {
	if !format.ValueOK(value) && b.err == nil {
		b.err = fmt.Errorf("batch op %d: put %d bytes: %w", len(b.ops), len(value), ErrInvalidValue)
	}
	start := len(b.data)
	b.data = append(b.data, value...)
	b.ops = append(b.ops, batchOp{hash: h, start: start, end: len(b.data)})
}

// Delete adds a delete of key. A key that has no value when Apply reaches this
// operation is skipped.
func (b *Batch) Delete(key []byte) {
	b.reserved(key)
	b.DeleteHash(format.Hash(key))
}

// DeleteHash is Delete for a caller that already has the key's hash.
func (b *Batch) DeleteHash(h uint64) { b.ops = append(b.ops, batchOp{hash: h, del: true}) }

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return len(b.ops) }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() { b.ops, b.data, b.ttls, b.err = b.ops[:0], b.data[:0], b.ttls[:0], nil }

// Apply writes every operation of b, in order, with one write call. A batch
// holding an invalid value fails whole with ErrInvalidValue, writing nothing.
// An empty batch writes nothing. b may be reused or reset afterwards.
func (s *Store) Apply(b *Batch) error {
	if b == nil {
		return nil // nothing to write
	}
	if b.err != nil {
		return fmt.Errorf("simdr: apply: %w", b.err)
	}
	if len(b.ops) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	g, err := s.writable()
	if err != nil {
		return fmt.Errorf("simdr: apply: %w", err)
	}
	// Whether each deleted key has a value at its point in the batch.
	var state map[uint64]bool
	for _, op := range b.ops {
		if op.del {
			state = make(map[uint64]bool)
			break
		}
	}
	a := s.begin(g)
	ttls := b.ttls
	for _, op := range b.ops {
		if !op.del {
			v := b.data[op.start:op.end]
			if op.ttl {
				exp := ttls[0].at
				if exp == 0 {
					var err error
					if exp, err = s.expiresAt(ttls[0].ttl); err != nil {
						a.err = err // cannot happen: PutTTL checked it
					}
				}
				ttls = ttls[1:]
				a.putTTL(op.hash, v, format.Checksum(v), exp)
			} else {
				a.store(op.hash, v, format.Checksum(v))
			}
			if state != nil {
				state[op.hash] = true
			}
			continue
		}
		has, seen := state[op.hash]
		if !seen {
			has = live(g.ix, op.hash)
		}
		if has {
			a.remove(op.hash)
		}
		state[op.hash] = false
	}
	if len(s.ops) == 0 && a.err == nil {
		return nil
	}
	if err := a.commit(); err != nil {
		return fmt.Errorf("simdr: apply %d ops: %w", len(b.ops), err)
	}
	return nil
}
