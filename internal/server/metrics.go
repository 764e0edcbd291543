package server

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/plexus-chat/plexus/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// requestMetrics are the HTTP request metrics, labelled by route pattern so
// that the label set stays bounded whatever paths clients send.
type requestMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newRequestMetrics(reg prometheus.Registerer) (*requestMetrics, error) {
	m := &requestMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace,
			Subsystem: "http",
			Name:      "requests_total",
			Help:      "HTTP requests answered, by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metrics.Namespace,
			Subsystem: "http",
			Name:      "request_duration_seconds",
			Help:      "Time to answer HTTP requests, by method and route pattern.",
			// The default buckets stop at 10 s; /sync long-polls for 30 s
			// and more, so extend them.
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metrics.Namespace,
			Subsystem: "http",
			Name:      "requests_in_flight",
			Help:      "HTTP requests being answered now.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: registering request metrics: %w", err)
		}
	}
	return m, nil
}

func (m *requestMetrics) observe(method, route string, status int, d time.Duration) {
	method = methodLabel(method)
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
}

// methodLabel keeps the label bounded: a client can send any method name.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete,
		http.MethodOptions, http.MethodHead, http.MethodPatch:
		return m
	}
	return "other"
}
