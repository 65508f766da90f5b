package server_test

import (
	"bufio"
	"context"
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

// TestWatchHoldsNoReplacedFile: an open /v1/watch stream, which never ends
// on its own, neither keeps POST /v1/compact waiting (it waits for the
// requests that may read the replaced file) nor keeps the replaced file's
// disk space; the stream goes on after the compaction.
func TestWatchHoldsNoReplacedFile(t *testing.T) {
	st, dir := openStoreDir(t) // closed after the server's cleanup
	base, _ := start(t, st, server.Config{})
	for i := range 100 {
		st.Put([]byte("k"), []byte(fmt.Sprint("value ", i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/watch", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	events := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "event: ") {
				events <- l
			}
		}
		close(events)
	}()
	// The stream is registered once one commit reached it.
	st.Put([]byte("first"), []byte("x"))
	if e := <-events; e != "event: put" {
		t.Fatalf("got %q", e)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	creq, _ := http.NewRequestWithContext(cctx, "POST", base+"/v1/compact", nil)
	cres, err := http.DefaultClient.Do(creq)
	if err != nil {
		t.Fatalf("POST /v1/compact while a watch stream is open: %v", err)
	}
	cres.Body.Close()
	if cres.StatusCode != 200 {
		t.Fatalf("POST /v1/compact: %s", cres.Status)
	}
	if n, held := relHeldDeleted(t, dir); n != 0 {
		t.Fatalf("after the compaction, with a watch stream open: %d replaced files held (%d bytes)", n, held)
	}
	st.Put([]byte("after"), []byte("y"))
	for _, want := range []string{"event: compacted", "event: put"} {
		if e := <-events; e != want {
			t.Fatalf("after the compaction: got %q, want %q", e, want)
		}
	}
}
