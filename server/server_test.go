package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
	"github.com/simdr-go/simdr/server"
)

// openStore opens a fresh store, closed at the end of the test (after the
// servers started later, whose cleanups run first).
func openStore(t *testing.T) *simdr.Store {
	t.Helper()
	st, _ := openStoreDir(t)
	return st
}

// openStoreDir is openStore, also returning the store file's directory.
func openStoreDir(t *testing.T) (*simdr.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := simdr.Open(filepath.Join(dir, "s.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, dir
}

// start runs the real server on a loopback port; stop cancels it and returns
// what Serve returned.
func start(t *testing.T, st *simdr.Store, cfg server.Config) (base string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- server.Serve(ctx, ln, st, cfg) }()
	var once sync.Once
	var serr error
	stop = func() error {
		once.Do(func() { cancel(); serr = <-errc })
		return serr
	}
	t.Cleanup(func() { stop() })
	return "http://" + ln.Addr().String(), stop
}

type resp struct {
	code   int
	header http.Header
	body   []byte
}

// call sends one raw request.
func call(t *testing.T, hc *http.Client, method, url string, body io.Reader, hdr ...string) resp {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	r, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{r.StatusCode, r.Header, b}
}

// jsonCT is the header JSON request bodies need.
var jsonCT = []string{"Content-Type", "application/json"}

// errCode decodes a JSON error body, failing the test if it is not one.
func errCode(t *testing.T, r resp) string {
	t.Helper()
	var e struct{ Error, Code string }
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" || e.Code == "" {
		t.Fatalf("status %d: not a JSON error body: %q", r.code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q", ct)
	}
	return e.Code
}

func wantStatus(t *testing.T, r resp, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body %q", r.code, code, r.body)
	}
}

func TestKeysRaw(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	u := base + "/v1/keys/greeting"

	wantStatus(t, call(t, nil, "GET", u, nil), 404)
	if c := errCode(t, call(t, nil, "GET", u, nil)); c != "not_found" {
		t.Fatalf("code %q", c)
	}
	wantStatus(t, call(t, nil, "HEAD", u, nil), 404)
	wantStatus(t, call(t, nil, "PUT", u, strings.NewReader("hello, world")), 204)

	r := call(t, nil, "GET", u, nil)
	wantStatus(t, r, 200)
	if string(r.body) != "hello, world" || r.header.Get("Content-Type") != "application/octet-stream" ||
		r.header.Get("Content-Length") != "12" || r.header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("GET: %q %v", r.body, r.header)
	}
	etag := r.header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}

	r = call(t, nil, "HEAD", u, nil)
	wantStatus(t, r, 200)
	if len(r.body) != 0 || r.header.Get("Content-Length") != "12" {
		t.Fatalf("HEAD: %q %v", r.body, r.header)
	}

	r = call(t, nil, "GET", u, nil, "Range", "bytes=7-11")
	wantStatus(t, r, 206)
	if string(r.body) != "world" || r.header.Get("Content-Range") != "bytes 7-11/12" {
		t.Fatalf("Range: %q %v", r.body, r.header)
	}
	r = call(t, nil, "GET", u, nil, "Range", "bytes=-5")
	if r.code != 206 || string(r.body) != "world" {
		t.Fatalf("suffix Range: %d %q", r.code, r.body)
	}
	r = call(t, nil, "GET", u, nil, "Range", "bytes=50-60")
	wantStatus(t, r, 416)
	if c := errCode(t, r); c != "bad_range" || r.header.Get("Content-Range") != "bytes */12" {
		t.Fatalf("416: code %q, %v", c, r.header)
	}
	wantStatus(t, call(t, nil, "GET", u, nil, "If-None-Match", etag), 304)

	// Overwrite: a new ETag, If-Range with the old one gives the whole value.
	wantStatus(t, call(t, nil, "PUT", u, strings.NewReader("HELLO, WORLD")), 204)
	r = call(t, nil, "GET", u, nil, "Range", "bytes=0-4", "If-Range", etag)
	if r.code != 200 || string(r.body) != "HELLO, WORLD" {
		t.Fatalf("If-Range with a stale ETag: %d %q", r.code, r.body)
	}

	// Invalid values: empty, and the single byte 0x00.
	for _, v := range []string{"", "\x00"} {
		r = call(t, nil, "PUT", base+"/v1/keys/bad", strings.NewReader(v))
		wantStatus(t, r, 400)
		if c := errCode(t, r); c != "invalid_value" {
			t.Fatalf("code %q", c)
		}
	}

	wantStatus(t, call(t, nil, "DELETE", u, nil), 204)
	wantStatus(t, call(t, nil, "DELETE", u, nil), 204) // deleting nothing is fine
	wantStatus(t, call(t, nil, "GET", u, nil), 404)

	r = call(t, nil, "POST", u, nil)
	wantStatus(t, r, 405)
	if r.header.Get("Allow") != "GET, HEAD, PUT, DELETE" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	errCode(t, r)
	r = call(t, nil, "GET", base+"/v1/batch", nil)
	wantStatus(t, r, 405)
	if r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	if c := errCode(t, call(t, nil, "GET", base+"/v2/nothing", nil)); c != "no_route" {
		t.Fatalf("code %q", c)
	}
	// An unescaped "/" would make two segments.
	wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/a/b", strings.NewReader("x")), 400)
}

