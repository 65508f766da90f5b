// Package client talks to a simdr server (package server, `simdr <file> serve`)
// over HTTP or HTTPS. Its methods have the names of the simdr.Store methods
// they call, each taking a context first; the Store interface is what a
// *Client and a local store wrapped by Local have in common, so code written
// against it runs on either.
//
// Errors the server returns map back to the simdr sentinel errors: a missing
// key matches simdr.ErrNotFound with errors.Is, an invalid value
// simdr.ErrInvalidValue, an invalid ttl simdr.ErrInvalidTTL, a key with the
// reserved prefix simdr.ErrReservedKey, a closed store simdr.ErrClosed, and
// so on; what the server does not implement (501) errors.ErrUnsupported; a wrong
// token matches ErrUnauthorized and a body over the server's limits
// ErrTooLarge, a full disk ErrNoSpace (and syscall.ENOSPC). Every such error
// is an *Error carrying the status code.
//
// Against a cluster (simdr serve --raft-id, docs/cluster.md), Options.Nodes
// lists the other nodes to retry on, and Options.StrongReads makes reads
// linearizable.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/internal/ttlms"
)

// binaryType is the media type of the server's binary bodies.
const binaryType = "application/x-simdr"

// headerExpiresIn is the server's header of a GET or HEAD of a key whose
// value expires (server.HeaderExpiresIn): its milliseconds left.
const headerExpiresIn = "X-Simdr-Expires-In-Ms"

// Errors of the client's own, beside the simdr sentinels.
var (
	// ErrUnauthorized: the server wants a bearer token and got none or a wrong one (401).
	ErrUnauthorized = errors.New("client: unauthorized (missing or wrong token)")
	// ErrTooLarge: the request body is over the server's limit (413).
	ErrTooLarge = errors.New("client: request body too large for the server")
	// ErrUnavailable: the server is shutting down, or holds as much request
	// data as it may and asks to retry later, or (a cluster node) the
	// cluster has no leader at the moment (503).
	ErrUnavailable = errors.New("client: server unavailable")
	// ErrNoSpace: the server's disk is full (507). It wraps syscall.ENOSPC,
	// so errors.Is(err, syscall.ENOSPC) holds as it would for a local Store.
	ErrNoSpace = fmt.Errorf("client: server out of disk space: %w", syscall.ENOSPC)
	// ErrServer: the server failed (500) with an I/O error or an unexpected
	// one; damaged data matches simdr.ErrChecksum or simdr.ErrCorrupt instead.
	ErrServer = errors.New("client: server error")
	// ErrOutcomeUnknown: a write (Put, Delete, Apply, Rename, ...) failed in
	// a way that leaves unknown whether the server applied it: the
	// connection broke after the request was sent, the call's context ended
	// while it waited, or (a cluster, 503 outcome_unknown) the leader was
	// lost before the write was known to be committed. Such a write is not
	// sent again by the client, even with Options.Nodes: applied twice, with
	// another client's write to the key between the two, it would undo that
	// write. Read the key to find out, or send it again if no other client
	// writes the key. The error also matches the cause (errors.Is with
	// context.DeadlineExceeded, ErrUnavailable for 503, ...).
	ErrOutcomeUnknown = errors.New("client: the write may or may not have been applied")
	// ErrForbidden: the server refused the request's Origin or Host header
	// (403; see the server's --allow-origin and --allow-host).
	ErrForbidden = errors.New("client: forbidden by the server's origin or host checks")
)

// Options configures a Client. A nil *Options means no token and a default
// HTTP client.
type Options struct {
	// Token is the bearer token sent with every request (none when empty).
	Token string
	// HTTPClient sends the requests. nil: a client of its own with keep-alive
	// connections (up to 64 idle per host) and no overall timeout: bound calls
	// with their context.
	HTTPClient *http.Client
	// RootCAs, when not nil, are the certificate authorities an https://
	// server's certificate is checked against, instead of the system's (for
	// a server with a private CA or a self-signed certificate). Ignored
	// when HTTPClient is set: configure its transport instead.
	RootCAs *x509.CertPool
	// Nodes lists the base URLs of the other nodes of a cluster (simdr
	// serve --raft-id) beside the one given to New. When a node cannot be
	// reached, or answers 503 because it is shutting down or the cluster has
	// no leader at the moment (an election), the request is sent again to
	// the next node, up to MaxAttempts times in all, waiting a little longer
	// each round; the client keeps using the node that answered. A request
	// whose body cannot be sent again (PutReader of a plain io.Reader) is
	// not retried. Nor is a write whose outcome is unknown (ErrOutcomeUnknown:
	// the connection broke after it was sent, or the leader was lost before
	// it committed): sent again, it could apply twice. A write goes again
	// only when it was not applied: the connection was refused, or the node
	// answered 503 no_leader or shutting_down.
	// A node forwards writes to the leader itself, so Nodes is about
	// surviving the loss of a node, not about finding the leader.
	Nodes []string
	// MaxAttempts bounds the attempts of one request (0: three rounds of
	// the nodes when Nodes is set, one attempt otherwise).
	MaxAttempts int
	// StrongReads adds ?consistency=strong to the reads of keys and hashes
	// (Get, GetReader, Has, GetHash) and to GetMany: a cluster then answers
	// them linearizably, from the leader. A single node ignores it.
	StrongReads bool
}

