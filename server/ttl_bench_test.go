package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/server"
)

// BenchmarkGetExpiresHeader: a GET of /v1/keys/{key} reads the key's TTL
// for X-Simdr-Expires-In-Ms; /v1/hash/{hash} serves the same entry without
// it. "lookup" is the store calls alone: Get, against Get and TTL. Each on
// a store without expiring keys ("plain") and with ("ttl": the key has one).
func BenchmarkGetExpiresHeader(b *testing.B) {
	for _, withTTL := range []bool{false, true} {
		st, err := simdr.Open(b.TempDir()+"/s.simdr", nil)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		key := []byte("some-key")
		if withTTL {
			err = st.PutTTL(key, []byte("value"), time.Hour)
		} else {
			err = st.Put(key, []byte("value"))
		}
		if err != nil {
			b.Fatal(err)
		}
		name := map[bool]string{false: "plain", true: "ttl"}[withTTL]
		h := server.Handler(st, server.Config{})
		for _, c := range []struct{ route, url string }{
			{"key", "/v1/keys/some-key"},
			{"hash", fmt.Sprintf("/v1/hash/%016x", simdr.Hash(key))},
		} {
			b.Run(name+"/"+c.route, func(b *testing.B) {
				req := httptest.NewRequest("GET", c.url, nil)
				req.Host = "127.0.0.1"
				for b.Loop() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatal(w.Code)
					}
				}
			})
		}
		b.Run(name+"/lookup-get", func(b *testing.B) {
			for b.Loop() {
				if _, err := st.Get(key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/lookup-get-ttl", func(b *testing.B) {
			for b.Loop() {
				if _, err := st.Get(key); err != nil {
					b.Fatal(err)
				}
				if _, err := st.TTL(key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
