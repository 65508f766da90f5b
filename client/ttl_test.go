package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
	"github.com/simdr-go/simdr/internal/testclock"
	"github.com/simdr-go/simdr/server"
)

// PutTTL, TTL and Batch.PutTTL give the same results on a local store and
// through the server, on one clock.
func TestStoreTTL(t *testing.T) {
	clk := testclock.New()
	remote, base := serveWith(t, server.Config{}, &simdr.Options{Clock: clk.Now})
	local, err := simdr.Open(filepath.Join(t.TempDir(), "l.simdr"), &simdr.Options{Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	stores := []struct {
		name string
		s    client.Store
		raw  *simdr.Store
	}{{"local", client.Local(local), local}, {"remote", newClient(t, base, nil), remote}}
	ctx := context.Background()
	for _, c := range stores {
		s := c.s
		if err := s.PutTTL(ctx, []byte("session"), []byte("token"), 10*time.Minute); err != nil {
			t.Fatalf("%s: PutTTL: %v", c.name, err)
		}
		if err := s.PutTTL(ctx, []byte("tiny"), []byte("t"), time.Nanosecond); err != nil { // rounded up to 1 ms
			t.Fatalf("%s: PutTTL 1ns: %v", c.name, err)
		}
		if err := s.Put(ctx, []byte("plain"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		var b client.Batch
		b.PutTTL([]byte("b1"), []byte("1"), 1500*time.Microsecond) // 2 ms
		b.PutTTL([]byte("b2"), []byte("2"), time.Hour)
		b.Put([]byte("b3"), []byte("3"))
		if err := s.Apply(ctx, &b); err != nil {
			t.Fatalf("%s: Apply: %v", c.name, err)
		}
	}
	want := map[string]time.Duration{
		"session": 10 * time.Minute, "tiny": time.Millisecond, "plain": simdr.NoExpiry,
		"b1": 2 * time.Millisecond, "b2": time.Hour, "b3": simdr.NoExpiry,
	}
	for _, c := range stores {
		for k, w := range want {
			if d, err := c.s.TTL(ctx, []byte(k)); err != nil || d != w {
				t.Errorf("%s: TTL %s = %v, %v; want %v", c.name, k, d, err, w)
			}
			if d, err := c.raw.TTL([]byte(k)); err != nil || d != w {
				t.Errorf("%s: the store's TTL %s = %v, %v; want %v", c.name, k, d, err, w)
			}
		}
		if _, err := c.s.TTL(ctx, []byte("missing")); !errors.Is(err, simdr.ErrNotFound) {
			t.Errorf("%s: TTL of a missing key: %v", c.name, err)
		}
	}
	clk.Advance(10 * time.Minute)
	for _, c := range stores {
		for _, k := range []string{"session", "tiny", "b1"} {
			if _, err := c.s.Get(ctx, []byte(k)); !errors.Is(err, simdr.ErrNotFound) {
				t.Errorf("%s: Get %s after expiry: %v", c.name, k, err)
			}
			if _, err := c.s.TTL(ctx, []byte(k)); !errors.Is(err, simdr.ErrNotFound) {
				t.Errorf("%s: TTL %s after expiry: %v", c.name, k, err)
			}
			if ok, err := c.s.Has(ctx, []byte(k)); ok || err != nil {
				t.Errorf("%s: Has %s after expiry: %v %v", c.name, k, ok, err)
			}
		}
		if n, err := c.s.Len(ctx); err != nil || n != 3 {
			t.Errorf("%s: Len after expiry = %d, %v; want 3", c.name, n, err)
		}
	}
}

// A ttl that is not positive fails before anything is sent; a reserved key
// is refused by the server as by a local store.
func TestPutTTLRefused(t *testing.T) {
	st, base := serve(t, server.Config{})
	local, err := simdr.Open(filepath.Join(t.TempDir(), "l.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	ctx := context.Background()
	size := st.Size()
	for _, s := range []client.Store{client.Local(local), newClient(t, base, nil)} {
		for _, ttl := range []time.Duration{0, -time.Second} {
			if err := s.PutTTL(ctx, []byte("k"), []byte("v"), ttl); !errors.Is(err, simdr.ErrInvalidTTL) {
				t.Errorf("%T: PutTTL %v: %v, want ErrInvalidTTL", s, ttl, err)
			}
			var b client.Batch
			b.Put([]byte("ok"), []byte("v"))
			b.PutTTL([]byte("k"), []byte("v"), ttl)
			if err := s.Apply(ctx, &b); !errors.Is(err, simdr.ErrInvalidTTL) {
				t.Errorf("%T: Apply with a ttl of %v: %v, want ErrInvalidTTL", s, ttl, err)
			}
			b.Reset()
			if err := s.Apply(ctx, &b); err != nil {
				t.Errorf("%T: Apply after Reset: %v", s, err)
			}
		}
		reserved := []byte("\x00simdr.ttl\x00k")
		if err := s.PutTTL(ctx, reserved, []byte("v"), time.Minute); !errors.Is(err, simdr.ErrReservedKey) {
			t.Errorf("%T: PutTTL of a reserved key: %v", s, err)
		}
		if err := s.Put(ctx, reserved, []byte("v")); !errors.Is(err, simdr.ErrReservedKey) {
			t.Errorf("%T: Put of a reserved key: %v", s, err)
		}
	}
	if st.Size() != size || local.Size() != 0 {
		t.Errorf("refused writes wrote: remote %d -> %d bytes, local %d", size, st.Size(), local.Size())
	}
}

// Copy and Move keep a value's expiry, to another server (streamed) and
// to a local store.
func TestCopyKeepsTTL(t *testing.T) {
	clk := testclock.New()
	opts := &simdr.Options{Clock: clk.Now}
	_, srcBase := serveWith(t, server.Config{}, opts)
	dstStore, dstBase := serveWith(t, server.Config{}, opts)
	local, err := simdr.Open(filepath.Join(t.TempDir(), "l.simdr"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	src := newClient(t, srcBase, nil)
	ctx := context.Background()
	big := bytes.Repeat([]byte("v"), 3<<20)
	if err := src.PutTTL(ctx, []byte("k"), big, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := src.Put(ctx, []byte("plain"), []byte("p")); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []struct {
		s   client.Store
		raw *simdr.Store
	}{{newClient(t, dstBase, nil), dstStore}, {client.Local(local), local}} {
		for _, k := range []string{"k", "plain"} {
			if err := src.Copy(ctx, []byte(k), dst.s); err != nil {
				t.Fatalf("Copy %s to %T: %v", k, dst.s, err)
			}
		}
		if d, err := dst.raw.TTL([]byte("k")); err != nil || d != time.Hour {
			t.Errorf("%T: the copy's TTL = %v, %v; want 1h", dst.s, d, err)
		}
		if e, err := dst.raw.Get([]byte("k")); err != nil || !bytes.Equal(e.Bytes(), big) {
			t.Errorf("%T: the copy holds %d bytes, %v", dst.s, e.Len(), err)
		}
		if d, err := dst.raw.TTL([]byte("plain")); err != nil || d != simdr.NoExpiry {
			t.Errorf("%T: the copy of a value without expiry: TTL %v, %v", dst.s, d, err)
		}
	}
	if err := src.Move(ctx, []byte("k"), client.Local(local)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := src.Has(ctx, []byte("k")); ok {
		t.Error("Move left the source's value")
	}
	clk.Advance(time.Hour)
	if local.Has([]byte("k")) || dstStore.Has([]byte("k")) {
		t.Error("a copy outlived its expiry")
	}
}

// PutTTL is retried on the next node as Put is, with its body and ttl; TTL
// is a read that StrongReads makes linearizable.
func TestPutTTLRetries(t *testing.T) {
	var got atomic.Value
	var noLeaderHits atomic.Int32
	noLeader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noLeaderHits.Add(1)
		io.ReadAll(r.Body) // as a node forwarding to a leader it then loses
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(503)
		io.WriteString(w, `{"error":"no leader","code":"no_leader"}`)
	}))
	defer noLeader.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(r.Method + " " + string(b) + " " + r.URL.RawQuery)
		if r.Method == http.MethodHead {
			w.Header().Set("X-Simdr-Expires-In-Ms", "1234")
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ok.Close()
	ctx := context.Background()
	c, _ := client.New(noLeader.URL, &client.Options{Nodes: []string{ok.URL}, StrongReads: true})
	if err := c.PutTTL(ctx, []byte("k"), []byte("value"), 90*time.Second); err != nil {
		t.Fatalf("PutTTL across nodes: %v", err)
	}
	if g := got.Load(); g != "PUT value ttl=1m30s" || noLeaderHits.Load() != 1 {
		t.Errorf("the answering node got %q after %d refusals", g, noLeaderHits.Load())
	}
	// Put, after a node that read the whole body, sends it whole again.
	c, _ = client.New(noLeader.URL, &client.Options{Nodes: []string{ok.URL}, StrongReads: true})
	if err := c.Put(ctx, []byte("k"), []byte("value2")); err != nil {
		t.Fatalf("Put across nodes: %v", err)
	}
	if g := got.Load(); g != "PUT value2 " {
		t.Errorf("the answering node got %q", g)
	}
	if d, err := c.TTL(ctx, []byte("k")); err != nil || d != 1234*time.Millisecond {
		t.Errorf("TTL = %v, %v", d, err)
	}
	if g := got.Load(); g != "HEAD  consistency=strong" {
		t.Errorf("TTL sent %q", g)
	}
	// A malformed header is an error, not a ttl.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Simdr-Expires-In-Ms", "-5")
	}))
	defer bad.Close()
	cb, _ := client.New(bad.URL, nil)
	if d, err := cb.TTL(ctx, []byte("k")); err == nil || !strings.Contains(err.Error(), "X-Simdr-Expires-In-Ms") {
		t.Errorf("TTL with a malformed header: %v, %v", d, err)
	}
}