// Client is a connection to a simdr server. It is safe for concurrent use.
type Client struct {
	base  string // scheme://host[/path], no trailing slash
	auth  string // "Bearer <token>", or empty
	hc    *http.Client
	owned *http.Transport // the transport New made, if any

	nodes       []string      // every base URL: base first, then Options.Nodes
	cur         atomic.Uint32 // the index in nodes of the node that answered last
	maxAttempts int
	strong      bool
}

// New returns a client for the server at baseURL (for example
// "http://127.0.0.1:7070"). It does not connect.
func New(baseURL string, opts *Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http://host:port or https://host:port", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: base URL %q: no query or fragment allowed", baseURL)
	}
	c := &Client{base: strings.TrimRight(u.String(), "/")}
	if opts == nil {
		opts = &Options{}
	}
	c.nodes = []string{c.base}
	for _, n := range opts.Nodes {
		nu, err := url.Parse(n)
		if err != nil || (nu.Scheme != "http" && nu.Scheme != "https") || nu.Host == "" || nu.RawQuery != "" {
			return nil, fmt.Errorf("client: node URL %q: want http://host:port or https://host:port", n)
		}
		c.nodes = append(c.nodes, strings.TrimRight(nu.String(), "/"))
	}
	c.maxAttempts = opts.MaxAttempts
	if c.maxAttempts <= 0 {
		c.maxAttempts = 1
		if len(c.nodes) > 1 {
			c.maxAttempts = 3 * len(c.nodes)
		}
	}
	c.strong = opts.StrongReads
	if opts.Token != "" {
		c.auth = "Bearer " + opts.Token
	}
	c.hc = opts.HTTPClient
	if c.hc == nil {
		c.owned = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}
		if opts.RootCAs != nil {
			c.owned.TLSClientConfig = &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
		}
		c.hc = &http.Client{Transport: c.owned}
	}
	return c, nil
}

// CloseIdleConnections closes the keep-alive connections not in use.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Error is an error response from the server.
type Error struct {
	// StatusCode is the HTTP status code.
	StatusCode int
	// Code is the server's error code ("not_found", "invalid_value", ...),
	// empty when the response had none.
	Code string
	// Message is the server's error message.
	Message string
}

// Error returns the server's message with the status.
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("client: server: %d: %s", e.StatusCode, msg)
}

// Unwrap returns the sentinel error the response stands for, if any, so
// that errors.Is(err, simdr.ErrNotFound) and the like work.
func (e *Error) Unwrap() error {
	switch e.Code {
	case "not_found":
		return simdr.ErrNotFound
	case "invalid_value":
		return simdr.ErrInvalidValue
	case "same_key":
		return simdr.ErrSameKey
	case "invalid_ttl":
		return simdr.ErrInvalidTTL
	case "reserved_key":
		return simdr.ErrReservedKey
	case "not_implemented":
		return errors.ErrUnsupported
	case "read_only":
		return simdr.ErrReadOnly
	case "closed":
		return simdr.ErrClosed
	case "failed":
		return simdr.ErrFailed
	case "locked":
		return simdr.ErrLocked
	case "checksum":
		return simdr.ErrChecksum
	case "corrupt":
		return simdr.ErrCorrupt
	case "too_large":
		return ErrTooLarge
	case "unauthorized":
		return ErrUnauthorized
	case "shutting_down", "busy", "no_leader":
		return ErrUnavailable
	case "outcome_unknown":
		return outcomeUnknown
	case "no_space":
		return ErrNoSpace
	case "io_error", "internal":
		return ErrServer
	case "forbidden_origin", "forbidden_host":
		return ErrForbidden
	case "":
		switch e.StatusCode {
		case http.StatusUnauthorized:
			return ErrUnauthorized
		case http.StatusRequestEntityTooLarge:
			return ErrTooLarge
		case http.StatusServiceUnavailable:
			return ErrUnavailable
		case http.StatusInsufficientStorage:
			return ErrNoSpace
		case http.StatusInternalServerError:
			return ErrServer
		}
	}
	return nil
}

