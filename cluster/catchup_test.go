package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
)

// writeN writes n acknowledged batches of 100 keys starting at batch from.
func (c *testCluster) writeN(t *testing.T, from, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for b := from; b < from+n; b++ {
		keys, vals := make([]string, 100), make([]string, 100)
		for j := range keys {
			keys[j], vals[j] = fmt.Sprintf("k%d", (b*100+j)%5000), fmt.Sprintf("b%d-%d", b, j)
		}
		if err := c.writeAcked(ctx, batchBody(keys, vals)); err != nil {
			t.Fatal(err)
		}
	}
}

// sameStores stops every node and checks the stores hold the same entries.
func (c *testCluster) sameStores(t *testing.T) {
	t.Helper()
	for _, p := range c.nodes {
		c.stop(p)
	}
	first := liveEntries(t, c.nodes[0].store())
	for _, p := range c.nodes[1:] {
		got := liveEntries(t, p.store())
		if len(got) != len(first) {
			t.Fatalf("%s holds %d live entries, %s %d", p.id, len(got), c.nodes[0].id, len(first))
		}
		for h, v := range first {
			if got[h] != v {
				t.Fatalf("%s differs from %s at %x: %q, %q", p.id, c.nodes[0].id, h, got[h], v)
			}
		}
	}
}

func snapshots(t *testing.T, p *proc) int {
	d, _ := os.ReadDir(filepath.Join(p.dir, "raft", "snapshots"))
	return len(d)
}

// A follower stopped while writes go on catches up from the log; one
// stopped longer than the log is kept catches up from a snapshot; a new
// node joins from a snapshot.
func TestClusterCatchUp(t *testing.T) {
	c := newCluster(t, 3, "--raft-snapshot-threshold", "20", "--raft-trailing-logs", "10", "--raft-snapshot-interval", "200ms")
	c.writeN(t, 0, 5)
	l := c.leader()
	var f *proc
	for _, p := range c.nodes {
		if p != l {
			f = p
			break
		}
	}
	// From the log: a few entries only.
	c.stop(f)
	c.writeN(t, 5, 3)
	c.start(f)
	c.waitConverged(20 * time.Second)

	// From a snapshot: many entries, the log compacted meanwhile.
	c.stop(f)
	start := time.Now()
	c.writeN(t, 8, 80)
	t.Logf("80 batches of 100 in %v", time.Since(start))
	deadline := time.Now().Add(10 * time.Second)
	for snapshots(t, c.leader()) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	c.start(f)
	start = time.Now()
	c.waitConverged(30 * time.Second)
	took := time.Since(start)
	_, lb, _ := do("GET", c.leader().url()+"/v1/len", nil)
	t.Logf("follower caught up over a snapshot in %v (the leader's store: %s)", took, bytes.TrimSpace(lb))
	if s, err := c.statusOf(f); err != nil || s.Restores == 0 {
		t.Fatalf("the follower did not restore a snapshot (%v)", err)
	}

	// A process without the secret cannot join (its HTTP join is refused,
	// and its raft transport cannot talk to the members).
	intruder := c.add("intruder")
	c.nodes = c.nodes[:len(c.nodes)-1]
	badTok := filepath.Join(c.base, "bad-token")
	os.WriteFile(badTok, []byte("not-the-secret\n"), 0o600)
	saved := c.tok
	c.tok = badTok
	c.start(intruder, "--join", c.nodes[0].url())
	c.tok = saved
	time.Sleep(2 * time.Second)
	if s, err := c.statusOf(c.leader()); err != nil || len(s.Members) != 3 {
		t.Fatalf("after an intruder tried to join: %d members (%v), want 3", len(s.Members), err)
	}
	c.stop(intruder)

	// A new node joins from a snapshot.
	p := c.add("n4")
	c.start(p, "--join", c.nodes[1].url())
	c.waitMembers(4, 20*time.Second)
	c.waitConverged(30 * time.Second)
	if snapshots(t, p) == 0 {
		t.Log("the new node caught up from the log alone")
	}
	s, _ := c.statusOf(p)
	t.Logf("the new node restored %d snapshot(s)", s.Restores)
	if s.Restores == 0 {
		t.Fatal("the new node did not catch up from a snapshot")
	}
	c.sameStores(t)
	st, err := simdr.Open(p.store(), &simdr.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := st.Get([]byte("k0")); err != nil || len(e.Bytes()) == 0 {
		t.Fatalf("new node lacks k0: %v", err)
	}
	st.Close()

	// Remove n4: it stays out although it runs on (and would ask back in).
	for _, q := range c.nodes {
		c.start(q)
	}
	c.waitLeader(10 * time.Second)
	for i := 0; ; i++ { // retried while an election goes on
		res, b, err := do("POST", c.nodes[i%3].url()+"/v1/cluster/remove", []byte(`{"id":"n4"}`), "Content-Type", "application/json")
		if err == nil && res.StatusCode == 204 {
			break
		}
		if i == 50 {
			t.Fatalf("remove: %v %s", err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Restarted as before (--join) on another HTTP port, it would ask
	// back in by itself.
	n4 := c.nodes[3]
	c.stop(n4)
	n4.httpAddr = freePort(t)
	c.start(n4, "--join", c.nodes[0].url())
	time.Sleep(2 * time.Second)
	if s, err := c.statusOf(c.leader()); err != nil || len(s.Members) != 3 {
		t.Fatalf("after removing n4: %d members (%v), want 3", len(s.Members), err)
	}
	c.writeN(t, 88, 2) // the three go on
}
