package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/simdr-go/simdr"
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
		{simdr.ErrReadOnly, 403, "read_only"},
		{simdr.ErrClosed, 503, "closed"},
		{fmt.Errorf("simdr: put: %w: %w", simdr.ErrFailed, errors.New("disk full")), 503, "failed"},
		{simdr.ErrLocked, 503, "locked"},
		{simdr.ErrChecksum, 500, "checksum"},
		{simdr.ErrCorrupt, 500, "corrupt"},
		{fmt.Errorf("simdr: put reader: %w", &http.MaxBytesError{Limit: 10}), 413, "too_large"},
		{fmt.Errorf("reading value: %w", io.ErrUnexpectedEOF), 400, "bad_request"},
		{fmt.Errorf("reading value: %w", os.ErrDeadlineExceeded), 400, "bad_request"},
		{errors.New("something else"), 500, "internal"},
	} {
		status, code := errorStatus(c.err)
		if status != c.status || code != c.code {
			t.Errorf("%v: %d %q, want %d %q", c.err, status, code, c.status, c.code)
		}
	}
}
