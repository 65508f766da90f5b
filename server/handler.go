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
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/spool"
)

// keysPrefix is the path prefix of the per-key endpoints. Requests under it
// are routed by hand, not by the ServeMux, which would clean the path
// ("%2E%2E" is "..") and split it at "%2F".
const keysPrefix = "/v1/keys/"

// routeKeys is the metrics label of the per-key endpoints.
const routeKeys = "/v1/keys/{key}"

// routeHash is the pattern of the per-hash endpoints: {hash} is the key's
// hash (simdr.Hash) in 16 hexadecimal digits.
const routeHash = "/v1/hash/{hash}"

// BinaryContentType is the media type of the binary bodies of /v1/batch and
// /v1/get-many (see docs/server.md). JSON bodies must be sent as
// application/json; any other type is refused with 415.
const BinaryContentType = "application/x-simdr"

// MaxItems caps the operations of one batch and the keys of one get-many,
// whatever the body size: each costs far more memory decoded than its few
// bytes in the body.
const MaxItems = 1 << 20

var errTooMany = fmt.Errorf("more than %d operations or keys in one request", MaxItems)

// HeaderExpiresIn is the header of a GET or HEAD of /v1/keys/{key} whose
// value expires (stored with a ttl): how many milliseconds it has left
// (Store.TTL). A value without expiry has none.
const HeaderExpiresIn = "X-Simdr-Expires-In-Ms"

// reservedPrefix starts the keys under which the library keeps its expiry
// records (simdr.ErrReservedKey). The server refuses such keys wherever it
// takes one, before the store is touched: a cluster node applies writes by
// key hash, past the library's own check, and a GET, HEAD or get-many of
// one would only ever answer "missing".
const reservedPrefix = "\x00simdr.ttl\x00"

// checkKey refuses a key with the reserved prefix (simdr.ErrReservedKey).
func checkKey(key []byte) error {
	if len(key) > 0 && key[0] == 0 && bytes.HasPrefix(key, []byte(reservedPrefix)) {
		return fmt.Errorf("key %q: %w", key, simdr.ErrReservedKey)
	}
	return nil
}

// ttlParam returns the ttl query parameter of a PUT (0 when absent): a Go
// duration, positive; anything else fails with simdr.ErrInvalidTTL.
func ttlParam(r *http.Request) (time.Duration, error) {
	vals, ok := r.URL.Query()["ttl"]
	switch {
	case !ok:
		return 0, nil
	case len(vals) != 1:
		return 0, fmt.Errorf("ttl given %d times: %w", len(vals), simdr.ErrInvalidTTL)
	}
	d, err := time.ParseDuration(vals[0])
	if err != nil {
		return 0, fmt.Errorf("ttl %q is not a Go duration such as 90s, 10m or 24h (%w)", vals[0], simdr.ErrInvalidTTL)
	}
	if d <= 0 {
		return 0, fmt.Errorf("ttl %q: %w", vals[0], simdr.ErrInvalidTTL)
	}
	return d, nil
}

// Binary batch operation codes.
const (
	opPut    = 'P'
	opPutTTL = 'T' // a put with a ttl (codec.go)
	opDelete = 'D'
)

type handler struct {
	store    *simdr.Store
	cfg      Config
	token    [sha256.Size]byte // SHA-256 of cfg.Token, compared in constant time
	mux      *http.ServeMux
	metrics  *metrics
	inflight tracker
	readers  readers // for releasing the files Compact replaced (release.go)
	budget   budget

	// watchStop is closed, once (watchOnce), when the server shuts down:
	// it ends the event streams (watch.go).
	watchStop chan struct{}
	watchOnce sync.Once
	// watchDone, when not nil, ends the event streams too (a cluster
	// node's Done: the node is closing and waits for the store).
	watchDone <-chan struct{}

	// checkHost: the server listens on loopback, so the Host header must
	// name loopback (or one of cfg.AllowHosts): DNS rebinding protection.
	checkHost bool
	// createSpool, when set, replaces spool (tests inject failures).
	createSpool func() (*os.File, error)
	// intercept, when set (a cluster node, cluster.go), sees each
	// authorized request first and answers it when it returns true.
	intercept func(h *handler, w http.ResponseWriter, r *http.Request, route string) bool
}

