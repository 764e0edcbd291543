package turn

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// TestRelayEcho has pion's own client allocate with REST credentials over
// each transport and relay to an echo peer on 127.0.0.1, which the
// operator's --turn-allow-peer 127.0.0.0/8 permits; without it the same
// peer is refused.
func TestRelayEcho(t *testing.T) {
	for _, transport := range []string{"udp", "tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			s := startServer(t, func(c *Config, _ *Deps) { c.AllowPeers = loopbackAllowed })
			echo := startEcho(t)
			user, pass := creds(testUser, time.Hour)
			relayConn, err := pionClient(t, s, transport, user, pass).Allocate()
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			defer relayConn.Close()
			if got := relayConn.LocalAddr().(*net.UDPAddr); !got.IP.Equal(net.IPv4(127, 0, 0, 1)) {
				t.Errorf("relayed address %v, want on 127.0.0.1", got)
			}
			if n := s.Allocations(); n != 1 {
				t.Errorf("Allocations() = %d, want 1", n)
			}
			// The first datagrams go in Send indications while pion's
			// client binds a channel; later ones as ChannelData. Both
			// must come back.
			buf := make([]byte, 1500)
			for i := range 20 {
				msg := fmt.Appendf(nil, "ping %d", i)
				if _, err := relayConn.WriteTo(msg, echo.addr()); err != nil {
					t.Fatalf("WriteTo: %v", err)
				}
				_ = relayConn.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := relayConn.ReadFrom(buf)
				if err != nil {
					t.Fatalf("ReadFrom after %d echoes: %v", i, err)
				}
				if !bytes.Equal(buf[:n], msg) || from.String() != echo.addr().String() {
					t.Fatalf("got %q from %v, want %q from %v", buf[:n], from, msg, echo.addr())
				}
			}
			// The server counts a datagram just after sending it, so the
			// echo can overtake the count.
			waitFor(t, "20 datagrams counted each way", func() bool {
				return s.stats.PacketsToPeer.Load() == 20 && s.stats.PacketsFromPeer.Load() == 20
			})
			relayConn.Close() // Refresh with lifetime 0
			waitFor(t, "the allocation to be deleted", func() bool { return s.Allocations() == 0 })
		})
		t.Run(transport+"/refused by default", func(t *testing.T) {
			s := startServer(t, nil)
			echo := startEcho(t)
			user, pass := creds(testUser, time.Hour)
			c := pionClient(t, s, transport, user, pass)
			relayConn, err := c.Allocate()
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			defer relayConn.Close()
			if err := c.CreatePermission(echo.addr()); err == nil {
				t.Error("CreatePermission to 127.0.0.1 succeeded under the default policy")
			}
			if _, err := relayConn.WriteTo([]byte("ping"), echo.addr()); err == nil {
				t.Error("WriteTo 127.0.0.1 succeeded under the default policy")
			}
			if n := s.stats.PacketsToPeer.Load(); n != 0 || len(echo.got) != 0 {
				t.Errorf("%d datagrams relayed, %d received by the peer, want none", n, len(echo.got))
			}
		})
	}
}

