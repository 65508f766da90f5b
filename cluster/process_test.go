package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
)

const token = "cluster-secret"

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// simdrBin builds the simdr command once for the package's tests.
func simdrBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "simdr-cluster-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "simdr")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/simdr").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is one node: its files, addresses and running process.
type proc struct {
	id, dir, httpAddr, raftAddr string
	cmd                         *exec.Cmd
	log                         *bytes.Buffer
	extra                       []string
}

func (p *proc) url() string   { return "http://" + p.httpAddr }
func (p *proc) store() string { return filepath.Join(p.dir, "s.simdr") }

type testCluster struct {
	t     *testing.T
	bin   string
	base  string
	tok   string
	nodes []*proc
	mu    sync.Mutex
}

func newCluster(t *testing.T, n int, extra ...string) *testCluster {
	c := &testCluster{t: t, bin: simdrBin(t), base: t.TempDir()}
	c.tok = filepath.Join(c.base, "token")
	os.WriteFile(c.tok, []byte(token+"\n"), 0o600)
	for i := range n {
		p := c.add(fmt.Sprintf("n%d", i+1), extra...)
		if i == 0 {
			c.start(p, "--bootstrap")
			c.waitLeader(10 * time.Second)
		} else {
			c.start(p, "--join", c.nodes[0].url())
		}
	}
	c.waitMembers(n, 15*time.Second)
	t.Cleanup(c.stopAll)
	return c
}

func (c *testCluster) add(id string, extra ...string) *proc {
	p := &proc{id: id, dir: filepath.Join(c.base, id), httpAddr: freePort(c.t), raftAddr: freePort(c.t), extra: extra}
	os.MkdirAll(p.dir, 0o755)
	c.nodes = append(c.nodes, p)
	return p
}

func (c *testCluster) start(p *proc, args ...string) {
	c.t.Helper()
	all := append([]string{p.store(), "serve", "--addr", p.httpAddr, "--token-file", c.tok,
		"--raft-id", p.id, "--raft-addr", p.raftAddr, "--raft-dir", filepath.Join(p.dir, "raft"),
		"--raft-heartbeat", "300ms"}, p.extra...)
	all = append(all, args...)
	p.cmd = exec.Command(c.bin, all...)
	p.log = new(bytes.Buffer)
	p.cmd.Stderr, p.cmd.Stdout = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(p.url() + "/healthz"); err == nil {
			res.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("node %s did not come up:\n%s", p.id, p.log)
}

func (c *testCluster) kill(p *proc) {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
	p.cmd = nil
}

func (c *testCluster) stop(p *proc) {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
	}
	p.cmd = nil
}