// newHandler builds the handler; loopback says whether it serves a loopback
// address only (then the Host header is checked).
func newHandler(store *simdr.Store, cfg Config, loopback bool) *handler {
	h := &handler{store: store, cfg: cfg, mux: http.NewServeMux(), checkHost: loopback, watchStop: make(chan struct{})}
	h.metrics = newMetrics(h)
	h.budget.max = cfg.MaxInflightBytes
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
		{"POST", "/v1/verify", h.verify},
		{"GET", "/v1/entries", h.entries},
		{"GET", routeWatch, h.watch}, // server/watch.go
		{"GET", "/v1/backup", h.backup},
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
	h.mux.HandleFunc("GET "+routeHash, h.hash)
	h.mux.HandleFunc("DELETE "+routeHash, h.hash)
	h.mux.HandleFunc(routeHash, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" not allowed on "+routeHash)
	})
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
	if h.checkHost && !h.hostAllowed(r.Host) {
		writeError(sw, http.StatusForbidden, "forbidden_host",
			fmt.Sprintf("Host %q is not a loopback name or address (the server listens on loopback; see --allow-host)", r.Host))
		return
	}
	if origin := r.Header.Values("Origin"); len(origin) > 0 {
		if !h.originAllowed(origin) {
			writeError(sw, http.StatusForbidden, "forbidden_origin",
				fmt.Sprintf("requests from web pages (Origin %q) are refused (see --allow-origin)", strings.Join(origin, ", ")))
			return
		}
		hd := sw.Header()
		hd.Set("Access-Control-Allow-Origin", origin[0])
		hd.Add("Vary", "Origin")
		hd.Set("Access-Control-Expose-Headers", "ETag, Content-Range, Accept-Ranges, Content-Length, Retry-After, "+HeaderExpiresIn)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hd.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, DELETE, POST")
			hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Range, If-None-Match, If-Range")
			hd.Set("Access-Control-Max-Age", "600")
			sw.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if route != "/healthz" && !h.authorized(r) {
		sw.Header().Set("WWW-Authenticate", `Bearer realm="simdr"`)
		writeError(sw, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
		return
	}
	defer h.readers.leave(h.readers.enter(route))
	if h.intercept != nil && h.intercept(h, sw, r, route) {
		return
	}
	fn.ServeHTTP(sw, r)
}

// hostAllowed reports whether a Host header names loopback ("localhost",
// 127.0.0.0/8, ::1) or one of cfg.AllowHosts, with or without a port.
func (h *handler) hostAllowed(host string) bool {
	name := host
	if hst, _, err := net.SplitHostPort(host); err == nil {
		name = hst
	}
	name = strings.TrimSuffix(strings.Trim(name, "[]"), ".")
	if name == "" {
		return false
	}
	if isLoopbackHost(name) {
		return true
	}
	for _, a := range h.cfg.AllowHosts {
		if strings.EqualFold(a, name) || strings.EqualFold(a, host) {
			return true
		}
	}
	return false
}

// originAllowed reports whether every Origin header value is in
// cfg.AllowOrigins (compared without case; "*" allows any).
func (h *handler) originAllowed(origins []string) bool {
	for _, o := range origins {
		ok := false
		for _, a := range h.cfg.AllowOrigins {
			if a == "*" || strings.EqualFold(a, strings.TrimSuffix(o, "/")) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
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

// pathKey returns the key of a /v1/keys/{key} request; when the path holds
// none, it has answered.
func pathKey(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	seg, ok := strings.CutPrefix(escapedPath(r), keysPrefix)
	if !ok {
		writeError(w, http.StatusNotFound, "no_route", "no key in path; use /v1/keys/{key}")
		return nil, false
	}
	if strings.Contains(seg, "/") {
		writeError(w, http.StatusBadRequest, "bad_request", "a key is one path segment: percent-encode '/' as %2F")
		return nil, false
	}
	k, err := url.PathUnescape(seg)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "key: "+err.Error())
		return nil, false
	}
	if err := checkKey([]byte(k)); err != nil {
		writeStoreError(w, err)
		return nil, false
	}
	return []byte(k), true
}

// pathHash returns the hash of a /v1/hash/{hash} request; when the path
// holds none, it has answered.
func pathHash(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	s := strings.TrimPrefix(r.URL.Path, "/v1/hash/") // (mux.Handler does not set PathValue)
	kh, err := strconv.ParseUint(s, 16, 64)
	if err != nil || len(s) != 16 {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("hash %q: want 16 hexadecimal digits", s))
		return 0, false
	}
	return kh, true
}

// key serves PUT, GET, HEAD and DELETE on /v1/keys/{key}.
func (h *handler) key(w http.ResponseWriter, r *http.Request) {
	key, ok := pathKey(w, r)
	if !ok {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.get(w, r, key)
	case http.MethodPut:
		h.put(w, r, key)
	case http.MethodDelete:
		h.del(w, r, simdr.Hash(key))
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" not allowed on "+routeKeys)
	}
}

