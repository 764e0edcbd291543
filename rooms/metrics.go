package rooms

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Service's Prometheus instruments. A nil *metrics (no
// registerer given) records nothing.
type metrics struct {
	stored      *prometheus.CounterVec
	batchEvents prometheus.Histogram
	commitSecs  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "plexus", Subsystem: "rooms", Name: "events_stored_total",
			Help: "Events stored, by origin (local or remote) and outcome (accepted, rejected, soft_failed, outlier).",
		}, []string{"origin", "outcome"}),
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "plexus", Subsystem: "rooms", Name: "commit_batch_events",
			Help:    "Events per storage transaction committed by a room worker.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		commitSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "plexus", Subsystem: "rooms", Name: "commit_seconds",
			Help:    "Time to commit one room worker batch to storage.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	for _, c := range []prometheus.Collector{m.stored, m.batchEvents, m.commitSecs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observeCommit(events []*Stored, local ServerName, seconds float64) {
	if m == nil {
		return
	}
	m.batchEvents.Observe(float64(len(events)))
	m.commitSecs.Observe(seconds)
	for _, s := range events {
		origin := "remote"
		if s.Event.Origin() == local {
			origin = "local"
		}
		outcome := "accepted"
		switch {
		case s.Rejected != "":
			outcome = "rejected"
		case s.Outlier:
			outcome = "outlier"
		case s.SoftFailed:
			outcome = "soft_failed"
		}
		m.stored.WithLabelValues(origin, outcome).Inc()
	}
}
