package server

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// TestJSONErrorConnPassesResponses: net/http's own error answer is
// rewritten as JSON only when no handler's response is being written: the
// same bytes in a response (a value that spells them, in one of the body's
// writes) pass through as they are.
func TestJSONErrorConnPassesResponses(t *testing.T) {
	answer := []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request")
	for _, answering := range []bool{false, true} {
		a, b := net.Pipe()
		c := &jsonErrorConn{Conn: a}
		c.answering.Store(answering)
		go func() {
			c.Write(answer)
			a.Close()
		}()
		got, _ := io.ReadAll(b)
		if rewritten := !bytes.Equal(got, answer); rewritten == answering {
			t.Errorf("answering %v: wrote %q", answering, got)
		}
	}
}