func TestKeyEncoding(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	keys := []string{"a/b", "/", "//x//", ".", "..", "../..", "", "%", "%2F", "a b+c", "?q=1#frag", "é日本",
		"\x00\x01\xff/\xfe", strings.Repeat("k", 2000)}
	for i, k := range keys {
		seg := url.PathEscape(k)
		if seg == "." || seg == ".." {
			seg = strings.Repeat("%2E", len(seg))
		}
		val := fmt.Sprintf("value %d", i)
		wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/"+seg, strings.NewReader(val)), 204)
		e, err := st.Get([]byte(k))
		if err != nil || string(e.Bytes()) != val {
			t.Fatalf("key %q (sent as %q): store has %v %q", k, seg, err, e.Bytes())
		}
		if r := call(t, nil, "GET", base+"/v1/keys/"+seg, nil); r.code != 200 || string(r.body) != val {
			t.Fatalf("key %q: GET %d %q", k, r.code, r.body)
		}
	}
	// Encodings of the same bytes are the same key.
	if r := call(t, nil, "GET", base+"/v1/keys/%61%2f%62", nil); string(r.body) != "value 0" {
		t.Fatalf("%%61%%2f%%62: %d %q", r.code, r.body)
	}
	// A malformed escape is a bad request.
	if got := rawCall(t, base, "GET /v1/keys/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").code; got != 400 {
		t.Fatalf("malformed escape: status %d", got)
	}
}

func TestAuth(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{Token: "s3cret-token"})
	u := base + "/v1/keys/k"
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "Bearer s3cret-token-"},
		{"Authorization", "Basic s3cret-token"}, {"Authorization", "s3cret-token"}} {
		r := call(t, nil, "PUT", u, strings.NewReader("v"), hdr...)
		wantStatus(t, r, 401)
		if c := errCode(t, r); c != "unauthorized" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("%v: code %q, %v", hdr, c, r.header)
		}
	}
	if st.Has([]byte("k")) {
		t.Fatal("an unauthorized PUT stored its value")
	}
	wantStatus(t, call(t, nil, "PUT", u, strings.NewReader("v"), "Authorization", "Bearer s3cret-token"), 204)
	wantStatus(t, call(t, nil, "GET", u, nil, "Authorization", "bearer s3cret-token"), 200)
	wantStatus(t, call(t, nil, "GET", base+"/metrics", nil), 401)
	wantStatus(t, call(t, nil, "GET", base+"/v1/stats", nil), 401)
	wantStatus(t, call(t, nil, "GET", base+"/nowhere", nil), 401) // no route discovery without a token
	wantStatus(t, call(t, nil, "GET", base+"/healthz", nil), 200) // open, for probes
}

func TestInsecureAddresses(t *testing.T) {
	for _, c := range []struct {
		addr string
		cfg  server.Config
		ok   bool
	}{
		{"127.0.0.1:7070", server.Config{}, true},
		{"[::1]:7070", server.Config{}, true},
		{"localhost:7070", server.Config{}, true},
		{"127.8.9.10:1", server.Config{}, true},
		{":7070", server.Config{}, false},
		{"0.0.0.0:7070", server.Config{}, false},
		{"[::]:7070", server.Config{}, false},
		{"192.168.1.5:7070", server.Config{}, false},
		{"example.com:7070", server.Config{}, false},
		{"0.0.0.0:7070", server.Config{Token: "t"}, true},
		{"0.0.0.0:7070", server.Config{Insecure: true}, true},
	} {
		err := server.CheckAddr(c.addr, c.cfg)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, server.ErrInsecure)) {
			t.Errorf("CheckAddr(%q, token %q insecure %v) = %v", c.addr, c.cfg.Token, c.cfg.Insecure, err)
		}
	}
	st := openStore(t)
	// Refused before binding anything.
	err := server.ListenAndServe(context.Background(), st, server.Config{Addr: "0.0.0.0:0"})
	if !errors.Is(err, server.ErrInsecure) {
		t.Fatalf("ListenAndServe on 0.0.0.0 without a token: %v", err)
	}
	// The default-address path works and stops with its context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := server.ListenAndServe(ctx, st, server.Config{Addr: "127.0.0.1:0"}); err != nil {
		t.Fatalf("ListenAndServe on loopback: %v", err)
	}
}

