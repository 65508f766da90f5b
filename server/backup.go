package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/simdr-go/simdr"
)

// Trailers (and, for the start, a header) of GET /v1/backup: what the
// backup covers, known only once it is written.
const (
	// HeaderBackupGeneration is the trailer naming the store file's
	// generation (simdr.BackupInfo.Generation).
	HeaderBackupGeneration = "X-Simdr-Backup-Generation"
	// HeaderBackupFrom is the header giving where the bytes sent begin in
	// the store file (0 for a full backup).
	HeaderBackupFrom = "X-Simdr-Backup-From"
	// HeaderBackupTail is the trailer giving where they end: pass it, with
	// the generation, as the next incremental backup's tail.
	HeaderBackupTail = "X-Simdr-Backup-Tail"
)

// backup serves GET /v1/backup: a consistent copy of the store file, every
// entry committed when the request began, streamed from the mapping
// (simdr.Store.Backup). With ?generation=G&tail=T (a previous backup's
// trailers) only what was committed after it is sent
// (simdr.Store.BackupSince); 409 "generation" when the file was compacted
// or replaced since (take a full one), 412 "bad_tail" when T is not the end
// of an entry of this file. The generation and tail come as HTTP trailers;
// a response cut short lacks them, so the client can tell.
func (h *handler) backup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	gen, tailStr := q.Get("generation"), q.Get("tail")
	var since *simdr.BackupInfo
	if gen != "" || tailStr != "" {
		t, err := strconv.ParseInt(tailStr, 10, 64)
		if gen == "" || err != nil || t < 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "an incremental backup needs both generation and tail (a non-negative integer)")
			return
		}
		since = &simdr.BackupInfo{Generation: gen, Tail: t}
	}
	hd := w.Header()
	hd.Set("Trailer", HeaderBackupGeneration+", "+HeaderBackupTail)
	hd.Set("Content-Type", "application/octet-stream")
	from := int64(0)
	if since != nil {
		from = since.Tail
	}
	hd.Set(HeaderBackupFrom, strconv.FormatInt(from, 10))
	lw := &lazyWriter{w: w, sw: h.streamWriter(w)} // as long as the client reads
	var info simdr.BackupInfo
	var err error
	if since == nil {
		info, err = h.store.Backup(lw)
	} else {
		info, err = h.store.BackupSince(lw, *since)
	}
	if err != nil {
		if lw.started {
			// The status is sent: cutting the stream without the trailers
			// tells the client the backup is not whole.
			panic(http.ErrAbortHandler)
		}
		hd.Del("Trailer")
		hd.Del(HeaderBackupFrom)
		switch {
		case errors.Is(err, simdr.ErrGeneration):
			writeError(w, http.StatusConflict, "generation", message(err))
		case since != nil && errors.Is(err, simdr.ErrCorrupt):
			writeError(w, http.StatusPreconditionFailed, "bad_tail", message(err))
		default:
			writeStoreError(w, err)
		}
		return
	}
	if !lw.started {
		w.WriteHeader(http.StatusOK)
	}
	hd.Set(HeaderBackupGeneration, info.Generation)
	hd.Set(HeaderBackupTail, strconv.FormatInt(info.Tail, 10))
}

// lazyWriter sends the status line only with the first bytes, so that an
// error found before any is sent can still be answered with its own status.
type lazyWriter struct {
	w       http.ResponseWriter
	sw      io.Writer // w, under a rolling write deadline
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.WriteHeader(http.StatusOK)
	}
	n, err := l.sw.Write(p)
	if err != nil {
		return n, fmt.Errorf("sending backup: %w", err)
	}
	return n, nil
}