// get streams a value out of the mapping. http.ServeContent does Range,
// HEAD and the conditional headers (the ETag names the stored entry). A
// value that expires has HeaderExpiresIn, read just after it (a write in
// between can make the two disagree, as with any two requests); one that
// expired in between is missing.
func (h *handler) get(w http.ResponseWriter, r *http.Request, key []byte) {
	e, err := h.store.Get(key)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	ttl, err := h.store.TTL(key)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	if ttl != simdr.NoExpiry {
		w.Header().Set(HeaderExpiresIn, strconv.FormatInt(ttl.Milliseconds(), 10))
	}
	serveEntry(w, r, e)
}

func (h *handler) getHash(w http.ResponseWriter, r *http.Request, kh uint64) {
	e, err := h.store.GetHash(kh)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	serveEntry(w, r, e)
}

// serveEntry answers a GET or HEAD with e.
func serveEntry(w http.ResponseWriter, r *http.Request, e simdr.Entry) {
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("ETag", etag(e))
	http.ServeContent(&rangeErrorWriter{ResponseWriter: w}, r, "", time.Time{}, e.Reader())
}

// etag names a stored entry: its checksum, length and offset.
func etag(e simdr.Entry) string {
	return fmt.Sprintf(`"%08x-%x-%x"`, e.Checksum(), e.Len(), e.Offset())
}

// del deletes a key by hash. With If-Match, only if the key still holds the
// entry that ETag names (412 "changed" otherwise): the check and the delete
// are two steps, so a write landing between them is deleted too.
func (h *handler) del(w http.ResponseWriter, r *http.Request, kh uint64) {
	if !h.ifMatch(w, r, kh) {
		return
	}
	if err := h.store.DeleteHash(kh); err != nil {
		writeStoreError(w, err)
		return
	}
	h.metrics.wrote("delete", 1, 0)
	w.WriteHeader(http.StatusNoContent)
}

// ifMatch reports whether a request's If-Match, if any, names the entry kh
// holds now (any entry for "*"); when not, it has answered 412 "changed"
// (or the store's error).
func (h *handler) ifMatch(w http.ResponseWriter, r *http.Request, kh uint64) bool {
	if err := matches(h.store, kh, r.Header.Get("If-Match")); err != nil {
		writeStoreError(w, err)
		return false
	}
	return true
}

// errChanged: a DELETE's If-Match names another entry than the key holds
// (412 "changed").
var errChanged = errors.New("the key no longer holds the value If-Match names")

// matches returns nil when the If-Match value im is empty or names the entry
// kh holds in st (any entry for "*"), else errChanged or the store's error.
func matches(st *simdr.Store, kh uint64, im string) error {
	if im == "" {
		return nil
	}
	e, err := st.GetHash(kh)
	if err != nil && !errors.Is(err, simdr.ErrNotFound) {
		return err
	}
	if err != nil || (im != "*" && im != etag(e)) {
		return errChanged
	}
	return nil
}

// hash serves GET, HEAD and DELETE on /v1/hash/{hash}.
func (h *handler) hash(w http.ResponseWriter, r *http.Request) {
	kh, ok := pathHash(w, r)
	if !ok {
		return
	}
	if r.Method == http.MethodDelete {
		if h.absent(kh) {
			if h.ifMatch(w, r, kh) {
				w.WriteHeader(http.StatusNoContent)
			}
			return
		}
		h.del(w, r, kh)
		return
	}
	h.getHash(w, r, kh)
}

