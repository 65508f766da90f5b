package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/cluster"
	"github.com/simdr-go/simdr/server"
)

// serveFlags holds the serve command's own flags (beside the shared ones in
// opts: --addr, --token-file, --insecure, --max-value-bytes).
var serveFlags struct {
	allowOrigins, allowHosts []string
	tlsCert, tlsKey          string
	maxInflight              string
}

// raftFlags holds serve's cluster flags (docs/cluster.md).
var raftFlags struct {
	id, addr, dir, join string
	bootstrap           bool
	snapThreshold       uint64
	trailingLogs        uint64
	heartbeat, snapIval time.Duration
}

var cmdServe = &command{
	name: "serve", args: "",
	summary: "serve the store over HTTP",
	help: `
Opens FILE for writing (created if missing) and serves it over HTTP until
interrupted (SIGINT or SIGTERM): then it stops accepting, finishes the requests
in flight, syncs and closes the store. While it runs, other simdr commands can
still read FILE (read, info, list, verify, export); commands that write wait
for it (--lock-timeout) or fail. It prints the address it listens on (the
real port with --addr 127.0.0.1:0) once it is listening.

Listening on an address other than loopback needs a token (--token-file) or
--insecure. The token is read from a file, never from the command line, where
other users could see it in the process list. With --tls-cert and --tls-key it
serves HTTPS (HTTP/1.1 and HTTP/2); otherwise plain HTTP/1.1 and h2c.

No web page can use the server: requests carrying an Origin header are refused
unless the origin is listed with --allow-origin, and on a loopback address a
Host header that is not localhost or a loopback address is refused unless
listed with --allow-host (against DNS rebinding).

Values are limited to --max-value-bytes, 1G unless told otherwise (0: no
limit); request bodies being received may hold --max-inflight-bytes of memory
in all (512M), beyond which requests are answered 503 with Retry-After.

With --raft-id, --raft-addr and --raft-dir, FILE is one node's store of a
replicated cluster (hashicorp/raft): --bootstrap starts a new cluster, --join
URL joins the one a member of which serves URL. Writes go through raft (a
follower forwards them to the leader); reads are local unless
?consistency=strong. A cluster needs --token-file: the token also keys the
raft transport's handshake. "simdr cluster status URL" prints the members.
docs/cluster.md has the details.`,
	examples: []string{
		`simdr data.simdr serve`,
		`simdr data.simdr serve --addr 127.0.0.1:0`,
		`simdr data.simdr serve --addr 0.0.0.0:7070 --token-file /run/secrets/simdr-token --tls-cert cert.pem --tls-key key.pem`,
		`simdr data.simdr serve --max-value-bytes 64M --allow-origin https://app.example`,
		`simdr n1.simdr serve --token-file tok --raft-id n1 --raft-addr 127.0.0.1:7000 --raft-dir n1.raft --bootstrap`,
		`simdr n2.simdr serve --addr 127.0.0.1:7071 --token-file tok --raft-id n2 --raft-addr 127.0.0.1:7001 --raft-dir n2.raft --join http://127.0.0.1:7070`,
	},
	minArgs: 0, maxArgs: 0,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.addr, "addr", server.DefaultAddr, "listen on `HOST:PORT` (default "+server.DefaultAddr+"; port 0: any free port)")
		fs.StringVar(&o.tokenFile, "token-file", o.tokenFile, "require the bearer token held in `FILE`")
		fs.BoolVar(&o.insecure, "insecure", o.insecure, "allow a non-loopback address without a token")
		fs.StringVar(&o.maxValue, "max-value-bytes", "1G", "refuse values larger than `SIZE` (64M, 1G, ...; default 1G; 0: no limit)")
		sf := &serveFlags
		*sf = struct {
			allowOrigins, allowHosts []string
			tlsCert, tlsKey          string
			maxInflight              string
		}{}
		fs.Func("allow-origin", "answer requests from the web `ORIGIN` (https://app.example; * for any; repeatable)", func(s string) error {
			sf.allowOrigins = append(sf.allowOrigins, s)
			return nil
		})
		fs.Func("allow-host", "accept the Host `NAME` besides loopback ones when listening on loopback (repeatable)", func(s string) error {
			sf.allowHosts = append(sf.allowHosts, s)
			return nil
		})
		fs.StringVar(&sf.tlsCert, "tls-cert", "", "serve HTTPS with the PEM certificate (chain) in `FILE`")
		fs.StringVar(&sf.tlsKey, "tls-key", "", "the PEM private key of --tls-cert, in `FILE`")
		fs.StringVar(&sf.maxInflight, "max-inflight-bytes", "512M", "memory all request bodies being received may hold, `SIZE` (default 512M)")
		rf := &raftFlags
		rf.id, rf.addr, rf.dir, rf.join, rf.bootstrap = "", "", "", "", false
		rf.snapThreshold, rf.trailingLogs, rf.heartbeat, rf.snapIval = 0, 0, 0, 0
		fs.DurationVar(&rf.snapIval, "raft-snapshot-interval", 0, "check for a snapshot to take every `DURATION` (0: 2m)")
		fs.StringVar(&rf.id, "raft-id", "", "run as the cluster node `ID` (with --raft-addr, --raft-dir, and --bootstrap or --join)")
		fs.StringVar(&rf.addr, "raft-addr", "", "the raft transport listens on `HOST:PORT`, where the other nodes reach it")
		fs.StringVar(&rf.dir, "raft-dir", "", "keep raft's log and snapshots in `DIR`")
		fs.BoolVar(&rf.bootstrap, "bootstrap", false, "start a new cluster of this node alone (ignored once the node has raft state)")
		fs.StringVar(&rf.join, "join", "", "join the cluster a member of which serves `URL`")
		fs.Uint64Var(&rf.snapThreshold, "raft-snapshot-threshold", 0, "snapshot after `N` new log entries (0: 8192)")
		fs.Uint64Var(&rf.trailingLogs, "raft-trailing-logs", 0, "keep `N` log entries after a snapshot (0: 10240)")
		fs.DurationVar(&rf.heartbeat, "raft-heartbeat", 0, "raft heartbeat and election timeout `DURATION` (0: 1s)")
	},
	run: runServe,
}