// keyPath is the URL of key: one percent-encoded path segment.
func (c *Client) keyPath(key []byte) string {
	seg := url.PathEscape(string(key))
	if seg == "." || seg == ".." { // would be taken for path navigation
		seg = strings.Repeat("%2E", len(seg))
	}
	return c.base + "/v1/keys/" + seg
}

// do sends a request and returns the response when its status is want;
// otherwise it closes it and returns an *Error. With several nodes
// (Options.Nodes) it retries on the next one as Options.Nodes says.
func (c *Client) do(ctx context.Context, method, url string, body io.Reader, contentType string, want int) (*http.Response, error) {
	return c.doHeader(ctx, method, url, body, contentType, nil, want)
}

// doHeader is do with more request headers (hdr, which may be nil), sent on
// every attempt.
func (c *Client) doHeader(ctx context.Context, method, url string, body io.Reader, contentType string, hdr http.Header, want int) (*http.Response, error) {
	path, ours := strings.CutPrefix(url, c.base)
	if c.strong && isRead(method, path) {
		if strings.Contains(path, "?") {
			path += "&consistency=strong"
		} else {
			path += "?consistency=strong"
		}
	}
	// A write whose outcome is unknown is not sent again, unless it is
	// conditional (If-Match: sent again after it applied, it fails).
	once := changesData(method, path) && hdr.Get("If-Match") == ""
	var (
		last    error
		getBody func() (io.ReadCloser, error) // the first attempt's
		length  int64
	)
	start := int(c.cur.Load())
	for attempt := 0; attempt < c.maxAttempts; attempt++ {
		i := (start + attempt) % len(c.nodes)
		target := url // not under the base URL: sent as is
		if ours {
			target = c.nodes[i] + path
		}
		if attempt > 0 && body != nil && getBody == nil {
			return nil, last // the body is spent
		}
		var reqBody io.Reader = body
		if attempt > 0 {
			reqBody = nil // a new copy of the first attempt's, below
		}
		req, err := http.NewRequestWithContext(ctx, method, target, reqBody)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		switch {
		case attempt == 0:
			// GetBody replays the body from where it was now: an attempt
			// that read some of it must not make the next send the rest.
			getBody, length = req.GetBody, req.ContentLength
		case body != nil:
			if req.Body, err = getBody(); err != nil {
				return nil, fmt.Errorf("client: %w", err)
			}
			req.GetBody, req.ContentLength = getBody, length
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("client: %w", err) // not sent
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			if once && !neverSent(err) {
				return nil, &unknownError{err}
			}
			last = fmt.Errorf("client: %w", err)
			if !c.retryable(once, err, nil) || ctx.Err() != nil {
				return nil, last
			}
		} else if resp.StatusCode == want {
			c.cur.Store(uint32(i))
			return resp, nil
		} else {
			last = readError(resp)
			resp.Body.Close()
			if !c.retryable(once, nil, last) {
				return nil, last
			}
		}
		if attempt+1 < c.maxAttempts && (attempt+1)%len(c.nodes) == 0 {
			// A whole round failed: an election takes a moment.
			d := time.Duration(50*(attempt+1)/len(c.nodes)) * time.Millisecond
			select {
			case <-ctx.Done():
				return nil, last
			case <-time.After(min(d, time.Second)):
			}
		}
	}
	return nil, last
}

// isRead reports whether a request reads keys (Options.StrongReads).
func isRead(method, path string) bool {
	switch {
	case method == http.MethodGet || method == http.MethodHead:
		return strings.HasPrefix(path, "/v1/keys/") || strings.HasPrefix(path, "/v1/hash/")
	case method == http.MethodPost:
		return path == "/v1/get-many"
	}
	return false
}

// retryable says whether a failed attempt may go to the next node. A
// request sent at most once (a write) goes again only when the failure says
// it was not applied: the connection was refused (never sent), or a 503
// whose code means refused before the write was taken (no_leader,
// shutting_down, closed; not outcome_unknown). Any other request (a read,
// a conditional delete) goes again after outcome_unknown too.
func (c *Client) retryable(once bool, err error, resp error) bool {
	if len(c.nodes) < 2 && c.maxAttempts < 2 {
		return false
	}
	if err != nil {
		return !once || neverSent(err)
	}
	var e *Error
	if errors.As(resp, &e) && e.StatusCode == http.StatusServiceUnavailable {
		return e.Code == "no_leader" || e.Code == "shutting_down" || e.Code == "closed" ||
			(!once && e.Code == "outcome_unknown")
	}
	return false
}

