package server

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/simdr-go/simdr"
)

// keysPrefix is the path prefix of the per-key endpoints. Requests under it
// are routed by hand, not by the ServeMux, which would clean the path
// ("%2E%2E" is "..") and split it at "%2F".
const keysPrefix = "/v1/keys/"

// routeKeys is the metrics label of the per-key endpoints.
const routeKeys = "/v1/keys/{key}"

// BinaryContentType is the media type of the binary bodies of /v1/batch and
// /v1/get-many (see docs/server.md). Any other type is read as JSON.
const BinaryContentType = "application/x-simdr"

// MaxItems caps the operations of one batch and the keys of one get-many,
// whatever the body size: each costs far more memory decoded than its few
// bytes in the body.
const MaxItems = 1 << 20

var errTooMany = fmt.Errorf("more than %d operations or keys in one request", MaxItems)

// Binary batch operation codes.
const (
	opPut    = 'P'
	opDelete = 'D'
)

type handler struct {
	store    *simdr.Store
	cfg      Config
	token    [sha256.Size]byte // SHA-256 of cfg.Token, compared in constant time
	mux      *http.ServeMux
	metrics  *metrics
	inflight tracker
}

func newHandler(store *simdr.Store, cfg Config) *handler {
	h := &handler{store: store, cfg: cfg, mux: http.NewServeMux(), metrics: newMetrics()}
	if cfg.Token != "" {
		h.token = sha256.Sum256([]byte(cfg.Token))
	}
	routes := []struct {
		method, path string
		fn           http.HandlerFunc
	}{
		{"POST", "/v1/batch", h.batch},
		{"POST", "/v1/get-many", h.getMany},
		{"POST", "/v1/rename", h.rename},
		{"GET", "/v1/len", h.length},
		{"GET", "/v1/stats", h.stats},
		{"POST", "/v1/compact", h.compact},
		{"POST", "/v1/sync", h.sync},
		{"GET", "/healthz", h.healthz},
		{"GET", "/metrics", h.serveMetrics},
		{"GET", "/v1/watch", h.watch}, // server/watch.go
	}
	for _, rt := range routes {
		h.mux.HandleFunc(rt.method+" "+rt.path, rt.fn)
		allow := rt.method
		if allow == "GET" {
			allow = "GET, HEAD"
		}
		h.mux.HandleFunc(rt.path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" not allowed on "+rt.path)
		})
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no_route", "no such endpoint: "+r.URL.Path)
	})
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.inflight.enter() {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "server is shutting down")
		return
	}
	defer h.inflight.leave()
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}

	var route string
	var fn http.Handler
	if escapedPath(r) == strings.TrimSuffix(keysPrefix, "/") || strings.HasPrefix(escapedPath(r), keysPrefix) {
		route, fn = routeKeys, http.HandlerFunc(h.key)
	} else {
		var pattern string
		fn, pattern = h.mux.Handler(r)
		route = pattern[strings.IndexByte(pattern, ' ')+1:] // drop the method
		if route == "/" || route == "" {
			route = "other"
		}
	}
	defer func() { h.metrics.observe(route, r.Method, sw.status(), time.Since(start)) }()
	if route != "/healthz" && !h.authorized(r) {
		sw.Header().Set("WWW-Authenticate", `Bearer realm="simdr"`)
		writeError(sw, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
		return
	}
	fn.ServeHTTP(sw, r)
}

// authorized checks the bearer token in constant time.
func (h *handler) authorized(r *http.Request) bool {
	if h.cfg.Token == "" {
		return true
	}
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], h.token[:]) == 1
}

// escapedPath returns the request's path as the client encoded it, so that
// "%2F" can be told from "/".
func escapedPath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	return r.URL.EscapedPath()
}

// key serves PUT, GET, HEAD and DELETE on /v1/keys/{key}.
func (h *handler) key(w http.ResponseWriter, r *http.Request) {
	seg, ok := strings.CutPrefix(escapedPath(r), keysPrefix)
	if !ok {
		writeError(w, http.StatusNotFound, "no_route", "no key in path; use /v1/keys/{key}")
		return
	}
	if strings.Contains(seg, "/") {
		writeError(w, http.StatusBadRequest, "bad_request", "a key is one path segment: percent-encode '/' as %2F")
		return
	}
	k, err := url.PathUnescape(seg)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "key: "+err.Error())
		return
	}
	key := []byte(k)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.get(w, r, key)
	case http.MethodPut:
		h.put(w, r, key)
	case http.MethodDelete:
		if err := h.store.Delete(key); err != nil {
			writeStoreError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" not allowed on "+routeKeys)
	}
}