// TestPeerPolicy checks each form of a local address on CreatePermission,
// ChannelBind, Send and Connect, with the default policy and with loopback
// allowed: 0.0.0.0 and [::] reach the loopback interface on Linux and
// ::ffff:127.0.0.1 is 127.0.0.1 (CVE-2020-26262).
func TestPeerPolicy(t *testing.T) {
	targets := []struct {
		addr       string
		allowedToo bool // allowed once 127.0.0.0/8 is
	}{
		{"127.0.0.1", true},
		{"::ffff:127.0.0.1", true},
		{"0.0.0.0", false},
		{"::1", false},
		{"::", false},
		{"::ffff:0.0.0.0", false},
		{"169.254.169.254", false},
		{"10.0.0.1", false},
	}
	for _, policy := range []string{"default", "allow 127.0.0.0/8"} {
		s := startServer(t, func(c *Config, _ *Deps) {
			if policy != "default" {
				c.AllowPeers = loopbackAllowed
			}
		})
		echo := startEcho(t)
		for _, target := range targets {
			allowed := policy != "default" && target.allowedToo
			t.Run(policy+"/"+target.addr, func(t *testing.T) {
				user, pass := creds(testUser, time.Hour)
				c := newRaw(t, s, "udp", user, pass)
				if _, code := c.allocate(); code != 0 {
					t.Fatalf("Allocate: error %d", code)
				}
				p := peerAttr{netip.MustParseAddr(target.addr), uint16(echo.port())}
				before := s.stats.PacketsToPeer.Load()
				permCode := c.createPermission(p)
				bindCode := c.channelBind(0x4001, p)
				c.sendIndication(p, []byte("indication"))
				c.sendChannel(0x4001, []byte("channel"))
				if allowed {
					if permCode != 0 || bindCode != 0 {
						t.Fatalf("CreatePermission %d, ChannelBind %d, want success", permCode, bindCode)
					}
					waitFor(t, "both datagrams relayed", func() bool { return s.stats.PacketsToPeer.Load() >= before+2 })
					return
				}
				if permCode == 0 || bindCode == 0 {
					t.Errorf("CreatePermission %d, ChannelBind %d, want both refused", permCode, bindCode)
				}
				if bindCode != 0 && bindCode != int(stun.CodeUnauthorized) && bindCode != int(stun.CodeForbidden) {
					t.Errorf("ChannelBind refused with %d", bindCode)
				}
				// Connect (RFC 6062) is judged by the same policy.
				if _, code := c.do(stun.Method(0x000a), p); code != int(stun.CodeForbidden) {
					t.Errorf("Connect: %d, want 403", code)
				}
				// A request after the refused ones proves they were all
				// processed, so "nothing relayed" is not just "not yet".
				if _, code := c.do(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 2, 0x58}}); code != 0 {
					t.Errorf("Refresh after refusals: %d", code)
				}
				if n := s.stats.PacketsToPeer.Load() - before; n != 0 {
					t.Errorf("%d datagrams relayed to a refused peer", n)
				}
			})
		}
		if policy == "default" && len(echo.got) != 0 {
			t.Errorf("echo peer received %d datagrams under the default policy", len(echo.got))
		}
	}
}

// TestSFUAlwaysAllowed: the SFU's own address is allowed even though it
// is private, and only at its port.
func TestSFUAlwaysAllowed(t *testing.T) {
	echo := startEcho(t)
	other := startEcho(t)
	s := startServer(t, func(c *Config, _ *Deps) {
		c.SFU = []netip.AddrPort{echo.addr().AddrPort()}
	})
	user, pass := creds(testUser, time.Hour)
	c := newRaw(t, s, "udp", user, pass)
	if _, code := c.allocate(); code != 0 {
		t.Fatalf("Allocate: %d", code)
	}
	sfu := peerAttr{netip.MustParseAddr("127.0.0.1"), uint16(echo.port())}
	if code := c.channelBind(0x4002, sfu); code != 0 {
		t.Fatalf("ChannelBind to the SFU: %d", code)
	}
	c.sendChannel(0x4002, []byte("to the sfu"))
	waitFor(t, "the SFU to receive", func() bool { return len(echo.got) > 0 })
	// Same IP, another port: the permission exists (it is per IP), but
	// the packet check refuses it.
	c.sendIndication(peerAttr{netip.MustParseAddr("127.0.0.1"), uint16(other.port())}, []byte("elsewhere"))
	waitFor(t, "the datagram to be refused", func() bool { return s.stats.DeniedToPeer.Load() == 1 })
	if len(other.got) != 0 {
		t.Error("a datagram reached another port of the SFU's host")
	}
}