// neverSent reports whether a request's error is a failure to connect,
// before any of the request was sent.
func neverSent(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && ne.Op == "dial"
}

// changesData reports whether a request may change what the store holds:
// such a request whose outcome is unknown is not sent again.
func changesData(method, path string) bool {
	switch method {
	case http.MethodPut, http.MethodDelete:
		return true
	case http.MethodPost:
		path, _, _ = strings.Cut(path, "?")
		return path == "/v1/batch" || path == "/v1/rename" || strings.HasPrefix(path, "/v1/cluster/")
	}
	return false
}

// unknownError is a write's failure after it was sent, whose outcome is
// unknown: it matches ErrOutcomeUnknown and its cause.
type unknownError struct{ cause error }

func (e *unknownError) Error() string   { return ErrOutcomeUnknown.Error() + ": " + e.cause.Error() }
func (e *unknownError) Unwrap() []error { return []error{ErrOutcomeUnknown, e.cause} }

// outcomeUnknown is what a 503 outcome_unknown matches: both
// ErrOutcomeUnknown and ErrUnavailable.
var outcomeUnknown = fmt.Errorf("%w (%w)", ErrOutcomeUnknown, ErrUnavailable)

// readError decodes an error response.
func readError(resp *http.Response) error {
	e := &Error{StatusCode: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(b, &body) == nil {
		e.Message, e.Code = body.Error, body.Code
	} else {
		e.Message = strings.TrimSpace(string(b))
	}
	return e
}

// done drains and closes a response whose body does not matter, so the
// connection is reused.
func done(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// doJSON sends a request and decodes the JSON response into out (if not nil).
func (c *Client) doJSON(ctx context.Context, method, path string, in, out any, want int) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	resp, err := c.do(ctx, method, c.base+path, body, ct, want)
	if err != nil {
		return err
	}
	defer done(resp)
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("client: %s %s: decoding the response: %w", method, path, err)
		}
	}
	return nil
}

// Put stores value under key, replacing any value it had.
func (c *Client) Put(ctx context.Context, key, value []byte) error {
	resp, err := c.do(ctx, http.MethodPut, c.keyPath(key), bytes.NewReader(value), "application/octet-stream", http.StatusNoContent)
	if err != nil {
		return err
	}
	done(resp)
	return nil
}

// PutTTL stores value under key to expire ttl from now, by the server's
// clock (simdr.Store.PutTTL; a PUT with ?ttl=). A ttl that is not positive
// fails with simdr.ErrInvalidTTL before anything is sent; a key with the
// reserved prefix with simdr.ErrReservedKey; a cluster node answers
// errors.ErrUnsupported. It is retried as Put is.
func (c *Client) PutTTL(ctx context.Context, key, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("client: put: ttl %v: %w", ttl, simdr.ErrInvalidTTL)
	}
	resp, err := c.do(ctx, http.MethodPut, ttlURL(c.keyPath(key), ttl), bytes.NewReader(value), "application/octet-stream", http.StatusNoContent)
	if err != nil {
		return err
	}
	done(resp)
	return nil
}

// ttlURL adds ttl to a PUT's URL, as a Go duration (exact: the server
// rounds it up to whole milliseconds, as the library does).
func ttlURL(u string, ttl time.Duration) string {
	return u + "?ttl=" + url.QueryEscape(ttl.String())
}

// TTL returns how long key's value has left before it expires, in whole
// milliseconds, or simdr.NoExpiry when it has no expiry (a HEAD request:
// the server's X-Simdr-Expires-In-Ms header). A missing or expired key
// matches simdr.ErrNotFound. A server older than expiring keys sends no
// header, so every value reads as simdr.NoExpiry from it.
func (c *Client) TTL(ctx context.Context, key []byte) (time.Duration, error) {
	resp, err := c.do(ctx, http.MethodHead, c.keyPath(key), nil, "", http.StatusOK)
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusNotFound && e.Code == "" {
		e.Code = "not_found" // an answer to HEAD has no body to say so
	}
	if err != nil {
		return 0, err
	}
	done(resp)
	return expiresIn(resp.Header)
}

// expiresIn reads the expiry header of a GET or HEAD answer.
func expiresIn(h http.Header) (time.Duration, error) {
	v := h.Get(headerExpiresIn)
	if v == "" {
		return simdr.NoExpiry, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("client: ttl: the server sent %s %q", headerExpiresIn, v)
	}
	return ttlms.Duration(ms), nil
}

