package server

import (
	"bufio"
	"cmp"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// latencyBuckets are the upper bounds, in seconds, of the request latency
// histogram.
var latencyBuckets = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// knownMethods bounds the method label; anything else counts as OTHER.
var knownMethods = map[string]bool{"GET": true, "HEAD": true, "PUT": true, "POST": true, "DELETE": true}

type series struct{ route, method string }

type reqKey struct {
	series
	code int
}

type histogram struct {
	counts [len(latencyBuckets) + 1]atomic.Uint64 // the last is +Inf
	sum    atomic.Int64                           // nanoseconds
}

// metrics holds the request counters and latency histograms, written by
// hand in the Prometheus text exposition format (version 0.0.4).
type metrics struct {
	mu    sync.RWMutex
	reqs  map[reqKey]*atomic.Uint64
	lat   map[series]*histogram
	start time.Time
}

func newMetrics() *metrics {
	return &metrics{reqs: map[reqKey]*atomic.Uint64{}, lat: map[series]*histogram{}, start: time.Now()}
}

func (m *metrics) observe(route, method string, code int, d time.Duration) {
	if !knownMethods[method] {
		method = "OTHER"
	}
	k := reqKey{series{route, method}, code}
	m.mu.RLock()
	c, h := m.reqs[k], m.lat[k.series]
	m.mu.RUnlock()
	if c == nil || h == nil {
		m.mu.Lock()
		if c = m.reqs[k]; c == nil {
			c = new(atomic.Uint64)
			m.reqs[k] = c
		}
		if h = m.lat[k.series]; h == nil {
			h = new(histogram)
			m.lat[k.series] = h
		}
		m.mu.Unlock()
	}
	c.Add(1)
	secs := d.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets[:], secs) // first bucket with bound >= secs
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// escapeLabel escapes a label value for the text format.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// serveMetrics writes every metric in the Prometheus text format.
func (h *handler) serveMetrics(w http.ResponseWriter, r *http.Request) {
	m := h.metrics
	m.mu.RLock()
	reqs := make([]reqKey, 0, len(m.reqs))
	for k := range m.reqs {
		reqs = append(reqs, k)
	}
	lats := make([]series, 0, len(m.lat))
	for k := range m.lat {
		lats = append(lats, k)
	}
	m.mu.RUnlock()
	cmpSeries := func(a, b series) int { return cmp.Or(cmp.Compare(a.route, b.route), cmp.Compare(a.method, b.method)) }
	slices.SortFunc(reqs, func(a, b reqKey) int { return cmp.Or(cmpSeries(a.series, b.series), cmp.Compare(a.code, b.code)) })
	slices.SortFunc(lats, cmpSeries)

	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	p("# HELP simdr_http_requests_total HTTP requests served, by route, method and status code.\n")
	p("# TYPE simdr_http_requests_total counter\n")
	for _, k := range reqs {
		m.mu.RLock()
		c := m.reqs[k]
		m.mu.RUnlock()
		p("simdr_http_requests_total{route=\"%s\",method=\"%s\",code=\"%d\"} %d\n",
			escapeLabel(k.route), k.method, k.code, c.Load())
	}

	p("# HELP simdr_http_request_duration_seconds Time to serve a request, by route and method.\n")
	p("# TYPE simdr_http_request_duration_seconds histogram\n")
	for _, s := range lats {
		m.mu.RLock()
		hg := m.lat[s]
		m.mu.RUnlock()
		labels := fmt.Sprintf("route=\"%s\",method=\"%s\"", escapeLabel(s.route), s.method)
		var cum uint64
		for i := range hg.counts {
			cum += hg.counts[i].Load()
			le := math.Inf(1)
			if i < len(latencyBuckets) {
				le = latencyBuckets[i]
			}
			p("simdr_http_request_duration_seconds_bucket{%s,le=\"%s\"} %d\n", labels, formatFloat(le), cum)
		}
		p("simdr_http_request_duration_seconds_sum{%s} %s\n", labels, formatFloat(time.Duration(hg.sum.Load()).Seconds()))
		p("simdr_http_request_duration_seconds_count{%s} %d\n", labels, cum)
	}

	p("# HELP simdr_http_requests_in_flight Requests being served.\n")
	p("# TYPE simdr_http_requests_in_flight gauge\n")
	p("simdr_http_requests_in_flight %d\n", h.inflight.count())
	p("# HELP simdr_server_start_time_seconds When the server started, in Unix seconds.\n")
	p("# TYPE simdr_server_start_time_seconds gauge\n")
	p("simdr_server_start_time_seconds %s\n", formatFloat(float64(m.start.UnixMilli())/1000))

	up := 1
	if h.closed() {
		up = 0
	}
	st := h.store.Stats()
	gauges := []struct {
		name, help string
		v          int64
	}{
		{"simdr_store_up", "1 while the store is open.", int64(up)},
		{"simdr_store_live_keys", "Keys with a value.", int64(st.LiveKeys)},
		{"simdr_store_entries", "Value entries in the file, overwritten ones included.", st.Entries},
		{"simdr_store_tombstones", "Delete markers in the file.", st.Tombstones},
		{"simdr_store_file_bytes", "Bytes of valid entries in the file.", st.FileBytes},
		{"simdr_store_live_bytes", "Sum of the live values' lengths.", st.LiveBytes},
		{"simdr_store_reclaimable_bytes", "About how many bytes a compaction would free.", st.ReclaimableBytes},
		{"simdr_store_index_bytes", "Memory held by the in-memory index.", int64(st.IndexBytes)},
	}
	for _, g := range gauges {
		p("# HELP %s %s\n# TYPE %s gauge\n%s %d\n", g.name, g.help, g.name, g.name, g.v)
	}
}
