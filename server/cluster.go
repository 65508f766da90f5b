package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/cluster"
)

// Headers of a cluster node's answers.
const (
	// HeaderApplied is the index of the last raft entry in the answering
	// node's store.
	HeaderApplied = "X-Simdr-Raft-Applied"
	// HeaderLag is how many committed entries the node knows of that its
	// store does not hold yet: a local read is stale by at most these (and
	// by what it has not heard of, see HeaderLastContact).
	HeaderLag = "X-Simdr-Raft-Lag"
	// HeaderLastContact is how long ago, in milliseconds, a follower last
	// heard from the leader (0 on the leader).
	HeaderLastContact = "X-Simdr-Raft-Last-Contact-Ms"
	// HeaderForwarded marks a request a node forwarded to the leader: the
	// receiver never forwards it again.
	HeaderForwarded = "X-Simdr-Forwarded"
)

// ServeCluster is Serve for a cluster node: the same API, on the store the
// node holds (a snapshot from the leader may replace it: requests then move
// to the new one while those in flight finish on the old one). Writes
// (PUT, DELETE, /v1/batch, /v1/rename) go through raft and are answered
// once committed and applied here; a follower forwards them to the leader.
// Reads are local unless ?consistency=strong, which the leader serves after
// confirming its leadership (a follower forwards those too). It adds GET
// /v1/cluster, POST /v1/cluster/join and POST /v1/cluster/remove. cfg.Token
// is required. It does not close the node.
func ServeCluster(ctx context.Context, ln net.Listener, node *cluster.Node, cfg Config) error {
	cfg = cfg.withDefaults()
	if cfg.Token == "" {
		ln.Close()
		return errors.New("server: a cluster node needs a token")
	}
	tcp, isTCP := ln.Addr().(*net.TCPAddr)
	tlsCfg, err := loadTLS(cfg) // ErrTLSHalf rather than plain HTTP
	if err != nil {
		ln.Close()
		return err
	}
	c := &clusterHandler{node: node, cfg: cfg, loopback: isTCP && tcp.IP.IsLoopback()}
	serveErr := serveUntilDone(ctx, ln, cfg, tlsCfg, c, &c.inflight, c.stopWatches)
	st, release := node.Acquire()
	if err := st.Sync(); err != nil && !errors.Is(err, simdr.ErrClosed) {
		serveErr = errors.Join(serveErr, err)
	}
	release()
	return serveErr
}

// ClusterHandler is ServeCluster's http.Handler, for tests and embedders.
func ClusterHandler(node *cluster.Node, cfg Config) http.Handler {
	cfg = cfg.withDefaults()
	host, _, err := net.SplitHostPort(cfg.Addr)
	return &clusterHandler{node: node, cfg: cfg, loopback: err == nil && isLoopbackHost(host)}
}

// clusterHandler serves each request with the handler of the store the
// node holds now, built again when a restore replaced it.
type clusterHandler struct {
	node     *cluster.Node
	cfg      Config
	loopback bool
	inflight tracker

	mu sync.Mutex
	h  *handler
	// watchesStopped: the server is shutting down (stopWatches ran): a
	// handler built from then on has its event streams ended at once.
	watchesStopped bool
}

// stopWatches ends the event streams of the current handler and of any
// handler built later (registered with http.Server.RegisterOnShutdown).
func (c *clusterHandler) stopWatches() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchesStopped = true
	if c.h != nil {
		c.h.stopWatches()
	}
}

func (c *clusterHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !c.inflight.enter() {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "server is shutting down")
		return
	}
	defer c.inflight.leave()
	st, release := c.node.Acquire()
	defer release()
	c.mu.Lock()
	if c.h == nil || c.h.store != st {
		if c.h != nil {
			// A snapshot replaced the store: the streams watching the old
			// one would never see another commit. End them; the clients
			// watch the new store again.
			c.h.stopWatches()
		}
		c.h = newHandler(st, c.cfg, c.loopback)
		c.h.intercept = c.intercept
		c.h.watchDone = c.node.Done()
		if c.watchesStopped {
			c.h.stopWatches()
		}
	}
	h := c.h
	c.mu.Unlock()
	h.ServeHTTP(w, r)
}

