package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
)

// Move follows the same retry rules as the other writes (Options.Nodes):
// its delete goes to the node that answered last and on to the next one
// when a node is down or has no leader, still with If-Match; a delete that
// was applied but answered 503 and is sent again finds the key gone (412)
// and the move is done.
func TestMoveRetriesAcrossNodes(t *testing.T) {
	remote, goodURL, proxy := serveProxied(t)
	// mode says what the flaky node does with a DELETE: pass it on, refuse
	// it (503 no_leader), or apply it and answer 503 as a leader that lost
	// its leadership meanwhile may.
	var mode atomic.Value
	var deletes atomic.Int32
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodDelete {
			proxy.ServeHTTP(w, r)
			return
		}
		deletes.Add(1)
		switch mode.Load() {
		case "refuse":
			answer503(w, "no_leader")
		case "apply then 503":
			rec := httptest.NewRecorder()
			proxy.ServeHTTP(rec, r)
			answer503(w, "no_leader")
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	defer flaky.Close()
	downURL := downURL()

	local, err := simdr.Open(filepath.Join(t.TempDir(), "l.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	ctx := context.Background()
	tests := []struct {
		name, base, mode string
		nodes            []string
		change           bool // the value changes between the copy and the delete
		wantKept         bool // the source still holds a value afterwards
		wantDeletes      int32
	}{
		{"first node down", downURL, "", []string{goodURL}, false, false, 0},
		{"no leader on the node that answered the get", flaky.URL, "refuse", []string{goodURL}, false, false, 1},
		{"applied, answered 503, sent again", flaky.URL, "apply then 503", []string{goodURL}, false, false, 1},
		{"retried delete keeps a changed value", flaky.URL, "refuse", []string{goodURL}, true, true, 1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mode.Store(tc.mode)
			deletes.Store(0)
			key := []byte{'k', byte('0' + i)}
			remote.Put(key, []byte("value"))
			c := newClient(t, tc.base, &client.Options{Nodes: tc.nodes})
			var dst client.Store = client.Local(local)
			if tc.change {
				dst = &changeAfterPut{Store: dst, fn: func() { remote.Put(key, []byte("newer")) }}
			}
			if err := c.Move(ctx, key, dst); err != nil {
				t.Fatalf("Move: %v", err)
			}
			if e, err := local.Get(key); err != nil || string(e.Bytes()) != "value" {
				t.Fatalf("destination: %v", err)
			}
			e, err := remote.Get(key)
			if kept := err == nil; kept != tc.wantKept {
				t.Fatalf("source kept the key: %v, want %v", kept, tc.wantKept)
			}
			if tc.wantKept && string(e.Bytes()) != "newer" {
				t.Fatalf("source holds %q, want the newer value", e.Bytes())
			}
			if deletes.Load() != tc.wantDeletes {
				t.Fatalf("the flaky node saw %d deletes, want %d", deletes.Load(), tc.wantDeletes)
			}
		})
	}
}
