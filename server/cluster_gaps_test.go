package server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
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

// watchStream opens GET /v1/watch on base and returns a channel of its
// event lines and one that receives how the stream ended (nil: a clean
// end, the server closed the response; else the read error).
func watchStream(t *testing.T, base string) (events <-chan string, end <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // before the server's cleanup, which waits for the handler
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/watch", nil)
	req.Header.Set("Authorization", "Bearer tok")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("GET /v1/watch: %s", res.Status)
	}
	ev, done := make(chan string, 1000), make(chan error, 1)
	go func() {
		defer res.Body.Close()
		br := bufio.NewReader(res.Body)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				if err == io.EOF && l == "" {
					err = nil
				}
				done <- err
				return
			}
			if strings.HasPrefix(l, "event:") {
				select {
				case ev <- strings.TrimSpace(l):
				default:
				}
			}
		}
	}()
	return ev, done
}

// watchGoroutines counts the goroutines running a watch handler.
func watchGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "server.(*handler).watch")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// noWatchGoroutines fails the test if a watch goroutine outlives its
// server (given a moment to unwind: the handler has returned, its helper
// goroutine may still be on its way out).
func noWatchGoroutines(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); watchGoroutines() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d watch goroutines left after the shutdown", watchGoroutines())
		}
	}
}

// A cluster node's shutdown ends its event streams (a watching client sees
// a clean end of the stream, not a connection cut after the grace period),
// whether the server shuts down (ServeCluster's context) or the node is
// closed under an embedder's server (ClusterHandler); no watch goroutine
// is left behind.
func TestClusterShutdownEndsWatch(t *testing.T) {
	tests := []struct {
		name string
		// start serves node on a listener and returns its base URL and
		// the function that shuts it down.
		start func(t *testing.T) (base string, shutdown func() error)
	}{
		{"ServeCluster", func(t *testing.T) (string, func() error) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			base := "http://" + ln.Addr().String()
			n := oneNode(t, base)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			// A grace period longer than the test waits: only ending the
			// stream lets the server return in time, and cutting the
			// connection at its end would not be a clean end.
			go func() {
				errc <- server.ServeCluster(ctx, ln, n, server.Config{Token: "tok", ShutdownTimeout: 10 * time.Minute})
			}()
			t.Cleanup(cancel)
			return base, func() error { cancel(); return <-errc }
		}},
		{"ClusterHandler and Node.Close", func(t *testing.T) (string, func() error) {
			ts := httptest.NewUnstartedServer(nil)
			base := "http://" + ts.Listener.Addr().String()
			n := oneNode(t, base)
			ts.Config.Handler = server.ClusterHandler(n, server.Config{Token: "tok"})
			ts.Start()
			t.Cleanup(ts.Close)
			return base, n.Close
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base, shutdown := tc.start(t)
			events, end := watchStream(t, base)
			c, _ := client.New(base, &client.Options{Token: "tok"})
			// Put until the stream shows a put: then it is live.
			ctx := context.Background()
			for seen := false; !seen; {
				if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
					t.Fatal(err)
				}
				select {
				case e := <-events:
					seen = e == "event: put"
				case <-time.After(100 * time.Millisecond):
				}
			}
			shut := make(chan error, 1)
			go func() { shut <- shutdown() }()
			select {
			case err := <-end:
				if err != nil {
					t.Fatalf("the stream was cut (%v), not ended", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("the stream outlived the shutdown")
			}
			if err := <-shut; err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			noWatchGoroutines(t)
		})
	}
}