// intercept answers the cluster's own routes, sends writes through raft
// (or to the leader), checks strong reads, and marks every answer with
// the node's lag.
func (c *clusterHandler) intercept(h *handler, w http.ResponseWriter, r *http.Request, route string) bool {
	n := c.node
	lag, since := n.Lag()
	hd := w.Header()
	hd.Set(HeaderApplied, strconv.FormatUint(n.Applied(), 10))
	hd.Set(HeaderLag, strconv.FormatUint(lag, 10))
	hd.Set(HeaderLastContact, strconv.FormatInt(since.Milliseconds(), 10))
	p := r.URL.Path
	switch {
	case p == "/v1/cluster" && (r.Method == "GET" || r.Method == "HEAD"):
		c.status(w, r)
		return true
	case p == "/v1/cluster/join" && r.Method == "POST", p == "/v1/cluster/remove" && r.Method == "POST":
		c.membership(h, w, r)
		return true
	case strings.HasPrefix(p, "/v1/cluster"):
		writeError(w, http.StatusNotFound, "no_route", "no such endpoint: "+r.Method+" "+p)
		return true
	}
	if route == "/v1/compact" && r.Method == "POST" {
		// Not while a snapshot replaces the file (nor while an entry is applied).
		n.Exclusive(func() { h.compact(w, r) })
		return true
	}
	write := (route == routeKeys && (r.Method == "PUT" || r.Method == "DELETE")) ||
		(route == routeHash && r.Method == "DELETE") ||
		(r.Method == "POST" && (route == "/v1/batch" || route == "/v1/rename"))
	strong := r.URL.Query().Get("consistency") == "strong"
	if !write && !strong {
		return false // a local read (or a local operation: compact, sync, verify...)
	}
	if !n.IsLeader() {
		c.forward(w, r, write)
		return true
	}
	if !write {
		if err := n.VerifyRead(r.Context()); err != nil {
			if !errors.Is(err, cluster.ErrNotLeader) {
				writeStoreError(w, err) // this node's store is stale
				return true
			}
			c.forward(w, r, false)
			return true
		}
		st, release := n.Acquire()
		stale := st != h.store
		release()
		if stale {
			// A snapshot replaced the store after this request took it (this
			// node was a follower then): serve it from the store VerifyRead
			// vouched for.
			c.ServeHTTP(w, r)
			return true
		}
		return false // served here, now that the leadership is confirmed
	}
	c.write(h, w, r, route)
	return true
}

// forward sends the request to the leader and relays its answer: 503
// no_leader when there is none, this request was forwarded already, or the
// leader could not be reached (nothing was sent); 503 outcome_unknown when
// a write's connection to the leader failed after it was sent.
func (c *clusterHandler) forward(w http.ResponseWriter, r *http.Request, write bool) {
	_, lurl := c.node.Leader()
	if lurl == "" || r.Header.Get(HeaderForwarded) != "" {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "no_leader", "the cluster has no leader at the moment: retry")
		return
	}
	u, err := url.Parse(lurl)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "leader URL: "+err.Error())
		return
	}
	http.NewResponseController(w).SetWriteDeadline(time.Time{})
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = u.Host
			pr.Out.Header.Set(HeaderForwarded, c.node.ID())
			pr.Out.Header.Del("Origin") // already checked here
			// With one of these, net/http sends a request without a body
			// (a DELETE) again on a new connection when a reused one broke
			// after it was sent: the leader would apply it twice.
			pr.Out.Header.Del("Idempotency-Key")
			pr.Out.Header.Del("X-Idempotency-Key")
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if write && !neverSent(err) {
				// The leader may have taken the write before the
				// connection broke.
				writeError(w, http.StatusServiceUnavailable, "outcome_unknown",
					"forwarding to the leader: the write may or may not be applied: "+err.Error())
				return
			}
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "no_leader", "forwarding to the leader: "+err.Error())
		},
	}
	rp.ServeHTTP(w, r)
}

// neverSent reports whether a failed request's error is a failure to
// connect, before any of it was sent.
func neverSent(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && ne.Op == "dial"
}

// opSink collects a decoded batch as the cluster's operations. err is the
// first op it refuses: a key with the reserved prefix (the nodes apply ops
// by hash, past the library's check). A ttl becomes an absolute expiry,
// computed here, once, by this node's clock, so that every replica gives the
// key the same one.
type opSink struct {
	ops []cluster.Op
	err error
}

func (s *opSink) Put(key, value []byte) {
	s.check(key)
	s.ops = append(s.ops, cluster.Op{Hash: simdr.Hash(key), Value: append([]byte(nil), value...)})
}

func (s *opSink) PutTTL(key, value []byte, ttl time.Duration) {
	s.Put(key, value)
	s.ops[len(s.ops)-1].ExpiresAt = expiresAt(ttl)
}

// expiresAt returns the Unix ms at which a value written now with ttl (> 0)
// expires, rounded up as simdr.Store.PutTTL rounds it.
func expiresAt(ttl time.Duration) int64 {
	ms := int64(ttl / time.Millisecond)
	if ttl%time.Millisecond != 0 {
		ms++
	}
	now := time.Now().UnixMilli()
	if ms > math.MaxInt64/4-now {
		return math.MaxInt64 / 4 // the library caps it further
	}
	return now + ms
}

