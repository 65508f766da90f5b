package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/testclock"
	"github.com/simdr-go/simdr/server"
)

// openClocked opens the store at path on clock c, closed at the end of the
// test.
func openClocked(t *testing.T, path string, c *testclock.Clock) *simdr.Store {
	t.Helper()
	st, err := simdr.Open(path, &simdr.Options{Clock: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// reservedKey is a key with the prefix the library keeps its expiry
// records under.
const reservedKey = "\x00simdr.ttl\x00x"

// recordHash is the key hash of key's expiry record (the library's layout,
// expiry.go).
func recordHash(key string) uint64 {
	b := binary.LittleEndian.AppendUint64([]byte("\x00simdr.ttl\x00"), simdr.Hash([]byte(key)))
	return simdr.Hash(b)
}

// PUT with ?ttl=, the expiry header on GET and HEAD, and expiry itself.
func TestPutTTL(t *testing.T) {
	clk := testclock.New()
	st := openClocked(t, filepath.Join(t.TempDir(), "s.simdr"), clk)
	base, _ := start(t, st, server.Config{})
	u := base + "/v1/keys/session"

	wantStatus(t, call(t, nil, "PUT", u+"?ttl=10m", strings.NewReader("token")), 204)
	for _, m := range []string{"GET", "HEAD"} {
		r := call(t, nil, m, u, nil)
		wantStatus(t, r, 200)
		if got := r.header.Get(server.HeaderExpiresIn); got != "600000" {
			t.Errorf("%s: %s = %q, want 600000", m, server.HeaderExpiresIn, got)
		}
	}
	if d, err := st.TTL([]byte("session")); err != nil || d != 10*time.Minute {
		t.Errorf("TTL = %v, %v", d, err)
	}
	wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/plain", strings.NewReader("v")), 204)
	if r := call(t, nil, "GET", base+"/v1/keys/plain", nil); r.code != 200 || r.header.Get(server.HeaderExpiresIn) != "" {
		t.Errorf("GET of a value without expiry: %d, %s %q", r.code, server.HeaderExpiresIn, r.header.Get(server.HeaderExpiresIn))
	}
	// By hash: the value, without the header (the library's TTL takes a key).
	hu := fmt.Sprintf("%s/v1/hash/%016x", base, simdr.Hash([]byte("session")))
	if r := call(t, nil, "GET", hu, nil); r.code != 200 || string(r.body) != "token" {
		t.Errorf("GET by hash: %d %q", r.code, r.body)
	}

	clk.Advance(10*time.Minute - time.Millisecond)
	if r := call(t, nil, "HEAD", u, nil); r.code != 200 || r.header.Get(server.HeaderExpiresIn) != "1" {
		t.Errorf("HEAD a millisecond before expiry: %d %q", r.code, r.header.Get(server.HeaderExpiresIn))
	}
	clk.Advance(time.Millisecond)
	for _, m := range []string{"GET", "HEAD"} {
		wantStatus(t, call(t, nil, m, u, nil), 404)
	}
	if c := errCode(t, call(t, nil, "GET", u, nil)); c != "not_found" {
		t.Errorf("GET of an expired key: code %q", c)
	}
	wantStatus(t, call(t, nil, "GET", hu, nil), 404)

	// Written again without a ttl, it never expires.
	wantStatus(t, call(t, nil, "PUT", u+"?ttl=1s", strings.NewReader("t2")), 204)
	wantStatus(t, call(t, nil, "PUT", u, strings.NewReader("t3")), 204)
	clk.Advance(time.Hour)
	if r := call(t, nil, "GET", u, nil); r.code != 200 || string(r.body) != "t3" || r.header.Get(server.HeaderExpiresIn) != "" {
		t.Errorf("after a PUT without ttl: %d %q %v", r.code, r.body, r.header)
	}

	// A value past the in-memory buffer is spooled, then stored with its ttl.
	big := bytes.Repeat([]byte("0123456789"), 300000) // 3 MB
	wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/big?ttl=90s", bytes.NewReader(big)), 204)
	if r := call(t, nil, "GET", base+"/v1/keys/big", nil); r.code != 200 || !bytes.Equal(r.body, big) ||
		r.header.Get(server.HeaderExpiresIn) != "90000" {
		t.Errorf("spooled PUT with ttl: %d, %d bytes, %q", r.code, len(r.body), r.header.Get(server.HeaderExpiresIn))
	}
	// Chunked (no Content-Length) too.
	wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/big2?ttl=1h", struct{ *bytes.Reader }{bytes.NewReader(big)}), 204)
	if d, err := st.TTL([]byte("big2")); err != nil || d != time.Hour {
		t.Errorf("chunked spooled PUT with ttl: TTL %v, %v", d, err)
	}
	clk.Advance(90 * time.Second)
	wantStatus(t, call(t, nil, "GET", base+"/v1/keys/big", nil), 404)
}

// A ttl that is not a positive Go duration is 400 invalid_ttl, before the
// body is read, and writes nothing.
func TestPutTTLInvalid(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	big := bytes.Repeat([]byte("x"), 2<<20)
	size := st.Size()
	for _, q := range []string{"ttl=", "ttl=0", "ttl=-1s", "ttl=5", "ttl=soon", "ttl=1m&ttl=2m", "ttl=1e3ms"} {
		for _, body := range [][]byte{[]byte("v"), big} {
			r := call(t, nil, "PUT", base+"/v1/keys/k?"+q, bytes.NewReader(body))
			wantStatus(t, r, 400)
			if c := errCode(t, r); c != "invalid_ttl" {
				t.Errorf("?%s: code %q", q, c)
			}
		}
	}
	if st.Size() != size || st.Has([]byte("k")) {
		t.Error("a PUT with an invalid ttl wrote")
	}
	// Other query parameters are still ignored.
	wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/k?other=1", strings.NewReader("v")), 204)
}

// ttl_ms in JSON batches, the 'T' record in binary ones; a bad ttl fails
// the whole batch with 400 invalid_ttl.
func TestBatchTTL(t *testing.T) {
	clk := testclock.New()
	st := openClocked(t, filepath.Join(t.TempDir(), "s.simdr"), clk)
	base, _ := start(t, st, server.Config{})
	body := `{"ops":[{"op":"put","key":"a","value":"1","ttl_ms":1000},{"op":"put","key":"b","value":"2"},` +
		`{"op":"put","key":"c","value":"3","ttl_ms":null}]}`
	wantStatus(t, call(t, nil, "POST", base+"/v1/batch", strings.NewReader(body), jsonCT...), 200)
	var bin []byte
	bin = append(bin, 'T')
	bin = binary.LittleEndian.AppendUint32(bin, 1)
	bin = append(bin, 'd')
	bin = binary.LittleEndian.AppendUint64(bin, 1)
	bin = append(bin, '4')
	bin = binary.LittleEndian.AppendUint64(bin, 2000)
	wantStatus(t, call(t, nil, "POST", base+"/v1/batch", bytes.NewReader(bin), "Content-Type", server.BinaryContentType), 200)
	for k, want := range map[string]time.Duration{"a": time.Second, "b": simdr.NoExpiry, "c": simdr.NoExpiry, "d": 2 * time.Second} {
		if d, err := st.TTL([]byte(k)); err != nil || d != want {
			t.Errorf("TTL %s = %v, %v; want %v", k, d, err, want)
		}
	}
	clk.Advance(time.Second)
	if st.Has([]byte("a")) || !st.Has([]byte("d")) {
		t.Error("a should have expired, d not")
	}

	size := st.Size()
	for _, b := range []struct{ ct, body string }{
		{"application/json", `{"ops":[{"op":"put","key":"x","value":"1"},{"op":"put","key":"y","value":"1","ttl_ms":0}]}`},
		{"application/json", `{"ops":[{"op":"put","key":"x","value":"1"},{"op":"put","key":"y","value":"1","ttl_ms":-3}]}`},
		{"application/json", `{"ops":[{"op":"put","key":"x","value":"1"},{"op":"put","key":"y","value":"1","ttl_ms":2.5}]}`},
		{"application/json", `{"ops":[{"op":"put","key":"x","value":"1"},{"op":"put","key":"y","value":"1","ttl_ms":"9"}]}`},
		{server.BinaryContentType, string(append(bytes.Clone(bin[:len(bin)-8]), make([]byte, 8)...))},
	} {
		r := call(t, nil, "POST", base+"/v1/batch", strings.NewReader(b.body), "Content-Type", b.ct)
		wantStatus(t, r, 400)
		if c := errCode(t, r); c != "invalid_ttl" {
			t.Errorf("%q: code %q", b.body, c)
		}
	}
	r := call(t, nil, "POST", base+"/v1/batch", strings.NewReader(`{"ops":[{"op":"delete","key":"b","ttl_ms":5}]}`), jsonCT...)
	wantStatus(t, r, 400)
	if st.Size() != size || st.Has([]byte("x")) || !st.Has([]byte("b")) {
		t.Error("a batch with a bad ttl was applied")
	}
}

// Keys with the reserved prefix are refused wherever the server takes a
// key: 400 reserved_key, nothing written.
func TestReservedKeyRefused(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	st.Put([]byte("k"), []byte("v"))
	size := st.Size()
	u := base + "/v1/keys/" + url.PathEscape(reservedKey)
	for _, m := range []string{"PUT", "GET", "DELETE"} {
		r := call(t, nil, m, u, strings.NewReader("v"))
		wantStatus(t, r, 400)
		if c := errCode(t, r); c != "reserved_key" {
			t.Errorf("%s: code %q", m, c)
		}
	}
	wantStatus(t, call(t, nil, "HEAD", u, nil), 400)
	b64 := base64.StdEncoding.EncodeToString([]byte(reservedKey))
	var binPut, binKeys []byte
	binPut = append(binPut, 'P')
	binPut = binary.LittleEndian.AppendUint32(binPut, uint32(len(reservedKey)))
	binPut = append(binPut, reservedKey...)
	binPut = binary.LittleEndian.AppendUint64(binPut, 1)
	binPut = append(binPut, 'v')
	binKeys = binary.LittleEndian.AppendUint32(binKeys, uint32(len(reservedKey)))
	binKeys = append(binKeys, reservedKey...)
	for _, c := range []struct{ path, ct, body string }{
		{"/v1/batch", "application/json", `{"ops":[{"op":"put","key":"ok","value":"1"},{"op":"put","key":"\u0000simdr.ttl\u0000x","value":"1"}]}`},
		{"/v1/batch", "application/json", `{"ops":[{"op":"delete","key_b64":"` + b64 + `"}]}`},
		{"/v1/batch", server.BinaryContentType, string(binPut)},
		{"/v1/get-many", "application/json", `{"keys_b64":["` + b64 + `"]}`},
		{"/v1/get-many", server.BinaryContentType, string(binKeys)},
		{"/v1/rename", "application/json", `{"from":"k","to_b64":"` + b64 + `"}`},
		{"/v1/rename", "application/json", `{"from_b64":"` + b64 + `","to":"k2"}`},
	} {
		r := call(t, nil, "POST", base+c.path, strings.NewReader(c.body), "Content-Type", c.ct)
		wantStatus(t, r, 400)
		if code := errCode(t, r); code != "reserved_key" {
			t.Errorf("%s %q: code %q", c.path, c.body, code)
		}
	}
	if st.Size() != size || st.Has([]byte("ok")) || !st.Has([]byte("k")) {
		t.Error("a request with a reserved key wrote")
	}
	// A key that only starts like the prefix is an ordinary key.
	wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/"+url.PathEscape(reservedKey[:5]), strings.NewReader("v")), 204)
}

// DELETE by hash writes nothing for a hash the store hides: the expiry
// record of a key (which would take its expiry away) or the records'
// marker (which would make the records plain values on the next open).
func TestDeleteHiddenHash(t *testing.T) {
	clk := testclock.New()
	path := filepath.Join(t.TempDir(), "s.simdr")
	st := openClocked(t, path, clk)
	base, stop := start(t, st, server.Config{})
	wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/k?ttl=1m", strings.NewReader("v")), 204)
	size := st.Size()
	marker := simdr.Hash([]byte("\x00simdr.ttl\x00"))
	for _, h := range []uint64{recordHash("k"), marker} {
		wantStatus(t, call(t, nil, "DELETE", fmt.Sprintf("%s/v1/hash/%016x", base, h), nil), 204)
		r := call(t, nil, "DELETE", fmt.Sprintf("%s/v1/hash/%016x", base, h), nil, "If-Match", "*")
		wantStatus(t, r, 412)
	}
	if st.Size() != size {
		t.Fatalf("DELETE of hidden hashes wrote %d bytes", st.Size()-size)
	}
	// The key still expires, here and once reopened.
	stop()
	st.Close()
	st = openClocked(t, path, clk)
	if d, err := st.TTL([]byte("k")); err != nil || d != time.Minute {
		t.Fatalf("TTL after reopening = %v, %v; want 1m", d, err)
	}
	clk.Advance(time.Minute)
	if st.Has([]byte("k")) {
		t.Error("k did not expire")
	}
	// DELETE by hash of a live key still deletes it.
	st.Put([]byte("p"), []byte("v"))
	base, _ = start(t, st, server.Config{})
	wantStatus(t, call(t, nil, "DELETE", fmt.Sprintf("%s/v1/hash/%016x", base, simdr.Hash([]byte("p"))), nil), 204)
	if st.Has([]byte("p")) {
		t.Error("DELETE by hash of a live key did not delete it")
	}
}

// A page from an allowed origin can read the expiry header.
func TestExpiresHeaderExposed(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{AllowOrigins: []string{"http://app.example"}})
	r := call(t, nil, "GET", base+"/healthz", nil, "Origin", "http://app.example")
	if !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), server.HeaderExpiresIn) {
		t.Errorf("Access-Control-Expose-Headers %q", r.header.Get("Access-Control-Expose-Headers"))
	}
}
