package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

var cmdClusterStatus = &command{
	name: "status", args: "URL",
	summary: "print a cluster's status (simdr cluster status URL)",
	help: `
"simdr cluster status URL" asks the cluster node serving URL (simdr serve
--raft-id ...) for GET /v1/cluster and prints it: the leader, each member by
raft ID with its raft and HTTP addresses, its last applied raft index and
its lag behind the leader's last index. The word "cluster" stands where a
store FILE goes for other commands. With --json it prints the JSON answer.`,
	examples: []string{`simdr cluster status http://127.0.0.1:7070 --token-file /run/secrets/simdr-token`},
	minArgs:  1, maxArgs: 1, json: true,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.tokenFile, "token-file", o.tokenFile, "send the bearer token held in `FILE`")
	},
	run: runClusterStatus,
}

func runClusterStatus(a *app, file string, args []string) error {
	if file != "cluster" {
		return usagef("status: usage: simdr cluster status URL")
	}
	req, err := http.NewRequest("GET", strings.TrimRight(args[0], "/")+"/v1/cluster", nil)
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	if a.o.tokenFile != "" {
		tok, err := readToken(a.o.tokenFile)
		if err != nil {
			return fmt.Errorf("cluster status: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("cluster status: %s: %s", res.Status, strings.TrimSpace(string(body)))
	}
	if a.o.json {
		a.stdout.Write(body)
		return nil
	}
	var s struct {
		ID, State, Leader, Error string
		LeaderURL                string `json:"leader_url"`
		Term, Applied            uint64
		LastIndex                uint64 `json:"last_index"`
		Members                  []struct {
			ID       string `json:"id"`
			RaftAddr string `json:"raft_addr"`
			HTTPURL  string `json:"http_url"`
			Suffrage string
			Applied  *uint64
			Lag      *uint64
			Error    string
		}
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	w := a.stdout
	fmt.Fprintf(w, "node %s: %s, term %d, applied %d, last index %d\n", s.ID, s.State, s.Term, s.Applied, s.LastIndex)
	fmt.Fprintf(w, "leader: %s %s\n", cmpStr(s.Leader, "(none)"), s.LeaderURL)
	if s.Error != "" {
		fmt.Fprintf(w, "error: %s\n", s.Error)
	}
	fmt.Fprintf(w, "%-12s %-8s %-22s %-28s %10s %8s\n", "ID", "SUFFRAGE", "RAFT", "HTTP", "APPLIED", "LAG")
	for _, m := range s.Members {
		ap, lag := "?", "?"
		if m.Applied != nil {
			ap = fmt.Sprint(*m.Applied)
		}
		if m.Lag != nil {
			lag = fmt.Sprint(*m.Lag)
		}
		fmt.Fprintf(w, "%-12s %-8s %-22s %-28s %10s %8s", m.ID, m.Suffrage, m.RaftAddr, m.HTTPURL, ap, lag)
		if m.Error != "" {
			fmt.Fprintf(w, "  (%s)", m.Error)
		}
		fmt.Fprintln(w)
	}
	return nil
}

func cmpStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
