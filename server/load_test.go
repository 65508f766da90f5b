package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/simdr-go/simdr"
	"github.com/simdr-go/simdr/client"
	"github.com/simdr-go/simdr/server"
)

// cpuTime is the CPU time (user and system) the process has used: a figure
// of cost that other load on the machine disturbs less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadWorkers is the number of concurrent clients of the load test.
const loadWorkers = 32

// loadValue is the value a worker puts in its i-th request: 100 to 1,100
// bytes, different for every request.
func loadValue(w, i int) []byte {
	head := fmt.Sprintf("w%d-i%d-", w, i)
	return append([]byte(head), bytes.Repeat([]byte{byte('a' + (w+i)%26)}, 100+(w*7919+i*104729)%1000)...)
}

func loadKey(phase string, w, i int) []byte {
	return fmt.Appendf(nil, "load/%s/w%02d/k%03d", phase, w, i%200)
}

// loadOps is the workload: n requests over loadWorkers goroutines, two puts
// for each get, a get reading a key its own goroutine put and checking it
// reads the last value acknowledged. It returns the acknowledged values and
// each request's latency.
func loadOps(t *testing.T, phase string, n int, put func(k, v []byte) error, get func(k []byte) ([]byte, error)) (map[string][]byte, []time.Duration, time.Duration) {
	acked := make([]map[string][]byte, loadWorkers)
	lats := make([][]time.Duration, loadWorkers)
	var wg sync.WaitGroup
	begin := time.Now()
	for w := range loadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := map[string][]byte{}
			lat := make([]time.Duration, 0, n/loadWorkers)
			for i := range n / loadWorkers {
				k := loadKey(phase, w, i)
				start := time.Now()
				if i%3 == 2 {
					k = loadKey(phase, w, i-1) // put by this goroutine in the request before
					v, err := get(k)
					lat = append(lat, time.Since(start))
					if err != nil || !bytes.Equal(v, mine[string(k)]) {
						t.Errorf("get %s: %v (%d bytes, want %d)", k, err, len(v), len(mine[string(k)]))
						return
					}
					continue
				}
				v := loadValue(w, i)
				if err := put(k, v); err != nil {
					t.Errorf("put %s: %v", k, err)
					return
				}
				lat = append(lat, time.Since(start))
				mine[string(k)] = v
			}
			acked[w], lats[w] = mine, lat
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	all := map[string][]byte{}
	for _, m := range acked {
		for k, v := range m {
			all[k] = v
		}
	}
	return all, slices.Concat(lats...), elapsed
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*q))]
}

// TestLoad drives the real server over loopback with loadRequests requests
// (half under -race) from 32 concurrent clients (HTTP/1.1 keep-alive, then
// h2c), reports the
// throughput and latency against the same workload on the Store directly,
// then restarts the server on the reopened file and checks that every
// acknowledged Put is there.
func TestLoad(t *testing.T) {
	n := loadRequests
	if raceEnabled {
		n /= 2
	}
	if testing.Short() {
		n = 3000
	}
	path := filepath.Join(t.TempDir(), "load.simdr")
	st, err := simdr.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Baseline: the same workload on the Store, in process.
	acked, blat, belapsed := loadOps(t, "direct", n,
		func(k, v []byte) error { return st.Put(k, v) },
		func(k []byte) ([]byte, error) {
			e, err := st.Get(k)
			return e.Bytes(), err
		})
	baseRate := float64(n) / belapsed.Seconds()
	t.Logf("store, in process: %d ops in %v: %.0f ops/s, p50 %v, p99 %v", n, belapsed.Round(time.Millisecond),
		baseRate, quantile(blat, 0.5), quantile(blat, 0.99))

	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	h2tr := &http.Transport{Protocols: &h2}
	defer h2tr.CloseIdleConnections()
	protos := []struct {
		name string
		hc   *http.Client
	}{{"HTTP/1.1", nil}, {"h2c", &http.Client{Transport: h2tr}}}

	base, stop := start(t, st, server.Config{})
	for _, p := range protos {
		c, err := client.New(base, &client.Options{HTTPClient: p.hc})
		if err != nil {
			t.Fatal(err)
		}
		cpu0 := cpuTime()
		got, lat, elapsed := loadOps(t, p.name, n,
			func(k, v []byte) error { return c.Put(ctx, k, v) },
			func(k []byte) ([]byte, error) { return c.Get(ctx, k) })
		cpu := cpuTime() - cpu0
		c.CloseIdleConnections()
		if t.Failed() {
			t.FailNow()
		}
		rate := float64(n) / elapsed.Seconds()
		t.Logf("server over %s, %d clients: %d requests in %v: %.0f req/s (%.3f of in-process), p50 %v, p99 %v, CPU %v per request (client and server)",
			p.name, loadWorkers, n, elapsed.Round(time.Millisecond), rate, rate/baseRate, quantile(lat, 0.5), quantile(lat, 0.99), (cpu / time.Duration(n)).Round(100*time.Nanosecond))
		for k, v := range got {
			acked[k] = v
		}
	}

	// Restart: stop the server, close and reopen the file, serve it again.
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = simdr.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	base, _ = start(t, st, server.Config{})
	c, err := client.New(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	keys := make([][]byte, 0, len(acked))
	for k := range acked {
		keys = append(keys, []byte(k))
	}
	for chunk := range slices.Chunk(keys, 1000) {
		vals, err := c.GetMany(ctx, chunk)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range chunk {
			if !bytes.Equal(vals[i], acked[string(k)]) {
				t.Fatalf("after restart, %s holds %d bytes, not the %d acknowledged", k, len(vals[i]), len(acked[string(k)]))
			}
		}
	}
	if l, err := c.Len(ctx); err != nil || l != len(acked) {
		t.Fatalf("after restart: %d keys (%v), want %d", l, err, len(acked))
	}
	t.Logf("after restart: all %d acknowledged keys hold their last acknowledged value", len(acked))
}
