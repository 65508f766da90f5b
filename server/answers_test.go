package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/simdr-go/simdr/server"
)

// rawCall writes req on a new connection and returns the whole response.
func rawCall(t *testing.T, base, req string) resp {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header, b}
}

// Every error is a JSON body, including those net/http and the mux would
// write as plain text, and says "simdr: " once.
func TestErrorBodiesAreJSON(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	for _, c := range []struct {
		req    string
		status int
		code   string
	}{
		{"GET /v1/keys/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "bad_request"},
		{"GET /v1/keys/a%2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "bad_request"},
		{"GET /%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "bad_request"},
		{"GET /v1/keys/a HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n", 400, "bad_request"},
		{"GET /v1/keys/a HTTP/1.1\r\n\r\n", 400, "bad_request"}, // no Host
		{"PUT /v1/keys/a HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented"},
		{"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404, "no_route"},
		{"GET /v1/batch/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404, "no_route"},
		{"DELETE /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405, "method_not_allowed"},
		{"PATCH /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405, "method_not_allowed"},
		{"PATCH /v1/keys/a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405, "method_not_allowed"},
		{"GET /v1/keys/missing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404, "not_found"},
		{"POST /v1/rename HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{\"from\":\"x\",\"to\":\"y\"}", 404, "not_found"},
	} {
		r := rawCall(t, base, c.req)
		if r.code != c.status {
			t.Errorf("%q: status %d, want %d (%q)", c.req, r.code, c.status, r.body)
			continue
		}
		if code := errCode(t, r); code != c.code {
			t.Errorf("%q: code %q, want %q", c.req, code, c.code)
		}
		var e struct{ Error string }
		json.Unmarshal(r.body, &e)
		if strings.Count(e.Error, "simdr:") > 1 {
			t.Errorf("%q: message says simdr twice: %q", c.req, e.Error)
		}
	}
	// The connection still works after one of net/http's own answers.
	wantStatus(t, call(t, nil, "PUT", base+"/v1/keys/a", strings.NewReader("v")), 204)
}

// JSON keys and values must be valid UTF-8: invalid bytes and lone
// surrogates, which a JSON decoder would turn into U+FFFD (so that distinct
// keys collide), are refused with a pointer to the _b64 fields, and nothing
// of the batch is applied.
func TestInvalidUTF8Refused(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	for _, c := range []struct{ path, body, hint string }{
		{"/v1/batch", `{"ops":[{"op":"put","key":"ok","value":"1"},{"op":"put","key":"\ud800","value":"2"}]}`, "key_b64"},
		{"/v1/batch", "{\"ops\":[{\"op\":\"put\",\"key\":\"ok\",\"value\":\"1\"},{\"op\":\"put\",\"key\":\"\xff\",\"value\":\"2\"}]}", "key_b64"},
		{"/v1/batch", `{"ops":[{"op":"put","key":"ok","value":"\udfff"}]}`, "value_b64"},
		{"/v1/get-many", `{"keys":["ok","\ud800"]}`, "keys_b64"},
		{"/v1/get-many", "{\"keys\":[\"\xc3\"]}", "keys_b64"},
		{"/v1/rename", `{"from":"\ud800","to":"b"}`, "from_b64"},
	} {
		r := call(t, nil, "POST", base+c.path, strings.NewReader(c.body), jsonCT...)
		wantStatus(t, r, 400)
		if code := errCode(t, r); code != "bad_request" || !strings.Contains(string(r.body), c.hint) {
			t.Errorf("%s %q: %s", c.path, c.body, r.body)
		}
	}
	if st.Len() != 0 {
		t.Fatal("a refused batch was applied")
	}
	// Valid escapes, surrogate pairs included, are the UTF-8 bytes they stand for.
	r := call(t, nil, "POST", base+"/v1/batch", strings.NewReader(`{"ops":[{"op":"put","key":"\ud83d\ude00","value":"\u00e9"}]}`), jsonCT...)
	wantStatus(t, r, 200)
	if e, err := st.Get([]byte("😀")); err != nil || string(e.Bytes()) != "é" {
		t.Fatalf("escaped key: %v %q", err, e.Bytes())
	}
}

// TestValueSpellingErrorAnswer: a value that holds net/http's own error
// answer's headers (what the server rewrites as JSON) is served as it is,
// small (in the write of the response's headers) or large, and malformed
// requests still get JSON. The rewriting looked for those headers in every
// write to the connection: a GET of such a value answered 200 with other
// bytes than it holds. (TestJSONErrorConnPassesResponses checks a body
// write that starts with the whole answer.)
func TestValueSpellingErrorAnswer(t *testing.T) {
	st := openStore(t)
	base, _ := start(t, st, server.Config{})
	answer := "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"
	values := []string{"x\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nhello", answer}
	for pad := range len(answer) {
		values = append(values, strings.Repeat("p", pad)+strings.Repeat(answer, 5000/len(answer)))
	}
	for i, v := range values {
		key := base + "/v1/keys/v" + strconv.Itoa(i)
		wantStatus(t, call(t, nil, "PUT", key, strings.NewReader(v)), 204)
		r := call(t, nil, "GET", key, nil)
		if r.code != 200 || string(r.body) != v {
			t.Fatalf("GET of value %d (%d bytes): %d, %d bytes that differ from the value", i, len(v), r.code, len(r.body))
		}
	}
	if r := rawCall(t, base, "GET /v1/keys/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); r.code != 400 || errCode(t, r) != "bad_request" {
		t.Fatalf("a malformed request line: %d %q", r.code, r.body)
	}
}