// PutReader stores the bytes r yields until io.EOF under key, streamed to
// the server, and returns how many it stored. On an error the server stores
// nothing, but for ErrOutcomeUnknown: r had reached io.EOF when the
// connection broke, or ctx ended, before the answer. An error of r fails
// the call with that error (errors.Is), and the server stores nothing. When
// ctx ends while r.Read blocks, PutReader returns at once, leaving that
// Read to finish in the background (its bytes are dropped): no other Read
// of r starts once PutReader has returned. r is never closed.
func (c *Client) PutReader(ctx context.Context, key []byte, r io.Reader) (int64, error) {
	return c.putReader(ctx, c.keyPath(key), r)
}

func (c *Client) putReader(ctx context.Context, u string, r io.Reader) (int64, error) {
	cr := newBodyReader(ctx, r)
	defer cr.Close()
	resp, err := c.do(ctx, http.MethodPut, u, cr, "application/octet-stream", http.StatusNoContent)
	var ue *unknownError
	if errors.As(err, &ue) && !cr.sawEOF() {
		// The body never reached its end (r failed, or ctx ended first):
		// the server cannot have stored it.
		return 0, fmt.Errorf("client: put: the value was not sent whole, nothing is stored: %w", ue.cause)
	}
	if err != nil {
		return 0, err
	}
	done(resp)
	return cr.n.Load(), nil
}

// bodyReader is the request body of PutReader: it counts what r yields,
// notes whether r reached io.EOF, and reads r in a goroutine of its own, so
// that the end of the call's context (or Close) ends a Read that blocks in
// r. net/http waits for the body's Read to return before it gives up a
// cancelled request, and does not close the body first: a reader that
// never returns, such as an idle pipe, would keep the call from returning
// when its context ends. Read must not be called
// concurrently with itself (net/http does not).
type bodyReader struct {
	r    io.Reader
	ctx  context.Context // the call's: its end ends a Read too
	n    atomic.Int64
	eof  atomic.Bool
	err  error // r's error or io.EOF, once it gave one (Read only)
	buf  []byte
	want chan int        // a read of up to that many bytes into buf
	got  chan readResult // its result
	done chan struct{}   // closed by Close
	once sync.Once       // starts the goroutine
	mu   sync.Mutex      // orders starting a read and Close
	shut sync.Once       // closes done
}

type readResult struct {
	n   int
	err error
}

// errBodyClosed is what a Read of a closed bodyReader returns.
var errBodyClosed = errors.New("client: request body closed")

func newBodyReader(ctx context.Context, r io.Reader) *bodyReader {
	return &bodyReader{r: r, ctx: ctx, want: make(chan int), got: make(chan readResult, 1), done: make(chan struct{})}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err // r failed or ended: the loop is gone
	}
	if len(p) == 0 {
		return 0, nil
	}
	b.once.Do(func() {
		b.buf = make([]byte, 32<<10)
		go b.loop(b.buf)
	})
	m := min(len(p), len(b.buf))
	b.mu.Lock() // against Close: no read of r starts once Close has returned
	select {
	case <-b.done:
		b.mu.Unlock()
		return 0, errBodyClosed
	default:
	}
	b.want <- m // the loop is waiting: the last read's result has been taken
	b.mu.Unlock()
	select {
	case res := <-b.got:
		copy(p, b.buf[:res.n])
		b.n.Add(int64(res.n))
		if res.err == io.EOF {
			b.eof.Store(true)
		}
		b.err = res.err
		return res.n, res.err
	case <-b.done:
		return 0, errBodyClosed
	case <-b.ctx.Done():
		b.Close()
		return 0, b.ctx.Err()
	}
}

// loop reads r into buf as Read asks, until r fails or ends, or Close.
func (b *bodyReader) loop(buf []byte) {
	for {
		select {
		case m := <-b.want:
			n, err := b.r.Read(buf[:m])
			n = min(max(n, 0), m) // a reader that breaks the io.Reader contract
			b.got <- readResult{n, err}
			if err != nil {
				return
			}
		case <-b.done:
			return
		}
	}
}

// sawEOF reports whether r reached io.EOF.
func (b *bodyReader) sawEOF() bool { return b.eof.Load() }

// Close ends a Read in progress and fails the later ones; it does not close r.
func (b *bodyReader) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.shut.Do(func() { close(b.done) })
	return nil
}

// Get returns a copy of the value stored under key; a missing key gives an
// error matching simdr.ErrNotFound.
func (c *Client) Get(ctx context.Context, key []byte) ([]byte, error) {
	return c.getURL(ctx, c.keyPath(key))
}

