package turn

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plexus-chat/plexus/turn/internal/filter"
)

// metrics are the relay's Prometheus metrics. A nil *metrics (no
// registerer) makes every method a no-op. Per-packet counts live in
// relay.Stats as plain atomics and are read at scrape time, so the packet
// path pays no label lookups.
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector

	authFailures *prometheus.CounterVec
	deniedPeers  *prometheus.CounterVec
	refusals     *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	allocations  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		reg: reg,
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plexus_turn_auth_failures_total",
			Help: "TURN requests refused for their credentials, by reason (expired, malformed, wrong_realm, bad_integrity, user_refused).",
		}, []string{"reason"}),
		deniedPeers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plexus_turn_denied_peers_total",
			Help: "Peer addresses refused by the peer policy, by request (permission: CreatePermission or ChannelBind; connect).",
		}, []string{"stage"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plexus_turn_refusals_total",
			Help: "Allocations and connections refused, by reason (user_quota, total_quota, transport, address_family, connections).",
		}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plexus_turn_dropped_messages_total",
			Help: "Messages from clients dropped before parsing, by reason (junk, unexpected_message).",
		}, []string{"reason"}),
		allocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "plexus_turn_allocations_created_total",
			Help: "TURN allocations created.",
		}),
	}
	for _, r := range []string{"expired", "malformed", "wrong_realm", "bad_integrity", "user_refused"} {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range []string{"permission", "connect"} {
		m.deniedPeers.WithLabelValues(r)
	}
	for _, r := range []string{"user_quota", "total_quota", "transport", "address_family", "connections"} {
		m.refusals.WithLabelValues(r)
	}
	for _, r := range []filter.Reason{filter.ReasonJunk, filter.ReasonUnexpected} {
		m.dropped.WithLabelValues(string(r))
	}
	st := &s.stats
	counter := func(name, help string, labels prometheus.Labels, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) })
	}
	const (
		pktsHelp  = "Datagrams relayed, by direction (to_peer: from clients to peers; from_peer: from peers, before pion's permission check)."
		bytesHelp = "Payload bytes relayed, by direction."
	)
	to, from := prometheus.Labels{"direction": "to_peer"}, prometheus.Labels{"direction": "from_peer"}
	m.collectors = []prometheus.Collector{
		m.authFailures, m.deniedPeers, m.refusals, m.dropped, m.allocations,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "plexus_turn_allocations",
			Help: "TURN allocations active.",
		}, func() float64 { return float64(s.acct.liveCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "plexus_turn_connections",
			Help: "TURN TCP and TLS connections open.",
		}, func() float64 { return float64(s.conns.count()) }),
		counter("plexus_turn_relayed_packets_total", pktsHelp, to, st.PacketsToPeer.Load),
		counter("plexus_turn_relayed_packets_total", pktsHelp, from, st.PacketsFromPeer.Load),
		counter("plexus_turn_relayed_bytes_total", bytesHelp, to, st.BytesToPeer.Load),
		counter("plexus_turn_relayed_bytes_total", bytesHelp, from, st.BytesFromPeer.Load),
		counter("plexus_turn_denied_packets_total", "Relayed datagrams refused by the peer policy, by direction.", to, st.DeniedToPeer.Load),
		counter("plexus_turn_denied_packets_total", "Relayed datagrams refused by the peer policy, by direction.", from, st.DeniedFromPeer.Load),
		counter("plexus_turn_throttled_packets_total", "Relayed datagrams dropped by the per-allocation bandwidth cap.", nil, st.Throttled.Load),
		counter("plexus_turn_expired_allocations_total", "Allocations ended by the maximum allocation lifetime.", nil, st.Expired.Load),
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("turn: metrics already registered (one TURN server per registry)")
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

func (m *metrics) authFailure(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) deniedPeer(stage string) {
	if m != nil {
		m.deniedPeers.WithLabelValues(stage).Inc()
	}
}

func (m *metrics) refuse(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) drop(reason filter.Reason) {
	if m != nil {
		m.dropped.WithLabelValues(string(reason)).Inc()
	}
}

func (m *metrics) created() {
	if m != nil {
		m.allocations.Inc()
	}
}
