package server

import (
	"context"
	"sync"
	"sync/atomic"
)

// The store keeps every file its Compact replaced open and mapped, because
// a request may still read a value from it: reads take no lock. simdr serve
// gives that disk space back: after a Compact, it waits for the requests that
// were in flight when the Compact returned to finish, and then releases the
// replaced files (simdr.Store.ReleaseOld). A request that begins later reads
// the new file only.

// readers counts the requests in flight by the period they began in. A
// period ends each time drain is called. A request costs one atomic add on
// entering and one on leaving (no lock: every request of a server passes
// here); drain, once per Compact, takes a mutex.
type readers struct {
	cur atomic.Pointer[period] // the period requests enter now (nil: none yet)
	mu  sync.Mutex             // orders drains; guards the periods' chain fields
}

// sealed is added to a period's count when drain ends it: a count below 0
// is a sealed period's, and -sealed means its last request has left.
const sealed = 1 << 62

// period is one period's requests in flight.
type period struct {
	n atomic.Int64 // requests in flight, minus sealed once sealed
	// The chain, under readers.mu: own is set when the period is sealed
	// and its last request has left; all (closed then) once every earlier
	// period is all done too. prev is the period before, until that one is
	// all done (then nil); next the one after.
	own, allDone bool
	all          chan struct{}
	prev, next   *period
}

func newPeriod(prev *period) *period { return &period{all: make(chan struct{}), prev: prev} }

// untracked is the ticket of a request that reads no value.
var untracked *period

// enter registers a request on route and returns its ticket for leave.
func (rs *readers) enter(route string) *period {
	switch route {
	case "/v1/compact":
		// Reads no value, and waits in drain itself: counting it would make
		// two compactions wait for each other.
		return untracked
	case routeWatch:
		// Never ends on its own: counted for its whole life, it would hold
		// every replaced file, and keep each POST /v1/compact waiting,
		// until the client left. It enters a period of its own around
		// each read of the file instead (watch.go).
		return untracked
	}
	for {
		p := rs.cur.Load()
		if p == nil {
			rs.cur.CompareAndSwap(nil, newPeriod(nil))
			continue
		}
		if p.n.Add(1) > 0 {
			return p // counted before drain sealed p
		}
		rs.leave(p) // sealed meanwhile: drain has put the next period in place
	}
}

// leave unregisters the request with ticket p.
func (rs *readers) leave(p *period) {
	if p != untracked && p.n.Add(-1) == -sealed {
		rs.finish(p)
	}
}

// drain returns a channel that is closed once every request that began
// before the call has finished.
func (rs *readers) drain() <-chan struct{} {
	rs.mu.Lock()
	old := rs.cur.Load()
	if old == nil {
		old = newPeriod(nil)
	}
	next := newPeriod(old)
	old.next = next
	rs.cur.Store(next) // requests enter next from now on
	rs.mu.Unlock()
	if old.n.Add(-sealed) == -sealed { // no request of old left
		rs.finish(old)
	}
	return old.all
}

// finish notes that sealed period p has no request left, and closes the
// channels of p and of the periods after it that are all done now.
func (rs *readers) finish(p *period) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if p.own {
		return // again: an enter that found p sealed went back to -sealed
	}
	p.own = true
	for ; p != nil && p.own && (p.prev == nil || p.prev.allDone); p = p.next {
		p.allDone = true
		close(p.all)
		if p.next != nil {
			p.next.prev = nil // nothing keeps a finished period alive
		}
	}
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
