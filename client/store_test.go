package client_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
	"github.com/simdr-go/simdr/server"
)

// The same code, run on a local Store (client.Local) and on a remote one
// (*client.Client), sees the same results.
func TestStoreInterface(t *testing.T) {
	remoteStore, base := serve(t, server.Config{})
	local, err := simdr.Open(filepath.Join(t.TempDir(), "l.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	for _, c := range []struct {
		name string
		s    client.Store
		raw  *simdr.Store
	}{{"local", client.Local(local), local}, {"remote", newClient(t, base, nil), remoteStore}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			s := c.s
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(s.Put(ctx, []byte("a"), []byte("alpha")))
			if n, err := s.PutReader(ctx, []byte("big"), strings.NewReader(strings.Repeat("b", 3<<20))); err != nil || n != 3<<20 {
				t.Fatalf("PutReader: %d %v", n, err)
			}
			if v, err := s.GetHash(ctx, simdr.Hash([]byte("a"))); err != nil || string(v) != "alpha" {
				t.Fatalf("GetHash: %q %v", v, err)
			}
			if _, err := s.GetHash(ctx, 12345); !errors.Is(err, simdr.ErrNotFound) {
				t.Fatalf("GetHash of a missing key: %v", err)
			}
			var b client.Batch
			b.Put([]byte("x"), []byte("1"))
			b.Put([]byte("y"), []byte("2"))
			b.Delete([]byte("x"))
			must(s.Apply(ctx, &b))
			if vs, err := s.GetMany(ctx, [][]byte{[]byte("x"), []byte("y")}); err != nil || vs[0] != nil || string(vs[1]) != "2" {
				t.Fatalf("GetMany: %q %v", vs, err)
			}
			must(s.Rename(ctx, []byte("y"), []byte("z")))
			if ok, err := s.Has(ctx, []byte("z")); !ok || err != nil {
				t.Fatalf("Has: %v %v", ok, err)
			}
			must(s.DeleteHash(ctx, simdr.Hash([]byte("z"))))
			if ok, _ := s.Has(ctx, []byte("z")); ok {
				t.Fatal("DeleteHash did not delete")
			}
			var hashes []uint64
			for e, err := range s.Entries(ctx) {
				must(err)
				if want, _ := c.raw.GetHash(e.KeyHash); !bytes.Equal(e.Value, want.Bytes()) {
					t.Fatalf("entry %x: %d bytes", e.KeyHash, len(e.Value))
				}
				hashes = append(hashes, e.KeyHash)
			}
			slices.Sort(hashes)
			want := []uint64{simdr.Hash([]byte("a")), simdr.Hash([]byte("big"))}
			slices.Sort(want)
			if !slices.Equal(hashes, want) {
				t.Fatalf("Entries: %x, want %x", hashes, want)
			}
			if n, err := s.Len(ctx); n != 2 || err != nil {
				t.Fatalf("Len: %d %v", n, err)
			}
			if st, err := s.Stats(ctx); err != nil || st.LiveKeys != 2 {
				t.Fatalf("Stats: %+v %v", st, err)
			}
			must(s.Verify(ctx))
			must(s.Compact(ctx))
			must(s.Sync(ctx))
			if sz, err := s.Size(ctx); err != nil || sz != c.raw.Size() {
				t.Fatalf("Size: %d %v", sz, err)
			}
			if err := s.Rename(ctx, []byte("nope"), []byte("x")); !errors.Is(err, simdr.ErrNotFound) {
				t.Fatalf("Rename of a missing key: %v", err)
			}
		})
	}
}

// Copy and Move between a remote store and a local one, both ways; Move
// keeps a value that changed meanwhile (If-Match).
func TestCopyMove(t *testing.T) {
	remoteStore, base := serve(t, server.Config{})
	local, err := simdr.Open(filepath.Join(t.TempDir(), "l.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	ctx := context.Background()
	c := newClient(t, base, nil)
	remoteStore.Put([]byte("k"), []byte("value"))
	if err := c.Copy(ctx, []byte("k"), client.Local(local)); err != nil {
		t.Fatal(err)
	}
	if e, _ := local.Get([]byte("k")); string(e.Bytes()) != "value" || !remoteStore.Has([]byte("k")) {
		t.Fatal("Copy")
	}
	if err := c.Copy(ctx, []byte("k"), c); !errors.Is(err, simdr.ErrSameStore) {
		t.Fatalf("Copy to itself: %v", err)
	}
	if err := c.Copy(ctx, []byte("missing"), client.Local(local)); !errors.Is(err, simdr.ErrNotFound) {
		t.Fatalf("Copy of a missing key: %v", err)
	}
	remoteStore.Put([]byte("m"), []byte("moved"))
	if err := c.Move(ctx, []byte("m"), client.Local(local)); err != nil {
		t.Fatal(err)
	}
	if e, _ := local.Get([]byte("m")); string(e.Bytes()) != "moved" || remoteStore.Has([]byte("m")) {
		t.Fatal("Move")
	}
	// A value that changes between the copy and the delete stays.
	remoteStore.Put([]byte("r"), []byte("old"))
	changing := &changeAfterPut{Store: client.Local(local), fn: func() { remoteStore.Put([]byte("r"), []byte("new")) }}
	if err := c.Move(ctx, []byte("r"), changing); err != nil {
		t.Fatal(err)
	}
	if e, err := remoteStore.Get([]byte("r")); err != nil || string(e.Bytes()) != "new" {
		t.Fatalf("Move deleted a value that changed meanwhile: %v", err)
	}
}

// changeAfterPut runs fn when the copy is synced: after the copy, before the delete.
type changeAfterPut struct {
	client.Store
	fn func()
}

func (c *changeAfterPut) Sync(ctx context.Context) error {
	c.fn()
	return c.Store.Sync(ctx)
}

// Verify reports damage as a *simdr.VerifyError; GetHash rejects bad hashes.
func TestVerifyAndHashRoutes(t *testing.T) {
	st, base := serve(t, server.Config{})
	c := newClient(t, base, nil)
	st.Put([]byte("k"), []byte("v"))
	if err := c.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	e, _ := st.Get([]byte("k"))
	f, err := os.OpenFile(st.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("X"), e.Offset()) // damage the value under the server
	f.Close()
	err = c.Verify(context.Background())
	var ve *simdr.VerifyError
	if !errors.As(err, &ve) || len(ve.Bad) != 1 || !errors.Is(err, simdr.ErrChecksum) {
		t.Fatalf("Verify of a damaged file: %v", err)
	}
	for _, p := range []string{"/v1/hash/123", "/v1/hash/zzzzzzzzzzzzzzzz", "/v1/hash/00000000000000000"} {
		resp, err := newRaw(base + p)
		if err != nil || resp != 400 {
			t.Errorf("%s: %d %v", p, resp, err)
		}
	}
}

func newRaw(u string) (int, error) {
	r, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	r.Body.Close()
	return r.StatusCode, nil
}
