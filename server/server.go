// Package server serves a simdr Store over HTTP/1.1 and h2c (HTTP/2 without
// TLS, prior knowledge), with net/http only.
//
// Endpoints (docs/server.md has the details and the body formats):
//
//	PUT    /v1/keys/{key}   store the request body (streamed) under key
//	GET    /v1/keys/{key}   the value, streamed from the mapping; Range requests work
//	HEAD   /v1/keys/{key}   as GET, without the body
//	DELETE /v1/keys/{key}   delete key
//	POST   /v1/batch        many puts and deletes, applied atomically
//	POST   /v1/get-many     many values, one consistent snapshot
//	POST   /v1/rename       rename a key
//	GET    /v1/len          the number of live keys and the file size
//	GET    /v1/stats        simdr.Stats as JSON
//	POST   /v1/compact      compact the file
//	POST   /v1/sync         make every write so far durable
//	GET    /healthz         200 while the store is open (needs no token)
//	GET    /metrics         Prometheus text exposition
//
// A key is one percent-encoded path segment, so any bytes can be a key
// ("%2F" is a "/" inside the key). Errors are JSON: {"error": "...", "code": "..."}.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
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
	// MaxValueBytes caps the size of a value PUT to the server (0: no cap).
	// A larger body fails with 413 and stores nothing.
	MaxValueBytes int64
	// MaxBodyBytes caps the body of batch, get-many and rename requests
	// (0: 64 MiB). A larger body fails with 413.
	MaxBodyBytes int64
	// ReadTimeout, WriteTimeout and IdleTimeout bound each connection
	// (0: 10 minutes, 10 minutes and 2 minutes). ReadTimeout covers reading a
	// whole request, body included; WriteTimeout covers writing a response.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (0: 10 seconds).
	ReadHeaderTimeout time.Duration
	// StallTimeout is how long a PUT body may send nothing before the
	// request fails (0: 30 seconds). A large PUT holds the store's write lock
	// while its body streams in; this keeps a stalled client from holding it
	// for the whole ReadTimeout.
	StallTimeout time.Duration
	// ShutdownTimeout is how long shutting down waits for requests in flight
	// before closing their connections (0: 30 seconds). Either way the server
	// returns only once every handler has returned.
	ShutdownTimeout time.Duration
}

// Defaults for the zero fields of Config.
const (
	DefaultAddr              = "127.0.0.1:7070"
	DefaultMaxBodyBytes      = 64 << 20
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
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && cfg.Token == "" && !cfg.Insecure && !tcp.IP.IsLoopback() {
		ln.Close()
		return fmt.Errorf("%w: %s", ErrInsecure, tcp)
	}
	h := newHandler(store, cfg)
	srv := &http.Server{
		Handler:           h,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		MaxHeaderBytes:    1 << 20,
		Protocols:         new(http.Protocols),
	}
	srv.RegisterOnShutdown(h.stopWatches) // server/watch.go: end the event streams
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

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
	h.inflight.stop() // a handler that starts after this gets 503
	h.inflight.wait() // every handler has returned: no one reads the store any more
	if serveErr == nil {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			serveErr = err
		}
	}
	if err := store.Sync(); err != nil && !errors.Is(err, simdr.ErrClosed) {
		serveErr = errors.Join(serveErr, err)
	}
	return serveErr
}

// Handler returns the server's http.Handler for store, with cfg's token and
// limits (its address and timeouts are not used). Tests and embedders can
// mount it in their own http.Server or httptest.Server; they must then stop
// their server before closing the store.
func Handler(store *simdr.Store, cfg Config) http.Handler {
	return newHandler(store, cfg.withDefaults())
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