// hideSize hides a reader's size so the request is sent chunked.
type hideSize struct{ io.Reader }

func TestTooLarge(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{MaxValueBytes: 1_500_000, MaxBodyBytes: 4096})
	u := base + "/v1/keys/big"
	wantStatus(t, call(t, nil, "PUT", u, bytes.NewReader(make([]byte, 10))), 204)
	size := st.Size()
	for _, body := range []io.Reader{
		bytes.NewReader(bytes.Repeat([]byte{1}, 1_500_001)),           // Content-Length over: refused at once
		hideSize{bytes.NewReader(bytes.Repeat([]byte{2}, 1_500_001))}, // chunked, through PutReader
		hideSize{bytes.NewReader(bytes.Repeat([]byte{3}, 3_000_000))},
	} {
		r := call(t, nil, "PUT", u, body)
		wantStatus(t, r, 413)
		if c := errCode(t, r); c != "too_large" {
			t.Fatalf("code %q", c)
		}
	}
	if e, err := st.Get([]byte("big")); err != nil || e.Len() != 10 || st.Size() != size {
		t.Fatalf("a refused PUT changed the store: %v len %d size %d→%d", err, e.Len(), size, st.Size())
	}
	wantStatus(t, call(t, nil, "PUT", u, hideSize{bytes.NewReader(bytes.Repeat([]byte{4}, 1_500_000))}), 204)
	if e, _ := st.Get([]byte("big")); e.Len() != 1_500_000 {
		t.Fatalf("len %d", e.Len())
	}

	big := `{"ops":[{"op":"put","key":"k","value":"` + strings.Repeat("x", 5000) + `"}]}`
	r := call(t, nil, "POST", base+"/v1/batch", strings.NewReader(big), jsonCT...)
	wantStatus(t, r, 413)
	r = call(t, nil, "POST", base+"/v1/batch", hideSize{strings.NewReader(big)}, jsonCT...)
	wantStatus(t, r, 413)
	if st.Has([]byte("k")) {
		t.Fatal("a refused batch was applied")
	}
}

// TestOverBudget413: a request that alone needs more memory than the
// whole --max-inflight-bytes can never be served: 413 too_large, not 503
// busy with Retry-After (which a client would retry for ever).
func TestOverBudget413(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{MaxBodyBytes: 8 << 20, MaxInflightBytes: 2 << 20})
	var keys, ops []byte
	for len(keys) < 3<<20 {
		keys = append(keys, 1, 0, 0, 0, 'k')
	}
	for len(ops) < 1<<20 { // 1 MiB of body, which decodes to more than 2 MiB
		ops = append(ops, 'P', 1, 0, 0, 0, 'k', 1, 0, 0, 0, 0, 0, 0, 0, 'v')
	}
	for _, c := range []struct {
		path string
		body []byte
	}{
		{"/v1/get-many", keys},
		{"/v1/batch", ops},
	} {
		for _, body := range []io.Reader{bytes.NewReader(c.body), hideSize{bytes.NewReader(c.body)}} {
			r := call(t, nil, "POST", base+c.path, body, "Content-Type", server.BinaryContentType)
			if r.code != 413 || errCode(t, r) != "too_large" || r.header.Get("Retry-After") != "" {
				t.Fatalf("POST %s of %d bytes, over the budget alone: %d %s (Retry-After %q)", c.path, len(c.body), r.code, r.body, r.header.Get("Retry-After"))
			}
		}
	}
	if st.Has([]byte("k")) {
		t.Fatal("a refused batch was applied")
	}
	wantStatus(t, call(t, nil, "POST", base+"/v1/batch", bytes.NewReader(ops[:15*100]), "Content-Type", server.BinaryContentType), 200)
}