func (s *opSink) Delete(key []byte) {
	s.check(key)
	s.ops = append(s.ops, cluster.Op{Hash: simdr.Hash(key), Del: true})
}

func (s *opSink) check(key []byte) {
	if err := checkKey(key); err != nil && s.err == nil {
		s.err = fmt.Errorf("op %d: %w", len(s.ops), err)
	}
}

// validValue is simdr's rule: not empty, not the single byte 0x00.
func validValue(v []byte) bool { return len(v) > 0 && !(len(v) == 1 && v[0] == 0) }

// write turns a write request into a raft command and answers as the
// single-node server does once it is applied.
func (c *clusterHandler) write(h *handler, w http.ResponseWriter, r *http.Request, route string) {
	hd := hold{b: &h.budget}
	defer hd.release()
	var cmd []byte
	// check, when set instead of cmd, decides the command on the store
	// (cluster.Node.ApplyChecked).
	var check func(st *simdr.Store) ([]byte, error)
	var answer func()
	switch route {
	case routeKeys, routeHash:
		var kh uint64
		if route == routeKeys {
			k, ok := pathKey(w, r)
			if !ok {
				return
			}
			kh = simdr.Hash(k)
		} else {
			v, ok := pathHash(w, r)
			if !ok {
				return
			}
			kh = v
		}
		if cluster.IsReserved(kh) {
			writeError(w, http.StatusForbidden, "reserved", cluster.ErrReserved.Error())
			return
		}
		if r.Method == "DELETE" {
			cmd = cluster.EncodeBatch([]cluster.Op{{Hash: kh, Del: true}})
			answer = func() { h.metrics.wrote("delete", 1, 0); w.WriteHeader(http.StatusNoContent) }
			// What the store holds is read once it holds every committed
			// write (a new leader's may not yet).
			switch im, byHash := r.Header.Get("If-Match"), route == routeHash; {
			case im != "":
				// Decided on the leader, with no write logged in between.
				del := cmd
				check = func(st *simdr.Store) ([]byte, error) {
					if err := matches(st, kh, im); err != nil {
						return nil, err
					}
					if byHash && absentIn(st, kh) { // (see handler.absent)
						return nil, nil
					}
					return del, nil
				}
				cmd = nil
			case byHash:
				if err := c.node.VerifyRead(r.Context()); err != nil {
					writeApplyError(w, err)
					return
				}
				st, release := c.node.Acquire()
				absent := absentIn(st, kh) // (see handler.absent)
				release()
				if absent {
					w.WriteHeader(http.StatusNoContent)
					return
				}
			}
			break
		}
		ttl, err := ttlParam(r)
		if err != nil {
			writeStoreError(w, err)
			return
		}
		if max := h.cfg.MaxValueBytes; max > 0 && r.ContentLength > max {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("value of %d bytes exceeds the limit of %d", r.ContentLength, max))
			return
		}
		body, err := h.readBody(w, r, &hd) // a cluster value is one raft entry: at most MaxBodyBytes
		if err != nil {
			writeStoreError(w, err)
			return
		}
		if !validValue(body) {
			writeStoreError(w, fmt.Errorf("simdr: put: %w", simdr.ErrInvalidValue))
			return
		}
		var exp int64
		if ttl > 0 {
			exp = expiresAt(ttl)
		}
		cmd = cluster.EncodeBatch([]cluster.Op{{Hash: kh, Value: body, ExpiresAt: exp}})
		n := len(body)
		answer = func() { h.metrics.wrote("put", 1, int64(n)); w.WriteHeader(http.StatusNoContent) }
	case "/v1/batch":
		body, bin, cst, ok := h.readBatch(w, r, &hd)
		if !ok {
			return
		}
		var s opSink
		if err := walkBatch(body, bin, &s); err != nil {
			writeBadBody(w, err)
			return
		}
		if s.err != nil {
			writeStoreError(w, s.err)
			return
		}
		for i, o := range s.ops {
			if cluster.IsReserved(o.Hash) {
				writeError(w, http.StatusForbidden, "reserved", fmt.Sprintf("op %d: %v", i, cluster.ErrReserved))
				return
			}
			if !o.Del && !validValue(o.Value) {
				writeStoreError(w, fmt.Errorf("simdr: apply: batch op %d: %w", i, simdr.ErrInvalidValue))
				return
			}
		}
		if len(s.ops) == 0 {
			writeJSON(w, http.StatusOK, map[string]int{"ops": 0})
			return
		}
		cmd = cluster.EncodeBatch(s.ops)
		nops := len(s.ops)
		answer = func() {
			h.metrics.wrote("batch_op", nops, cst.bytes)
			writeJSON(w, http.StatusOK, map[string]int{"ops": nops})
		}
	case "/v1/rename":
		body, _, ok := h.readTypedBody(w, r, &hd, false)
		if !ok {
			return
		}
		from, to, err := decodeRename(body)
		if err != nil {
			writeBadBody(w, err)
			return
		}
		// Decided on the leader, applied blind: a replica applying a rename
		// after the value expired finds no value to move (EncodeRename).
		check = func(st *simdr.Store) ([]byte, error) { return cluster.RenameCommand(st, from, to) }
		answer = func() { h.metrics.wrote("rename", 1, 0); w.WriteHeader(http.StatusNoContent) }
	}
	var err error
	if check != nil {
		err = c.node.ApplyChecked(r.Context(), check)
	} else {
		err = c.node.Apply(r.Context(), cmd)
	}
	if err != nil {
		writeApplyError(w, err)
		return
	}
	answer()
}

