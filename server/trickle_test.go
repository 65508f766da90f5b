package server_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/simdr-go/simdr/server"
)

// A client trickling a large PUT (one byte every 200 ms, past the 1 MiB
// that is read in memory) holds no lock: a 1-byte PUT beside it completes
// while the trickle is still going, over HTTP/1.1 and h2c.
func TestTrickleHoldsNoLock(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2c=%v", h2c), func(t *testing.T) {
			st := openStore(t)
			base, _ := start(t, st, server.Config{})
			tr := &http.Transport{}
			if h2c {
				tr.Protocols = new(http.Protocols)
				tr.Protocols.SetUnencryptedHTTP2(true)
			}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}

			pr, pw := io.Pipe()
			trickled := make(chan int, 1)
			go func() {
				req, _ := http.NewRequest("PUT", base+"/v1/keys/trickle", pr)
				req.ContentLength = 4 << 20 // declared: over the 1 MiB read in memory
				r, err := hc.Do(req)
				if err != nil {
					trickled <- 0
					return
				}
				r.Body.Close()
				trickled <- r.StatusCode
			}()
			stopTrickle := make(chan struct{})
			go func() {
				pw.Write(make([]byte, 1<<20+1))
				for {
					select {
					case <-stopTrickle:
						pw.CloseWithError(io.ErrUnexpectedEOF)
						return
					case <-time.After(200 * time.Millisecond):
						if _, err := pw.Write([]byte{'t'}); err != nil {
							return
						}
					}
				}
			}()
			defer close(stopTrickle)
			waitInFlight(t, base, 1)
			time.Sleep(300 * time.Millisecond) // the trickle is past the memory buffer

			done := make(chan int, 1)
			go func() {
				r := call(t, hc, "PUT", base+"/v1/keys/small", strings.NewReader("x"))
				done <- r.code
			}()
			select {
			case code := <-done:
				if code != 204 {
					t.Fatalf("1-byte PUT: %d", code)
				}
			case code := <-trickled:
				t.Fatalf("the trickling PUT ended first (%d)", code)
			case <-time.After(20 * time.Second):
				t.Fatal("a 1-byte PUT waited behind a trickling upload")
			}
			select {
			case code := <-trickled:
				t.Fatalf("the trickling PUT ended (%d) before it was cut", code)
			default:
			}
			if !st.Has([]byte("small")) || st.Has([]byte("trickle")) {
				t.Fatal("wrong store contents")
			}
		})
	}
}