func TestBatch(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	st.Put([]byte("old"), []byte("still here"))

	// JSON: text and base64 keys and values.
	body := `{"ops":[
		{"op":"put","key":"a","value":"1"},
		{"op":"put","key_b64":"` + base64.StdEncoding.EncodeToString([]byte{0, 1, 2}) + `","value_b64":"` + base64.StdEncoding.EncodeToString([]byte{9, 9}) + `"},
		{"op":"put","key":"b","value":"2"},
		{"op":"delete","key":"b"}]}`
	r := call(t, nil, "POST", base+"/v1/batch", strings.NewReader(body), "Content-Type", "application/json")
	wantStatus(t, r, 200)
	if strings.TrimSpace(string(r.body)) != `{"ops":4}` {
		t.Fatalf("body %q", r.body)
	}
	if e, _ := st.Get([]byte{0, 1, 2}); !bytes.Equal(e.Bytes(), []byte{9, 9}) || !st.Has([]byte("a")) || st.Has([]byte("b")) {
		t.Fatal("JSON batch not applied as sent")
	}

	// Binary.
	var bin []byte
	put := func(k, v string) {
		bin = append(bin, 'P')
		bin = binary.LittleEndian.AppendUint32(bin, uint32(len(k)))
		bin = append(bin, k...)
		bin = binary.LittleEndian.AppendUint64(bin, uint64(len(v)))
		bin = append(bin, v...)
	}
	del := func(k string) {
		bin = append(bin, 'D')
		bin = binary.LittleEndian.AppendUint32(bin, uint32(len(k)))
		bin = append(bin, k...)
	}
	put("c", "3")
	put("d", strings.Repeat("4", 100000))
	del("a")
	r = call(t, nil, "POST", base+"/v1/batch", bytes.NewReader(bin), "Content-Type", server.BinaryContentType)
	wantStatus(t, r, 200)
	if e, _ := st.Get([]byte("d")); e.Len() != 100000 || st.Has([]byte("a")) || !st.Has([]byte("c")) {
		t.Fatal("binary batch not applied as sent")
	}

	// Atomicity: one invalid op, and nothing is applied.
	size, n := st.Size(), st.Len()
	bad := []struct{ ct, body string }{
		{"", `{"ops":[{"op":"put","key":"x1","value":"1"},{"op":"delete","key":"old"},{"op":"put","key":"x2","value":""}]}`},
		{"", `{"ops":[{"op":"put","key":"x1","value":"1"},{"op":"delete","key":"old"},{"op":"frob","key":"x2"}]}`},
		{"", `{"ops":[{"op":"put","key":"x1","value":"1"},{"op":"delete","key":"old"},{"op":"put","value":"2"}]}`},
		{"", `{"ops":[{"op":"put","key":"x1","value":"1"},{"op":"delete","key":"old"},{"op":"put","key":"x2","key_b64":"eA==","value":"2"}]}`},
		{"", `{"ops":[{"op":"put","key":"x1","value":"1"},{"op":"delete","key":"old"},{"op":"put","key":"x2","value_b64":"!!"}]}`},
		{"", `{"ops":[{"op":"put","key":"x1","value":"1"},{"op":"delete","key":"old","value":"v"}]}`},
		{"", `{"ops":[{"op":"put","key":"x1","value":"1"},{"op":"delete","key":"old"}],"extra":1}`},
		{"", `{"ops":[{"op":"put","key":"x1","value":"1"},{"op":"delete","key":"old"}]} {}`},
		{"", `{"ops":[{"op":"put","key":"x1","value":"1"},{"op":"delete","key":"old"}`},
		{server.BinaryContentType, string(bin[:len(bin)-1])},                             // truncated
		{server.BinaryContentType, string(append(bin[:4:4], "\x00"...))},                 // truncated length
		{server.BinaryContentType, string(append(bin, 'X'))},                             // unknown op
		{server.BinaryContentType, "P\x01\x00\x00\x00k\xff\xff\xff\xff\xff\xff\xff\x7f"}, // absurd length
	}
	for i, b := range bad {
		ct := b.ct
		if ct == "" {
			ct = "application/json"
		}
		r := call(t, nil, "POST", base+"/v1/batch", strings.NewReader(b.body), "Content-Type", ct)
		wantStatus(t, r, 400)
		if c := errCode(t, r); i == 0 && c != "invalid_value" {
			t.Fatalf("code %q", c)
		}
		if st.Size() != size || st.Len() != n || st.Has([]byte("x1")) || !st.Has([]byte("old")) {
			t.Fatalf("bad batch %d was partly applied", i)
		}
	}
	// An invalid value in a binary batch.
	bin = bin[:0]
	put("x1", "1")
	del("old")
	put("x2", "\x00")
	r = call(t, nil, "POST", base+"/v1/batch", bytes.NewReader(bin), "Content-Type", server.BinaryContentType)
	wantStatus(t, r, 400)
	if st.Size() != size || st.Has([]byte("x1")) || !st.Has([]byte("old")) {
		t.Fatal("binary batch with an invalid value was partly applied")
	}
	// An empty batch does nothing.
	wantStatus(t, call(t, nil, "POST", base+"/v1/batch", strings.NewReader(`{"ops":[]}`), jsonCT...), 200)
	wantStatus(t, call(t, nil, "POST", base+"/v1/batch", nil, "Content-Type", server.BinaryContentType), 200)
}