func (c *Client) getURL(ctx context.Context, url string) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, url, nil, "", http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if n := resp.ContentLength; n >= 0 && n <= 64<<20 { // the usual case: read it in place (a larger claim grows as bytes arrive)
		v := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, v); err != nil {
			return nil, fmt.Errorf("client: get: %w", err)
		}
		return v, nil
	}
	v, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("client: get: %w", err)
	}
	return v, nil
}

// GetReader returns the value stored under key as a stream, for values too
// large to hold in memory. The caller must close it.
func (c *Client) GetReader(ctx context.Context, key []byte) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, c.keyPath(key), nil, "", http.StatusOK)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Delete removes key. Deleting a key that has no value is not an error.
func (c *Client) Delete(ctx context.Context, key []byte) error {
	resp, err := c.do(ctx, http.MethodDelete, c.keyPath(key), nil, "", http.StatusNoContent)
	if err != nil {
		return err
	}
	done(resp)
	return nil
}

// Has reports whether key has a value (a HEAD request).
func (c *Client) Has(ctx context.Context, key []byte) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, c.keyPath(key), nil, "", http.StatusOK)
	if err == nil {
		done(resp)
		return true, nil
	}
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusNotFound {
		return false, nil
	}
	return false, err
}

type lenResponse struct {
	Len  int   `json:"len"`
	Size int64 `json:"size"`
}

// Len returns the number of live keys.
func (c *Client) Len(ctx context.Context) (int, error) {
	var r lenResponse
	err := c.doJSON(ctx, http.MethodGet, "/v1/len", nil, &r, http.StatusOK)
	return r.Len, err
}

// Size returns the bytes of valid entries in the server's file.
func (c *Client) Size(ctx context.Context) (int64, error) {
	var r lenResponse
	err := c.doJSON(ctx, http.MethodGet, "/v1/len", nil, &r, http.StatusOK)
	return r.Size, err
}

// Batch collects puts and deletes that Apply sends in one request, applied
// atomically by the server. It is not safe for concurrent use; it may be
// reused after Reset.
type Batch struct {
	buf []byte // the binary body
	n   int
	err error // the first invalid ttl
}

// Put adds a put of value under key (value is copied).
func (b *Batch) Put(key, value []byte) { b.put('P', key, value) }

func (b *Batch) put(op byte, key, value []byte) {
	b.buf = append(b.buf, op)
	b.buf = binary.LittleEndian.AppendUint32(b.buf, uint32(len(key)))
	b.buf = append(b.buf, key...)
	b.buf = binary.LittleEndian.AppendUint64(b.buf, uint64(len(value)))
	b.buf = append(b.buf, value...)
	b.n++
}

// PutTTL adds a put of value under key that expires ttl after the server
// applies the batch (simdr.Batch.PutTTL; ttl travels in whole milliseconds,
// rounded up). A ttl that is not positive makes Apply fail with
// simdr.ErrInvalidTTL, sending nothing.
func (b *Batch) PutTTL(key, value []byte, ttl time.Duration) {
	if ttl <= 0 && b.err == nil {
		b.err = fmt.Errorf("client: batch op %d: ttl %v: %w", b.n, ttl, simdr.ErrInvalidTTL)
	}
	b.put('T', key, value)
	b.buf = binary.LittleEndian.AppendUint64(b.buf, uint64(max(ttlms.Ms(ttl), 0)))
}

// Delete adds a delete of key.
func (b *Batch) Delete(key []byte) {
	b.buf = append(b.buf, 'D')
	b.buf = binary.LittleEndian.AppendUint32(b.buf, uint32(len(key)))
	b.buf = append(b.buf, key...)
	b.n++
}

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return b.n }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() { b.buf, b.n, b.err = b.buf[:0], 0, nil }

// Apply sends every operation of b in one request; the server applies them
// all or, on any error (an invalid value: simdr.ErrInvalidValue), none.
func (c *Client) Apply(ctx context.Context, b *Batch) error {
	if b.err != nil {
		return b.err
	}
	if b.n == 0 {
		return nil
	}
	resp, err := c.do(ctx, http.MethodPost, c.base+"/v1/batch", bytes.NewReader(b.buf), binaryType, http.StatusOK)
	if err != nil {
		return err
	}
	done(resp)
	return nil
}