// absent reports whether the store has no value for key hash kh. A DELETE
// by hash of such a hash writes nothing: it may be one the store hides (the
// expiry record of a key stored with a ttl, or the marker of the records),
// whose deletion would take a key's expiry away; for any other, a delete of
// a key without a value is nothing anyway.
func (h *handler) absent(kh uint64) bool { return absentIn(h.store, kh) }

// absentIn is handler.absent for store st.
func absentIn(st *simdr.Store, kh uint64) bool {
	_, err := st.GetHash(kh)
	return errors.Is(err, simdr.ErrNotFound)
}

// verify runs Store.Verify: 200 with {"ok", "bad", "broken_at"}, damaged
// or not.
func (h *handler) verify(w http.ResponseWriter, r *http.Request) {
	http.NewResponseController(w).SetWriteDeadline(time.Time{}) // a big file takes time
	err := h.store.Verify()
	var ve *simdr.VerifyError
	switch {
	case err == nil:
		ve = &simdr.VerifyError{Bad: []int64{}, BrokenAt: -1}
	case errors.As(err, &ve):
	default:
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		OK       bool    `json:"ok"`
		Bad      []int64 `json:"bad"`
		BrokenAt int64   `json:"broken_at"`
	}{err == nil, ve.Bad, ve.BrokenAt})
}

// entries streams every live entry (Store.Entries): for each, the key hash
// (u64), the value length (u64) and the value, little-endian.
func (h *handler) entries(w http.ResponseWriter, r *http.Request) {
	if h.closed() {
		writeStoreError(w, simdr.ErrClosed)
		return
	}
	sw := h.streamWriter(w) // as long as the client reads
	w.Header().Set("Content-Type", BinaryContentType)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(sw, 64<<10)
	defer bw.Flush()
	var hdr [16]byte
	for e := range h.store.Entries() {
		binary.LittleEndian.PutUint64(hdr[:], e.KeyHash())
		binary.LittleEndian.PutUint64(hdr[8:], uint64(e.Len()))
		bw.Write(hdr[:])
		if _, err := bw.Write(e.Bytes()); err != nil {
			return // the client is gone
		}
	}
}

// streamWriter writes a stream that may take longer than
// Config.WriteTimeout (/v1/entries, /v1/backup) to w: each MiB must be
// written within WriteTimeout, not the whole response, so that a client
// that stops reading is cut after WriteTimeout, however long the stream.
// (Without any write deadline, a client that never read kept the handler
// blocked in Write for good, and with it the replaced files of every later
// Compact, which waits for the requests reading them: release.go.)
func (h *handler) streamWriter(w http.ResponseWriter) io.Writer {
	return &deadlineWriter{w: w, rc: http.NewResponseController(w), d: h.cfg.WriteTimeout}
}

// deadlineWriter moves the connection's write deadline d ahead before each
// MiB it writes.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
	d  time.Duration
}

func (dw *deadlineWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), 1<<20)]
		dw.rc.SetWriteDeadline(time.Now().Add(dw.d)) // ErrNotSupported: the server's WriteTimeout applies
		m, err := dw.w.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
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

// Buffers for PUT bodies. A body that fits the small or the spool buffer is
// read whole before the store is touched; a larger one is spooled to a
// temporary file first and then stored from there by PutReader, so the
// store's write lock is never held while bytes arrive from the network.
const (
	smallBody = 64 << 10
	spoolBody = 1 << 20
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBody); return &b }}
	spoolPool = sync.Pool{New: func() any { b := make([]byte, spoolBody); return &b }}
)

// clientError marks an error reading a request body: the client broke off,
// stalled or sent something malformed (400), as opposed to a failure of the
// server's own disk (500, 507).
type clientError struct{ err error }