func TestGetManyRenameStats(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	st.Put([]byte("a"), []byte("alpha"))
	st.Put([]byte{0xff, 0}, []byte{1, 2, 3})

	r := call(t, nil, "POST", base+"/v1/get-many", strings.NewReader(`{"keys":["a","missing","a"]}`), jsonCT...)
	wantStatus(t, r, 200)
	var out struct{ Values []*[]byte }
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("%v: %q", err, r.body)
	}
	if len(out.Values) != 3 || string(*out.Values[0]) != "alpha" || out.Values[1] != nil || string(*out.Values[2]) != "alpha" {
		t.Fatalf("get-many JSON: %q", r.body)
	}
	r = call(t, nil, "POST", base+"/v1/get-many", strings.NewReader(`{"keys_b64":["/wA="]}`), jsonCT...)
	if err := json.Unmarshal(r.body, &out); err != nil || len(out.Values) != 1 || !bytes.Equal(*out.Values[0], []byte{1, 2, 3}) {
		t.Fatalf("get-many keys_b64: %q", r.body)
	}
	wantStatus(t, call(t, nil, "POST", base+"/v1/get-many", strings.NewReader(`{"keys":["a"],"keys_b64":["YQ=="]}`), jsonCT...), 400)
	wantStatus(t, call(t, nil, "POST", base+"/v1/get-many", strings.NewReader(`{"keys":[1]}`), jsonCT...), 400)

	var bin []byte
	for _, k := range []string{"missing", "a"} {
		bin = binary.LittleEndian.AppendUint32(bin, uint32(len(k)))
		bin = append(bin, k...)
	}
	r = call(t, nil, "POST", base+"/v1/get-many", bytes.NewReader(bin), "Content-Type", server.BinaryContentType)
	wantStatus(t, r, 200)
	want := append([]byte{0, 1}, binary.LittleEndian.AppendUint64(nil, 5)...)
	want = append(want, "alpha"...)
	if !bytes.Equal(r.body, want) || r.header.Get("Content-Type") != server.BinaryContentType {
		t.Fatalf("get-many binary: %q", r.body)
	}
	wantStatus(t, call(t, nil, "POST", base+"/v1/get-many", bytes.NewReader(bin[:6]), "Content-Type", server.BinaryContentType), 400)

	// Rename.
	wantStatus(t, call(t, nil, "POST", base+"/v1/rename", strings.NewReader(`{"from":"a","to":"b"}`), jsonCT...), 204)
	if st.Has([]byte("a")) || !st.Has([]byte("b")) {
		t.Fatal("rename not done")
	}
	r = call(t, nil, "POST", base+"/v1/rename", strings.NewReader(`{"from":"a","to":"b"}`), jsonCT...)
	wantStatus(t, r, 404)
	if c := errCode(t, r); c != "not_found" {
		t.Fatalf("code %q", c)
	}
	r = call(t, nil, "POST", base+"/v1/rename", strings.NewReader(`{"from":"b","to_b64":"Yg=="}`), jsonCT...)
	wantStatus(t, r, 400)
	if c := errCode(t, r); c != "same_key" {
		t.Fatalf("code %q", c)
	}
	wantStatus(t, call(t, nil, "POST", base+"/v1/rename", strings.NewReader(`{"from":"b"}`), jsonCT...), 400)

	// Len, stats, sync, compact, healthz.
	r = call(t, nil, "GET", base+"/v1/len", nil)
	var ln struct{ Len, Size int64 }
	if json.Unmarshal(r.body, &ln) != nil || ln.Len != 2 || ln.Size != st.Size() {
		t.Fatalf("len: %q", r.body)
	}
	r = call(t, nil, "GET", base+"/v1/stats", nil)
	var sj simdr.Stats
	if err := json.Unmarshal(r.body, &sj); err != nil || sj != st.Stats() || !bytes.Contains(r.body, []byte(`"live_keys":2`)) {
		t.Fatalf("stats %q, store %+v", r.body, st.Stats())
	}
	wantStatus(t, call(t, nil, "POST", base+"/v1/sync", nil), 204)
	before := st.Size()
	r = call(t, nil, "POST", base+"/v1/compact", nil)
	wantStatus(t, r, 200)
	if st.Size() >= before {
		t.Fatalf("compact: %d → %d (%q)", before, st.Size(), r.body)
	}
	if e, _ := st.Get([]byte("b")); string(e.Bytes()) != "alpha" {
		t.Fatal("compact lost a value")
	}
	r = call(t, nil, "GET", base+"/healthz", nil)
	if r.code != 200 || !strings.Contains(string(r.body), `"ok"`) {
		t.Fatalf("healthz %d %q", r.code, r.body)
	}
}

