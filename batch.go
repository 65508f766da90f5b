package simdr

import (
	"fmt"

	"github.com/simdr-go/simdr/internal/format"
)

// Batch collects puts and deletes that Apply writes together: one write call,
// one flush (and one sync with Options.SyncWrites). Other goroutines see all of
// a batch or none of it. A Batch is not safe for concurrent use (Apply, too,
// writes into it: two Applys of one Batch must not run at once); it may be
// reused after Reset.
//
// On a crash in the middle of Apply, the format (which has no commit record)
// keeps any prefix of the batch's entries, in order, that reached the file
// whole: a batch is atomic to readers of a running Store, not across a crash.
type Batch struct {
	ops  []batchOp
	data []byte // the values, copied
	err  error  // the first invalid value
}

type batchOp struct {
	hash       uint64
	start, end int // value in data
	del        bool
}

// Put adds a put of value under key. value is copied. An empty value or the
// single byte 0x00 makes the whole batch fail in Apply with ErrInvalidValue.
func (b *Batch) Put(key, value []byte) { b.PutHash(format.Hash(key), value) }

// PutHash is Put for a caller that already has the key's hash.
func (b *Batch) PutHash(h uint64, value []byte) {
	if !format.ValueOK(value) && b.err == nil {
		b.err = fmt.Errorf("batch op %d: put %d bytes: %w", len(b.ops), len(value), ErrInvalidValue)
	}
	start, end := b.appendImage(h, value) // see batchimage.go
	b.ops = append(b.ops, batchOp{hash: h, start: start, end: end})
}

// Delete adds a delete of key. A key that has no value when Apply reaches this
// operation is skipped.
func (b *Batch) Delete(key []byte) { b.DeleteHash(format.Hash(key)) }

// DeleteHash is Delete for a caller that already has the key's hash.
func (b *Batch) DeleteHash(h uint64) { b.ops = append(b.ops, batchOp{hash: h, del: true}) }

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return len(b.ops) }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() { b.ops, b.data, b.err = b.ops[:0], b.data[:0], nil }

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
	ops := b.ops
	if state == nil { // puts only: the image as it lies in b (see batchimage.go)
		a.putImage(b)
		ops = nil
	}
	for _, op := range ops {
		if !op.del {
			a.putSum(op.hash, b.data[op.start:op.end], b.crcOf(op))
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
			a.del(op.hash)
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
