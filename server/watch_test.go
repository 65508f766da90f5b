package server_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/server"
)

// TestWatchEvents: GET /v1/watch streams each commit as a server-sent event
// (puts, deletes, a compaction), and the server's shutdown ends the stream
// at once rather than after its grace period.
func TestWatchEvents(t *testing.T) {
	st := openStore(t)
	st.Put([]byte("before"), []byte("x"))
	base, stop := start(t, st, server.Config{ShutdownTimeout: time.Minute})
	resp, err := http.Get(base + "/v1/watch")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("GET /v1/watch: %d %q", resp.StatusCode, ct)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); l != "" && !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "id:") {
				lines <- l
			}
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(time.Minute):
			t.Fatal("no event")
		}
		return ""
	}
	h := func(k string) string { return fmt.Sprintf("%016x", simdr.Hash([]byte(k))) }
	// The stream has started once the first comment arrived: the server
	// flushes it before waiting. Give the request a moment to get there.
	time.Sleep(50 * time.Millisecond)
	st.Put([]byte("a"), []byte("hello"))
	for _, want := range []string{"event: put", `data: {"key_hash":"` + h("a") + `","size":5}`} {
		if l := next(); l != want {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
	st.Delete([]byte("a"))
	for _, want := range []string{"event: delete", `data: {"key_hash":"` + h("a") + `"}`} {
		if l := next(); l != want {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
	st.Compact()
	if l := next(); l != "event: compacted" {
		t.Fatalf("got %q after Compact", l)
	}
	next()
	t0 := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 30*time.Second {
		t.Fatalf("shutdown waited %v for the stream", d)
	}
	for range lines {
	}
}
