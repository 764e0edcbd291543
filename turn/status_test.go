package turn

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// TestStatus: a real allocation relaying to an echo peer, a quota
// refusal and a refused peer, as the operator page sees them.
func TestStatus(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := startServer(t, func(c *Config, d *Deps) {
		c.AllowPeers = loopbackAllowed
		c.UserQuota, c.TotalQuota, c.MaxBitrate, c.MaxLifetime = 1, 5, 8_000_000, time.Hour
		d.Metrics = reg
	})
	echo := startEcho(t)
	user, pass := creds(testUser, time.Hour)
	relayConn, err := pionClient(t, s, "udp", user, pass).Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relayConn.Close()
	buf := make([]byte, 1500)
	for range 5 {
		if _, err := relayConn.WriteTo([]byte("ping"), echo.addr()); err != nil {
			t.Fatal(err)
		}
		_ = relayConn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := relayConn.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}
	// A second allocation of the same user is over the user quota.
	c := newRaw(t, s, "tcp", user, pass)
	if _, code := c.allocate(); code != int(stun.CodeAllocQuotaReached) {
		t.Fatalf("second allocation: %d, want 486", code)
	}
	// Another user's allocation asks for a peer the policy refuses.
	u2, p2 := creds("@bob:test.example", time.Hour)
	bob := newRaw(t, s, "udp", u2, p2)
	if _, code := bob.allocate(); code != 0 {
		t.Fatalf("bob's allocation: %d", code)
	}
	if code := bob.createPermission(peerAttr{netip.MustParseAddr("10.0.0.1"), 9}); code == 0 {
		t.Fatal("permission for 10.0.0.1 granted")
	}

	var st *Status
	waitFor(t, "5 datagrams counted each way", func() bool {
		v, err := s.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st = v.(*Status)
		return st.Relayed.PacketsToPeer == 5 && st.Relayed.PacketsFromPeer == 5
	})
	if st.Allocations != 2 || st.PerUser[testUser] != 1 || st.PerUser["@bob:test.example"] != 1 || len(st.PerUser) != 2 {
		t.Errorf("allocations %d, per user %v", st.Allocations, st.PerUser)
	}
	if st.RelayedPackets != 10 || st.RelayedBytes != 40 || st.Relayed.BytesToPeer != 20 {
		t.Errorf("relayed %d packets, %d bytes (%+v)", st.RelayedPackets, st.RelayedBytes, st.Relayed)
	}
	if st.Denied.Allocations["user_quota"] != 1 || st.Denied.Allocations["total_quota"] != 0 || st.Denied.Peers["permission"] != 1 {
		t.Errorf("denied %+v", st.Denied)
	}
	if st.Quota != (Quota{PerUser: 1, Total: 5, MaxBitrate: 8_000_000, MaxLifetimeSecs: 3600, MaxConnections: 4*5 + 64}) {
		t.Errorf("quota %+v", st.Quota)
	}
	if st.Connections != 1 { // the refused client's TCP connection
		t.Errorf("connections %d", st.Connections)
	}
	// The charted numbers sit at the top level of the JSON form.
	b, _ := json.Marshal(st)
	var top map[string]any
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	if top["allocations"] != float64(2) || top["relayed_packets"] != float64(10) {
		t.Errorf("JSON form %s", b)
	}

	relayConn.Close()
	waitFor(t, "the allocation to go", func() bool {
		v, _ := s.Status(context.Background())
		st := v.(*Status)
		return st.Allocations == 1 && st.PerUser[testUser] == 0
	})
}

// TestStatusWithoutMetrics: without a registry the per-reason refusals
// are empty, not missing.
func TestStatusWithoutMetrics(t *testing.T) {
	s := startServer(t, nil)
	v, err := s.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	var got struct {
		Allocations int
		Denied      struct{ Peers, Allocations, Auth map[string]uint64 }
		PerUser     map[string]int `json:"allocations_per_user"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Allocations != 0 || got.Denied.Peers == nil || got.Denied.Auth == nil || got.PerUser == nil {
		t.Errorf("status without metrics: %s", b)
	}
}
