package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/simdr-go/simdr"
)

// watchKeepalive is how often an idle event stream sends a comment line, so
// that proxies and clients do not take it for a dead connection.
const watchKeepalive = 15 * time.Second

// routeWatch is the path of the event stream.
const routeWatch = "/v1/watch"

// stopWatches ends the handler's event streams (registered with
// http.Server.RegisterOnShutdown): they never end on their own, and
// http.Server.Shutdown waits for them.
func (h *handler) stopWatches() {
	h.watchOnce.Do(func() { close(h.watchStop) })
}

// watch streams, as server-sent events (text/event-stream), each entry the
// store commits from the request on: "event: put" with data
// {"key_hash":"<16 hex>","size":N}, "event: delete" with {"key_hash":...},
// and "event: compacted" when the store moved to a compacted file (entries
// may have been missed around it). The last event of each commit carries
// an id: the store's size after it. A comment line every 15 s keeps an
// idle stream alive. The stream ends when the client goes away or the
// server shuts down; on a cluster node also when the node closes, or when
// a snapshot from the leader replaced the store (the client watches again,
// and may have missed entries around it, as after "compacted").
func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	cur := h.store.Cursor()
	fmt.Fprintf(w, ": watching from %d\n\n", cur.Tail())
	stop, done := h.watchStop, h.watchDone
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-done: // nil unless a cluster node's: never ready then
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		rc.SetWriteDeadline(time.Now().Add(watchKeepalive + h.cfg.WriteTimeout))
		if err := rc.Flush(); err != nil {
			return
		}
		var err error
		if h.store.Cursor() == cur { // else committed since cur already: no wait
			wctx, wcancel := context.WithTimeout(ctx, watchKeepalive)
			err = h.store.Wait(wctx)
			wcancel()
		}
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
			fmt.Fprint(w, ": keepalive\n\n")
			continue
		case err != nil:
			fmt.Fprintf(w, "event: error\ndata: %q\n\n", err.Error())
			rc.Flush()
			return
		}
		changes, to, err := h.changes(cur)
		switch {
		case errors.Is(err, simdr.ErrNotFound):
			fmt.Fprintf(w, "event: compacted\nid: %d\ndata: {}\n\n", to.Tail())
		case err != nil:
			fmt.Fprintf(w, "event: error\ndata: %q\n\n", err.Error())
			rc.Flush()
			return
		}
		for i, c := range changes {
			if i == len(changes)-1 {
				fmt.Fprintf(w, "id: %d\n", to.Tail())
			}
			if c.Deleted {
				fmt.Fprintf(w, "event: delete\ndata: {\"key_hash\":\"%016x\"}\n\n", c.KeyHash)
			} else {
				fmt.Fprintf(w, "event: put\ndata: {\"key_hash\":\"%016x\",\"size\":%d}\n\n", c.KeyHash, c.Len)
			}
		}
		cur = to
	}
}

// changes refreshes the store and reads what was committed after cur
// (Store.Changes), as a reader of the file (release.go) for that moment
// only: the stream itself is not counted, so that it holds no replaced file
// between commits.
func (h *handler) changes(cur simdr.Cursor) ([]simdr.Change, simdr.Cursor, error) {
	defer h.readers.leave(h.readers.enter(""))
	if err := h.store.Refresh(); err != nil {
		return nil, cur, err
	}
	return h.store.Changes(cur)
}