// GetMany returns the values of keys, in order, read by the server from one
// consistent snapshot. A missing key gives nil in its slot.
func (c *Client) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	var body []byte
	for _, k := range keys {
		body = binary.LittleEndian.AppendUint32(body, uint32(len(k)))
		body = append(body, k...)
	}
	resp, err := c.do(ctx, http.MethodPost, c.base+"/v1/get-many", bytes.NewReader(body), binaryType, http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("client: get many: %w", err)
	}
	out := make([][]byte, len(keys))
	for i := range out {
		if len(data) < 1 {
			return nil, fmt.Errorf("client: get many: response ends at value %d of %d", i, len(keys))
		}
		present := data[0]
		data = data[1:]
		if present == 0 {
			continue
		}
		if len(data) < 8 {
			return nil, fmt.Errorf("client: get many: response ends in value %d", i)
		}
		n := binary.LittleEndian.Uint64(data)
		data = data[8:]
		if n > uint64(len(data)) {
			return nil, fmt.Errorf("client: get many: response ends in value %d", i)
		}
		out[i] = data[:n:n]
		data = data[n:]
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("client: get many: %d bytes after the last value", len(data))
	}
	return out, nil
}

// Rename moves the value of oldKey to newKey in one atomic write. A missing
// oldKey matches simdr.ErrNotFound; the same key, simdr.ErrSameKey.
func (c *Client) Rename(ctx context.Context, oldKey, newKey []byte) error {
	in := struct {
		From []byte `json:"from_b64"`
		To   []byte `json:"to_b64"`
	}{oldKey, newKey}
	if in.From == nil {
		in.From = []byte{}
	}
	if in.To == nil {
		in.To = []byte{}
	}
	return c.doJSON(ctx, http.MethodPost, "/v1/rename", in, nil, http.StatusNoContent)
}

// Stats returns the figures of the server's store.
func (c *Client) Stats(ctx context.Context) (simdr.Stats, error) {
	var st simdr.Stats
	err := c.doJSON(ctx, http.MethodGet, "/v1/stats", nil, &st, http.StatusOK)
	return st, err
}

// Compact compacts the server's store file.
func (c *Client) Compact(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/compact", nil, nil, http.StatusOK)
}

// Sync makes every write so far durable on the server's disk.
func (c *Client) Sync(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/sync", nil, nil, http.StatusNoContent)
}

// Ping checks that the server answers and its store is open (GET /healthz).
func (c *Client) Ping(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodGet, "/healthz", nil, nil, http.StatusOK)
}

// hashPath is the URL of a key hash: /v1/hash/ and 16 hexadecimal digits.
func (c *Client) hashPath(h uint64) string {
	return fmt.Sprintf("%s/v1/hash/%016x", c.base, h)
}

// GetHash is Get for a caller that has the key's hash (simdr.Hash).
func (c *Client) GetHash(ctx context.Context, h uint64) ([]byte, error) {
	return c.getURL(ctx, c.hashPath(h))
}

// DeleteHash is Delete for a caller that has the key's hash (simdr.Hash).
func (c *Client) DeleteHash(ctx context.Context, h uint64) error {
	resp, err := c.do(ctx, http.MethodDelete, c.hashPath(h), nil, "", http.StatusNoContent)
	if err != nil {
		return err
	}
	done(resp)
	return nil
}

// Verify has the server walk its whole file (simdr.Store.Verify): nil, or
// a *simdr.VerifyError (matching simdr.ErrChecksum and simdr.ErrCorrupt)
// listing the damaged offsets.
func (c *Client) Verify(ctx context.Context) error {
	var r struct {
		OK       bool    `json:"ok"`
		Bad      []int64 `json:"bad"`
		BrokenAt int64   `json:"broken_at"`
	}
	if err := c.doJSON(ctx, http.MethodPost, "/v1/verify", nil, &r, http.StatusOK); err != nil {
		return err
	}
	if r.OK {
		return nil
	}
	return &simdr.VerifyError{Bad: r.Bad, BrokenAt: r.BrokenAt}
}

// Entry is one live entry of a remote store, as Entries yields it: the
// key's hash (the file format stores no keys) and a copy of its value.
type Entry struct {
	KeyHash uint64
	Value   []byte
}