func (c *testCluster) stopAll() {
	for _, p := range c.nodes {
		c.stop(p)
	}
	if c.t.Failed() {
		for _, p := range c.nodes {
			if p.log != nil {
				c.t.Logf("--- %s ---\n%s", p.id, tail(p.log.String(), 3000))
			}
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

type status struct {
	ID, State, Leader string
	Applied           uint64
	Restores          uint64
	Members           []struct {
		ID      string `json:"id"`
		HTTPURL string `json:"http_url"`
		Applied *uint64
	}
}

func do(method, url string, body []byte, hdr ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	res, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

func (c *testCluster) statusOf(p *proc) (status, error) {
	var s status
	res, b, err := do("GET", p.url()+"/v1/cluster", nil)
	if err != nil {
		return s, err
	}
	if res.StatusCode != 200 {
		return s, fmt.Errorf("%s", b)
	}
	return s, json.Unmarshal(b, &s)
}

// leader returns the running node that says it leads (nil if none).
func (c *testCluster) leader() *proc {
	for _, p := range c.nodes {
		if p.cmd == nil {
			continue
		}
		if s, err := c.statusOf(p); err == nil && s.State == "Leader" {
			return p
		}
	}
	return nil
}

func (c *testCluster) waitLeader(d time.Duration) *proc {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p := c.leader(); p != nil {
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no leader")
	return nil
}

func (c *testCluster) waitMembers(n int, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if l := c.leader(); l != nil {
			if s, err := c.statusOf(l); err == nil && len(s.Members) == n {
				ok := true
				for _, m := range s.Members {
					ok = ok && m.HTTPURL != ""
				}
				if ok {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("the cluster did not reach %d members with URLs", n)
}

// waitApplied waits until every running node has applied as much as the
// leader's last applied index.
func (c *testCluster) waitConverged(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		l := c.leader()
		if l != nil {
			ls, err := c.statusOf(l)
			ok := err == nil
			for _, p := range c.nodes {
				if p.cmd == nil || !ok {
					continue
				}
				s, err := c.statusOf(p)
				ok = ok && err == nil && s.Applied >= ls.Applied
			}
			if ok {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatal("the nodes did not converge")
}

// batchBody is a JSON batch of puts.
func batchBody(keys, values []string) []byte {
	var b strings.Builder
	b.WriteString(`{"ops":[`)
	for i := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"op":"put","key":%q,"value":%q}`, keys[i], values[i])
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// writeAcked sends body to the nodes in turn until one acknowledges it.
func (c *testCluster) writeAcked(ctx context.Context, body []byte) error {
	for i := 0; ; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p := c.nodes[i%len(c.nodes)]
		res, _, err := do("POST", p.url()+"/v1/batch", body, "Content-Type", "application/json")
		if err == nil && res.StatusCode == 200 {
			return nil
		}
		if err == nil && res.StatusCode != 503 && res.StatusCode/100 != 5 {
			return fmt.Errorf("batch: %s", res.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// liveEntries opens a store file and returns its live entries by hash.
func liveEntries(t *testing.T, path string) map[uint64]string {
	t.Helper()
	st, err := simdr.Open(path, &simdr.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := map[uint64]string{}
	for e := range st.Entries() {
		m[e.KeyHash()] = string(e.Bytes())
	}
	return m
}

// runKillTest writes acknowledged batches from writers while the leader is
// SIGKILLed kills times, then checks every store against the ack log.
func runKillTest(t *testing.T, batches, kills int) {
	c := newCluster(t, 3)
	const writers, perBatch, keySpace = 2, 1000, 5000 // 10,000 keys
	var mu sync.Mutex
	acked := map[string]string{} // key: last acknowledged value
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	progress := make(chan int, 1000)
	errc := make(chan error, writers)
	var lastAck sync.Map // writer: time of its last acknowledgement
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			urls := []string{c.nodes[w%3].url(), c.nodes[(w+1)%3].url(), c.nodes[(w+2)%3].url()}
			cl, err := client.New(urls[0], &client.Options{Token: token, Nodes: urls[1:], MaxAttempts: 300})
			if err != nil {
				errc <- err
				return
			}
			for b := range batches {
				keys, vals := make([]string, perBatch), make([]string, perBatch)
				var batch client.Batch
				for j := range perBatch {
					keys[j] = fmt.Sprintf("w%d/%d", w, (b*perBatch+j*7)%keySpace)
					vals[j] = fmt.Sprintf("w%d-b%d-j%d", w, b, j)
					batch.Put([]byte(keys[j]), []byte(vals[j]))
				}
				// The client retries across the nodes; a batch it gave up on
				// is sent again (puts are idempotent) until acknowledged.
				for {
					err := cl.Apply(ctx, &batch)
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						errc <- err
						return
					}
				}
				lastAck.Store(w, time.Now())
				mu.Lock()
				for j := range keys {
					acked[keys[j]] = vals[j]
				}
				mu.Unlock()
				progress <- 1
			}
		}()
	}
	done := 0
	total := writers * batches
	for k := range kills {
		want := total * (k + 1) / (kills + 1)
		for done < want {
			select {
			case <-progress:
				done++
			case err := <-errc:
				t.Fatal(err)
			}
		}
		l := c.leader()
		if l == nil {
			l = c.waitLeader(10 * time.Second)
		}
		killed := time.Now()
		c.kill(l)
		nl := c.waitLeader(10 * time.Second)
		elected := time.Since(killed)
		// Failover: killed until the next acknowledged write.
		var failover time.Duration
		for failover == 0 && time.Since(killed) < 20*time.Second {
			lastAck.Range(func(_, v any) bool {
				if at := v.(time.Time); at.After(killed) && (failover == 0 || at.Sub(killed) < failover) {
					failover = at.Sub(killed)
				}
				return true
			})
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("kill %d: %s killed, %s leads after %v, next acknowledged write after %v", k+1, l.id, nl.id,
			elected.Round(time.Millisecond), failover.Round(time.Millisecond))
		c.start(l) // it restarts, rejoins and catches up
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	c.waitConverged(20 * time.Second)
	out, err := exec.Command(c.bin, "cluster", "status", c.nodes[1].url(), "--token-file", c.tok).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "leader: n") || strings.Count(string(out), "Voter") != 3 {
		t.Fatalf("simdr cluster status: %v\n%s", err, out)
	}
	t.Logf("simdr cluster status:\n%s", out)
	for _, p := range c.nodes {
		c.stop(p)
	}
	var first map[uint64]string
	for i, p := range c.nodes {
		got := liveEntries(t, p.store())
		for k, v := range acked {
			if got[simdr.Hash([]byte(k))] != v {
				t.Fatalf("node %s: key %s = %q, want the acknowledged %q", p.id, k, got[simdr.Hash([]byte(k))], v)
			}
		}
		if i == 0 {
			first = got
			continue
		}
		if len(got) != len(first) {
			t.Fatalf("node %s holds %d live entries, %s %d", p.id, len(got), c.nodes[0].id, len(first))
		}
		for h, v := range first {
			if got[h] != v {
				t.Fatalf("node %s differs from %s at hash %x", p.id, c.nodes[0].id, h)
			}
		}
	}
	t.Logf("%d acknowledged keys, %d live entries on each node", len(acked), len(first))
}

func TestClusterLeaderKill(t *testing.T) { runKillTest(t, 15, 1) }
