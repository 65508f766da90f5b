package server_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/cluster"
	"github.com/simdr-go/simdr/server"
)

// oneNode starts a bootstrapped one-node cluster on a fresh store and waits
// until it leads; the node is closed at the end of the test.
func oneNode(t *testing.T, httpURL string) *cluster.Node {
	t.Helper()
	st, err := simdr.Open(filepath.Join(t.TempDir(), "s.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.Open(cluster.Config{ID: "a", RaftAddr: "127.0.0.1:0", Dir: t.TempDir(), Token: "tok",
		HTTPURL: httpURL, Bootstrap: true, HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LogOutput: testLog{t}}, st)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	for deadline := time.Now().Add(time.Minute); !n.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the one node never led")
		}
	}
	return n
}

// testLog sends raft's log to the test's.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// A server or cluster node given a certificate without a key, or a key
// without a certificate, refuses to serve rather than serving plain HTTP.
func TestServeTLSHalfConfigured(t *testing.T) {
	serve := map[string]func(t *testing.T, ctx context.Context, ln net.Listener, cfg server.Config) error{
		"single": func(t *testing.T, ctx context.Context, ln net.Listener, cfg server.Config) error {
			return server.Serve(ctx, ln, openStore(t), cfg)
		},
		"cluster": func(t *testing.T, ctx context.Context, ln net.Listener, cfg server.Config) error {
			return server.ServeCluster(ctx, ln, oneNode(t, "http://"+ln.Addr().String()), cfg)
		},
	}
	tests := []struct {
		name, kind string
		cert, key  string
	}{
		{"cert only", "single", "cert.pem", ""},
		{"key only", "single", "", "key.pem"},
		{"cluster cert only", "cluster", "cert.pem", ""},
		{"cluster key only", "cluster", "", "key.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			base := "http://" + ln.Addr().String()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			cfg := server.Config{Token: "tok", TLSCertFile: tc.cert, TLSKeyFile: tc.key}
			go func() { errc <- serve[tc.kind](t, ctx, ln, cfg) }()
			// Plain HTTP must not be answered on its listener (the
			// listener queues the connection until it is served or closed).
			hc := &http.Client{Timeout: 30 * time.Second}
			if res, err := hc.Get(base + "/healthz"); err == nil {
				res.Body.Close()
				t.Fatalf("plain HTTP answered %d", res.StatusCode)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, server.ErrTLSHalf) {
					t.Fatalf("serve: %v, want ErrTLSHalf", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("still serving")
			}
		})
	}
}
