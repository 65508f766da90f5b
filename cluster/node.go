// Package cluster replicates a simdr store over raft
// (github.com/hashicorp/raft): each node keeps its own full store file, the
// writes are raft log entries applied to every store in the same order, and
// raft snapshots are store backups. Package server serves a Node over HTTP
// (server.ServeCluster); docs/cluster.md has the design.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/simdr-go/simdr"
)

// ErrNotLeader: the write or strong read needs the leader and this node is
// not it (the server forwards the request to the leader instead).
var ErrNotLeader = errors.New("cluster: this node is not the leader")

// ErrOutcomeUnknown: a write reached the leader's raft log (or may have),
// and the leader lost its leadership, or shut down, before the write was
// known to be committed: it may be applied or not. Sending it again may
// apply it twice, with another client's write to the same key between the
// two (the other write then appears undone): read the key first, or accept
// that. Writes refused before they reached the log fail with ErrNotLeader
// instead, and may be sent again safely.
var ErrOutcomeUnknown = errors.New("cluster: the write may or may not be applied (the leader was lost before it committed)")

// ErrNoLeader: the cluster has no leader at the moment (an election is
// going on, or too few nodes are up): retry.
var ErrNoLeader = errors.New("cluster: no leader at the moment")

// Config configures a Node.
type Config struct {
	// ID is the node's raft ID, unique and stable across restarts.
	ID string
	// RaftAddr is the host:port the raft transport listens on and the other
	// nodes reach it at.
	RaftAddr string
	// Dir holds raft's log and stable store (raft.db, bbolt) and its
	// snapshots (snapshots/).
	Dir string
	// Token keys the raft transport's handshake; every node needs the same
	// one (the HTTP API's token). Required.
	Token string
	// HTTPURL is the URL this node's HTTP API is reached at; the other
	// nodes forward writes and strong reads to it when it leads.
	HTTPURL string
	// Bootstrap makes a cluster of this node alone when Dir holds no raft
	// state yet (ignored when it does).
	Bootstrap bool
	// Join is the HTTP URL of a member: the node asks it to be added (the
	// member forwards to the leader) until it is. Ignored once a member.
	Join string
	// SnapshotThreshold, TrailingLogs and SnapshotInterval tune raft's
	// snapshots (0: raft's defaults, 8192 entries, 10240 entries, 2 min).
	SnapshotThreshold, TrailingLogs uint64
	SnapshotInterval                time.Duration
	// HeartbeatTimeout and ElectionTimeout (0: raft's default, 1 s each).
	HeartbeatTimeout, ElectionTimeout time.Duration
	// Open reopens the store file after a snapshot replaced it (nil:
	// simdr.Open with no options).
	Open func(path string) (*simdr.Store, error)
	// LogOutput receives raft's log (nil: standard error), at warn level
	// unless LogLevel says otherwise ("debug", "info", ...).
	LogOutput io.Writer
	LogLevel  string
}

// Node is a member of a cluster: a raft instance whose FSM is a simdr
// store. It is safe for concurrent use.
type Node struct {
	cfg   Config
	path  string
	raft  *raft.Raft
	fsm   *fsm
	trans *raft.NetworkTransport
	bolt  *raftboltdb.BoltStore

	mu  sync.Mutex
	cur *storeRef

	appliedIdx atomic.Uint64
	restores   atomic.Uint64
	readyTerm  atomic.Uint64 // a barrier of this term is applied: strong reads may be served
	barrierMu  sync.Mutex
	// propose orders this node's proposals: Apply holds it shared while
	// raft takes its entry into the log, ApplyChecked exclusively from its
	// barrier until its own entry is in the log, so that no write is logged
	// between the state it checked and its write.
	propose   sync.RWMutex
	stop      chan struct{} // closed when Close begins (Done)
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	hc        *http.Client
}

// storeRef counts the users of one store, so that the store a snapshot
// replaced is closed only when the last of them is done.
type storeRef struct {
	st      *simdr.Store
	refs    int
	retired bool
}