func (e *clientError) Error() string { return e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// errBusy is the answer when the server-wide budget of request memory is
// used up: 503 with Retry-After.
var errBusy = errors.New("the server holds as much request data as it may (Config.MaxInflightBytes): retry later")

// errOverBudget: one request alone needs more memory than the whole
// budget, so that retrying cannot help (413, not 503).
var errOverBudget = errors.New("the request needs more memory than the server may hold for all requests together (Config.MaxInflightBytes)")

// budget is the server-wide semaphore on the bytes request bodies (and what
// they decode to) hold. take never blocks: a request that cannot have more
// fails with errBusy, so parallel requests cannot deadlock holding parts of
// it.
type budget struct {
	max  int64
	used atomic.Int64
}

func (b *budget) take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

// hold is one request's share of the budget, given back by release.
type hold struct {
	b *budget
	n int64
}

func (h *hold) take(n int64) error {
	if h.n+n > h.b.max {
		return fmt.Errorf("%w: %d bytes", errOverBudget, h.n+n)
	}
	if !h.b.take(n) {
		return errBusy
	}
	h.n += n
	return nil
}

func (h *hold) release() {
	h.b.used.Add(-h.n)
	h.n = 0
}

func (h *handler) put(w http.ResponseWriter, r *http.Request, key []byte) {
	ttl, err := ttlParam(r)
	if err != nil {
		writeStoreError(w, err)
		return
	}
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

	pool, size := &spoolPool, int64(spoolBody)
	if r.ContentLength >= 0 && r.ContentLength <= smallBody {
		pool, size = &smallPool, smallBody
	}
	hd := hold{b: &h.budget}
	defer hd.release()
	if err := hd.take(size); err != nil {
		writeStoreError(w, err)
		return
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp
	n, err := readFull(body, buf)
	switch {
	case err == io.EOF:
		if ttl > 0 {
			err = h.store.PutTTL(key, buf[:n], ttl)
		} else {
			err = h.store.Put(key, buf[:n])
		}
		if err != nil {
			writeStoreError(w, err)
			return
		}
		h.metrics.wrote("put", 1, int64(n))
		w.WriteHeader(http.StatusNoContent)
		return
	case err != nil:
		writeStoreError(w, &clientError{fmt.Errorf("reading value: %w", err)})
		return
	}
	// The buffer is full: spool the value to a file, then store it from there.
	f, err := h.spool()
	if err != nil {
		writeStoreError(w, fmt.Errorf("spooling value: %w", err))
		return
	}
	defer f.Close()
	if _, err := f.Write(buf[:n]); err != nil {
		writeStoreError(w, fmt.Errorf("spooling value: %w", err))
		return
	}
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			if _, err := f.Write(buf[:m]); err != nil {
				writeStoreError(w, fmt.Errorf("spooling value: %w", err))
				return
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			writeStoreError(w, &clientError{fmt.Errorf("reading value: %w", rerr)})
			return
		}
	}
	stored, err := h.putSpooled(key, f, ttl)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	h.metrics.wrote("put", 1, stored)
	w.WriteHeader(http.StatusNoContent)
}

// putSpooled stores the value spooled in f. Without a ttl, PutReader streams
// it from the file. With one, it is mapped and stored from the mapping with
// PutTTL (the library streams only values without an expiry), which writes
// a large value straight from the slice: no copy of it is held in memory
// beyond page cache.
func (h *handler) putSpooled(key []byte, f *os.File, ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, fmt.Errorf("spooling value: %w", err)
		}
		return h.store.PutReader(key, f)
	}
	b, unmap, err := spool.Map(f)
	if err != nil {
		return 0, fmt.Errorf("spooling value: %w", err)
	}
	defer unmap()
	return int64(len(b)), h.store.PutTTL(key, b, ttl)
}