// writeApplyError answers a write's failure in cluster.Node.Apply,
// ApplyChecked or VerifyRead.
func writeApplyError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, cluster.ErrNotLeader):
		// Refused before it reached the log: not applied, safe to send again.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "no_leader", message(err))
	case errors.Is(err, cluster.ErrOutcomeUnknown):
		// It may be in the log: sent again, it could apply twice, around
		// another client's write. No Retry-After: the client decides.
		writeError(w, http.StatusServiceUnavailable, "outcome_unknown", message(err))
	case errors.Is(err, cluster.ErrReserved):
		writeError(w, http.StatusForbidden, "reserved", err.Error())
	default:
		writeStoreError(w, err)
	}
}

// status serves GET /v1/cluster: this node's view, and each member's
// applied index and lag behind the leader's last index (asked of the
// members over HTTP, 2 s each at most).
func (c *clusterHandler) status(w http.ResponseWriter, r *http.Request) {
	s := c.node.Status()
	if r.URL.Query().Get("self") != "" {
		writeJSON(w, http.StatusOK, s)
		return
	}
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 2 * time.Second}
	for i := range s.Members {
		m := &s.Members[i]
		if m.ID == s.ID {
			a := s.Applied
			m.Applied = &a
			continue
		}
		if m.HTTPURL == "" {
			m.Error = "HTTP URL not known yet"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(r.Context(), "GET", strings.TrimRight(m.HTTPURL, "/")+"/v1/cluster?self=1", nil)
			req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
			res, err := hc.Do(req)
			if err != nil {
				m.Error = err.Error()
				return
			}
			defer res.Body.Close()
			var other cluster.Status
			if err := json.NewDecoder(res.Body).Decode(&other); err != nil {
				m.Error = "status: " + err.Error()
				return
			}
			a := other.Applied
			m.Applied = &a
		}()
	}
	wg.Wait()
	{ // against this node's last index: exact on the leader
		for i := range s.Members {
			if a := s.Members[i].Applied; a != nil {
				l := uint64(0)
				if s.LastIndex > *a {
					l = s.LastIndex - *a
				}
				s.Members[i].Lag = &l
			}
		}
	}
	writeJSON(w, http.StatusOK, s)
}

// membership serves POST /v1/cluster/join ({"id", "raft_addr",
// "http_url"}) and POST /v1/cluster/remove ({"id"}), on the leader (a
// follower forwards them).
func (c *clusterHandler) membership(h *handler, w http.ResponseWriter, r *http.Request) {
	if !c.node.IsLeader() {
		c.forward(w, r, true)
		return
	}
	if _, ok := bodyType(w, r, false); !ok {
		return
	}
	hd := hold{b: &h.budget}
	defer hd.release()
	body, err := h.readBody(w, r, &hd)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	var jr cluster.JoinRequest
	if err := json.Unmarshal(body, &jr); err != nil || jr.ID == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "want {\"id\": ..., \"raft_addr\": ..., \"http_url\": ...}")
		return
	}
	if strings.HasSuffix(r.URL.Path, "/remove") {
		err = c.node.Remove(r.Context(), jr.ID)
	} else {
		err = c.node.Join(r.Context(), jr.ID, jr.RaftAddr, jr.HTTPURL, jr.Auto)
	}
	if err != nil {
		if errors.Is(err, cluster.ErrNotLeader) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "no_leader", err.Error())
			return
		}
		if errors.Is(err, cluster.ErrRemoved) {
			writeError(w, http.StatusConflict, "removed", err.Error())
			return
		}
		writeError(w, http.StatusBadRequest, "membership", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
