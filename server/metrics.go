package server

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// latencyBuckets are the upper bounds, in seconds, of the request latency
// histogram.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// knownMethods bounds the method label; anything else counts as OTHER.
var knownMethods = map[string]bool{"GET": true, "HEAD": true, "PUT": true, "POST": true, "DELETE": true, "OPTIONS": true}

// metrics holds the server's Prometheus collectors, in a registry of its
// own (so that several servers in one process do not collide). No scrape
// visits the store's keys: the store gauges are O(1) (Len, Size), and what
// the server does is counted as it does it.
type metrics struct {
	reg      *prometheus.Registry
	reqs     *prometheus.CounterVec
	lat      *prometheus.HistogramVec
	writes   *prometheus.CounterVec
	written  prometheus.Counter
	compacts prometheus.Counter
	freed    prometheus.Counter
	handler  http.Handler
}

func newMetrics(h *handler) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simdr_http_requests_total", Help: "HTTP requests served, by route, method and status code.",
	}, []string{"route", "method", "code"})
	m.lat = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "simdr_http_request_duration_seconds", Help: "Time to serve a request, by route and method.",
		Buckets: latencyBuckets,
	}, []string{"route", "method"})
	m.writes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "simdr_store_writes_total", Help: "Writes the server made to the store, by kind (put, delete, batch_op, rename).",
	}, []string{"op"})
	m.written = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "simdr_store_written_value_bytes_total", Help: "Bytes of values the server stored (PUT and batch puts).",
	})
	m.compacts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "simdr_store_compactions_total", Help: "Compactions the server ran.",
	})
	m.freed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "simdr_store_compacted_bytes_total", Help: "Bytes the server's compactions removed from the file.",
	})
	start := float64(time.Now().UnixMilli()) / 1000
	up := func() float64 {
		if h.closed() {
			return 0
		}
		return 1
	}
	m.reg.MustRegister(m.reqs, m.lat, m.writes, m.written, m.compacts, m.freed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "simdr_http_requests_in_flight", Help: "Requests being served."},
			func() float64 { return float64(h.inflight.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "simdr_server_start_time_seconds", Help: "When the server started, in Unix seconds."},
			func() float64 { return start }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "simdr_server_inflight_body_bytes", Help: "Memory request bodies hold now, of the budget (Config.MaxInflightBytes)."},
			func() float64 { return float64(h.budget.used.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "simdr_server_inflight_body_bytes_max", Help: "The budget of memory request bodies may hold (Config.MaxInflightBytes)."},
			func() float64 { return float64(h.budget.max) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "simdr_store_up", Help: "1 while the store is open."}, up),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "simdr_store_live_keys", Help: "Keys with a value."},
			func() float64 { return float64(h.store.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "simdr_store_file_bytes", Help: "Bytes of valid entries in the file."},
			func() float64 { return float64(h.store.Size()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m
}

// codes caches the status code labels.
var codes [600]atomic.Pointer[string]

func codeLabel(code int) string {
	if code < 0 || code >= len(codes) {
		return strconv.Itoa(code)
	}
	if p := codes[code].Load(); p != nil {
		return *p
	}
	s := strconv.Itoa(code)
	codes[code].Store(&s)
	return s
}

func (m *metrics) observe(route, method string, code int, d time.Duration) {
	if !knownMethods[method] {
		method = "OTHER"
	}
	m.reqs.WithLabelValues(route, method, codeLabel(code)).Inc()
	m.lat.WithLabelValues(route, method).Observe(d.Seconds())
}

// wrote counts a successful write of n ops of kind op and value bytes.
func (m *metrics) wrote(op string, n int, bytes int64) {
	m.writes.WithLabelValues(op).Add(float64(n))
	if bytes > 0 {
		m.written.Add(float64(bytes))
	}
}

// serveMetrics writes every metric in the Prometheus exposition format the
// scraper asks for (text 0.0.4 by default).
func (h *handler) serveMetrics(w http.ResponseWriter, r *http.Request) {
	h.metrics.handler.ServeHTTP(w, r)
}
