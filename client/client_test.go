package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
	"github.com/simdr-go/simdr/server"
)

// serve starts the real server for a fresh store on a loopback port.
func serve(t *testing.T, cfg server.Config) (*simdr.Store, string) {
	t.Helper()
	return serveWith(t, cfg, nil)
}

// serveWith is serve for a store opened with opts.
func serveWith(t *testing.T, cfg server.Config, opts *simdr.Options) (*simdr.Store, string) {
	t.Helper()
	st, err := simdr.Open(filepath.Join(t.TempDir(), "c.simdr"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- server.Serve(ctx, ln, st, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return st, "http://" + ln.Addr().String()
}

func newClient(t *testing.T, base string, opts *client.Options) *client.Client {
	t.Helper()
	c, err := client.New(base, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestClient(t *testing.T) {
	st, base := serve(t, server.Config{})
	c := newClient(t, base+"/", nil) // a trailing slash is fine
	ctx := context.Background()

	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	keys := [][]byte{[]byte("plain"), []byte("a/b/c"), []byte(".."), []byte("."), {}, {0, 0xff, '/', '%', '?'}, []byte("é 日本")}
	for i, k := range keys {
		v := bytes.Repeat([]byte{byte('A' + i)}, 10+i)
		if err := c.Put(ctx, k, v); err != nil {
			t.Fatalf("Put %q: %v", k, err)
		}
		if e, err := st.Get(k); err != nil || !bytes.Equal(e.Bytes(), v) {
			t.Fatalf("Put %q: the store holds %q, %v", k, e.Bytes(), err)
		}
		got, err := c.Get(ctx, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("Get %q: %q, %v", k, got, err)
		}
		if ok, err := c.Has(ctx, k); !ok || err != nil {
			t.Fatalf("Has %q: %v %v", k, ok, err)
		}
	}
	if n, err := c.Len(ctx); err != nil || n != len(keys) {
		t.Fatalf("Len %d %v", n, err)
	}
	if n, err := c.Size(ctx); err != nil || n != st.Size() {
		t.Fatalf("Size %d %v", n, err)
	}

	// Missing keys.
	if _, err := c.Get(ctx, []byte("nope")); !errors.Is(err, simdr.ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	var ce *client.Error
	if _, err := c.GetReader(ctx, []byte("nope")); !errors.As(err, &ce) || ce.StatusCode != 404 || ce.Code != "not_found" {
		t.Fatalf("GetReader missing: %v", err)
	}
	if ok, err := c.Has(ctx, []byte("nope")); ok || err != nil {
		t.Fatalf("Has missing: %v %v", ok, err)
	}
	if err := c.Delete(ctx, []byte("nope")); err != nil {
		t.Fatalf("Delete missing: %v", err)
	}
	if err := c.Put(ctx, []byte("x"), nil); !errors.Is(err, simdr.ErrInvalidValue) {
		t.Fatalf("Put empty: %v", err)
	}
	if err := c.Put(ctx, []byte("x"), []byte{0}); !errors.Is(err, simdr.ErrInvalidValue) {
		t.Fatalf("Put 0x00: %v", err)
	}

	// Delete, Rename.
	if err := c.Delete(ctx, []byte("plain")); err != nil || st.Has([]byte("plain")) {
		t.Fatalf("Delete: %v", err)
	}
	if err := c.Rename(ctx, []byte("a/b/c"), []byte{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Get(ctx, []byte{}); string(got) != "BBBBBBBBBBB" || st.Has([]byte("a/b/c")) {
		t.Fatalf("Rename: %q", got)
	}
	if err := c.Rename(ctx, []byte("gone"), []byte("z")); !errors.Is(err, simdr.ErrNotFound) {
		t.Fatalf("Rename missing: %v", err)
	}
	if err := c.Rename(ctx, []byte("."), []byte(".")); !errors.Is(err, simdr.ErrSameKey) {
		t.Fatalf("Rename to itself: %v", err)
	}

	// Batch and GetMany.
	var b client.Batch
	if err := c.Apply(ctx, &b); err != nil { // empty: nothing sent
		t.Fatal(err)
	}
	b.Put([]byte("b1"), []byte("one"))
	b.Put([]byte("b2"), bytes.Repeat([]byte("2"), 70000))
	b.Delete([]byte(".."))
	b.Put([]byte{}, []byte("empty key"))
	if b.Len() != 4 {
		t.Fatal(b.Len())
	}
	if err := c.Apply(ctx, &b); err != nil {
		t.Fatal(err)
	}
	vals, err := c.GetMany(ctx, [][]byte{[]byte("b1"), []byte(".."), []byte("b2"), {}, []byte("b1")})
	if err != nil {
		t.Fatal(err)
	}
	if string(vals[0]) != "one" || vals[1] != nil || len(vals[2]) != 70000 || string(vals[3]) != "empty key" || string(vals[4]) != "one" {
		t.Fatalf("GetMany: %q", vals)
	}
	if vals, err := c.GetMany(ctx, nil); err != nil || len(vals) != 0 {
		t.Fatalf("GetMany of nothing: %v %v", vals, err)
	}
	b.Reset()
	b.Put([]byte("b3"), []byte("three"))
	b.Delete([]byte("b1"))
	b.Put([]byte("b4"), nil) // invalid: the whole batch fails
	size := st.Size()
	if err := c.Apply(ctx, &b); !errors.Is(err, simdr.ErrInvalidValue) {
		t.Fatalf("Apply with an invalid value: %v", err)
	}
	if st.Size() != size || !st.Has([]byte("b1")) || st.Has([]byte("b3")) {
		t.Fatal("a failed batch was partly applied")
	}

	// Stats, Sync, Compact.
	s, err := c.Stats(ctx)
	if err != nil || s != st.Stats() || s.LiveKeys != st.Len() {
		t.Fatalf("Stats: %+v %v, store %+v", s, err, st.Stats())
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.Stats(ctx); s.Tombstones != 0 || s.ReclaimableBytes != 0 {
		t.Fatalf("after Compact: %+v", s)
	}
}

func TestClientStreams(t *testing.T) {
	st, base := serve(t, server.Config{MaxValueBytes: 8 << 20})
	c := newClient(t, base, nil)
	ctx := context.Background()
	big := make([]byte, 5<<20+123)
	for i := range big {
		big[i] = byte(i * 7 / 3)
	}
	n, err := c.PutReader(ctx, []byte("big"), struct{ io.Reader }{bytes.NewReader(big)})
	if err != nil || n != int64(len(big)) {
		t.Fatalf("PutReader: %d %v", n, err)
	}
	if e, _ := st.Get([]byte("big")); !bytes.Equal(e.Bytes(), big) {
		t.Fatal("PutReader: stored value differs")
	}
	rc, err := c.GetReader(ctx, []byte("big"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("GetReader: %d bytes, %v", len(got), err)
	}
	// Over the server's limit: ErrTooLarge, and nothing stored.
	_, err = c.PutReader(ctx, []byte("huge"), struct{ io.Reader }{bytes.NewReader(make([]byte, 9<<20))})
	if !errors.Is(err, client.ErrTooLarge) || st.Has([]byte("huge")) {
		t.Fatalf("PutReader over the limit: %v", err)
	}
	if err := c.Put(ctx, []byte("huge"), bytes.Repeat([]byte{1}, 9<<20)); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("Put over the limit: %v", err)
	}
	// A reader that fails: the server stores nothing.
	_, err = c.PutReader(ctx, []byte("broken"), io.MultiReader(bytes.NewReader(make([]byte, 3<<20)), failing{}))
	if err == nil || st.Has([]byte("broken")) {
		t.Fatalf("PutReader from a failing reader: %v", err)
	}
	// A canceled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Get(cctx, []byte("big")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a canceled context: %v", err)
	}
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestClientAuthAndErrors(t *testing.T) {
	st, base := serve(t, server.Config{Token: "tok"})
	ctx := context.Background()
	for _, opts := range []*client.Options{nil, {Token: "wrong"}} {
		c := newClient(t, base, opts)
		if err := c.Put(ctx, []byte("k"), []byte("v")); !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("Put with token %v: %v", opts, err)
		}
		if _, err := c.Has(ctx, []byte("k")); !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("Has with token %v: %v", opts, err)
		}
		if _, err := c.Stats(ctx); !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("Stats with token %v: %v", opts, err)
		}
	}
	c := newClient(t, base, &client.Options{Token: "tok"})
	if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, simdr.ErrClosed) {
		t.Fatalf("Get on a closed store: %v", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, simdr.ErrClosed) {
		t.Fatalf("Ping on a closed store: %v", err)
	}

	for _, u := range []string{"", "127.0.0.1:7070", "ftp://h/", "http://", "http://h/?q=1", "::"} {
		if _, err := client.New(u, nil); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	// A server that is not simdr: errors carry the status and body.
	other := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "teapot here", http.StatusTeapot)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go other.Serve(ln)
	defer other.Close()
	oc := newClient(t, "http://"+ln.Addr().String(), nil)
	_, err = oc.Get(ctx, []byte("k"))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.StatusCode != 418 || !strings.Contains(ce.Message, "teapot") || errors.Unwrap(err) != nil {
		t.Fatalf("foreign server: %v", err)
	}
}