func TestCredentials(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := time.Now()
	s := startServer(t, func(_ *Config, d *Deps) {
		d.Metrics = reg
		d.Now = func() time.Time { return now }
		d.AllowUser = func(u string) bool { return u != "@banned:test.example" }
	})
	good, goodPass := creds(testUser, time.Hour)
	expired, expiredPass := creds(testUser, -time.Minute)
	banned, bannedPass := creds("@banned:test.example", time.Hour)
	tests := []struct {
		name, user, pass, realm, reason string
	}{
		{"valid", good, goodPass, testRealm, ""},
		{"expired", expired, expiredPass, testRealm, "expired"},
		{"wrong password", good, "not-the-password", testRealm, "bad_integrity"},
		{"password of another user", good, bannedPass, testRealm, "bad_integrity"},
		{"not a REST username", "alice", goodPass, testRealm, "malformed"},
		{"other realm", good, goodPass, "other.example", "wrong_realm"},
		{"user refused by the hook", banned, bannedPass, testRealm, "user_refused"},
	}
	for _, tt := range tests {
		for _, transport := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+transport, func(t *testing.T) {
				before := metricValue(t, reg, "plexus_turn_auth_failures_total", tt.reason)
				c := newRaw(t, s, transport, tt.user, tt.pass)
				c.realm = tt.realm
				_, code := c.allocate()
				if tt.reason == "" {
					if code != 0 {
						t.Fatalf("valid credentials refused: %d", code)
					}
					return
				}
				if code == 0 {
					t.Fatal("allocation succeeded")
				}
				if code != int(stun.CodeBadRequest) && code != int(stun.CodeUnauthorized) {
					t.Errorf("refused with %d, want 400 or 401", code)
				}
				if after := metricValue(t, reg, "plexus_turn_auth_failures_total", tt.reason); after != before+1 {
					t.Errorf("auth failures{%s} went %v -> %v, want +1", tt.reason, before, after)
				}
			})
		}
	}
	// pion's client sees the same.
	if _, err := pionClient(t, s, "udp", expired, expiredPass).Allocate(); err == nil {
		t.Error("pion client allocated with expired credentials")
	}
	// Only the valid UDP client still holds an allocation: the TCP one
	// ended with its connection (RFC 8656 section 5), the others never
	// began.
	if n := s.Allocations(); n != 1 {
		t.Errorf("Allocations() = %d, want 1", n)
	}
}

func TestQuota(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := startServer(t, func(c *Config, d *Deps) {
		c.UserQuota, c.TotalQuota = 2, 3
		d.Metrics = reg
	})
	alloc := func(user, transport string) (*rawClient, int) {
		u, p := creds(user, time.Hour)
		c := newRaw(t, s, transport, u, p)
		_, code := c.allocate()
		return c, code
	}
	a1, code := alloc("@alice:x", "udp")
	if code != 0 {
		t.Fatalf("alice 1: %d", code)
	}
	if _, code := alloc("@alice:x", "tcp"); code != 0 {
		t.Fatalf("alice 2: %d", code)
	}
	if _, code := alloc("@alice:x", "udp"); code != int(stun.CodeAllocQuotaReached) {
		t.Fatalf("alice 3: %d, want 486", code)
	}
	if _, code := alloc("@bob:x", "tls"); code != 0 {
		t.Fatalf("bob 1: %d", code)
	}
	if _, code := alloc("@carol:x", "udp"); code != int(stun.CodeAllocQuotaReached) {
		t.Fatalf("carol over the total: %d, want 486", code)
	}
	if v := metricValue(t, reg, "plexus_turn_refusals_total", "user_quota"); v != 1 {
		t.Errorf("user_quota refusals = %v", v)
	}
	if v := metricValue(t, reg, "plexus_turn_refusals_total", "total_quota"); v != 1 {
		t.Errorf("total_quota refusals = %v", v)
	}
	if v := metricValue(t, reg, "plexus_turn_allocations", ""); v != 3 {
		t.Errorf("allocations gauge = %v, want 3", v)
	}
	// Deleting one (Refresh with LIFETIME 0, RFC 8656 section 7.3) frees
	// a slot for its user.
	if _, code := a1.do(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}}); code != 0 {
		t.Fatalf("Refresh 0: %d", code)
	}
	waitFor(t, "the allocation to go", func() bool { return s.Allocations() == 2 })
	if _, code := alloc("@alice:x", "udp"); code != 0 {
		t.Fatalf("alice after freeing a slot: %d", code)
	}
}

