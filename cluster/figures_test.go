package cluster_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestClusterFigures measures, when SIMDR_CLUSTER_FIGURES is set, write
// throughput (batches of 1,000) on a 3-node cluster against one plain
// node, and local read throughput on 3 nodes against 1. Ratios only.
func TestClusterFigures(t *testing.T) {
	if os.Getenv("SIMDR_CLUSTER_FIGURES") == "" {
		t.Skip("set SIMDR_CLUSTER_FIGURES=1")
	}
	bin := simdrBin(t)
	dir := t.TempDir()
	tok := filepath.Join(dir, "tok")
	os.WriteFile(tok, []byte(token), 0o600)
	addr := freePort(t)
	single := exec.Command(bin, filepath.Join(dir, "one.simdr"), "serve", "--addr", addr, "--token-file", tok)
	single.Start()
	defer func() { single.Process.Kill(); single.Wait() }()
	time.Sleep(500 * time.Millisecond)
	c := newCluster(t, 3)
	const batches = 30
	body := func(b int) []byte {
		keys, vals := make([]string, 1000), make([]string, 1000)
		for j := range keys {
			keys[j], vals[j] = fmt.Sprintf("k%d", b*1000+j), fmt.Sprintf("value-%d-%d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", b, j)
		}
		return batchBody(keys, vals)
	}
	write := func(url string) time.Duration {
		start := time.Now()
		for b := range batches {
			res, _, err := do("POST", url+"/v1/batch", body(b), "Content-Type", "application/json")
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("batch: %v", err)
			}
		}
		return time.Since(start)
	}
	one := write("http://" + addr)
	three := write(c.leader().url())
	t.Logf("writes, %d batches of 1000: one node %v, cluster %v: cluster/one = %.2f", batches, one, three, one.Seconds()/three.Seconds())
	c.waitConverged(10 * time.Second)
	read := func(urls []string) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 500 {
					u := urls[(g+i)%len(urls)]
					res, _, err := do("GET", fmt.Sprintf("%s/v1/keys/k%d", u, (g*500+i)%30000), nil)
					if err != nil || res.StatusCode != 200 {
						t.Errorf("read: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	r1 := read([]string{"http://" + addr})
	r3 := read([]string{c.nodes[0].url(), c.nodes[1].url(), c.nodes[2].url()})
	rl := read([]string{c.leader().url()})
	t.Logf("the same reads on one cluster node: %v (per-request cost against a plain node %.2f)", rl, rl.Seconds()/r1.Seconds())
	t.Logf("4000 local reads, 8 clients: one node %v, 3 nodes %v: ratio %.2f (2 cores shared by all processes)", r1, r3, r1.Seconds()/r3.Seconds())
	_ = context.Background
}