func TestH2C(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{Token: "tok"})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true) // prior knowledge: HTTP/2 from the first byte, no upgrade
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}

	req, _ := http.NewRequest("PUT", base+"/v1/keys/h2%2Fkey", strings.NewReader("over h2c"))
	req.Header.Set("Authorization", "Bearer tok")
	r, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.ProtoMajor != 2 || r.StatusCode != 204 {
		t.Fatalf("PUT over h2c: %s %d", r.Proto, r.StatusCode)
	}
	if e, _ := st.Get([]byte("h2/key")); string(e.Bytes()) != "over h2c" {
		t.Fatal("h2c PUT not stored under the decoded key")
	}
	rr := call(t, hc, "GET", base+"/v1/keys/h2%2Fkey", nil, "Authorization", "Bearer tok", "Range", "bytes=5-")
	if rr.code != 206 || string(rr.body) != "h2c" {
		t.Fatalf("Range over h2c: %d %q", rr.code, rr.body)
	}
	wantStatus(t, call(t, hc, "GET", base+"/v1/keys/h2%2Fkey", nil), 401)

	// The client package over the same transport.
	c, err := client.New(base, &client.Options{Token: "tok", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var b client.Batch
	for i := range 100 {
		b.Put([]byte("k"+strconv.Itoa(i)), []byte("v"+strconv.Itoa(i)))
	}
	if err := c.Apply(ctx, &b); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 100 { // concurrent streams on one connection
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Get(ctx, []byte("k"+strconv.Itoa(i)))
			if err != nil || string(v) != "v"+strconv.Itoa(i) {
				t.Errorf("h2c Get k%d: %q %v", i, v, err)
			}
		}()
	}
	wg.Wait()
}