// Open starts a node on store st, which it owns from then on (Close closes
// it, and a snapshot from the leader may replace it: use Acquire).
func Open(cfg Config, st *simdr.Store) (*Node, error) {
	switch {
	case cfg.ID == "":
		return nil, errors.New("cluster: a node needs a raft ID")
	case cfg.Token == "":
		return nil, errors.New("cluster: a cluster needs a token (it keys the raft transport)")
	case cfg.Dir == "":
		return nil, errors.New("cluster: a node needs a raft directory")
	}
	if cfg.Open == nil {
		cfg.Open = func(p string) (*simdr.Store, error) { return simdr.Open(p, nil) }
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	n := &Node{cfg: cfg, path: st.Path(), cur: &storeRef{st: st}, stop: make(chan struct{}),
		hc: &http.Client{Timeout: 15 * time.Second}}
	n.fsm = &fsm{n: n, applied: appliedIndex(st)}
	n.appliedIdx.Store(n.fsm.applied)
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	level := cfg.LogLevel
	if level == "" {
		level = "warn"
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft " + cfg.ID, Output: cfg.LogOutput, Level: hclog.LevelFromString(level)})
	var err error
	if n.bolt, err = raftboltdb.NewBoltStore(filepath.Join(cfg.Dir, "raft.db")); err != nil {
		return nil, fmt.Errorf("cluster: raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, logger)
	if err != nil {
		n.bolt.Close()
		return nil, fmt.Errorf("cluster: raft snapshots: %w", err)
	}
	// The store holds what it has applied; raft is told not to restore its
	// latest snapshot on start. Only if the store is behind that snapshot
	// (its file lost writes that were never synced) is it restored here.
	if list, err := snaps.List(); err == nil && len(list) > 0 && list[0].Index > n.fsm.applied {
		_, rc, err := snaps.Open(list[0].ID)
		if err == nil {
			err = n.fsm.Restore(rc)
		}
		if err != nil {
			n.bolt.Close()
			return nil, fmt.Errorf("cluster: store behind the last snapshot, restoring it: %w", err)
		}
	}
	layer, err := newStreamLayer(cfg.RaftAddr, cfg.Token)
	if err != nil {
		n.bolt.Close()
		return nil, err
	}
	n.trans = raft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, logger)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = logger
	rc.NoSnapshotRestoreOnStart = true
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
		rc.LeaderLeaseTimeout = min(rc.LeaderLeaseTimeout, cfg.HeartbeatTimeout)
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, n.bolt, n.bolt, snaps, n.trans); err != nil {
		n.trans.Close()
		n.bolt.Close()
		return nil, fmt.Errorf("cluster: raft: %w", err)
	}
	if cfg.Bootstrap {
		has, err := raft.HasExistingState(n.bolt, n.bolt, snaps)
		if err == nil && !has {
			f := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: n.trans.LocalAddr()}}})
			if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				n.Close()
				return nil, fmt.Errorf("cluster: bootstrap: %w", err)
			}
		}
	}
	n.wg.Add(1)
	go n.register()
	return n, nil
}

// Acquire returns the store the node serves now and a function to call
// when done with it: until then the store stays open, even if a snapshot
// replaces it meanwhile. The store must not be closed by the caller.
func (n *Node) Acquire() (*simdr.Store, func()) {
	n.mu.Lock()
	r := n.cur
	r.refs++
	n.mu.Unlock()
	var once sync.Once
	return r.st, func() {
		once.Do(func() {
			n.mu.Lock()
			r.refs--
			last := r.refs == 0 && r.retired
			n.mu.Unlock()
			if last {
				r.st.Close()
			}
		})
	}
}

// swap makes st the store served; the old one is closed when unused.
func (n *Node) swap(st *simdr.Store) { n.retire(&storeRef{st: st}) }

// retire stops serving the current store, serving next instead unless it
// is nil (Close), and closes the old store now if no request holds it (else
// the last release does).
func (n *Node) retire(next *storeRef) error {
	n.mu.Lock()
	old := n.cur
	if next != nil {
		n.cur = next
	}
	old.retired = true
	idle := old.refs == 0
	n.mu.Unlock()
	if idle {
		return old.st.Close()
	}
	return nil
}

// Exclusive runs fn while no raft entry is applied and no snapshot is
// restored: for a Compact of the store, which replaces the store file as a
// restore does (run together, the later rename would win). Applying waits
// meanwhile, so the node falls behind by what the cluster writes during fn.
func (n *Node) Exclusive(fn func()) {
	n.fsm.mu.Lock()
	defer n.fsm.mu.Unlock()
	fn()
}

// ID is the node's raft ID.
func (n *Node) ID() string { return n.cfg.ID }

// IsLeader reports whether this node leads the cluster now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Applied is the index of the last raft entry applied to the store.
func (n *Node) Applied() uint64 { return n.appliedIdx.Load() }

// Lag is how many committed entries this node knows of that its store does
// not hold yet, and how long ago it last heard from the leader (0 on the
// leader).
func (n *Node) Lag() (entries uint64, since time.Duration) {
	c, a := n.raft.CommitIndex(), n.Applied()
	if c > a {
		entries = c - a
	}
	if !n.IsLeader() {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			since = time.Since(lc)
		}
	}
	return entries, since
}