// Entries streams every live entry of the server's store, each key once
// with its latest value, in no particular order (simdr.Store.Entries: writes
// made meanwhile may or may not be seen). Each Value is a fresh slice the
// caller may keep. An error (the request failing, or the stream breaking
// off) is yielded once, last. Stopping early closes the stream.
func (c *Client) Entries(ctx context.Context) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		resp, err := c.do(ctx, http.MethodGet, c.base+"/v1/entries", nil, "", http.StatusOK)
		if err != nil {
			yield(Entry{}, err)
			return
		}
		defer resp.Body.Close()
		br := bufio.NewReaderSize(resp.Body, 64<<10)
		var hdr [16]byte
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				if err != io.EOF {
					yield(Entry{}, fmt.Errorf("client: entries: %w", err))
				}
				return
			}
			n := binary.LittleEndian.Uint64(hdr[8:])
			// Grow as bytes arrive: a length is only a claim until they do.
			var v bytes.Buffer
			if _, err := io.CopyN(&v, br, int64(min(n, 1<<62))); err != nil {
				yield(Entry{}, fmt.Errorf("client: entries: value of %d bytes: %w", n, unexpected(err)))
				return
			}
			if !yield(Entry{KeyHash: binary.LittleEndian.Uint64(hdr[:]), Value: v.Bytes()}, nil) {
				return
			}
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Copy writes the value of key into dst, streamed (GetReader, then
// dst.PutReader). Unlike simdr.Store.Copy it cannot tell whether dst is
// the same store file through another address: only c itself as dst fails
// (simdr.ErrSameStore). A missing key matches simdr.ErrNotFound. A value
// that expires keeps its expiry, as with simdr.Store.Copy, up to the time
// the copy takes (the time left is read when the copy starts and counted
// again from when dst stores it); it is still streamed to a *Client dst,
// but read into memory first for any other (Store has no streaming put
// with a ttl).
func (c *Client) Copy(ctx context.Context, key []byte, dst Store) error {
	_, err := c.copy(ctx, key, dst, false)
	return err
}

// copy is Copy, returning the ETag of the entry copied; strong reads it
// with ?consistency=strong (from a cluster's leader).
func (c *Client) copy(ctx context.Context, key []byte, dst Store, strong bool) (string, error) {
	if dst == nil {
		return "", fmt.Errorf("client: copy: nil destination: %w", simdr.ErrClosed)
	}
	if d, ok := dst.(*Client); ok && d == c {
		return "", fmt.Errorf("client: copy: %w", simdr.ErrSameStore)
	}
	u := c.keyPath(key)
	if strong && !c.strong { // (with c.strong, do adds it)
		u += "?consistency=strong"
	}
	resp, err := c.do(ctx, http.MethodGet, u, nil, "", http.StatusOK)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	ttl, err := expiresIn(resp.Header)
	if err != nil {
		return "", fmt.Errorf("client: copy: %w", err)
	}
	switch d, remote := dst.(*Client); {
	case ttl == simdr.NoExpiry:
		_, err = dst.PutReader(ctx, key, resp.Body)
	case remote:
		_, err = d.putReader(ctx, ttlURL(d.keyPath(key), ttl), resp.Body)
	default:
		var v []byte
		if v, err = io.ReadAll(resp.Body); err == nil {
			err = dst.PutTTL(ctx, key, v, ttl)
		}
	}
	if err != nil {
		return "", fmt.Errorf("client: copy: %w", err)
	}
	return resp.Header.Get("ETag"), nil
}

// Move copies key into dst (see Copy), makes the copy durable (dst.Sync),
// then deletes key from the server unless its value changed meanwhile (a
// DELETE with If-Match naming the entry copied). The value is never lost
// to a failure: if the copy fails, the server keeps it. The server checks
// and deletes in two steps, so a write landing exactly between them is
// deleted too (simdr.Store.Move holds the write lock across both).
//
// The value is read with ?consistency=strong (a single server ignores it):
// a cluster's nodes may hold the same entries at other offsets in their
// files (one compacted its own, or restored a snapshot), so an ETag from a
// follower would not match on the leader, which checks the If-Match. If
// the leadership moves between the copy and the delete to a node whose
// file differs, the If-Match fails all the same: the value then stays on
// both sides, and Move returns nil as for a value that changed.
//
// With Options.Nodes the get and the delete are retried on the other nodes.
// The delete is conditional, so it goes again even when its outcome is
// unknown (ErrOutcomeUnknown for any other write): one that was applied
// but not acknowledged finds the key gone, the If-Match fails, and Move
// takes that, as a value that changed, for a move that is done.
func (c *Client) Move(ctx context.Context, key []byte, dst Store) error {
	tag, err := c.copy(ctx, key, dst, true)
	if err == nil {
		err = dst.Sync(ctx)
	}
	if err != nil {
		return fmt.Errorf("client: move: %w", err)
	}
	var hdr http.Header
	if tag != "" {
		hdr = http.Header{"If-Match": {tag}}
	}
	resp, err := c.doHeader(ctx, http.MethodDelete, c.keyPath(key), nil, "", hdr, http.StatusNoContent)
	var e *Error
	switch {
	case err == nil:
		done(resp)
		return nil
	case errors.As(err, &e) && e.StatusCode == http.StatusPreconditionFailed:
		return nil // changed meanwhile (or deleted by an earlier attempt): keep the newer value
	}
	return fmt.Errorf("client: move: copied, but not deleted from the source: %w", err)
}