func TestMetrics(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	for range 3 {
		call(t, nil, "PUT", base+"/v1/keys/m", strings.NewReader("v"))
	}
	call(t, nil, "GET", base+"/v1/keys/nope", nil)
	call(t, nil, "FROB", base+"/v1/keys/m", nil)
	r := call(t, nil, "GET", base+"/metrics", nil)
	wantStatus(t, r, 200)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
	}
	vals := map[string]string{}
	typed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			typed[strings.Fields(name)[0]] = true
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad line %q", line)
		}
		if _, err := strconv.ParseFloat(line[i+1:], 64); err != nil {
			t.Fatalf("bad value in %q", line)
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			if !strings.HasSuffix(name, "}") {
				t.Fatalf("bad labels in %q", line)
			}
			name = name[:j]
		}
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !typed[name] && !typed[base] {
			t.Fatalf("sample before its # TYPE: %q", line)
		}
		vals[line[:i]] = line[i+1:]
	}
	for k, v := range map[string]string{
		`simdr_http_requests_total{code="204",method="PUT",route="/v1/keys/{key}"}`:                 "3",
		`simdr_http_requests_total{code="404",method="GET",route="/v1/keys/{key}"}`:                 "1",
		`simdr_http_requests_total{code="405",method="OTHER",route="/v1/keys/{key}"}`:               "1",
		`simdr_http_request_duration_seconds_count{method="PUT",route="/v1/keys/{key}"}`:            "3",
		`simdr_http_request_duration_seconds_bucket{method="PUT",route="/v1/keys/{key}",le="+Inf"}`: "3",
		`simdr_store_live_keys`:                 "1",
		`simdr_store_up`:                        "1",
		`simdr_store_writes_total{op="put"}`:    "3",
		`simdr_store_written_value_bytes_total`: "3",
		`simdr_store_file_bytes`:                strconv.FormatInt(st.Size(), 10),
		`simdr_http_requests_in_flight`:         "1", // this scrape
	} {
		if vals[k] != v {
			t.Errorf("%s = %q, want %q", k, vals[k], v)
		}
	}
	// The Go runtime and process collectors; no metric from Stats, which
	// visits every key.
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "process_open_fds"} {
		if _, ok := vals[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	if strings.Contains(string(r.body), "simdr_store_reclaimable_bytes") {
		t.Error("a Stats gauge in /metrics")
	}
}

func TestClosedStore503(t *testing.T) {
	st, err := simdr.Open(filepath.Join(t.TempDir(), "s.simdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	base, stop := start(t, st, server.Config{})
	wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/k", strings.NewReader("v")), 204)
	st.Close() // no request in flight
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/keys/k", ""}, {"PUT", "/v1/keys/k", "v"}, {"DELETE", "/v1/keys/k", ""},
		{"GET", "/healthz", ""}, {"GET", "/v1/stats", ""}, {"GET", "/v1/len", ""},
		{"POST", "/v1/batch", `{"ops":[{"op":"put","key":"a","value":"b"}]}`},
		{"POST", "/v1/get-many", `{"keys":["k"]}`}, {"POST", "/v1/sync", ""},
	} {
		r := call(t, nil, c.method, base+c.path, strings.NewReader(c.body), jsonCT...)
		wantStatus(t, r, 503)
		if code := errCode(t, r); code != "closed" {
			t.Fatalf("%s %s: code %q", c.method, c.path, code)
		}
	}
	r := call(t, nil, "GET", base+"/metrics", nil)
	if !strings.Contains(string(r.body), "\nsimdr_store_up 0\n") {
		t.Fatal("metrics: store_up not 0")
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestShutdownFinishesInFlight cancels the server while a PUT's body is still
// arriving: the server stops accepting, the PUT completes, then Serve returns.
func TestShutdownFinishesInFlight(t *testing.T) {
	for _, c := range []struct {
		size int
		h2c  bool
	}{{1000, false}, {3 << 20, false}, {1000, true}, {3 << 20, true}} { // read whole, then through PutReader
		size := c.size
		t.Run(fmt.Sprintf("%d,h2c=%v", c.size, c.h2c), func(t *testing.T) {
			st := openStore(t)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			base := "http://" + ln.Addr().String()
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- server.Serve(ctx, ln, st, server.Config{}) }()

			value := bytes.Repeat([]byte("z"), size)
			pr, pw := io.Pipe()
			tr := &http.Transport{}
			if c.h2c {
				tr.Protocols = new(http.Protocols)
				tr.Protocols.SetUnencryptedHTTP2(true)
			}
			defer tr.CloseIdleConnections()
			got := make(chan int, 1)
			go func() {
				req, _ := http.NewRequest("PUT", base+"/v1/keys/slow", pr)
				r, err := (&http.Client{Transport: tr}).Do(req)
				if err != nil {
					t.Errorf("PUT: %v", err)
					got <- 0
					return
				}
				r.Body.Close()
				if c.h2c && r.ProtoMajor != 2 {
					t.Errorf("PUT over %s", r.Proto)
				}
				got <- r.StatusCode
			}()
			half := size / 2
			if _, err := pw.Write(value[:half]); err != nil {
				t.Fatal(err)
			}
			waitInFlight(t, base, 1)
			cancel()
			// Wait until the listener is closed: shutdown has begun.
			for {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					break
				}
				c.Close()
				time.Sleep(5 * time.Millisecond)
			}
			select {
			case err := <-errc:
				t.Fatalf("Serve returned with a request in flight: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			pw.Write(value[half:])
			pw.Close()
			if code := <-got; code != 204 {
				t.Fatalf("in-flight PUT: status %d", code)
			}
			if err := <-errc; err != nil {
				t.Fatalf("Serve: %v", err)
			}
			if e, err := st.Get([]byte("slow")); err != nil || !bytes.Equal(e.Bytes(), value) {
				t.Fatalf("in-flight PUT not stored: %v", err)
			}
		})
	}
}

// TestStall: a large PUT whose client stops sending is cut after
// StallTimeout, releasing the store's write lock; nothing is stored.
func TestStall(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2c=%v", h2c), func(t *testing.T) {
			st := openStore(t)
			base, _ := start(t, st, server.Config{StallTimeout: 300 * time.Millisecond})
			tr := &http.Transport{}
			if h2c {
				tr.Protocols = new(http.Protocols)
				tr.Protocols.SetUnencryptedHTTP2(true)
			}
			defer tr.CloseIdleConnections()
			pr, pw := io.Pipe()
			defer pw.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				req, _ := http.NewRequest("PUT", base+"/v1/keys/stalled", pr)
				r, err := (&http.Client{Transport: tr}).Do(req)
				if err == nil {
					r.Body.Close()
					if r.StatusCode != 400 {
						t.Errorf("stalled PUT: status %d", r.StatusCode)
					}
				}
			}()
			pw.Write(make([]byte, 2<<20)) // past the spool buffer: PutReader holds the write lock
			// The body now sends nothing: the server must give up by itself.
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("a stalled PUT was not cut by StallTimeout")
			}
			waitInFlight(t, base, 0)
			// The write lock is free again.
			if err := st.Put([]byte("other"), []byte("v")); err != nil {
				t.Fatal(err)
			}
			if st.Has([]byte("stalled")) {
				t.Fatal("a stalled PUT stored its value")
			}
			wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/after", strings.NewReader("v")), 204)
		})
	}
}