// Leader returns the leader's raft ID and HTTP URL ("" when there is no
// leader, or its URL is not known yet).
func (n *Node) Leader() (id, url string) {
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	st, release := n.Acquire()
	defer release()
	return string(lid), memberURL(members(st), string(lid))
}

// memberURL is id's HTTP URL in the members map ("" if unknown or removed).
func memberURL(urls map[string]string, id string) string {
	if u := urls[id]; u != removedMark {
		return u
	}
	return ""
}

// Apply proposes a command (EncodeBatch, EncodeRename) and returns once it
// is committed and applied to this node's store, with the command's own
// error (simdr.ErrNotFound for a rename of a missing key, ...). It fails
// with ErrNotLeader when the command was refused before it reached the
// log (on a follower, or a leader stepping down or handing its leadership
// over, or when the log's queue is full): it is not applied. It fails with
// ErrOutcomeUnknown when the command may be in the log (leadership lost
// meanwhile, raft shut down, the log failed to store it, or this node's
// store failed to apply it after it committed).
func (n *Node) Apply(ctx context.Context, cmd []byte) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	n.propose.RLock()
	return n.apply(ctx, cmd, n.propose.RUnlock)
}

// timeout is how long raft may take to take an entry into its log.
func timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond) // 0 would be no limit
	}
	return 30 * time.Second
}

// apply proposes cmd, calls logged once raft has taken it (or refused it),
// and waits for its outcome (see Apply).
func (n *Node) apply(ctx context.Context, cmd []byte, logged func()) error {
	f := n.raft.Apply(cmd, timeout(ctx))
	logged()
	if err := f.Error(); err != nil {
		// raft answers ErrNotLeader, ErrLeadershipTransferInProgress and
		// ErrEnqueueTimeout before it appends the entry; any other error
		// (ErrLeadershipLost, ErrRaftShutdown, a log store's) may come after.
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) ||
			errors.Is(err, raft.ErrEnqueueTimeout) {
			return fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	if r, ok := f.Response().(result); ok {
		if r.broken {
			return fmt.Errorf("%w: %w", ErrOutcomeUnknown, r.err) // committed: the other nodes apply it
		}
		return r.err
	}
	return nil
}

// ApplyChecked is Apply for a write that depends on what the store holds
// (a DELETE with If-Match, a rename): check gets the store once it holds
// every write committed before the call (a barrier), and returns the
// command to apply, decided from it, or nil for none; no other write of
// this node is logged between the check and the command. Another leader's
// could be, if this node lost its leadership during the check and won it
// back after that leader wrote: the command is therefore logged wrapped
// with the index of the last entry the checked store held, and every
// replica applies it only if the last entry it applied before it is that
// one (a property of the log, the same on every replica); otherwise nothing
// is written, and the check is made again (twice at most, then
// ErrNotLeader). So the command can be blind (EncodeBatch), which every
// replica applies the same way whenever it applies it, unlike a check made
// by each replica against its own clock (a value that expires). check's
// error is returned as is, nothing applied; check must not keep st, nor
// slices of its values, past its return (the commands EncodeBatch makes
// are copies), and may be called more than once.
//
// It writes nothing, and fails with ErrNotLeader, when this node does not
// lead or its barrier fails; with the store's failure when this node's
// store has stopped applying (its state is stale: a check against it could
// decide wrong for the others). Other writes of this node wait for the
// barrier: a round trip of the cluster. Every node must know the checked
// command: upgrade all the nodes before a leader of the new version takes
// renames and conditional deletes (an older node refuses the command as
// malformed and applies nothing of it).
func (n *Node) ApplyChecked(ctx context.Context, check func(st *simdr.Store) ([]byte, error)) error {
	for attempt := 0; ; attempt++ {
		err := n.applyChecked(ctx, check)
		if !errors.Is(err, errChanged) {
			return err
		}
		if attempt == 2 || !n.IsLeader() || ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrNotLeader, err) // nothing written: safe to send again
		}
	}
}

