package server

import (
	"context"
	"sync"
)

// The store keeps every file its Compact replaced open and mapped, because
// a request may still read a value from it: reads take no lock. simdr serve
// gives that disk space back: after a Compact, it waits for the requests that
// were in flight when the Compact returned to finish, and then releases the
// replaced files (simdr.Store.ReleaseOld). A request that begins later reads
// the new file only.

// readers counts the requests in flight by the period they began in. A
// period ends each time drain is called.
type readers struct {
	mu      sync.Mutex
	period  uint64
	n       map[uint64]int // requests in flight, by period
	waiters []drainWaiter
}

type drainWaiter struct {
	below uint64        // done once no request of a period below this is left
	done  chan struct{} // closed then
}

// untracked is the ticket of a request that reads no value.
const untracked = ^uint64(0)

// enter registers a request on route and returns its ticket for leave.
func (rs *readers) enter(route string) uint64 {
	if route == "/v1/compact" {
		// Reads no value, and waits in drain itself: counting it would make
		// two compactions wait for each other.
		return untracked
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.n == nil {
		rs.n = map[uint64]int{}
	}
	p := rs.period
	rs.n[p]++
	return p
}

// leave unregisters the request with ticket p.
func (rs *readers) leave(p uint64) {
	if p == untracked {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.n[p]--; rs.n[p] == 0 {
		delete(rs.n, p)
		rs.wake()
	}
}

// drain returns a channel that is closed once every request that began
// before the call has finished.
func (rs *readers) drain() <-chan struct{} {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.period++
	w := drainWaiter{below: rs.period, done: make(chan struct{})}
	rs.waiters = append(rs.waiters, w)
	rs.wake()
	return w.done
}

// wake closes the channels of the waiters whose requests have all finished.
// The caller holds mu.
func (rs *readers) wake() {
	oldest := rs.period
	for p := range rs.n {
		oldest = min(oldest, p)
	}
	keep := rs.waiters[:0]
	for _, w := range rs.waiters {
		if oldest >= w.below {
			close(w.done)
		} else {
			keep = append(keep, w)
		}
	}
	clear(rs.waiters[len(keep):])
	rs.waiters = keep
}

// releaseOld releases the files the store's Compact (which has returned)
// replaced, once no request that began before can still read them. It waits
// for those requests while ctx lasts, and leaves the rest of the wait to a
// goroutine when ctx ends first.
func (h *handler) releaseOld(ctx context.Context) {
	gen := h.store.Generation() // before drain: later requests read gen or newer
	done := h.readers.drain()
	release := func() { h.store.ReleaseOld(gen) } // ErrClosed once shut down: nothing to release
	select {
	case <-done:
		release()
	case <-ctx.Done():
		go func() {
			<-done
			release()
		}()
	}
}
