package turn

import (
	"context"
	"maps"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// This file is the relay's part of the operator page (issue 7).

// Status is the relay's section of the operator page. The top-level
// numbers are the ones the page charts.
type Status struct {
	// Allocations are the live allocations; Connections the open TCP and
	// TLS connections.
	Allocations int `json:"allocations"`
	Connections int `json:"connections"`
	// RelayedBytes and RelayedPackets are totals since start, both
	// directions together; Relayed splits them.
	RelayedBytes   uint64 `json:"relayed_bytes"`
	RelayedPackets uint64 `json:"relayed_packets"`
	// DeniedPackets counts relayed datagrams the peer policy refused.
	DeniedPackets uint64 `json:"denied_packets"`

	// PerUser counts each user's allocations, made and being made (what
	// the user quota counts), by TURN username's user part.
	PerUser  map[string]int `json:"allocations_per_user"`
	Relayed  Directions     `json:"relayed"`
	Denied   Denied         `json:"denied"`
	Quota    Quota          `json:"quota"`
	Throttle uint64         `json:"throttled_packets"`
	// ExpiredAllocations were ended by the maximum lifetime.
	ExpiredAllocations uint64 `json:"expired_allocations"`
}

// Directions splits relayed traffic: to peers (from clients) and from
// peers.
type Directions struct {
	BytesToPeer     uint64 `json:"bytes_to_peer"`
	BytesFromPeer   uint64 `json:"bytes_from_peer"`
	PacketsToPeer   uint64 `json:"packets_to_peer"`
	PacketsFromPeer uint64 `json:"packets_from_peer"`
}

// Denied are the refusals. The per-reason counts come from the
// Prometheus counters and are empty when the relay has no metrics
// registry.
type Denied struct {
	PacketsToPeer   uint64 `json:"packets_to_peer"`
	PacketsFromPeer uint64 `json:"packets_from_peer"`
	// Peers are peer addresses refused, by request (permission, connect).
	Peers map[string]uint64 `json:"peers"`
	// Allocations are allocations and connections refused, by reason
	// (user_quota, total_quota, ...).
	Allocations map[string]uint64 `json:"allocations"`
	// Auth are requests refused for their credentials, by reason.
	Auth map[string]uint64 `json:"auth"`
}

// Quota is what the operator configured; 0 is no cap. MaxConnections
// is the cap in force (the default when none was configured).
type Quota struct {
	PerUser         int   `json:"per_user"`
	Total           int   `json:"total"`
	MaxBitrate      int64 `json:"max_bitrate"`
	MaxLifetimeSecs int64 `json:"max_lifetime_secs"`
	MaxConnections  int   `json:"max_connections"`
}

// Status reports the relay's allocations, traffic and refusals: the
// operator's signalling.StatusSource. It does no I/O.
func (s *Server) Status(context.Context) (any, error) {
	st := &s.stats
	out := &Status{
		Allocations: s.acct.liveCount(),
		Connections: s.conns.count(),
		PerUser:     s.acct.perUser(),
		Relayed: Directions{
			BytesToPeer: st.BytesToPeer.Load(), BytesFromPeer: st.BytesFromPeer.Load(),
			PacketsToPeer: st.PacketsToPeer.Load(), PacketsFromPeer: st.PacketsFromPeer.Load(),
		},
		Denied: Denied{
			PacketsToPeer: st.DeniedToPeer.Load(), PacketsFromPeer: st.DeniedFromPeer.Load(),
			Peers: map[string]uint64{}, Allocations: map[string]uint64{}, Auth: map[string]uint64{},
		},
		Quota: Quota{
			PerUser: s.cfg.UserQuota, Total: s.cfg.TotalQuota, MaxBitrate: s.cfg.MaxBitrate,
			MaxLifetimeSecs: int64(s.cfg.MaxLifetime.Seconds()), MaxConnections: s.conns.max,
		},
		Throttle:           st.Throttled.Load(),
		ExpiredAllocations: st.Expired.Load(),
	}
	out.RelayedBytes = out.Relayed.BytesToPeer + out.Relayed.BytesFromPeer
	out.RelayedPackets = out.Relayed.PacketsToPeer + out.Relayed.PacketsFromPeer
	out.DeniedPackets = out.Denied.PacketsToPeer + out.Denied.PacketsFromPeer
	if m := s.metrics; m != nil {
		readCounters(m.deniedPeers, out.Denied.Peers)
		readCounters(m.refusals, out.Denied.Allocations)
		readCounters(m.authFailures, out.Denied.Auth)
	}
	return out, nil
}

// readCounters copies a one-label counter vector's values into into.
func readCounters(v *prometheus.CounterVec, into map[string]uint64) {
	ch := make(chan prometheus.Metric, 16)
	go func() {
		v.Collect(ch)
		close(ch)
	}()
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil || d.Counter == nil || len(d.Label) == 0 {
			continue
		}
		into[d.Label[0].GetValue()] = uint64(d.Counter.GetValue())
	}
}

// perUser copies the per-user allocation counts.
func (a *accounts) perUser() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.users)
}