// get streams a value out of the mapping. http.ServeContent does Range,
// HEAD and the conditional headers (the ETag names the stored entry).
func (h *handler) get(w http.ResponseWriter, r *http.Request, key []byte) {
	e, err := h.store.Get(key)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("ETag", fmt.Sprintf(`"%08x-%x-%x"`, e.Checksum(), e.Len(), e.Offset()))
	http.ServeContent(&rangeErrorWriter{ResponseWriter: w}, r, "", time.Time{}, e.Reader())
}

// rangeErrorWriter turns http.ServeContent's plain-text 416 into a JSON error.
type rangeErrorWriter struct {
	http.ResponseWriter
	failed bool
}

func (w *rangeErrorWriter) WriteHeader(code int) {
	if code == http.StatusRequestedRangeNotSatisfiable {
		w.failed = true
		w.Header().Del("X-Content-Type-Options")
		writeError(w.ResponseWriter, code, "bad_range", "range not satisfiable: "+w.Header().Get("Content-Range"))
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *rangeErrorWriter) Write(p []byte) (int, error) {
	if w.failed {
		return len(p), nil // ServeContent's plain-text message
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *rangeErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Buffers for PUT bodies: a body that fits is read whole before the store's
// write lock is taken (a slow client then holds no lock); a larger one is
// streamed through PutReader, which holds the lock while it reads.
const (
	smallBody = 64 << 10
	spoolBody = 1 << 20
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBody); return &b }}
	spoolPool = sync.Pool{New: func() any { b := make([]byte, spoolBody); return &b }}
)

func (h *handler) put(w http.ResponseWriter, r *http.Request, key []byte) {
	var body io.Reader = r.Body
	if max := h.cfg.MaxValueBytes; max > 0 {
		if r.ContentLength > max {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("value of %d bytes exceeds the limit of %d", r.ContentLength, max))
			return
		}
		body = http.MaxBytesReader(w, r.Body, max)
	}
	body = &stallReader{r: body, rc: http.NewResponseController(w), stall: h.cfg.StallTimeout,
		end: time.Now().Add(h.cfg.ReadTimeout)}

	pool := &spoolPool
	if r.ContentLength >= 0 && r.ContentLength <= smallBody {
		pool = &smallPool
	}
	if r.ContentLength <= spoolBody {
		bp := pool.Get().(*[]byte)
		defer pool.Put(bp)
		buf := *bp
		n, err := readFull(body, buf)
		switch {
		case err == io.EOF:
			if err := h.store.Put(key, buf[:n]); err != nil {
				writeStoreError(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		case err != nil:
			writeStoreError(w, fmt.Errorf("reading value: %w", err))
			return
		}
		// The buffer is full: stream it and the rest.
		body = io.MultiReader(bytes.NewReader(buf[:n]), body)
	}
	if _, err := h.store.PutReader(key, body); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readFull reads into buf until it is full or body fails. Unlike
// io.ReadFull it gives io.EOF only for the body's own end: a body cut short
// (io.ErrUnexpectedEOF from net/http) stays an error, never a shorter value.
func readFull(body io.Reader, buf []byte) (n int, err error) {
	for n < len(buf) && err == nil {
		var nn int
		nn, err = body.Read(buf[n:])
		n += nn
	}
	return n, err
}

// stallReader fails a body that sends nothing for stall, by moving the
// connection's read deadline forward before each read (never past end).
type stallReader struct {
	r     io.Reader
	rc    *http.ResponseController
	stall time.Duration
	end   time.Time
}

func (s *stallReader) Read(p []byte) (int, error) {
	d := time.Now().Add(s.stall)
	if d.After(s.end) {
		d = s.end
	}
	s.rc.SetReadDeadline(d) // ErrNotSupported: the server's ReadTimeout still applies
	return s.r.Read(p)
}

// body limits a request body to MaxBodyBytes.
func (h *handler) body(w http.ResponseWriter, r *http.Request) (io.Reader, error) {
	if r.ContentLength > h.cfg.MaxBodyBytes {
		return nil, &http.MaxBytesError{Limit: h.cfg.MaxBodyBytes}
	}
	return http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes), nil
}

func isBinary(r *http.Request) bool {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(ct), BinaryContentType)
}

// jsonKey is a key in a JSON body: a UTF-8 string, or base64 for any bytes.
func jsonKey(s *string, b64 []byte, name string) ([]byte, error) {
	switch {
	case s != nil && b64 != nil:
		return nil, fmt.Errorf("both %s and %s_b64 given", name, name)
	case s != nil:
		return []byte(*s), nil
	case b64 != nil:
		return b64, nil
	}
	return nil, fmt.Errorf("missing %s (or %s_b64)", name, name)
}