// spool creates an anonymous temporary file in Config.SpoolDir (default: the
// store file's directory): it is unlinked at once, so it goes away with its
// descriptor whatever happens.
func (h *handler) spool() (*os.File, error) {
	if h.createSpool != nil {
		return h.createSpool()
	}
	dir := h.cfg.SpoolDir
	if dir == "" {
		dir = filepath.Dir(h.store.Path())
	}
	return spool.Create(dir)
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

// readBody reads a batch, get-many or rename body whole, up to MaxBodyBytes,
// growing its buffer as bytes arrive (never by what Content-Length claims),
// each growth charged to hd.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request, hd *hold) ([]byte, error) {
	limit := h.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	// Grow by doubling, to at most the declared length (which net/http
	// enforces) once that many bytes are in; then probe for the end.
	ceil := limit + 1
	if r.ContentLength >= 0 {
		ceil = r.ContentLength
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) && int64(len(buf)) == ceil {
			var probe [1]byte
			m, err := body.Read(probe[:])
			if m == 0 && err == io.EOF {
				return buf, nil
			}
			if err == nil || err == io.EOF {
				err = errors.New("body longer than its Content-Length")
			}
			return nil, &clientError{err}
		}
		if len(buf) == cap(buf) {
			n := min(max(4<<10, 2*int64(cap(buf))), ceil)
			if n <= int64(cap(buf)) {
				n = int64(cap(buf)) + 1
			}
			if err := hd.take(n - int64(cap(buf))); err != nil {
				return nil, err
			}
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			buf = nb
		}
		m, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, &clientError{err}
		}
	}
}

// bodyType checks the Content-Type of a batch, get-many or rename body:
// application/json, or (when binaryOK) BinaryContentType. Anything else is
// refused (415): a web page can send text/plain or a form without asking,
// never JSON.
func bodyType(w http.ResponseWriter, r *http.Request, binaryOK bool) (bin, ok bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case err == nil && mt == "application/json":
		return false, true
	case err == nil && binaryOK && mt == BinaryContentType:
		return true, true
	}
	want := "application/json"
	if binaryOK {
		want += " or " + BinaryContentType
	}
	writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
		fmt.Sprintf("Content-Type %q: want %s", r.Header.Get("Content-Type"), want))
	return false, false
}

// readTypedBody checks the body's Content-Type (see bodyType) and reads it
// (see readBody). ok is false once it has answered the request.
func (h *handler) readTypedBody(w http.ResponseWriter, r *http.Request, hd *hold, binaryOK bool) (body []byte, bin, ok bool) {
	if bin, ok = bodyType(w, r, binaryOK); !ok {
		return nil, false, false
	}
	body, err := h.readBody(w, r, hd)
	if err != nil {
		writeStoreError(w, err)
		return nil, false, false
	}
	return body, bin, true
}

// readBatch reads a /v1/batch body, JSON or binary, checks it whole and
// charges hd what decoding it costs. ok is false once it has answered the
// request.
func (h *handler) readBatch(w http.ResponseWriter, r *http.Request, hd *hold) (body []byte, bin bool, c cost, ok bool) {
	body, bin, ok = h.readTypedBody(w, r, hd, true)
	if !ok {
		return nil, false, cost{}, false
	}
	c, err := countBatch(body, bin)
	if err != nil {
		writeBadBody(w, err)
		return nil, false, cost{}, false
	}
	if err := hd.take(c.batch()); err != nil {
		writeStoreError(w, err)
		return nil, false, cost{}, false
	}
	return body, bin, c, true
}

// batch applies many puts and deletes in one atomic Apply. The whole body is
// decoded first: a malformed body, or an invalid value, applies nothing.
func (h *handler) batch(w http.ResponseWriter, r *http.Request) {
	hd := hold{b: &h.budget}
	defer hd.release()
	body, bin, c, ok := h.readBatch(w, r, &hd)
	if !ok {
		return
	}
	b, err := decodeBatch(body, bin)
	if err != nil {
		writeBadBody(w, err)
		return
	}
	if err := h.store.Apply(b); err != nil {
		writeStoreError(w, err)
		return
	}
	h.metrics.wrote("batch_op", b.Len(), c.bytes)
	writeJSON(w, http.StatusOK, map[string]int{"ops": b.Len()})
}

