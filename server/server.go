// Package server serves a simdr Store over HTTP/1.1 and h2c (HTTP/2 without
// TLS, prior knowledge), or over HTTPS (HTTP/1.1 and HTTP/2) with a
// certificate, built on net/http; /metrics uses prometheus/client_golang.
//
// Endpoints (docs/server.md has the details and the body formats):
//
//	PUT    /v1/keys/{key}   store the request body under key (spooled first when over 1 MiB)
//	GET    /v1/keys/{key}   the value, streamed from the mapping; Range requests work
//	HEAD   /v1/keys/{key}   as GET, without the body
//	DELETE /v1/keys/{key}   delete key (If-Match: only if it still holds that value)
//	GET, HEAD, DELETE /v1/hash/{hash}   the same by key hash (16 hex digits)
//	POST   /v1/batch        many puts and deletes, applied atomically
//	POST   /v1/get-many     many values, one consistent snapshot
//	POST   /v1/rename       rename a key
//	GET    /v1/len          the number of live keys and the file size
//	GET    /v1/stats        simdr.Stats as JSON
//	GET    /v1/entries      every live entry, streamed (binary)
//	POST   /v1/verify       Store.Verify: the damaged offsets, if any
//	POST   /v1/compact      compact the file
//	POST   /v1/sync         make every write so far durable
//	GET    /healthz         200 while the store is open (needs no token)
//	GET    /metrics         Prometheus exposition
//
// A key is one percent-encoded path segment, so any bytes can be a key
// ("%2F" is a "/" inside the key). Errors are JSON: {"error": "...", "code": "..."}.
//
// Request memory is bounded: bodies grow as bytes arrive, and all of them
// together hold at most Config.MaxInflightBytes (503 beyond). No web page can
// use the server: JSON bodies need application/json, requests with an Origin
// header not in Config.AllowOrigins are refused, and on loopback a Host that
// is not loopback (nor in Config.AllowHosts) is refused.
package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simdr-go/simdr"
)

// Config configures the HTTP server. The zero value is a loopback server on
// 127.0.0.1:7070 with no token and the default limits and timeouts.
type Config struct {
	// Addr is the address to listen on, host:port. Default 127.0.0.1:7070.
	Addr string
	// Token, when not empty, is the bearer token every request must carry
	// (Authorization: Bearer <token>), except GET /healthz.
	Token string
	// Insecure allows listening on a non-loopback address without a token.
	Insecure bool
	// MaxValueBytes caps the size of a value PUT to the server (0:
	// DefaultMaxValueBytes; negative: no cap). A larger body fails with 413
	// and stores nothing.
	MaxValueBytes int64
	// MaxBodyBytes caps the body of batch, get-many and rename requests
	// (0: 64 MiB). A larger body fails with 413.
	MaxBodyBytes int64
	// ReadTimeout, WriteTimeout and IdleTimeout bound each connection
	// (0: 10 minutes, 10 minutes and 2 minutes). ReadTimeout covers reading a
	// whole request, body included; WriteTimeout covers writing a response
	// (for the streams of /v1/entries and /v1/backup, each MiB of it).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (0: 10 seconds).
	ReadHeaderTimeout time.Duration
	// StallTimeout is how long a PUT body may send nothing before the
	// request fails (0: 30 seconds). A large PUT holds the store's write lock
	// while its body streams in; this keeps a stalled client from holding it
	// for the whole ReadTimeout.
	StallTimeout time.Duration
	// MaxInflightBytes is the server-wide budget of memory that request
	// bodies, and what they decode to, may hold at once (0:
	// DefaultMaxInflightBytes). A request that would pass it fails at once
	// with 503 and Retry-After: 1, so no number of parallel requests can
	// exhaust memory; one that alone needs more than all of it fails with
	// 413. It should be well above MaxBodyBytes: a batch is charged about
	// three times its values and 128 to 512 bytes per operation (a batch of
	// MaxItems one-byte puts with a ttl needs 512 MiB).
	MaxInflightBytes int64
	// SpoolDir is where a PUT body over 1 MiB is spooled (in an unlinked
	// temporary file) before it is stored (empty: the store file's
	// directory, so the spool is on the same disk as the store).
	SpoolDir string
	// AllowOrigins lists the web origins ("https://app.example") whose
	// requests are answered, with CORS headers; "*" allows any. A request
	// carrying an Origin header not listed gets 403: by default no web page
	// can use the server.
	AllowOrigins []string
	// AllowHosts lists the Host header names accepted besides loopback ones
	// when the server listens on a loopback address (then any other Host is
	// refused with 403, against DNS rebinding). Unused on other addresses.
	AllowHosts []string
	// TLSCertFile and TLSKeyFile, when both set, serve HTTPS (HTTP/1.1 and
	// HTTP/2 negotiated by ALPN) instead of plain HTTP and h2c. Setting only
	// one of them is an error (ErrTLSHalf): the server does not start.
	TLSCertFile, TLSKeyFile string
	// ShutdownTimeout is how long shutting down waits for requests in flight
	// before closing their connections (0: 30 seconds). Either way the server
	// returns only once every handler has returned.
	ShutdownTimeout time.Duration
}

