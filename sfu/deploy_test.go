package sfu

// Deployment paths of the media transport: ICE over TCP for a client
// whose UDP is blocked, and the external IP a server behind 1:1 NAT
// advertises (Config.TCPPort, Config.ExternalIPs; cmd/plexus's
// --sfu-tcp-port and --sfu-external-ip).

import (
	"net"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// selectedPair is the subscriber connection's selected ICE candidate
// pair, nil before there is one.
func (s *rawSubscriber) selectedPair() *webrtc.ICECandidatePair {
	for _, r := range s.pc.GetReceivers() {
		if tr := r.Transport(); tr != nil {
			if p, err := tr.ICETransport().GetSelectedCandidatePair(); err == nil && p != nil {
				return p
			}
		}
	}
	return nil
}

// remoteCandidates are the server's candidates the client has learnt
// (trickled over signalling), from the peer connection's stats.
func (s *rawSubscriber) remoteCandidates() []webrtc.ICECandidateStats {
	var out []webrtc.ICECandidateStats
	for _, st := range s.pc.GetStats() {
		if c, ok := st.(webrtc.ICECandidateStats); ok && c.Type == webrtc.StatsTypeRemoteCandidate {
			out = append(out, c)
		}
	}
	return out
}

func port(a net.Addr) int {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.Port
	case *net.TCPAddr:
		return a.Port
	}
	return 0
}

// TestICEOverTCP: a subscriber that cannot use UDP (it gathers TCP
// candidates only, as behind a firewall passing nothing but TCP) reaches
// the SFU's ICE-TCP port and receives a publisher's audio; its selected
// candidate pair is TCP, to the server's ICE-TCP listener.
func TestICEOverTCP(t *testing.T) {
	e := newEnv(t, Config{}, Deps{}) // TCPPort 0: ICE-TCP on an ephemeral port
	if e.srv.TCPAddr() == nil {
		t.Fatal("ICE-TCP is off with TCPPort 0")
	}
	alice := e.connect(t, "r1", "alice", fullGrant())
	publishAudio(t, alice)
	track := e.onlyTrack(t)

	bob := e.subscriberOn(t, "r1", "bob", true, loopbackClient(webrtc.NetworkTypeTCP4))
	bob.subscribe(track, true)
	await(t, 20*time.Second, "bob receives alice's audio over ICE-TCP", func() bool { return bob.packets(track) > 25 })

	p := bob.selectedPair()
	if p == nil {
		t.Fatal("media flows but no candidate pair is selected")
	}
	t.Logf("selected pair %s", p)
	if p.Local.Protocol != webrtc.ICEProtocolTCP || p.Remote.Protocol != webrtc.ICEProtocolTCP {
		t.Fatalf("selected pair %s, want TCP at both ends", p)
	}
	if p.Remote.Port != uint16(port(e.srv.TCPAddr())) || p.Remote.TCPType != "passive" || p.Local.TCPType != "active" {
		t.Fatalf("selected pair %s, want the client's active end to the server's passive ICE-TCP port %s", p, e.srv.TCPAddr())
	}
	// The server did offer UDP: the client had it and could not use it.
	var udp bool
	for _, c := range bob.remoteCandidates() {
		udp = udp || c.Protocol == "udp"
	}
	if !udp {
		t.Errorf("the server offered no UDP candidate: %+v", bob.remoteCandidates())
	}
}

// TestExternalIPAdvertised: with ExternalIPs (1:1 NAT) the server's
// trickled candidates name the external address, on its UDP and ICE-TCP
// ports, as host candidates, and its own bound address (loopback here)
// no longer appears; a client that does reach the bound address still
// connects, through the peer-reflexive candidate the server's checks
// create, as one does on the NAT's inside.
func TestExternalIPAdvertised(t *testing.T) {
	const external = "203.0.113.7" // TEST-NET-3 (RFC 5737)
	e := newEnv(t, Config{ExternalIPs: []string{external}}, Deps{})
	alice := e.connect(t, "r1", "alice", fullGrant())
	publishAudio(t, alice)
	track := e.onlyTrack(t)

	bob := e.subscriberOn(t, "r1", "bob", true, loopbackClient(webrtc.NetworkTypeUDP4))
	bob.subscribe(track, true)
	await(t, 20*time.Second, "bob receives alice's audio", func() bool { return bob.packets(track) > 25 })

	wantUDP, wantTCP := port(e.srv.UDPAddr()), port(e.srv.TCPAddr())
	var sawUDP, sawTCP bool
	for _, c := range bob.remoteCandidates() {
		if c.CandidateType == webrtc.ICECandidateTypePrflx {
			continue // learnt from the server's checks, not advertised
		}
		if c.IP != external {
			t.Errorf("server advertised %s %s:%d (%s), want only %s", c.Protocol, c.IP, c.Port, c.CandidateType, external)
			continue
		}
		if c.CandidateType != webrtc.ICECandidateTypeHost {
			t.Errorf("external candidate %s:%d is %s, want host", c.IP, c.Port, c.CandidateType)
		}
		switch {
		case c.Protocol == "udp" && int(c.Port) == wantUDP:
			sawUDP = true
		case c.Protocol == "tcp" && int(c.Port) == wantTCP:
			sawTCP = true
		}
	}
	if !sawUDP || !sawTCP {
		t.Fatalf("external candidates: udp:%d %v, tcp:%d %v; all: %+v", wantUDP, sawUDP, wantTCP, sawTCP, bob.remoteCandidates())
	}
	p := bob.selectedPair()
	if p == nil {
		t.Fatal("media flows but no candidate pair is selected")
	}
	t.Logf("selected pair %s", p)
	if p.Remote.Address != "127.0.0.1" || int(p.Remote.Port) != wantUDP || p.Remote.Typ != webrtc.ICECandidateTypePrflx {
		t.Fatalf("selected pair %s, want the server's bound socket 127.0.0.1:%d learnt as peer-reflexive", p, wantUDP)
	}
}