// applyChecked is one attempt of ApplyChecked: errChanged when its entry
// did not follow the last one its check saw (this node lost its leadership
// during the check, another leader wrote, and this node led again: the
// lock orders this node's proposals only within a term).
func (n *Node) applyChecked(ctx context.Context, check func(st *simdr.Store) ([]byte, error)) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	n.propose.Lock()
	var once sync.Once
	unlock := func() { once.Do(n.propose.Unlock) }
	defer unlock()
	if err := n.raft.Barrier(timeout(ctx)).Error(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotLeader, err) // only a barrier was sent: no write
	}
	if err := n.fsm.failed(); err != nil {
		return fmt.Errorf("cluster: this node's store stopped applying the log, it decides no checked write: %w", err)
	}
	// Every entry before the barrier is applied; the store the check reads
	// holds at least the entries up to after (more only if another leader
	// wrote since, which the entry's apply then refuses).
	after := n.appliedIdx.Load()
	st, release := n.Acquire()
	cmd, err := check(st)
	release()
	if err != nil || cmd == nil {
		return err
	}
	return n.apply(ctx, encodeChecked(after, cmd), unlock)
}

// RenameCommand is the command (EncodeBatch) that renames from to to in st
// as it is now: a put of from's value under to, with from's expiry if it
// has one, and a delete of from. For Node.ApplyChecked: unlike
// EncodeRename's command, which each replica decides when it applies it, a
// replica applying it after the value expired moves it all the same (and
// it is expired there too). A missing from fails with simdr.ErrNotFound,
// from equal to to with simdr.ErrSameKey, a reserved key with ErrReserved.
func RenameCommand(st *simdr.Store, from, to []byte) ([]byte, error) {
	hf, ht := simdr.Hash(from), simdr.Hash(to)
	switch {
	case IsReserved(hf) || IsReserved(ht):
		return nil, ErrReserved
	case hf == ht:
		return nil, fmt.Errorf("cluster: rename: %w", simdr.ErrSameKey)
	}
	e, err := st.GetHash(hf)
	if err != nil {
		return nil, fmt.Errorf("cluster: rename: %w", err)
	}
	at, err := st.ExpiresAtHash(hf)
	if err != nil {
		return nil, fmt.Errorf("cluster: rename: %w", err)
	}
	put := Op{Hash: ht, Value: e.Bytes()} // copied by EncodeBatch
	if !at.IsZero() {
		put.ExpiresAt = at.UnixMilli()
	}
	return EncodeBatch([]Op{put, {Hash: hf, Del: true}}), nil
}

// testHookVerifyRead, when set (tests), runs in VerifyRead between the
// barrier and the leadership check.
var testHookVerifyRead func()

// VerifyRead makes a read that follows it linearizable: it returns nil once
// this node has confirmed it still leads, and its store holds every write
// committed before the call (a barrier is applied once per term).
// ErrNotLeader on a follower; the store's failure on a node whose store
// stopped applying the log (it is stale).
func (n *Node) VerifyRead(ctx context.Context) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	term := n.raft.CurrentTerm()
	if n.readyTerm.Load() != term {
		n.barrierMu.Lock()
		if n.readyTerm.Load() != term {
			if err := n.raft.Barrier(10 * time.Second).Error(); err != nil {
				n.barrierMu.Unlock()
				return fmt.Errorf("%w: %w", ErrNotLeader, err)
			}
			n.readyTerm.Store(term)
		}
		n.barrierMu.Unlock()
	}
	if testHookVerifyRead != nil {
		testHookVerifyRead()
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	// The leadership confirmed is the term's whose barrier was applied: a
	// node that lost it meanwhile and won it back (another leader may have
	// committed writes it has not applied yet) needs a barrier again.
	if n.raft.CurrentTerm() != term {
		return fmt.Errorf("%w: the leadership changed during the read's check", ErrNotLeader)
	}
	if err := n.fsm.failed(); err != nil {
		return fmt.Errorf("cluster: this node's store stopped applying the log, it serves no strong read: %w", err)
	}
	return nil
}

// ErrRemoved: a node removed from the cluster asked to join again by
// itself (its register loop, or --join): only an explicit join re-adds it.
var ErrRemoved = errors.New("cluster: the node was removed from the cluster; join it explicitly to add it again")

// Join adds a voter (on the leader; ErrNotLeader elsewhere) and records its
// HTTP URL. Joining again with the same ID and address changes nothing.
// auto marks a node's own request (at start, or when its URL changed),
// refused with ErrRemoved for a node that was removed: otherwise a removed
// node still running would put itself back.
func (n *Node) Join(ctx context.Context, id, raftAddr, httpURL string, auto bool) error {
	if id == "" || raftAddr == "" || !strings.HasPrefix(httpURL, "http") {
		return errors.New("cluster: join needs an id, a raft address and an http(s) URL")
	}
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if auto {
		st, release := n.Acquire()
		removed := members(st)[id] == removedMark
		release()
		if removed {
			return ErrRemoved
		}
	}
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, 20*time.Second).Error(); err != nil {
		return fmt.Errorf("cluster: join %s: %w", id, err)
	}
	return n.Apply(ctx, encodeMember(id, httpURL))
}