func runServe(a *app, file string, _ []string) (err error) {
	// Catch the signals first: from here on, SIGINT and SIGTERM stop the
	// server gracefully instead of killing the process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sf := serveFlags
	cfg := server.Config{Addr: a.o.addr, Insecure: a.o.insecure, AllowOrigins: sf.allowOrigins,
		AllowHosts: sf.allowHosts, TLSCertFile: sf.tlsCert, TLSKeyFile: sf.tlsKey}
	n, err := parseSize(a.o.maxValue)
	if err != nil {
		return usagef("serve: --max-value-bytes: %v", err)
	}
	cfg.MaxValueBytes = n
	if n == 0 {
		cfg.MaxValueBytes = -1 // no limit
	}
	if cfg.MaxInflightBytes, err = parseSize(sf.maxInflight); err != nil || cfg.MaxInflightBytes == 0 {
		return usagef("serve: --max-inflight-bytes: %v", cmpErr(err, "must be more than 0"))
	}
	if (sf.tlsCert == "") != (sf.tlsKey == "") {
		return usagef("serve: --tls-cert and --tls-key go together")
	}
	if sf.tlsCert != "" { // fail before listening, not after printing the address
		if _, err := tls.LoadX509KeyPair(sf.tlsCert, sf.tlsKey); err != nil {
			return fmt.Errorf("serve: TLS: %w", err)
		}
	}
	if a.o.tokenFile != "" {
		if cfg.Token, err = readToken(a.o.tokenFile); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	if err := server.CheckAddr(cfg.Addr, cfg); err != nil {
		return fmt.Errorf("serve: %w (see --token-file and --insecure)", err)
	}
	rf := raftFlags
	if rf.id != "" || rf.addr != "" || rf.dir != "" || rf.join != "" || rf.bootstrap {
		if rf.id == "" || rf.addr == "" || rf.dir == "" {
			return usagef("serve: a cluster node needs --raft-id, --raft-addr and --raft-dir")
		}
		if rf.bootstrap && rf.join != "" {
			return usagef("serve: --bootstrap and --join exclude each other")
		}
		if cfg.Token == "" {
			return usagef("serve: a cluster node needs --token-file (the token also keys the raft transport)")
		}
		return runServeCluster(ctx, a, file, cfg, sf.tlsCert != "")
	}
	// Listen first: an address in use (or a bad port) fails before a
	// missing FILE is created.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	s, err := a.openWrite(file, false)
	if err != nil {
		ln.Close()
		return err
	}
	defer closeStore(s, &err)
	scheme := "http"
	if sf.tlsCert != "" {
		scheme = "https"
	}
	a.info("simdr: serving %s on %s://%s (Ctrl-C to stop)", file, scheme, ln.Addr())
	err = server.Serve(ctx, ln, s, cfg)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("serve: %w", err)
	}
	a.info("simdr: stopped")
	return nil
}

// runServeCluster serves FILE as a node of a raft cluster.
func runServeCluster(ctx context.Context, a *app, file string, cfg server.Config, tlsOn bool) error {
	rf := raftFlags
	ln, err := net.Listen("tcp", cfg.Addr) // first, as in runServe
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	s, err := a.openWrite(file, false)
	if err != nil {
		ln.Close()
		return err
	}
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	self := scheme + "://" + ln.Addr().String()
	node, err := cluster.Open(cluster.Config{ID: rf.id, RaftAddr: rf.addr, Dir: rf.dir, Token: cfg.Token,
		HTTPURL: self, Bootstrap: rf.bootstrap, Join: rf.join,
		SnapshotThreshold: rf.snapThreshold, TrailingLogs: rf.trailingLogs, SnapshotInterval: rf.snapIval,
		HeartbeatTimeout: rf.heartbeat, ElectionTimeout: rf.heartbeat,
		Open: func(p string) (*simdr.Store, error) { return a.openWrite(p, false) }}, s)
	if err != nil {
		ln.Close()
		s.Close()
		return fmt.Errorf("serve: %w", err)
	}
	a.info("simdr: serving %s on %s (raft node %s on %s; Ctrl-C to stop)", file, self, rf.id, rf.addr)
	err = server.ServeCluster(ctx, ln, node, cfg)
	if cerr := node.Close(); err == nil || errors.Is(err, context.Canceled) {
		err = cerr
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("serve: %w", err)
	}
	a.info("simdr: stopped")
	return nil
}

// maxTokenBytes bounds a token file: a path such as /dev/zero would
// otherwise be read without end.
const maxTokenBytes = 64 << 10

// readToken reads the bearer token held in the file name (a pipe such as
// <(command) too), trimmed of surrounding spaces. An empty token, one past
// maxTokenBytes, and one holding a control character (a second line: no
// Authorization header can carry it, so no client could ever be let in)
// are errors.
func readToken(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if len(b) > maxTokenBytes {
		return "", fmt.Errorf("token file %s holds more than %s: not a token", name, formatBytes(maxTokenBytes))
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", name)
	}
	if i := strings.IndexFunc(tok, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return "", fmt.Errorf("token file %s: the token holds a control character (%q at byte %d; one line, please): no Authorization header could carry it", name, tok[i], i)
	}
	return tok, nil
}

// cmpErr returns err, or an error saying msg when err is nil.
func cmpErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}