type jsonOp struct {
	Op       string  `json:"op"`
	Key      *string `json:"key"`
	KeyB64   []byte  `json:"key_b64"`
	Value    *string `json:"value"`
	ValueB64 []byte  `json:"value_b64"`
}

// decodeJSON reads one JSON value into v, refusing unknown fields and
// trailing data.
func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// batch applies many puts and deletes in one atomic Apply. The whole body is
// decoded first: a malformed body, or an invalid value, applies nothing.
func (h *handler) batch(w http.ResponseWriter, r *http.Request) {
	body, err := h.body(w, r)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	var b simdr.Batch
	if isBinary(r) {
		err = decodeBinaryBatch(bufio.NewReaderSize(body, 64<<10), &b, h.cfg.MaxBodyBytes)
	} else {
		err = decodeJSONBatch(body, &b)
	}
	if err != nil {
		writeBadBody(w, err)
		return
	}
	if err := h.store.Apply(&b); err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"ops": b.Len()})
}

func decodeJSONBatch(body io.Reader, b *simdr.Batch) error {
	var req struct {
		Ops []jsonOp `json:"ops"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if len(req.Ops) > MaxItems {
		return errTooMany
	}
	for i, op := range req.Ops {
		key, err := jsonKey(op.Key, op.KeyB64, "key")
		if err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		switch op.Op {
		case "put":
			value, err := jsonKey(op.Value, op.ValueB64, "value")
			if err != nil {
				return fmt.Errorf("op %d: %w", i, err)
			}
			b.Put(key, value)
		case "delete":
			if op.Value != nil || op.ValueB64 != nil {
				return fmt.Errorf("op %d: a delete has no value", i)
			}
			b.Delete(key)
		default:
			return fmt.Errorf("op %d: op must be \"put\" or \"delete\", not %q", i, op.Op)
		}
	}
	return nil
}

// decodeBinaryBatch reads records until EOF: 'P', u32 key length, key,
// u64 value length, value; or 'D', u32 key length, key (little-endian).
func decodeBinaryBatch(br *bufio.Reader, b *simdr.Batch, limit int64) error {
	var scratch []byte
	for i := 0; ; i++ {
		op, err := br.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if i == MaxItems {
			return errTooMany
		}
		if op != opPut && op != opDelete {
			return fmt.Errorf("op %d: unknown op byte 0x%02x (want 'P' or 'D')", i, op)
		}
		key, err := readField(br, 4, limit, nil)
		if err != nil {
			return fmt.Errorf("op %d: key: %w", i, err)
		}
		if op == opDelete {
			b.Delete(key)
			continue
		}
		scratch, err = readField(br, 8, limit, scratch[:0])
		if err != nil {
			return fmt.Errorf("op %d: value: %w", i, err)
		}
		b.Put(key, scratch)
	}
}

// readField reads a little-endian length of size bytes (4 or 8), then that
// many bytes, appended to buf.
func readField(br *bufio.Reader, size int, limit int64, buf []byte) ([]byte, error) {
	var lb [8]byte
	if _, err := io.ReadFull(br, lb[:size]); err != nil {
		return nil, unexpected(err)
	}
	n := binary.LittleEndian.Uint64(lb[:])
	if n > uint64(limit) {
		return nil, fmt.Errorf("length %d exceeds the body limit", n)
	}
	start := len(buf)
	buf = append(buf, make([]byte, n)...)
	if _, err := io.ReadFull(br, buf[start:]); err != nil {
		return nil, unexpected(err)
	}
	return buf, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// getMany answers many keys from one consistent snapshot, in the format of
// the request (JSON or binary).
func (h *handler) getMany(w http.ResponseWriter, r *http.Request) {
	body, err := h.body(w, r)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	var keys [][]byte
	binaryBody := isBinary(r)
	if binaryBody {
		br := bufio.NewReaderSize(body, 64<<10)
		for {
			if _, err = br.Peek(1); err == io.EOF {
				err = nil
				break
			}
			if len(keys) == MaxItems {
				err = errTooMany
				break
			}
			var k []byte
			if k, err = readField(br, 4, h.cfg.MaxBodyBytes, nil); err != nil {
				err = fmt.Errorf("key %d: %w", len(keys), err)
				break
			}
			keys = append(keys, k)
		}
	} else {
		var req struct {
			Keys    []string `json:"keys"`
			KeysB64 [][]byte `json:"keys_b64"`
		}
		if err = decodeJSON(body, &req); err == nil {
			if req.Keys != nil && req.KeysB64 != nil {
				err = errors.New("give keys or keys_b64, not both")
			}
			for _, k := range req.Keys {
				keys = append(keys, []byte(k))
			}
			keys = append(keys, req.KeysB64...)
			if len(keys) > MaxItems {
				err = errTooMany
			}
		}
	}
	if err != nil {
		writeBadBody(w, err)
		return
	}
	entries, err := h.store.GetMany(keys)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	if binaryBody {
		w.Header().Set("Content-Type", BinaryContentType)
		w.WriteHeader(http.StatusOK)
		var hdr [9]byte
		for _, e := range entries {
			if !e.Exists() {
				bw.WriteByte(0)
				continue
			}
			hdr[0] = 1
			binary.LittleEndian.PutUint64(hdr[1:], uint64(e.Len()))
			bw.Write(hdr[:])
			if _, err := bw.Write(e.Bytes()); err != nil {
				return // the client is gone
			}
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw.WriteString(`{"values":[`)
	for i, e := range entries {
		if i > 0 {
			bw.WriteByte(',')
		}
		if !e.Exists() {
			bw.WriteString("null")
			continue
		}
		bw.WriteByte('"')
		enc := base64.NewEncoder(base64.StdEncoding, bw)
		enc.Write(e.Bytes())
		enc.Close()
		if _, err := bw.WriteString(`"`); err != nil {
			return
		}
	}
	bw.WriteString("]}\n")
}

func (h *handler) rename(w http.ResponseWriter, r *http.Request) {
	body, err := h.body(w, r)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	var req struct {
		From    *string `json:"from"`
		FromB64 []byte  `json:"from_b64"`
		To      *string `json:"to"`
		ToB64   []byte  `json:"to_b64"`
	}
	var from, to []byte
	err = decodeJSON(body, &req)
	if err == nil {
		from, err = jsonKey(req.From, req.FromB64, "from")
	}
	if err == nil {
		to, err = jsonKey(req.To, req.ToB64, "to")
	}
	if err != nil {
		writeBadBody(w, err)
		return
	}
	if err := h.store.Rename(from, to); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// closed reports whether the store has been closed.
func (h *handler) closed() bool {
	_, err := h.store.GetHash(0)
	return errors.Is(err, simdr.ErrClosed)
}

func (h *handler) length(w http.ResponseWriter, r *http.Request) {
	if h.closed() {
		writeStoreError(w, simdr.ErrClosed)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"len": int64(h.store.Len()), "size": h.store.Size()})
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	if h.closed() {
		writeStoreError(w, simdr.ErrClosed)
		return
	}
	writeJSON(w, http.StatusOK, h.store.Stats()) // simdr.Stats has JSON names
}

func (h *handler) compact(w http.ResponseWriter, r *http.Request) {
	before := h.store.Size()
	http.NewResponseController(w).SetWriteDeadline(time.Time{}) // compacting a big file takes time
	if err := h.store.Compact(); err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"size_before": before, "size_after": h.store.Size()})
}

