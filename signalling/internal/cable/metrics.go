package cable

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's instruments; with no registerer they are
// still updated, just never exported.
type metrics struct {
	connections   prometheus.Gauge
	subscriptions prometheus.Gauge
	messagesSent  prometheus.Counter
	slowConsumers prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "plexus", Subsystem: "cable", Name: "connections",
			Help: "Open realtime WebSocket connections.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "plexus", Subsystem: "cable", Name: "subscriptions",
			Help: "Active channel subscriptions.",
		}),
		messagesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "plexus", Subsystem: "cable", Name: "messages_sent_total",
			Help: "WebSocket frames written to consumers (pings included).",
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "plexus", Subsystem: "cable", Name: "slow_consumer_disconnects_total",
			Help: "Connections closed because their queue overflowed.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connections, m.subscriptions, m.messagesSent, m.slowConsumers} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cable: metrics: %w", err)
		}
	}
	return m, nil
}
