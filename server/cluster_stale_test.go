package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
	"github.com/simdr-go/simdr/cluster"
	"github.com/simdr-go/simdr/server"
)

// holdApplying makes n apply no raft entry (its store stays as it is while
// its log grows) until the returned function is called, or the test ends.
func holdApplying(t *testing.T, n *inNode) (release func()) {
	t.Helper()
	held, done := make(chan struct{}), make(chan struct{})
	go n.n.Exclusive(func() { close(held); <-done })
	<-held
	release = sync.OnceFunc(func() { close(done) })
	t.Cleanup(release) // before the node's own cleanup, which waits for its FSM
	return release
}

// send sends a request with the token and returns its status code and
// body (or the error) on the channel.
func send(method, url string, hdr http.Header) <-chan string { return sendBody(method, url, hdr, "") }

// sendBody is send with a request body.
func sendBody(method, url string, hdr http.Header, body string) <-chan string {
	out := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("Authorization", "Bearer tok")
		res, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			out <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		out <- fmt.Sprintf("%d %s", res.StatusCode, strings.TrimSpace(string(b)))
	}()
	return out
}

// staleLeader makes n2 the leader of a cluster of three while its store
// lacks the last writes the leader before it (n1, stopped) committed and
// acknowledged: k=v2 over k=v1, and k2=new. n2 applies nothing until
// release is called. tag is the ETag n2 gave k's old value; written is the
// raft index of the last of n1's writes.
func staleLeader(t *testing.T) (n2 *inNode, release func(), tag string, written uint64) {
	t.Helper()
	dir3 := t.TempDir()
	n1 := startNode(t, "n1", "")
	waitFor(t, "n1 to lead", n1.n.IsLeader)
	n2 = startNode(t, "n2", n1.url)
	n3 := startNodeIn(t, "n3", n1.url, dir3, "127.0.0.1:0", "")
	waitFor(t, "three members with their URLs", func() bool {
		m := members(n1.n)
		return len(m) == 3 && m["n2"] == n2.url && m["n3"] == n3.url
	})
	ctx := context.Background()
	c1, _ := client.New(n1.url, &client.Options{Token: "tok"})
	if err := c1.Put(ctx, []byte("k"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*inNode{n2, n3} {
		waitFor(t, n.n.ID()+" to apply k=v1", func() bool { return storeHas(n.n, "k", "v1") })
	}
	n3.stop()
	release = holdApplying(t, n2)
	if err := c1.Put(ctx, []byte("k"), []byte("v2")); err != nil { // committed with n2's log
		t.Fatal(err)
	}
	if err := c1.Put(ctx, []byte("k2"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	written = n1.n.Applied()
	res, err := http.DefaultClient.Do(mustReq(t, "GET", n2.url+"/v1/keys/k"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "v1" {
		t.Fatalf("n2's local GET: %q, want its stale value", b)
	}
	n1.stop()
	// n3 missed the writes: only n2 can win the election.
	startNodeIn(t, "n3", "", dir3, strings.TrimPrefix(n3.url, "http://"), n3.raft)
	waitFor(t, "n2 to lead", n2.n.IsLeader)
	return n2, release, res.Header.Get("ETag"), written
}

// A node that has just become leader may not have applied yet what the
// leader before it committed and acknowledged. What a request's answer or
// write depends on the store must wait until it has: a DELETE with
// If-Match would delete a newer value it did not name, a DELETE by hash of
// a key written just before was answered 204 with nothing deleted (the
// key looked absent). A strong read and a rename must see those writes
// too. The request is sent to the stale leader, and n2 applies again once
// it has reached raft (its log grew: a barrier, or the request's own
// entry) or been answered.
func TestClusterRequestOnStaleNewLeader(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		ifMatch                  bool
		want                     string // status and body
		after                    func(n2 *inNode) bool
	}{
		{"DELETE If-Match naming the value before the last write", "DELETE", "/v1/keys/k", "", true,
			"412 ", func(n2 *inNode) bool { return storeHas(n2.n, "k", "v2") }},
		{"DELETE by hash of a key written last", "DELETE", fmt.Sprintf("/v1/hash/%016x", simdr.Hash([]byte("k2"))), "", false,
			"204 ", func(n2 *inNode) bool { return storeHasNot(n2, "k2") }},
		{"rename of a key written last", "POST", "/v1/rename", `{"from":"k2","to":"k3"}`, false,
			"204 ", func(n2 *inNode) bool { return storeHas(n2.n, "k3", "new") && storeHasNot(n2, "k2") }},
		{"strong GET", "GET", "/v1/keys/k?consistency=strong", "", false, "200 v2", nil},
		{"strong get-many", "POST", "/v1/get-many?consistency=strong", `{"keys":["k","k2"]}`, false,
			`200 {"values":["djI=","bmV3"]}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n2, release, tag, written := staleLeader(t)
			hdr := http.Header{}
			if tc.ifMatch {
				hdr.Set("If-Match", tag)
			}
			if tc.body != "" {
				hdr.Set("Content-Type", "application/json")
			}
			last := n2.n.Status().LastIndex
			ans := sendBody(tc.method, n2.url+tc.path, hdr, tc.body)
			var got string
			answered := false
			waitFor(t, "the request to reach n2's raft or be answered", func() bool {
				select {
				case got = <-ans:
					answered = true
					return true
				default:
					return n2.n.Status().LastIndex > last
				}
			})
			release()
			if !answered {
				got = <-ans
			}
			waitFor(t, "n2 to apply the writes of n1", func() bool { return n2.n.Applied() >= written })
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("answered %q, want %q", got, tc.want)
			}
			if tc.after != nil && !tc.after(n2) {
				t.Error("n2's store after it: wrong")
			}
		})
	}
}

// storeHasNot reports whether n's store has no value for key.
func storeHasNot(n *inNode, key string) bool {
	st, release := n.n.Acquire()
	defer release()
	_, err := st.Get([]byte(key))
	return errors.Is(err, simdr.ErrNotFound)
}

func mustReq(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok")
	return req
}

// GET /v1/cluster answers while the node applies nothing (a compaction
// holds the applying side, Node.Exclusive): it used to wait for it.
func TestClusterStatusWhileApplyingWaits(t *testing.T) {
	n := startNode(t, "n1", "")
	waitFor(t, "n1 to lead", n.n.IsLeader)
	holdApplying(t, n)
	if got := <-send("GET", n.url+"/v1/cluster", nil); !strings.HasPrefix(got, "200 ") {
		t.Fatalf("GET /v1/cluster while applying waits: %s", got)
	}
}

// A rename of a key whose value expires must leave every replica with the
// same keys, however late a replica applies it. A node that applies it
// after the value expired (it was down, or is slow, or joins later and
// replays the log) found no value to move and left the destination's old
// value in place, which the leader had replaced (and which then expired
// with the moved value): that replica served the old value forever.
func TestClusterRenameOfExpiringKeyOnLateReplica(t *testing.T) {
	n1, n2, n3 := threeNodes(t)
	ctx := context.Background()
	c, _ := client.New(n1.url, &client.Options{Token: "tok"})
	if err := c.Put(ctx, []byte("to"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n3 to apply to=old", func() bool { return storeHas(n3.n, "to", "old") })
	release := holdApplying(t, n3)
	// The rename must reach the leader before the value expires there: a
	// longer ttl each time it did not.
	for ttl := 200 * time.Millisecond; ; ttl *= 2 {
		if ttl > time.Minute {
			t.Fatal("the rename never reached the leader before the value expired")
		}
		if err := c.PutTTL(ctx, []byte("from"), []byte("moving"), ttl); err != nil {
			t.Fatal(err)
		}
		err := c.Rename(ctx, []byte("from"), []byte("to"))
		if err == nil {
			break
		}
		if !errors.Is(err, simdr.ErrNotFound) {
			t.Fatal(err)
		}
	}
	waitFor(t, "the moved value to expire on the leader", func() bool { return storeHasNot(n1, "to") })
	applied := n1.n.Applied()
	release()
	for _, n := range []*inNode{n2, n3} {
		waitFor(t, n.n.ID()+" to apply the rename", func() bool { return n.n.Applied() >= applied })
		if !storeHasNot(n, "to") || !storeHasNot(n, "from") {
			t.Errorf("%s after the rename and the expiry: to missing %v, from missing %v (the leader: both)",
				n.n.ID(), storeHasNot(n, "to"), storeHasNot(n, "from"))
		}
	}
}

// A node whose store stopped applying the log (here a read-only store:
// every apply fails, as on a full disk) keeps leading, and its store falls
// behind the log: it must answer a strong read, or a write decided on the
// store (If-Match, a rename), with the store's failure, not from the stale
// store (which said: not found, 412, 204 with nothing deleted).
func TestClusterBrokenLeaderDecidesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.simdr")
	st, err := simdr.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if st, err = simdr.Open(path, &simdr.Options{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	n, err := cluster.Open(cluster.Config{ID: "a", RaftAddr: "127.0.0.1:0", Dir: t.TempDir(), Token: "tok",
		Bootstrap: true, HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LogOutput: testLog{t}}, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	waitFor(t, "the node to lead", n.IsLeader)
	ts := httptest.NewServer(server.ClusterHandler(n, server.Config{Token: "tok"}))
	t.Cleanup(ts.Close)
	if got := <-sendBody("PUT", ts.URL+"/v1/keys/k", nil, "v"); !strings.HasPrefix(got, "503 ") || !strings.Contains(got, "outcome_unknown") {
		t.Fatalf("a put the store cannot apply: %s", got) // committed, not applied here
	}
	tests := []struct {
		name, method, path, body string
		hdr                      http.Header
	}{
		{"strong GET", "GET", "/v1/keys/k?consistency=strong", "", nil},
		{"strong get-many", "POST", "/v1/get-many?consistency=strong", `{"keys":["k"]}`, http.Header{"Content-Type": {"application/json"}}},
		{"DELETE If-Match", "DELETE", "/v1/keys/k", "", http.Header{"If-Match": {"*"}}},
		{"DELETE by hash", "DELETE", fmt.Sprintf("/v1/hash/%016x", simdr.Hash([]byte("k"))), "", nil},
		{"rename", "POST", "/v1/rename", `{"from":"k","to":"k2"}`, http.Header{"Content-Type": {"application/json"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := <-sendBody(tc.method, ts.URL+tc.path, tc.hdr, tc.body)
			if !strings.Contains(got, "stopped applying") {
				t.Fatalf("answered %s, want the store's failure", got)
			}
		})
	}
}

// client.Move through a follower whose file differs from the leader's (it
// compacted its own: the same entries at other offsets, other ETags) moves
// the value: it used to copy it from the follower's store and send the
// DELETE with the follower's ETag, which the leader found not to match
// (412), so the value stayed on both sides and Move returned nil.
func TestClusterMoveThroughCompactedFollower(t *testing.T) {
	n1, n2, n3 := threeNodes(t)
	ctx := context.Background()
	c1, _ := client.New(n1.url, &client.Options{Token: "tok"})
	for _, v := range []string{"first", "moving"} { // a dead entry before the live one
		if err := c1.Put(ctx, []byte("k"), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "n2 to apply k", func() bool { return storeHas(n2.n, "k", "moving") })
	if got := <-sendBody("POST", n2.url+"/v1/compact", nil, ""); !strings.HasPrefix(got, "200") {
		t.Fatalf("compact n2: %s", got)
	}
	tag := func(n *inNode) string {
		res, err := http.DefaultClient.Do(mustReq(t, "GET", n.url+"/v1/keys/k"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header.Get("ETag")
	}
	if tag(n1) == tag(n2) {
		t.Fatal("the compaction left k's entry where it was: the test needs the ETags to differ")
	}
	dst, err := simdr.Open(filepath.Join(t.TempDir(), "dst.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	c2, _ := client.New(n2.url, &client.Options{Token: "tok", Nodes: []string{n1.url, n3.url}})
	if err := c2.Move(ctx, []byte("k"), client.Local(dst)); err != nil {
		t.Fatal(err)
	}
	if e, err := dst.Get([]byte("k")); err != nil || string(e.Bytes()) != "moving" {
		t.Fatalf("the destination: %v", err)
	}
	if !storeHasNot(n1, "k") {
		t.Fatal("the value stayed in the cluster too")
	}
}
