package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/simdr-go/simdr/client"
)

// With Options.Nodes, a request goes on to the next node when one is down
// or has no leader, with its body sent again; the node that answered is
// used next. (Which failures a write goes again after:
// TestWriteOutcomeUnknownNotRetried.)
func TestClientRetriesAcrossNodes(t *testing.T) {
	var noLeaderHits, okHits atomic.Int32
	var gotBody atomic.Value
	noLeader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noLeaderHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(503)
		io.WriteString(w, `{"error":"no leader","code":"no_leader"}`)
	}))
	defer noLeader.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		okHits.Add(1)
		b, _ := io.ReadAll(r.Body)
		gotBody.Store(string(b) + " " + r.URL.RawQuery)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ok.Close()
	downURL := downURL()

	ctx := context.Background()
	c, err := client.New(downURL, &client.Options{Nodes: []string{noLeader.URL, ok.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, []byte("k"), []byte("value")); err != nil {
		t.Fatalf("put across nodes: %v", err)
	}
	if got := gotBody.Load(); got != "value " {
		t.Fatalf("the answering node got %q", got)
	}
	if noLeaderHits.Load() != 1 || okHits.Load() != 1 {
		t.Fatalf("hits: no-leader %d, ok %d", noLeaderHits.Load(), okHits.Load())
	}
	// Sticky: the next request goes straight to the node that answered.
	if err := c.Put(ctx, []byte("k"), []byte("v2")); err != nil || okHits.Load() != 2 || noLeaderHits.Load() != 1 {
		t.Fatalf("second put: %v, hits %d %d", err, noLeaderHits.Load(), okHits.Load())
	}

	tests := []struct {
		name    string
		opts    client.Options
		base    string
		wantErr error
		hits    int32
	}{
		{"one node, no retry", client.Options{}, noLeader.URL, client.ErrUnavailable, 1},
		{"bounded attempts", client.Options{Nodes: []string{noLeader.URL}, MaxAttempts: 4}, noLeader.URL, client.ErrUnavailable, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			noLeaderHits.Store(0)
			c, _ := client.New(tc.base, &tc.opts)
			err := c.Put(ctx, []byte("k"), []byte("v"))
			if !errors.Is(err, tc.wantErr) || noLeaderHits.Load() != tc.hits {
				t.Fatalf("%v after %d hits, want %v after %d", err, noLeaderHits.Load(), tc.wantErr, tc.hits)
			}
		})
	}
	// StrongReads asks for a linearizable read.
	c3, _ := client.New(ok.URL, &client.Options{StrongReads: true})
	c3.Get(ctx, []byte("k"))
	if got := gotBody.Load(); got != " consistency=strong" {
		t.Fatalf("strong read sent %q", got)
	}
}