// Remove takes a member out of the cluster (on the leader).
func (n *Node) Remove(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 20*time.Second).Error(); err != nil {
		return fmt.Errorf("cluster: remove %s: %w", id, err)
	}
	return n.Apply(ctx, encodeMember(id, ""))
}

// Member is one server of the cluster's configuration.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPURL  string `json:"http_url,omitempty"`
	Suffrage string `json:"suffrage"`
	// Applied and Lag are what the member says of itself (filled in by the
	// server's GET /v1/cluster); Lag is the leader's last index minus it.
	Applied *uint64 `json:"applied,omitempty"`
	Lag     *uint64 `json:"lag,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// Status is a node's view of the cluster.
type Status struct {
	ID          string   `json:"id"`
	State       string   `json:"state"`
	Leader      string   `json:"leader"`
	LeaderURL   string   `json:"leader_url,omitempty"`
	Term        uint64   `json:"term"`
	Applied     uint64   `json:"applied"`
	CommitIndex uint64   `json:"commit_index"`
	LastIndex   uint64   `json:"last_index"`
	Members     []Member `json:"members"`
	// Restores counts the snapshots this node restored since it started
	// (from the leader, when it was too far behind for the log).
	Restores uint64 `json:"restores"`
	Error    string `json:"error,omitempty"`
}

// Status returns this node's view: state, leader, indexes and members.
func (n *Node) Status() Status {
	s := Status{ID: n.cfg.ID, State: n.raft.State().String(), Term: n.raft.CurrentTerm(),
		Applied: n.Applied(), CommitIndex: n.raft.CommitIndex(), LastIndex: n.raft.LastIndex(), Restores: n.restores.Load()}
	if err := n.fsm.failed(); err != nil {
		s.Error = err.Error()
	}
	st, release := n.Acquire()
	urls := members(st)
	release()
	if _, lid := n.raft.LeaderWithID(); lid != "" {
		s.Leader, s.LeaderURL = string(lid), memberURL(urls, string(lid))
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, sv := range f.Configuration().Servers {
			s.Members = append(s.Members, Member{ID: string(sv.ID), RaftAddr: string(sv.Address),
				HTTPURL: memberURL(urls, string(sv.ID)), Suffrage: sv.Suffrage.String()})
		}
	}
	return s
}

// register makes sure the cluster knows this node's HTTP URL: the leader
// records its own; a follower (or a node given Join) asks to be joined.
func (n *Node) register() {
	defer n.wg.Done()
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		st, release := n.Acquire()
		have := members(st)[n.cfg.ID]
		release()
		if have == n.cfg.HTTPURL || n.cfg.HTTPURL == "" || have == removedMark {
			continue
		}
		if n.IsLeader() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			n.Apply(ctx, encodeMember(n.cfg.ID, n.cfg.HTTPURL))
			cancel()
			continue
		}
		target := n.cfg.Join
		if _, lurl := n.Leader(); lurl != "" {
			target = lurl
		}
		if target != "" {
			n.askJoin(target)
		}
	}
}

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPURL  string `json:"http_url"`
	// Auto marks a node's own request (see Node.Join).
	Auto bool `json:"auto,omitempty"`
}

func (n *Node) askJoin(base string) error {
	body, _ := json.Marshal(JoinRequest{ID: n.cfg.ID, RaftAddr: string(n.trans.LocalAddr()), HTTPURL: n.cfg.HTTPURL, Auto: true})
	req, err := http.NewRequest("POST", strings.TrimRight(base, "/")+"/v1/cluster/join", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+n.cfg.Token)
	res, err := n.hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("cluster: join via %s: %s", base, res.Status)
	}
	return nil
}

// Done returns a channel that is closed when Close begins: a server
// serving the node ends its long requests (event streams) on it, so that
// they release the store Close is waiting to close.
func (n *Node) Done() <-chan struct{} { return n.stop }

// Close stops the node: raft, its transport and log, then the store (once
// the requests holding it, see Acquire, are done). Calling it again returns
// what the first call returned.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	close(n.stop)
	n.wg.Wait()
	err := n.raft.Shutdown().Error()
	n.trans.Close()
	if e := n.bolt.Close(); err == nil {
		err = e
	}
	if e := n.retire(nil); err == nil {
		err = e
	}
	return err
}
