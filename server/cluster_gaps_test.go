package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
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

// inNode is a cluster node served in process.
type inNode struct {
	n    *cluster.Node
	url  string
	raft string // the raft transport's address
	// stop stops the node (and its server); the test's end does too.
	stop func()
}

// startNode opens and serves node id (bootstrapping when join is "").
func startNode(t *testing.T, id, join string) *inNode {
	t.Helper()
	return startNodeIn(t, id, join, t.TempDir(), "127.0.0.1:0", "")
}

// startNodeIn is startNode with the node's files in dir (its store
// dir/ID.simdr, its raft state dir/raft), serving HTTP on httpAddr and raft
// on raftAddr ("": a free port), so that a node stopped (inNode.stop) starts
// again with the same files and addresses.
func startNodeIn(t *testing.T, id, join, dir, httpAddr, raftAddr string) *inNode {
	t.Helper()
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if raftAddr == "" {
		raftLn, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the transport
		if err != nil {
			t.Fatal(err)
		}
		raftAddr = raftLn.Addr().String()
		raftLn.Close()
	}
	base := "http://" + ln.Addr().String()
	st, err := simdr.Open(filepath.Join(dir, id+".simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.Open(cluster.Config{ID: id, RaftAddr: raftAddr, Dir: filepath.Join(dir, "raft"), Token: "tok",
		HTTPURL: base, Bootstrap: join == "", Join: join,
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LogOutput: testLog{t}}, st)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- server.ServeCluster(ctx, ln, n, server.Config{Token: "tok"}) }()
	stop := sync.OnceFunc(func() { cancel(); <-errc; n.Close() })
	t.Cleanup(stop)
	return &inNode{n: n, url: base, raft: raftAddr, stop: stop}
}

// threeNodes starts a cluster of three nodes, n1 leading, and waits until
// every member's URL is known.
func threeNodes(t *testing.T) (n1, n2, n3 *inNode) {
	t.Helper()
	n1 = startNode(t, "n1", "")
	waitFor(t, "n1 to lead", n1.n.IsLeader)
	n2 = startNode(t, "n2", n1.url)
	n3 = startNode(t, "n3", n1.url)
	waitFor(t, "three members with their URLs", func() bool {
		m := members(n1.n)
		return len(m) == 3 && m["n2"] == n2.url && m["n3"] == n3.url
	})
	return n1, n2, n3
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// members is the configuration n sees, by ID, with the HTTP URLs it knows.
func members(n *cluster.Node) map[string]string {
	m := map[string]string{}
	for _, mb := range n.Status().Members {
		m[mb.ID] = mb.HTTPURL
	}
	return m
}

// storeHas reports whether n's store holds key with value v.
func storeHas(n *cluster.Node, key, v string) bool {
	st, release := n.Acquire()
	defer release()
	e, err := st.Get([]byte(key))
	return err == nil && string(e.Bytes()) == v
}

// postJSON posts body to url with the token and returns the status code.
func postJSON(t *testing.T, url, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// A node removed from the cluster while it runs stays out (its own
// requests to join are refused, and it loses its leader without taking
// the others with it), misses the writes made meanwhile, and
// when joined again explicitly (POST /v1/cluster/join) is a member again:
// its URL recorded, every write made while it was out and after in its
// store, and writes sent to it forwarded to the leader.
func TestClusterRemovedNodeRejoins(t *testing.T) {
	n1, n2, n3 := threeNodes(t)
	ctx := context.Background()
	c, _ := client.New(n1.url, &client.Options{Token: "tok", Nodes: []string{n2.url}})
	if err := c.Put(ctx, []byte("before"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n3 to apply the first write", func() bool { return storeHas(n3.n, "before", "1") })

	if code := postJSON(t, n2.url+"/v1/cluster/remove", `{"id":"n3"}`); code != http.StatusNoContent {
		t.Fatalf("remove n3 (through a follower): %d", code)
	}
	waitFor(t, "n3 out of the configuration", func() bool { _, in := members(n1.n)["n3"]; return !in })
	// Out long enough to have stopped hearing from the leader (it may
	// campaign: the others must not follow it).
	waitFor(t, "n3 to stop following a leader", func() bool { id, _ := n3.n.Leader(); return id == "" })
	if err := c.Put(ctx, []byte("while-out"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	// Its own request to join again (what its register loop sends) is refused.
	self := fmt.Sprintf(`{"id":"n3","raft_addr":%q,"http_url":%q`, n3.raft, n3.url)
	if code := postJSON(t, n1.url+"/v1/cluster/join", self+`,"auto":true}`); code != http.StatusConflict {
		t.Fatalf("a removed node's own join: %d, want 409", code)
	}
	if storeHas(n3.n, "while-out", "2") {
		t.Fatal("the removed node applied a write made after its removal")
	}
	if _, in := members(n1.n)["n3"]; in {
		t.Fatal("the removed node is back in by itself")
	}

	// An explicit join adds it back.
	if code := postJSON(t, n2.url+"/v1/cluster/join", self+"}"); code != http.StatusNoContent {
		t.Fatalf("explicit join of n3: %d", code)
	}
	waitFor(t, "n3 back as a voter with its URL", func() bool {
		for _, m := range n1.n.Status().Members {
			if m.ID == "n3" {
				return m.Suffrage == "Voter" && m.HTTPURL == n3.url
			}
		}
		return false
	})
	waitFor(t, "n3 to catch up with the write made while it was out", func() bool { return storeHas(n3.n, "while-out", "2") })
	// A write sent to it goes through (forwarded to the leader, whoever it is now).
	c3, _ := client.New(n3.url, &client.Options{Token: "tok", Nodes: []string{n1.url, n2.url}})
	if err := c3.Put(ctx, []byte("after"), []byte("3")); err != nil {
		t.Fatalf("a write through the rejoined node: %v", err)
	}
	for _, n := range []*inNode{n1, n2, n3} {
		waitFor(t, n.n.ID()+" to apply the write made through n3", func() bool { return storeHas(n.n, "after", "3") })
	}
	if _, lurl := n3.n.Leader(); lurl == "" {
		t.Fatal("the rejoined node knows no leader")
	}
}
