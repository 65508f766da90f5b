package server_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/simdr-go/simdr/server"
)

// Closing the store under a running server (against the docs' advice: stop
// the server first) must not crash the process: a waiting /v1/watch stream
// ends with an error event, and the server answers later requests with
// 503 closed.
func TestWatchStoreClosedUnder(t *testing.T) {
	st := openStore(t)
	st.Put([]byte("k"), []byte("v"))
	base, _ := start(t, st, server.Config{ShutdownTimeout: time.Minute})
	resp, err := http.Get(base + "/v1/watch")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	<-lines // ": watching from ..."
	time.Sleep(50 * time.Millisecond)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for l := range lines {
		if l != "" {
			got = append(got, l)
		}
	}
	if len(got) == 0 || !strings.HasPrefix(got[0], "event: error") {
		t.Fatalf("the stream ended with %q, want an error event", got)
	}
	r, err := http.Get(base + "/v1/keys/k")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET after Close: %d, want 503", r.StatusCode)
	}
}
