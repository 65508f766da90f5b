package client_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/server"
)

// serveProxied serves a store (see serve) and returns its URL and a
// reverse proxy to it, for test nodes that pass some requests on and fail
// others.
func serveProxied(t *testing.T) (*simdr.Store, string, *httputil.ReverseProxy) {
	t.Helper()
	remote, base := serve(t, server.Config{})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return remote, base, httputil.NewSingleHostReverseProxy(u)
}

// downURL returns the URL of a server that was closed: nothing listens.
func downURL() string {
	down := httptest.NewServer(http.NotFoundHandler())
	defer down.Close()
	return down.URL
}

// answer503 answers as a node that is unavailable for the reason code
// ("no_leader", "outcome_unknown", ...) says.
func answer503(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, `{"error":"test","code":"`+code+`"}`)
}
