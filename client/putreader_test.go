package client_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/simdr-go/simdr/client"
	"github.com/simdr-go/simdr/server"
)

var errReader = errors.New("the reader failed")

// failingReader yields n bytes, then errReader (with its last bytes when
// withData).
type failingReader struct {
	n        int
	withData bool
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errReader
	}
	m := min(len(p), f.n)
	for i := range p[:m] {
		p[i] = 'x'
	}
	f.n -= m
	if f.n == 0 && f.withData {
		return m, errReader
	}
	return m, nil
}

// TestPutReaderFailingReader: a reader that fails, at once, in the small
// buffer, past it or in the spooled part (over 1 MiB), with or without
// bytes beside its error, fails PutReader with that error, and nothing is
// stored. The outcome is known (the body never reached its end, so the
// server cannot have stored it): the error used to match
// client.ErrOutcomeUnknown.
func TestPutReaderFailingReader(t *testing.T) {
	st, base := serve(t, server.Config{})
	c := newClient(t, base, nil)
	size := st.Size()
	for _, n := range []int{0, 10, 64 << 10, 1 << 20, 2 << 20} {
		for _, withData := range []bool{false, true} {
			got, err := c.PutReader(context.Background(), []byte("k"), &failingReader{n: n, withData: withData})
			if !errors.Is(err, errReader) || errors.Is(err, client.ErrOutcomeUnknown) || got != 0 {
				t.Errorf("reader failing after %d bytes (with data %v): %d, %v; want the reader's error, known outcome", n, withData, got, err)
			}
			if st.Has([]byte("k")) || st.Size() != size {
				t.Fatalf("reader failing after %d bytes: the server stored something", n)
			}
		}
	}
}

// signalReader is a pipe's reading end that says when it was first read.
type signalReader struct {
	r     io.Reader
	first chan struct{}
	read  bool
}

func (s *signalReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if !s.read {
		s.read = true
		close(s.first)
	}
	return n, err
}

// TestPutReaderCancelWhileReaderBlocks: when the context ends while the
// reader blocks (a pipe nobody writes to), PutReader returns, with the
// context's error and nothing stored. net/http waits for the body's Read
// to return before it gives up a request, and PutReader hid the reader's
// Close from it: the call hung for as long as the reader blocked (here,
// for ever).
func TestPutReaderCancelWhileReaderBlocks(t *testing.T) {
	st, base := serve(t, server.Config{})
	c := newClient(t, base, nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write(make([]byte, 100)) // then nothing: the next Read blocks
	r := &signalReader{r: pr, first: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.PutReader(ctx, []byte("k"), r)
		errc <- err
	}()
	<-r.first
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || errors.Is(err, client.ErrOutcomeUnknown) {
			t.Errorf("PutReader cancelled while its reader blocked: %v; want context.Canceled, known outcome", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("PutReader did not return after its context was cancelled while its reader blocked")
	}
	if st.Has([]byte("k")) {
		t.Fatal("a cancelled PutReader stored the value")
	}
}
