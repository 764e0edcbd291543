package relay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plexus-chat/plexus/turn/internal/dgram"
	"github.com/plexus-chat/plexus/turn/internal/peer"
)

// ErrCapacity is returned when the cap on relay sockets is reached; pion
// answers 508 (Insufficient Capacity).
var ErrCapacity = errors.New("relay: relay socket limit reached")

// Stats are counters shared by every relay socket of one server.
type Stats struct {
	PacketsToPeer, BytesToPeer     atomic.Uint64
	PacketsFromPeer, BytesFromPeer atomic.Uint64
	// DeniedToPeer and DeniedFromPeer count datagrams refused by the peer
	// policy; Throttled those over the bandwidth cap.
	DeniedToPeer, DeniedFromPeer atomic.Uint64
	Throttled                    atomic.Uint64
	// Expired counts allocations ended by the maximum lifetime.
	Expired atomic.Uint64
}

// Generator implements pion's turn.RelayAddressGenerator. Set the fields
// before the server starts; they are read-only after.
type Generator struct {
	// BindIP is the address relay sockets bind to; RelayIP the address
	// put in XOR-RELAYED-ADDRESS (the external address behind NAT).
	BindIP, RelayIP netip.Addr
	// MinPort and MaxPort bound relay ports; both 0 lets the kernel pick.
	MinPort, MaxPort uint16
	// Policy judges every peer; nil means peer.Default.
	Policy *peer.Policy
	// RateBytes is the per-allocation cap in bytes a second, both
	// directions together; 0 is no cap.
	RateBytes int64
	// MaxLifetime ends an allocation this long after it was made; 0 never.
	MaxLifetime time.Duration
	// MaxSockets caps the relay sockets open at once; 0 is no cap.
	MaxSockets int
	// Stats receives the counts; it must not be nil.
	Stats *Stats
	// Track, if set, is called for each socket made and returns the
	// function to call once the socket is closed and its reader gone, so
	// the server's Close can wait for them.
	Track func() (release func())
	// Denied, if set, is called for each datagram refused by the policy.
	// It must be cheap and not block: it runs on the packet path.
	Denied func(peer netip.AddrPort, v peer.Verdict, toPeer bool)
	// Loop serves the relay sockets; nil leaves each on Go's networking
	// (see package dgram).
	Loop *dgram.Loop

	live atomic.Int64

	mu sync.Mutex
	// mu guards byPort: the open relay sockets by their port.
	byPort map[uint16]*Conn
}

// Validate implements turn.RelayAddressGenerator.
func (g *Generator) Validate() error {
	switch {
	case !g.BindIP.IsValid() || !g.RelayIP.IsValid():
		return errors.New("relay: bind and relay addresses must be set")
	case g.MinPort > g.MaxPort, g.MinPort == 0 && g.MaxPort != 0:
		return fmt.Errorf("relay: bad port range %d-%d", g.MinPort, g.MaxPort)
	case g.Stats == nil:
		return errors.New("relay: Stats not set")
	}
	if g.Policy == nil {
		g.Policy = peer.Default
	}
	return nil
}

// Live returns the number of relay sockets open.
func (g *Generator) Live() int { return int(g.live.Load()) }

// AllocatePacketConn implements turn.RelayAddressGenerator. pion asks for
// "udp4"; requestedPort is non-zero for an EVEN-PORT reservation (RFC 8656,
// section 7.2, rule 6).
func (g *Generator) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	if n := g.live.Add(1); g.MaxSockets > 0 && n > int64(g.MaxSockets) {
		g.live.Add(-1)
		return nil, nil, ErrCapacity
	}
	udp, err := g.listen(network, requestedPort)
	if err != nil {
		g.live.Add(-1)
		return nil, nil, err
	}
	port := udp.LocalAddr().(*net.UDPAddr).Port
	c := &Conn{g: g, port: uint16(port)}
	if g.RateBytes > 0 {
		c.bucket = newBucket(g.RateBytes, time.Now())
	}
	if c.sock, err = g.Loop.Adopt(udp, c.handle, relayQueue); err != nil {
		g.live.Add(-1)
		return nil, nil, err
	}
	g.mu.Lock()
	if g.byPort == nil {
		g.byPort = map[uint16]*Conn{}
	}
	g.byPort[c.port] = c
	g.mu.Unlock()
	if g.Track != nil {
		c.release = g.Track()
	}
	if g.MaxLifetime > 0 {
		c.timerMu.Lock()
		c.timer = time.AfterFunc(g.MaxLifetime, func() {
			g.Stats.Expired.Add(1)
			c.Close()
		})
		c.timerMu.Unlock()
	}
	return c, &net.UDPAddr{IP: g.RelayIP.AsSlice(), Port: port}, nil
}

// relayQueue bounds the datagrams from peers waiting for pion (those not on
// a fast-path channel: Data indications).
const relayQueue = 32

// Lookup returns the open relay socket on port, or nil.
func (g *Generator) Lookup(port uint16) *Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.byPort[port]
}

// listen binds a socket: the requested port, else a random port in the
// range (random so that relay addresses are not guessable, RFC 8656
// section 7.2: "the server SHOULD... pick a port at random"), else any.
func (g *Generator) listen(network string, requestedPort int) (*net.UDPConn, error) {
	bind := func(port int) (*net.UDPConn, error) {
		return net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.BindIP, uint16(port))))
	}
	if requestedPort != 0 {
		return bind(requestedPort)
	}
	if g.MinPort == 0 {
		return bind(0)
	}
	span := int(g.MaxPort) - int(g.MinPort) + 1
	tries := min(span, 64)
	start := rand.IntN(span)
	var err error
	for i := range tries {
		// A random start, then a stride through the range: a busy range
		// still finds the free ports without retrying the same one.
		port := int(g.MinPort) + (start+i*(span/tries+1))%span
		var c *net.UDPConn
		if c, err = bind(port); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("relay: no free port in %d-%d after %d tries: %w", g.MinPort, g.MaxPort, tries, err)
}

// AllocateConn implements turn.RelayAddressGenerator. TCP relays (RFC
// 6062) are not offered: Allocate requests for them are answered 442 before
// they reach pion, so this is never called.
func (g *Generator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errors.New("relay: TCP relays are not offered")
}