// waitInFlight waits until n requests besides its own are being served.
func waitInFlight(t *testing.T, base string, n int) {
	t.Helper()
	want := fmt.Sprintf("\nsimdr_http_requests_in_flight %d\n", n+1)
	for i := 0; ; i++ {
		r := call(t, nil, "GET", base+"/metrics", nil)
		if strings.Contains(string(r.body), want) {
			return
		}
		if i == 6000 {
			t.Fatalf("never %d requests in flight", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShutdownTimeout: a request that does not finish within ShutdownTimeout
// has its connection cut, and Serve returns once its handler has returned.
func TestShutdownTimeout(t *testing.T) {
	st := openStore(t)
	base, stop := start(t, st, server.Config{ShutdownTimeout: 200 * time.Millisecond})
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		req, _ := http.NewRequest("PUT", base+"/v1/keys/stuck", pr)
		if r, err := http.DefaultClient.Do(req); err == nil {
			r.Body.Close()
		}
	}()
	pw.Write(make([]byte, 2<<20)) // the handler holds the write lock in PutReader
	waitInFlight(t, base, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Serve did not return after ShutdownTimeout")
	}
	if st.Has([]byte("stuck")) {
		t.Fatal("the cut PUT stored its value")
	}
	if err := st.Put([]byte("after"), []byte("v")); err != nil { // the write lock is free
		t.Fatal(err)
	}
}

// TestTruncatedBody: a PUT whose connection ends before its body does stores
// nothing, whether the body is read whole or streamed through PutReader, with
// a Content-Length or chunked.
func TestTruncatedBody(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	for _, c := range []struct {
		name    string
		chunked bool
		sent    int
	}{{"length-small", false, 500}, {"chunked-small", true, 500}, {"length-large", false, 2 << 20}, {"chunked-large", true, 2 << 20}} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		key := "trunc-" + c.name
		hdr := "PUT /v1/keys/" + key + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		var body []byte
		if c.chunked {
			hdr += "Transfer-Encoding: chunked\r\n\r\n"
			for range c.sent / 500 {
				body = append(body, "1f4\r\n"...)
				body = append(body, bytes.Repeat([]byte("c"), 500)...)
				body = append(body, "\r\n"...)
			}
		} else {
			hdr += fmt.Sprintf("Content-Length: %d\r\n\r\n", 2*c.sent)
			body = bytes.Repeat([]byte("l"), c.sent)
		}
		go func() {
			conn.Write([]byte(hdr))
			conn.Write(body)
			conn.(*net.TCPConn).CloseWrite() // the body ends here
		}()
		r, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			r.Body.Close()
			if r.StatusCode != 400 {
				t.Errorf("%s: status %d", c.name, r.StatusCode)
			}
		}
		conn.Close()
		waitInFlight(t, base, 0)
		if st.Has([]byte(key)) {
			e, _ := st.Get([]byte(key))
			t.Errorf("%s: a truncated body was stored (%d of %d bytes)", c.name, e.Len(), 2*c.sent)
		}
	}
}

func TestTooManyItems(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	var keys, ops []byte
	for range server.MaxItems + 1 {
		keys = append(keys, 1, 0, 0, 0, 'k')
		ops = append(ops, 'D', 1, 0, 0, 0, 'k')
	}
	for _, c := range []struct{ path, body string }{{"/v1/get-many", string(keys)}, {"/v1/batch", string(ops)}} {
		r := call(t, nil, "POST", base+c.path, strings.NewReader(c.body), "Content-Type", server.BinaryContentType)
		wantStatus(t, r, 413)
		if code := errCode(t, r); code != "too_large" {
			t.Fatalf("%s: code %q", c.path, code)
		}
	}
}