// getMany answers many keys from one consistent snapshot, in the format of
// the request (JSON or binary).
func (h *handler) getMany(w http.ResponseWriter, r *http.Request) {
	hd := hold{b: &h.budget}
	defer hd.release()
	body, bin, ok := h.readTypedBody(w, r, &hd, true)
	if !ok {
		return
	}
	c, err := countKeys(body, bin)
	if err != nil {
		writeBadBody(w, err)
		return
	}
	if err := hd.take(c.keys() + 64<<10); err != nil { // and the response buffer
		writeStoreError(w, err)
		return
	}
	keys, err := decodeKeys(body, bin)
	if err != nil {
		writeBadBody(w, err)
		return
	}
	for i, k := range keys {
		if err := checkKey(k); err != nil {
			writeBadBody(w, fmt.Errorf("key %d: %w", i, err))
			return
		}
	}
	entries, err := h.store.GetMany(keys)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	if bin {
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
	hd := hold{b: &h.budget}
	defer hd.release()
	body, _, ok := h.readTypedBody(w, r, &hd, false)
	if !ok {
		return
	}
	from, to, err := decodeRename(body)
	if err != nil {
		writeBadBody(w, err)
		return
	}
	if err := h.store.Rename(from, to); err != nil {
		writeStoreError(w, err)
		return
	}
	h.metrics.wrote("rename", 1, 0)
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
	h.releaseOld(r.Context())
	h.metrics.compacts.Inc()
	if after := h.store.Size(); after < before {
		h.metrics.freed.Add(float64(before - after))
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
	status, code := http.StatusBadRequest, "bad_request"
	switch {
	case errors.Is(err, errTooMany):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
		return
	case errors.Is(err, simdr.ErrInvalidTTL), errors.Is(err, simdr.ErrReservedKey):
		status, code = errorStatus(err)
	}
	writeError(w, status, code, "request body: "+message(err))
}

// writeStoreError maps an error to its status code and JSON body.
func writeStoreError(w http.ResponseWriter, err error) {
	status, code := errorStatus(err)
	if code == "busy" {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, status, code, message(err))
}

// message is err's text with the "simdr: " prefix said once: the store's
// errors wrap sentinels that carry it too ("simdr: rename: simdr: key not
// found" becomes "simdr: rename: key not found").
func message(err error) string {
	msg := err.Error()
	const p = "simdr: "
	if i := strings.Index(msg, p); i >= 0 {
		msg = msg[:i+len(p)] + strings.ReplaceAll(msg[i+len(p):], p, "")
	}
	return msg
}

// errorStatus maps an error to an HTTP status and a code the client maps
// back to the simdr sentinel errors.
func errorStatus(err error) (int, string) {
	var mbe *http.MaxBytesError
	var ce *clientError
	var te interface{ Timeout() bool }
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, errOverBudget):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, errBusy):
		return http.StatusServiceUnavailable, "busy"
	case errors.Is(err, simdr.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, errChanged):
		return http.StatusPreconditionFailed, "changed"
	case errors.Is(err, simdr.ErrInvalidValue):
		return http.StatusBadRequest, "invalid_value"
	case errors.Is(err, simdr.ErrSameKey):
		return http.StatusBadRequest, "same_key"
	case errors.Is(err, simdr.ErrInvalidTTL):
		return http.StatusBadRequest, "invalid_ttl"
	case errors.Is(err, simdr.ErrReservedKey):
		return http.StatusBadRequest, "reserved_key"
	case errors.Is(err, simdr.ErrReadOnly):
		return http.StatusForbidden, "read_only"
	case errors.Is(err, simdr.ErrClosed):
		return http.StatusServiceUnavailable, "closed"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return http.StatusInsufficientStorage, "no_space" // before ErrFailed: a full disk is what failed
	case errors.Is(err, simdr.ErrFailed):
		return http.StatusServiceUnavailable, "failed"
	case errors.Is(err, simdr.ErrLocked):
		return http.StatusServiceUnavailable, "locked"
	case errors.Is(err, simdr.ErrChecksum):
		return http.StatusInternalServerError, "checksum"
	case errors.Is(err, simdr.ErrCorrupt):
		return http.StatusInternalServerError, "corrupt"
	case errors.As(err, &ce), errors.Is(err, io.ErrUnexpectedEOF),
		errors.As(err, &te) && te.Timeout():
		return http.StatusBadRequest, "bad_request" // the client stalled, hung up mid-body or sent garbage
	}
	var pe *os.PathError
	var errno syscall.Errno
	if errors.As(err, &pe) || errors.As(err, &errno) {
		return http.StatusInternalServerError, "io_error"
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
