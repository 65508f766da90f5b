package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
)

// The mapping of every store error to a status and a code (the client maps
// the codes back), for the errors the HTTP tests cannot provoke.
func TestErrorStatus(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{simdr.ErrNotFound, 404, "not_found"},
		{simdr.ErrInvalidValue, 400, "invalid_value"},
		{simdr.ErrSameKey, 400, "same_key"},
		{fmt.Errorf("simdr: put: %w", simdr.ErrInvalidTTL), 400, "invalid_ttl"},
		{fmt.Errorf("simdr: rename: %w", simdr.ErrReservedKey), 400, "reserved_key"},
		{simdr.ErrReadOnly, 403, "read_only"},
		{simdr.ErrClosed, 503, "closed"},
		{fmt.Errorf("simdr: put: %w: %w", simdr.ErrFailed, errors.New("disk full")), 503, "failed"},
		{simdr.ErrLocked, 503, "locked"},
		{simdr.ErrChecksum, 500, "checksum"},
		{simdr.ErrCorrupt, 500, "corrupt"},
		{fmt.Errorf("simdr: put reader: %w", &http.MaxBytesError{Limit: 10}), 413, "too_large"},
		{fmt.Errorf("reading value: %w", io.ErrUnexpectedEOF), 400, "bad_request"},
		{fmt.Errorf("reading value: %w", os.ErrDeadlineExceeded), 400, "bad_request"},
		{&clientError{errors.New("connection reset by peer")}, 400, "bad_request"},
		{errBusy, 503, "busy"},
		// A full disk, whether the store failed on it or not: 507.
		{fmt.Errorf("simdr: put: %w", &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}), 507, "no_space"},
		{fmt.Errorf("simdr: put: %w: %w", simdr.ErrFailed, &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}), 507, "no_space"},
		{fmt.Errorf("simdr: compact: %w", &os.PathError{Op: "write", Path: "/x", Err: syscall.EDQUOT}), 507, "no_space"},
		// Other I/O errors are the server's: 500, never a client timeout.
		{fmt.Errorf("simdr: put: %w", &os.PathError{Op: "write", Path: "/x", Err: syscall.EIO}), 500, "io_error"},
		{fmt.Errorf("simdr: sync: %w", syscall.EIO), 500, "io_error"},
		{errors.New("something else"), 500, "internal"},
	} {
		status, code := errorStatus(c.err)
		if status != c.status || code != c.code {
			t.Errorf("%v: %d %q, want %d %q", c.err, status, code, c.status, c.code)
		}
	}
}

func TestMessageSaysSimdrOnce(t *testing.T) {
	for in, want := range map[string]string{
		"simdr: rename: simdr: key not found":              "simdr: rename: key not found",
		"reading value: simdr: put reader: simdr: x":       "reading value: simdr: put reader: x",
		"request body: op 1: missing key (or key_b64)":     "request body: op 1: missing key (or key_b64)",
		"simdr: apply: batch op 1: put 0 bytes: simdr: va": "simdr: apply: batch op 1: put 0 bytes: va",
	} {
		if got := message(errors.New(in)); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// A disk that fills up while a large PUT is spooled answers 507, which the
// client maps back to an error matching client.ErrNoSpace and
// syscall.ENOSPC; nothing is stored.
func TestNoSpace507(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	st, err := simdr.Open(filepath.Join(t.TempDir(), "s.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := newHandler(st, Config{}.withDefaults(), true)
	h.createSpool = func() (*os.File, error) { return os.OpenFile("/dev/full", os.O_RDWR, 0) }
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := client.New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Put(context.Background(), []byte("big"), bytes.Repeat([]byte("x"), 2<<20))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.StatusCode != 507 || !errors.Is(err, client.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("PUT on a full disk: %v", err)
	}
	if !strings.Contains(ce.Message, "no space left") || st.Has([]byte("big")) {
		t.Fatalf("message %q, stored %v", ce.Message, st.Has([]byte("big")))
	}
	// A small value does not need the spool.
	if err := c.Put(context.Background(), []byte("small"), []byte("x")); err != nil {
		t.Fatal(err)
	}
}
