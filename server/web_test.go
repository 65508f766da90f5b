package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/simdr-go/simdr/server"
)

// A web page cannot use the server: its "simple" cross-site requests
// (text/plain, forms, no type) are refused for JSON bodies, any request
// carrying an Origin not allowed is refused, and on loopback a Host that
// is not loopback (DNS rebinding) is refused.
func TestWebPagesRefused(t *testing.T) {
	st := openStore(t)
	srv := httptest.NewServer(server.Handler(st, server.Config{}))
	defer srv.Close()
	batch := `{"ops":[{"op":"put","key":"pwned","value":"1"}]}`
	for _, c := range []struct {
		name   string
		method string
		path   string
		body   string
		hdr    []string
		status int
		code   string
	}{
		{"text/plain batch", "POST", "/v1/batch", batch, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"form batch", "POST", "/v1/batch", batch, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"untyped batch", "POST", "/v1/batch", batch, nil, 415, "unsupported_media_type"},
		{"text/plain get-many", "POST", "/v1/get-many", `{"keys":["a"]}`, []string{"Content-Type", "text/plain;charset=UTF-8"}, 415, "unsupported_media_type"},
		{"text/plain rename", "POST", "/v1/rename", `{"from":"a","to":"b"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"binary rename", "POST", "/v1/rename", `{"from":"a","to":"b"}`, []string{"Content-Type", server.BinaryContentType}, 415, "unsupported_media_type"},
		{"cross-site JSON batch", "POST", "/v1/batch", batch, []string{"Content-Type", "application/json", "Origin", "https://evil.example"}, 403, "forbidden_origin"},
		{"cross-site PUT", "PUT", "/v1/keys/pwned", "1", []string{"Origin", "https://evil.example"}, 403, "forbidden_origin"},
		{"cross-site GET", "GET", "/v1/keys/a", "", []string{"Origin", "null"}, 403, "forbidden_origin"},
		{"cross-site preflight", "OPTIONS", "/v1/keys/a", "", []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "PUT"}, 403, "forbidden_origin"},
		{"DNS rebinding GET", "GET", "/v1/keys/a", "", []string{"Host", "evil.example"}, 403, "forbidden_host"},
		{"DNS rebinding with port", "PUT", "/v1/keys/pwned", "1", []string{"Host", "evil.example:7070"}, 403, "forbidden_host"},
		{"DNS rebinding healthz", "GET", "/healthz", "", []string{"Host", "rebind.example"}, 403, "forbidden_host"},
		{"loopback name", "GET", "/v1/keys/a", "", []string{"Host", "localhost:7070"}, 200, ""},
		{"loopback v4", "GET", "/v1/keys/a", "", []string{"Host", "127.0.0.1"}, 200, ""},
		{"loopback v6", "GET", "/v1/keys/a", "", []string{"Host", "[::1]:7070"}, 200, ""},
		{"JSON batch", "POST", "/v1/batch", `{"ops":[]}`, []string{"Content-Type", "application/json; charset=utf-8"}, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			st.Put([]byte("a"), []byte("v"))
			req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			for i := 0; i+1 < len(c.hdr); i += 2 {
				if c.hdr[i] == "Host" {
					req.Host = c.hdr[i+1]
				} else {
					req.Header.Set(c.hdr[i], c.hdr[i+1])
				}
			}
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			rr := resp{r.StatusCode, r.Header, b}
			wantStatus(t, rr, c.status)
			if c.code != "" {
				if code := errCode(t, rr); code != c.code {
					t.Fatalf("code %q, want %q", code, c.code)
				}
			}
			if st.Has([]byte("pwned")) {
				t.Fatal("the refused request was applied")
			}
		})
	}
}

// Allowed origins get CORS headers and preflight answers; AllowHosts adds
// names; a server not on loopback does not check Host.
func TestAllowOriginAndHost(t *testing.T) {
	st := openStore(t)
	st.Put([]byte("a"), []byte("v"))
	srv := httptest.NewServer(server.Handler(st, server.Config{
		AllowOrigins: []string{"https://app.example"}, AllowHosts: []string{"simdr.internal"}}))
	defer srv.Close()
	do := func(method, path, host string, hdr ...string) *http.Response {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if host != "" {
			req.Host = host
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r
	}
	r := do("GET", "/v1/keys/a", "", "Origin", "https://app.example")
	if r.StatusCode != 200 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("allowed origin: %d %v", r.StatusCode, r.Header)
	}
	r = do("OPTIONS", "/v1/keys/a", "", "Origin", "https://app.example", "Access-Control-Request-Method", "PUT")
	if r.StatusCode != 204 || !strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), "PUT") ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", r.StatusCode, r.Header)
	}
	if r := do("GET", "/v1/keys/a", "", "Origin", "https://other.example"); r.StatusCode != 403 {
		t.Fatalf("other origin: %d", r.StatusCode)
	}
	if r := do("GET", "/v1/keys/a", "simdr.internal:7070"); r.StatusCode != 200 {
		t.Fatalf("allowed host: %d", r.StatusCode)
	}
	if r := do("GET", "/v1/keys/a", "other.internal"); r.StatusCode != 403 {
		t.Fatalf("other host: %d", r.StatusCode)
	}

	open := httptest.NewServer(server.Handler(st, server.Config{Addr: "0.0.0.0:7070", Insecure: true}))
	defer open.Close()
	req, _ := http.NewRequest("GET", open.URL+"/v1/keys/a", nil)
	req.Host = "simdr.example.com"
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 200 {
		t.Fatalf("Host on a non-loopback server: %v %v", r, err)
	}
}
