package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
)

// A write is sent at most once unless the failure says it was not applied:
// sent again after it was, with another client's write to the key between,
// it would undo that write (the linearizability failure porcupine found in
// cluster/linear_test.go). Reads and conditional writes go again whatever
// the failure. The first node fails as the case says; the second is a real
// server, and the number of requests it saw tells whether the client went
// on to it.
func TestWriteOutcomeUnknownNotRetried(t *testing.T) {
	remote, _, proxy := serveProxied(t)
	var second atomic.Int32
	next := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		second.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	defer next.Close()

	var mode atomic.Value
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mode.Load() == "delete_outcome_unknown" && r.Method != http.MethodDelete {
			proxy.ServeHTTP(w, r) // Move's read succeeds here
			return
		}
		io.Copy(io.Discard, r.Body) // the whole request arrived
		switch mode.Load() {
		case "delete_outcome_unknown":
			answer503(w, "outcome_unknown")
		case "drop": // the connection breaks before the answer
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		case "outcome_unknown", "no_leader", "shutting_down":
			answer503(w, mode.Load().(string))
		}
	}))
	defer first.Close()
	downURL := downURL()

	ctx := context.Background()
	remote.Put([]byte("r"), []byte("v"))
	remote.Put([]byte("m"), []byte("v"))
	ops := map[string]func(c *client.Client) error{
		"put":    func(c *client.Client) error { return c.Put(ctx, []byte("k"), []byte("v")) },
		"delete": func(c *client.Client) error { return c.Delete(ctx, []byte("k")) },
		"batch": func(c *client.Client) error {
			var b client.Batch
			b.Put([]byte("k"), []byte("v"))
			return c.Apply(ctx, &b)
		},
		"rename": func(c *client.Client) error {
			remote.Put([]byte("r"), []byte("v"))
			return c.Rename(ctx, []byte("r"), []byte("r2"))
		},
		"get": func(c *client.Client) error { _, err := c.Get(ctx, []byte("m")); return err },
		"move": func(c *client.Client) error {
			remote.Put([]byte("mv"), []byte("v"))
			local, err := simdr.Open(filepath.Join(t.TempDir(), "dst.simdr"), nil)
			if err != nil {
				return err
			}
			defer local.Close()
			if err := c.Move(ctx, []byte("mv"), client.Local(local)); err != nil {
				return err
			}
			if remote.Has([]byte("mv")) {
				return errors.New("moved, but still on the server")
			}
			return nil
		},
	}
	tests := []struct {
		op, mode    string
		base        string // the first node (default: the failing one)
		single      bool   // no other node
		wantUnknown bool   // ErrOutcomeUnknown, and the second node saw nothing
	}{
		{op: "put", mode: "drop", wantUnknown: true},
		{op: "put", mode: "outcome_unknown", wantUnknown: true},
		{op: "put", mode: "no_leader"},
		{op: "put", mode: "shutting_down"},
		{op: "put", base: downURL},
		{op: "put", mode: "drop", single: true, wantUnknown: true},
		{op: "delete", mode: "drop", wantUnknown: true},
		{op: "delete", mode: "no_leader"},
		{op: "batch", mode: "drop", wantUnknown: true},
		{op: "batch", mode: "outcome_unknown", wantUnknown: true},
		{op: "batch", mode: "no_leader"},
		{op: "rename", mode: "drop", wantUnknown: true},
		{op: "rename", mode: "no_leader"},
		{op: "get", mode: "drop"},
		{op: "get", mode: "no_leader"},
		// The conditional delete goes again after 503 outcome_unknown too:
		// applied already, its copy fails (412), which Move takes as done.
		{op: "move", mode: "delete_outcome_unknown"},
	}
	for _, tc := range tests {
		name := tc.op + "/" + tc.mode
		if tc.base != "" {
			name = tc.op + "/down"
		}
		if tc.single {
			name += "/single"
		}
		t.Run(name, func(t *testing.T) {
			mode.Store(tc.mode)
			second.Store(0)
			base := first.URL
			if tc.base != "" {
				base = tc.base
			}
			opts := &client.Options{Nodes: []string{next.URL}}
			if tc.single {
				opts = nil
			}
			err := ops[tc.op](newClient(t, base, opts))
			if got := errors.Is(err, client.ErrOutcomeUnknown); got != tc.wantUnknown {
				t.Fatalf("errors.Is(%v, ErrOutcomeUnknown) = %v, want %v", err, got, tc.wantUnknown)
			}
			saw := second.Load()
			switch {
			case tc.wantUnknown && saw != 0:
				t.Fatalf("a write of unknown outcome went to the next node (%d requests)", saw)
			case !tc.wantUnknown && err != nil:
				t.Fatalf("not retried on the next node: %v", err)
			case !tc.wantUnknown && saw != 1:
				t.Fatalf("the next node saw %d requests, want 1", saw)
			}
			if tc.mode == "outcome_unknown" && !errors.Is(err, client.ErrUnavailable) {
				t.Fatalf("503 outcome_unknown does not match ErrUnavailable: %v", err)
			}
		})
	}
}