func TestUnsupportedAllocations(t *testing.T) {
	s := startServer(t, nil)
	user, pass := creds(testUser, time.Hour)
	for _, tt := range []struct {
		name  string
		attrs []stun.Setter
		want  stun.ErrorCode
	}{
		{"TCP relay", []stun.Setter{rawAttr{stun.AttrRequestedTransport, []byte{6, 0, 0, 0}}}, stun.CodeUnsupportedTransProto},
		{"IPv6 relay", []stun.Setter{transportUDP, rawAttr{stun.AttrRequestedAddressFamily, []byte{2, 0, 0, 0}}}, stun.CodeAddrFamilyNotSupported},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newRaw(t, s, "tcp", user, pass)
			if _, code := c.do(stun.MethodAllocate, tt.attrs...); code != int(tt.want) {
				t.Errorf("got %d, want %d", code, tt.want)
			}
		})
	}
	if n := s.Allocations(); n != 0 {
		t.Errorf("Allocations() = %d", n)
	}
}

func TestMaxLifetimeAndBandwidth(t *testing.T) {
	s := startServer(t, func(c *Config, _ *Deps) {
		c.AllowPeers = loopbackAllowed
		c.MaxLifetime = 2 * time.Second
		c.MaxBitrate = 8 * 100_000 // 100 kB/s: a 64 KiB burst, then 100 kB/s
	})
	echo := startEcho(t)
	user, pass := creds(testUser, time.Hour)
	c := newRaw(t, s, "udp", user, pass)
	if _, code := c.allocate(); code != 0 {
		t.Fatal(code)
	}
	if code := c.channelBind(0x4003, peerAttr{netip.MustParseAddr("127.0.0.1"), uint16(echo.port())}); code != 0 {
		t.Fatal(code)
	}
	start := time.Now()
	payload := make([]byte, 1000)
	for range 300 { // 300 kB at once: well over the burst
		c.sendChannel(0x4003, payload)
	}
	waitFor(t, "the cap to drop datagrams", func() bool { return s.stats.Throttled.Load() > 0 })
	elapsed := time.Since(start).Seconds()
	// Each datagram passes the bucket out and its echo back in.
	if sent, limit := float64(s.stats.BytesToPeer.Load()+s.stats.BytesFromPeer.Load()), 64<<10+100_000*(elapsed+0.5); sent > limit {
		t.Errorf("%v bytes relayed in %.2fs, over the cap's %v", sent, elapsed, limit)
	}
	// The allocation ends at its maximum lifetime however it is refreshed.
	waitFor(t, "the allocation to expire", func() bool { return s.Allocations() == 0 })
	if time.Since(start) < 1500*time.Millisecond {
		t.Errorf("allocation ended after %v, before its 2 s lifetime", time.Since(start))
	}
	if s.stats.Expired.Load() != 1 {
		t.Errorf("Expired = %d", s.stats.Expired.Load())
	}
}

func TestURIs(t *testing.T) {
	s := startServer(t, nil)
	udp, tcp, tlsPort := portOf(s.UDPAddr()), portOf(s.TCPAddr()), portOf(s.TLSAddr())
	if udp != tcp {
		t.Errorf("UDP port %d and TCP port %d differ", udp, tcp)
	}
	want := []string{
		fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", udp),
		fmt.Sprintf("turn:127.0.0.1:%d?transport=tcp", tcp),
		fmt.Sprintf("turns:127.0.0.1:%d?transport=tcp", tlsPort),
	}
	if got := s.URIs(); !slices.Equal(got, want) {
		t.Errorf("URIs() = %q, want %q", got, want)
	}

	ext := startServer(t, func(c *Config, _ *Deps) {
		c.TLSListen, c.TLSCertificate = "", nil
		c.ExternalIP = netip.MustParseAddr("198.51.100.9")
	})
	got := ext.URIs()
	if len(got) != 2 || !strings.HasPrefix(got[0], "turn:198.51.100.9:") || !strings.HasSuffix(got[1], "?transport=tcp") {
		t.Errorf("with an external IP and no TLS: %q", got)
	}
	user, pass := creds(testUser, time.Hour)
	relayed, code := newRaw(t, ext, "udp", user, pass).allocate()
	if code != 0 || relayed.Addr() != netip.MustParseAddr("198.51.100.9") {
		t.Errorf("relayed address %v (%d), want the external IP", relayed, code)
	}

	tlsOnly := startServer(t, func(c *Config, _ *Deps) { c.Listen = "" })
	if got := tlsOnly.URIs(); len(got) != 1 || !strings.HasPrefix(got[0], "turns:127.0.0.1:") || tlsOnly.UDPAddr() != nil {
		t.Errorf("TLS only: %q", got)
	}
}