// Defaults for the zero fields of Config.
const (
	DefaultAddr              = "127.0.0.1:7070"
	DefaultMaxBodyBytes      = 64 << 20
	DefaultMaxValueBytes     = 1 << 30
	DefaultMaxInflightBytes  = 512 << 20
	DefaultReadTimeout       = 10 * time.Minute
	DefaultWriteTimeout      = 10 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultStallTimeout      = 30 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
)

// ErrInsecure is returned when asked to listen on a non-loopback address
// without a token and without Config.Insecure.
var ErrInsecure = errors.New("server: refusing to listen on a non-loopback address without a token (set a token, or Insecure)")

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = DefaultMaxValueBytes
	}
	if c.MaxInflightBytes <= 0 {
		c.MaxInflightBytes = DefaultMaxInflightBytes
	}
	set(&c.ReadTimeout, DefaultReadTimeout)
	set(&c.WriteTimeout, DefaultWriteTimeout)
	set(&c.IdleTimeout, DefaultIdleTimeout)
	set(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	set(&c.StallTimeout, DefaultStallTimeout)
	set(&c.ShutdownTimeout, DefaultShutdownTimeout)
	return c
}

// CheckAddr reports whether serving on addr is allowed by cfg's security
// settings: a loopback address always is; any other address (an empty host,
// 0.0.0.0, a host name other than localhost, ...) needs a Token or Insecure.
func CheckAddr(addr string, cfg Config) error {
	if cfg.Token != "" || cfg.Insecure {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("server: address %q: %w", addr, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("%w: %s", ErrInsecure, addr)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ListenAndServe serves store on cfg.Addr until ctx is done, then stops
// accepting, finishes the requests in flight, and syncs the store. It does
// not close the store. A non-loopback cfg.Addr needs cfg.Token or
// cfg.Insecure (ErrInsecure otherwise).
func ListenAndServe(ctx context.Context, store *simdr.Store, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := CheckAddr(cfg.Addr, cfg); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return Serve(ctx, ln, store, cfg)
}

// Serve is ListenAndServe on a listener the caller opened (cfg.Addr is
// ignored; the listener's own address is checked the same way). It closes ln.
func Serve(ctx context.Context, ln net.Listener, store *simdr.Store, cfg Config) error {
	cfg = cfg.withDefaults()
	tcp, isTCP := ln.Addr().(*net.TCPAddr)
	if isTCP && cfg.Token == "" && !cfg.Insecure && !tcp.IP.IsLoopback() {
		ln.Close()
		return fmt.Errorf("%w: %s", ErrInsecure, tcp)
	}
	tlsCfg, err := loadTLS(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	h := newHandler(store, cfg, isTCP && tcp.IP.IsLoopback())
	serveErr := serveUntilDone(ctx, ln, cfg, tlsCfg, h, &h.inflight, h.stopWatches) // server/watch.go: end the event streams
	if err := store.Sync(); err != nil && !errors.Is(err, simdr.ErrClosed) {
		serveErr = errors.Join(serveErr, err)
	}
	return serveErr
}

// ErrTLSHalf: Config has a TLS certificate without its key, or a key
// without a certificate. The server refuses to start rather than serve
// plain HTTP where HTTPS was meant.
var ErrTLSHalf = errors.New("server: TLS needs both a certificate and a key file")

// loadTLS reads cfg's certificate and key: nil when cfg sets neither (plain
// HTTP), ErrTLSHalf when it sets only one.
func loadTLS(cfg Config) (*tls.Config, error) {
	if cfg.TLSCertFile == "" && cfg.TLSKeyFile == "" {
		return nil, nil
	}
	if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
		return nil, ErrTLSHalf
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("server: TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// serveUntilDone serves ln with handler (over TLS when tlsCfg is not nil)
// until ctx ends or the listener fails, then shuts the server down within
// cfg.ShutdownTimeout and waits until every handler inflight tracks has
// returned. onShutdown, if not nil, runs when the shutdown starts.
func serveUntilDone(ctx context.Context, ln net.Listener, cfg Config, tlsCfg *tls.Config, handler http.Handler, inflight *tracker, onShutdown func()) error {
	srv := &http.Server{
		Handler:           handler,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		MaxHeaderBytes:    1 << 20,
		Protocols:         new(http.Protocols),
	}
	if onShutdown != nil {
		srv.RegisterOnShutdown(onShutdown)
	}
	srv.Protocols.SetHTTP1(true)
	if tlsCfg != nil {
		srv.Protocols.SetHTTP2(true)
		srv.TLSConfig = tlsCfg
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
		ln = jsonErrorListener{ln}
		// A connection is answering a request from the moment its handler
		// starts until it is idle again (the response flushed): only
		// between the two can net/http write an answer of its own.
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			if jc, ok := c.(*jsonErrorConn); ok {
				ctx = context.WithValue(ctx, jsonErrorConnKey{}, jc)
			}
			return ctx
		}
		srv.ConnState = func(c net.Conn, s http.ConnState) {
			if jc, ok := c.(*jsonErrorConn); ok && s == http.StateIdle {
				jc.answering.Store(false)
			}
		}
		srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if jc, ok := r.Context().Value(jsonErrorConnKey{}).(*jsonErrorConn); ok && r.ProtoMajor == 1 {
				jc.answering.Store(true)
			}
			handler.ServeHTTP(w, r)
		})
	}

	errc := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc: // the listener failed
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	err := srv.Shutdown(sctx)
	cancel()
	if err != nil {
		srv.Close() // the grace period is over: cut the connections left
	}
	inflight.stop() // a handler that starts after this gets 503
	inflight.wait() // every handler has returned: no one reads the store any more
	if serveErr == nil {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			serveErr = err
		}
	}
	return serveErr
}

// Handler returns the server's http.Handler for store, with cfg's token and
// limits (its address and timeouts are not used). Tests and embedders can
// mount it in their own http.Server or httptest.Server; they must then stop
// their server before closing the store.
//
// The Host header is checked (see Config.AllowHosts) when cfg.Addr (default
// 127.0.0.1:7070) is a loopback address: an embedder serving elsewhere
// should set cfg.Addr to its real address.
func Handler(store *simdr.Store, cfg Config) http.Handler {
	cfg = cfg.withDefaults()
	host, _, err := net.SplitHostPort(cfg.Addr)
	return newHandler(store, cfg, err == nil && isLoopbackHost(host))
}

// jsonErrorListener wraps the connections of a plain-HTTP listener so that
// the few answers net/http writes itself, before any handler runs (400 for
// a malformed request line such as "GET /v1/keys/%zz", 431, 501, 505...),
// are JSON like every other error. net/http writes them in one call, with
// fixed headers that no handler response has, straight to the connection.
type jsonErrorListener struct{ net.Listener }

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrorConn{Conn: c}, nil
}

// jsonErrorConn is a connection of jsonErrorListener. answering is set
// while a handler's response may be written (see serveUntilDone): bytes
// written then are the handler's, passed through whatever they hold (a
// value that spells net/http's error answer was rewritten, its GET
// corrupted).
type jsonErrorConn struct {
	net.Conn
	answering atomic.Bool
}

// jsonErrorConnKey is the request context key of a request's jsonErrorConn.
type jsonErrorConnKey struct{}

// CloseWrite half-closes a TCP connection, as net/http does after an error
// answer so that the client reads it before the reset.
func (c *jsonErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// plainErrorHeaders is what net/http's own error answers look like after
// the status line (net/http's server.go, errorHeaders).
const plainErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c *jsonErrorConn) Write(p []byte) (int, error) {
	if c.answering.Load() || len(p) > 4096 || !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return c.Conn.Write(p)
	}
	i := bytes.Index(p, []byte(plainErrorHeaders))
	if i < 0 || bytes.ContainsAny(p[:i], "\r\n") { // net/http's status line, then its headers
		return c.Conn.Write(p)
	}
	status := string(p[len("HTTP/1.1 "):i])
	msg := strings.TrimSpace(string(p[i+len(plainErrorHeaders):]))
	code, _, _ := strings.Cut(status, " ")
	name := "bad_request"
	switch code {
	case "431":
		name = "too_large"
	case "501":
		name = "not_implemented"
	case "505":
		name = "bad_version"
	}
	if msg == status || msg == "" { // net/http says only the status
		msg = "malformed request line or header (an invalid %-escape in the path, a bad header, no Host, ...)"
	} else {
		msg = "malformed request: " + msg
	}
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}{msg, name})
	body = append(body, '\n')
	out := fmt.Appendf(nil, "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", status, len(body), body)
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// tracker counts the handlers running, so that shutting down can wait for
// all of them (after http.Server.Close, which does not wait) before the
// caller closes the store their responses may still be reading from.
type tracker struct {
	mu       sync.Mutex
	n        int
	stopping bool
	idle     chan struct{} // closed when stopping and n reaches 0
}

// enter registers a handler; false once stopping.
func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return false
	}
	t.n++
	return true
}

func (t *tracker) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.stopping && t.n == 0 {
		close(t.idle)
	}
}

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

func (t *tracker) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return
	}
	t.stopping = true
	t.idle = make(chan struct{})
	if t.n == 0 {
		close(t.idle)
	}
}

func (t *tracker) wait() { <-t.idle }