func (h *handler) sync(w http.ResponseWriter, r *http.Request) {
	if err := h.store.Sync(); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	if h.closed() {
		writeStoreError(w, simdr.ErrClosed)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// writeJSON writes v as the JSON body of a response with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

// writeError writes {"error": msg, "code": code}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}{msg, code})
}

// writeBadBody answers a request body that could not be decoded: 413 when it
// is over the limit, 400 otherwise.
func writeBadBody(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeStoreError(w, err)
		return
	}
	if errors.Is(err, errTooMany) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
		return
	}
	writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error())
}

// writeStoreError maps an error to its status code and JSON body.
func writeStoreError(w http.ResponseWriter, err error) {
	status, code := errorStatus(err)
	writeError(w, status, code, err.Error())
}

// errorStatus maps an error to an HTTP status and a code the client maps
// back to the simdr sentinel errors.
func errorStatus(err error) (int, string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, simdr.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, simdr.ErrInvalidValue):
		return http.StatusBadRequest, "invalid_value"
	case errors.Is(err, simdr.ErrSameKey):
		return http.StatusBadRequest, "same_key"
	case errors.Is(err, simdr.ErrReadOnly):
		return http.StatusForbidden, "read_only"
	case errors.Is(err, simdr.ErrClosed):
		return http.StatusServiceUnavailable, "closed"
	case errors.Is(err, simdr.ErrFailed):
		return http.StatusServiceUnavailable, "failed"
	case errors.Is(err, simdr.ErrLocked):
		return http.StatusServiceUnavailable, "locked"
	case errors.Is(err, simdr.ErrChecksum):
		return http.StatusInternalServerError, "checksum"
	case errors.Is(err, simdr.ErrCorrupt):
		return http.StatusInternalServerError, "corrupt"
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
		return http.StatusBadRequest, "bad_request" // the client stalled or hung up mid-body
	}
	return http.StatusInternalServerError, "internal"
}

// statusWriter records the status code written, for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