func portOf(a net.Addr) int {
	_, p, _ := net.SplitHostPort(a.String())
	var n int
	fmt.Sscan(p, &n)
	return n
}

func TestNewErrors(t *testing.T) {
	cert := testCert(t)
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyTCP.Close()
	base := Config{Realm: testRealm, Secret: testSecret, Listen: "127.0.0.1:0"}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no secret", func(c *Config) { c.Secret = nil }, "secret"},
		{"no realm", func(c *Config) { c.Realm = "" }, "realm"},
		{"no listener", func(c *Config) { c.Listen = "" }, "no listener"},
		{"TLS without certificate", func(c *Config) { c.TLSListen = "127.0.0.1:0" }, "certificate"},
		{"hostname", func(c *Config) { c.Listen = "localhost:0" }, "IP address"},
		{"IPv6 external IP", func(c *Config) { c.ExternalIP = netip.MustParseAddr("2001:db8::1") }, "IPv4"},
		{"bad port range", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 50000, 40000 }, "port range"},
		{"port in use", func(c *Config) { c.Listen = busy.LocalAddr().String() }, "address already in use"},
		{"TLS port in use", func(c *Config) {
			c.TLSListen, c.TLSCertificate = busyTCP.Addr().String(), &cert.Certificate
		}, "address already in use"},
	}
	base2 := runtime.NumGoroutine()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.edit(&cfg)
			s, err := New(cfg, Deps{})
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to mention %q", err, tt.want)
			}
		})
	}
	goroutinesSettle(t, base2)
}

// TestCloseWaits: Close ends every allocation and connection and waits
// for pion's goroutines; a second Close is a no-op.
func TestCloseWaits(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		reg := prometheus.NewRegistry()
		s := startServer(t, func(c *Config, d *Deps) {
			c.AllowPeers = loopbackAllowed
			d.Metrics = reg
		})
		echo := startEcho(t)
		user, pass := creds(testUser, time.Hour)
		var clients []*rawClient
		for _, transport := range []string{"udp", "tcp", "tls", "udp"} {
			c := newRaw(t, s, transport, user, pass)
			if _, code := c.allocate(); code != 0 {
				t.Fatal(code)
			}
			if code := c.channelBind(0x4000, peerAttr{netip.MustParseAddr("127.0.0.1"), uint16(echo.port())}); code != 0 {
				t.Fatal(code)
			}
			clients = append(clients, c)
		}
		if n := s.Allocations(); n != 4 {
			t.Fatalf("Allocations() = %d", n)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if n := s.Allocations(); n != 0 {
			t.Errorf("Allocations() = %d after Close", n)
		}
		if n := s.conns.count(); n != 0 {
			t.Errorf("%d connections open after Close", n)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		// Metrics are unregistered, so a new server can take the registry.
		s2 := startServer(t, func(_ *Config, d *Deps) { d.Metrics = reg })
		s2.Close()
		for _, c := range clients {
			c.conn.Close()
		}
		echo.conn.Close()
		<-echo.done
	}()
	goroutinesSettle(t, base)
}

func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	startServer(t, func(_ *Config, d *Deps) { d.Metrics = reg })
	cert := testCert(t)
	_, err := New(Config{Realm: testRealm, Secret: testSecret, Listen: "127.0.0.1:0", TLSCertificate: &cert.Certificate}, Deps{Metrics: reg})
	if err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("second server on one registry: %v", err)
	}
}

// metricValue returns the value of the series of name whose one label has
// value label ("" for an unlabelled metric), or 0.
func metricValue(t testing.TB, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}
