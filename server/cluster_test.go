package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
	"github.com/simdr-go/simdr/cluster"
	"github.com/simdr-go/simdr/server"
)

// A one-node cluster in process: writes go through raft, the answers are
// those of a single node, the reserved keys are refused, and every answer
// carries the node's raft index.
func TestServeClusterOneNode(t *testing.T) {
	st, err := simdr.Open(filepath.Join(t.TempDir(), "s.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	base := "http://" + ln.Addr().String()
	n, err := cluster.Open(cluster.Config{ID: "a", RaftAddr: "127.0.0.1:0", Dir: t.TempDir(), Token: "tok",
		HTTPURL: base, Bootstrap: true, HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond}, st)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- server.ServeCluster(ctx, ln, n, server.Config{Token: "tok"}) }()
	defer func() { cancel(); <-errc }()
	for !n.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}
	c, _ := client.New(base, &client.Options{Token: "tok", StrongReads: true})
	bg := context.Background()
	if err := c.Put(bg, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	var b client.Batch
	b.Put([]byte("b"), []byte("2"))
	b.Delete([]byte("a"))
	if err := c.Apply(bg, &b); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename(bg, []byte("b"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fn   func() error
		want error
	}{
		{"rename missing", func() error { return c.Rename(bg, []byte("nope"), []byte("x")) }, simdr.ErrNotFound},
		{"invalid value", func() error { return c.Put(bg, []byte("e"), []byte{0}) }, simdr.ErrInvalidValue},
		{"reserved key", func() error { return c.Put(bg, cluster.AppliedKey, []byte("x")) }, nil},
		{"get deleted", func() error { _, err := c.Get(bg, []byte("a")); return err }, simdr.ErrNotFound},
		{"put ttl", func() error {
			if err := c.PutTTL(bg, []byte("t"), []byte("x"), time.Minute); err != nil {
				return err
			}
			if d, err := c.TTL(bg, []byte("t")); err != nil || d <= 59*time.Second || d > time.Minute {
				return fmt.Errorf("TTL after PutTTL(1m) on the cluster: %v, %v", d, err)
			}
			return simdr.ErrNotFound
		}, simdr.ErrNotFound},
		{"batch ttl", func() error {
			var b client.Batch
			b.Put([]byte("t1"), []byte("x"))
			b.PutTTL([]byte("t2"), []byte("x"), time.Minute)
			if err := c.Apply(bg, &b); err != nil {
				return err
			}
			if d, err := c.TTL(bg, []byte("t2")); err != nil || d <= 59*time.Second || d > time.Minute {
				return fmt.Errorf("TTL of a batch put with a ttl on the cluster: %v, %v", d, err)
			}
			return simdr.ErrNotFound
		}, simdr.ErrNotFound},
		{"invalid ttl", func() error { return c.PutTTL(bg, []byte("t"), []byte("x"), -time.Minute) }, simdr.ErrInvalidTTL},
		{"ttl prefix", func() error { return c.Put(bg, []byte("\x00simdr.ttl\x00k"), []byte("x")) }, simdr.ErrReservedKey},
		{"ttl prefix in a batch", func() error {
			var b client.Batch
			b.Delete([]byte("\x00simdr.ttl\x00k"))
			return c.Apply(bg, &b)
		}, simdr.ErrReservedKey},
		{"ttl of a value", func() error {
			if d, err := c.TTL(bg, []byte("c")); err != nil || d != simdr.NoExpiry {
				return fmt.Errorf("TTL %v, %v", d, err)
			}
			return simdr.ErrNotFound
		}, simdr.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fn()
			var e *client.Error
			if tc.want == nil {
				if !errors.As(err, &e) || e.Code != "reserved" {
					t.Fatalf("%v, want 403 reserved", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
		})
	}

	if err := c.Compact(bg); err != nil { // local, between two applies
		t.Fatal(err)
	}
	if err := c.Put(bg, []byte("after"), []byte("compact")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(bg, []byte("c")); err != nil || string(v) != "2" {
		t.Fatalf("c = %q, %v", v, err)
	}
	var s cluster.Status
	var res *http.Response
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequest("GET", base+"/v1/cluster", nil)
		req.Header.Set("Authorization", "Bearer tok")
		if res, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		s = cluster.Status{}
		json.NewDecoder(res.Body).Decode(&s)
		res.Body.Close()
		if len(s.Members) == 1 && s.Members[0].HTTPURL != "" { // the node records its URL by itself
			break
		}
	}
	if s.State != "Leader" || s.Leader != "a" || len(s.Members) != 1 || s.Members[0].HTTPURL != base ||
		res.Header.Get(server.HeaderApplied) == "" || s.Applied < 4 {
		t.Fatalf("status %+v, applied header %q", s, res.Header.Get(server.HeaderApplied))
	}
	// Without the token: nothing.
	res2, _ := http.Post(base+"/v1/cluster/join", "application/json", strings.NewReader(`{"id":"x","raft_addr":"127.0.0.1:1","http_url":"http://x"}`))
	if res2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("join without the token: %d", res2.StatusCode)
	}
	res2.Body.Close()
}
