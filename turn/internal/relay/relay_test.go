package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/turn/internal/dgram"
	"github.com/plexus-chat/plexus/turn/internal/peer"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func allowLoopback() *peer.Policy {
	return peer.New(peer.Rules{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
}

// echo starts a UDP socket on loopback that the test reads from.
func listenPeer(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// paths runs f on each way of serving sockets: Linux's event loop, where
// there is one, and the portable path (a nil loop), which must behave the
// same.
func paths(t *testing.T, f func(t *testing.T, loop *dgram.Loop)) {
	loop, err := dgram.NewLoop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Close() })
	if loop != nil {
		t.Run("loop", func(t *testing.T) { f(t, loop) })
	}
	t.Run("portable", func(t *testing.T) { f(t, nil) })
}

func newGen(t *testing.T, g *Generator) *Generator {
	t.Helper()
	if !g.BindIP.IsValid() {
		g.BindIP, g.RelayIP = loopback, netip.MustParseAddr("198.51.100.7")
	}
	if g.Stats == nil {
		g.Stats = &Stats{}
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestAllocateAdvertisesRelayIP(t *testing.T) { paths(t, testAllocateAdvertisesRelayIP) }

func testAllocateAdvertisesRelayIP(t *testing.T, loop *dgram.Loop) {
	g := newGen(t, &Generator{Loop: loop, MinPort: 40000, MaxPort: 40099})
	conns := map[int]bool{}
	for range 5 {
		c, addr, err := g.AllocatePacketConn("udp4", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ua := addr.(*net.UDPAddr)
		if !ua.IP.Equal(net.ParseIP("198.51.100.7")) || ua.Port < 40000 || ua.Port > 40099 {
			t.Errorf("relay address %v outside 198.51.100.7:40000-40099", ua)
		}
		if got := c.LocalAddr().(*net.UDPAddr).Port; got != ua.Port {
			t.Errorf("bound port %d, advertised %d", got, ua.Port)
		}
		conns[ua.Port] = true
	}
	if len(conns) != 5 || g.Live() != 5 {
		t.Errorf("%d distinct ports, %d live, want 5 and 5", len(conns), g.Live())
	}
}

func TestPortRangeExhausted(t *testing.T) { paths(t, testPortRangeExhausted) }

func testPortRangeExhausted(t *testing.T, loop *dgram.Loop) {
	g := newGen(t, &Generator{Loop: loop, MinPort: 40100, MaxPort: 40101})
	var opened []net.PacketConn
	defer func() {
		for _, c := range opened {
			c.Close()
		}
	}()
	for {
		c, _, err := g.AllocatePacketConn("udp4", 0)
		if err != nil {
			break
		}
		opened = append(opened, c)
		if len(opened) > 2 {
			t.Fatal("more sockets than ports in the range")
		}
	}
	if g.Live() != len(opened) {
		t.Errorf("live = %d after failures, want %d", g.Live(), len(opened))
	}
}

func TestMaxSockets(t *testing.T) { paths(t, testMaxSockets) }

func testMaxSockets(t *testing.T, loop *dgram.Loop) {
	g := newGen(t, &Generator{Loop: loop, MaxSockets: 2})
	a, _, err := g.AllocatePacketConn("udp4", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := g.AllocatePacketConn("udp4", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.AllocatePacketConn("udp4", 0); !errors.Is(err, ErrCapacity) {
		t.Fatalf("third socket: %v, want ErrCapacity", err)
	}
	a.Close()
	a.Close() // idempotent: must not free two slots
	c, _, err := g.AllocatePacketConn("udp4", 0)
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	if _, _, err := g.AllocatePacketConn("udp4", 0); !errors.Is(err, ErrCapacity) {
		t.Fatalf("double close freed a slot: %v", err)
	}
	b.Close()
	c.Close()
}

func TestPolicyOnEveryPacket(t *testing.T) { paths(t, testPolicyOnEveryPacket) }

func testPolicyOnEveryPacket(t *testing.T, loop *dgram.Loop) {
	var mu sync.Mutex
	var denied []netip.AddrPort
	g := newGen(t, &Generator{Loop: loop, Denied: func(p netip.AddrPort, v peer.Verdict, toPeer bool) {
		mu.Lock()
		denied = append(denied, p)
		mu.Unlock()
	}})
	hooks := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(denied)
	}
	c, _, err := g.AllocatePacketConn("udp4", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := listenPeer(t)
	// Default policy: loopback is refused even though pion granted nothing
	// here; the datagram is dropped and reported, never sent.
	if n, err := c.WriteTo([]byte("hello"), p.LocalAddr()); err != nil || n != 5 {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	if g.Stats.DeniedToPeer.Load() != 1 || g.Stats.PacketsToPeer.Load() != 0 || hooks() != 1 {
		t.Errorf("denied=%d sent=%d hooks=%d", g.Stats.DeniedToPeer.Load(), g.Stats.PacketsToPeer.Load(), hooks())
	}
	// And a datagram from a refused peer never reaches pion.
	if _, err := p.WriteTo([]byte("in"), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := c.ReadFrom(make([]byte, 100)); err == nil {
		t.Error("ReadFrom returned a datagram from a refused peer")
	}
	if g.Stats.DeniedFromPeer.Load() != 1 || hooks() != 2 {
		t.Errorf("DeniedFromPeer = %d, hooks=%d", g.Stats.DeniedFromPeer.Load(), hooks())
	}
}

func TestRelayAndCount(t *testing.T) { paths(t, testRelayAndCount) }

func testRelayAndCount(t *testing.T, loop *dgram.Loop) {
	g := newGen(t, &Generator{Loop: loop, Policy: allowLoopback()})
	c, _, err := g.AllocatePacketConn("udp4", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := listenPeer(t)
	if _, err := c.WriteTo([]byte("hello"), p.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	p.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := p.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
	if _, err := p.WriteTo([]byte("back"), from); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err = c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "back" {
		t.Fatalf("relay read %q, %v", buf[:n], err)
	}
	s := g.Stats
	if s.PacketsToPeer.Load() != 1 || s.BytesToPeer.Load() != 5 || s.PacketsFromPeer.Load() != 1 || s.BytesFromPeer.Load() != 4 {
		t.Errorf("counts: to %d/%d from %d/%d", s.PacketsToPeer.Load(), s.BytesToPeer.Load(), s.PacketsFromPeer.Load(), s.BytesFromPeer.Load())
	}
	// The per-packet path allocates nothing.
	dst := p.LocalAddr()
	msg := make([]byte, 160)
	if allocs := testing.AllocsPerRun(100, func() { c.WriteTo(msg, dst) }); allocs != 0 {
		t.Errorf("WriteTo allocates %v times per packet", allocs)
	}
}

func TestBucket(t *testing.T) {
	start := time.Unix(0, 0)
	b := newBucket(1<<20, start) // 1 MiB/s, burst 256 KiB
	sent := 0
	for b.take(1200, start) {
		sent += 1200
	}
	if sent > 256<<10 || sent < 250<<10 {
		t.Errorf("burst let %d bytes through, want about 256 KiB", sent)
	}
	// A tenth of a second later, about a tenth of the rate is available.
	later := start.Add(100 * time.Millisecond)
	more := 0
	for b.take(1200, later) {
		more += 1200
	}
	if want := (1 << 20) / 10; more < want-1200 || more > want+1200 {
		t.Errorf("refill let %d bytes through, want about %d", more, want)
	}
}

func TestMaxLifetimeAndRelease(t *testing.T) { paths(t, testMaxLifetimeAndRelease) }

func testMaxLifetimeAndRelease(t *testing.T, loop *dgram.Loop) {
	released := make(chan struct{})
	g := newGen(t, &Generator{Loop: loop, MaxLifetime: 50 * time.Millisecond, Track: func() func() {
		return func() { close(released) }
	}})
	c, _, err := g.AllocatePacketConn("udp4", 0)
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 100))
		readErr <- err
	}()
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("ReadFrom succeeded on an expired socket")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("socket not closed at its maximum lifetime")
	}
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("expired socket never released")
	}
	if g.Stats.Expired.Load() != 1 || g.Live() != 0 {
		t.Errorf("Expired=%d Live=%d", g.Stats.Expired.Load(), g.Live())
	}
}

func TestValidate(t *testing.T) {
	for _, g := range []*Generator{
		{Stats: &Stats{}},
		{BindIP: loopback, RelayIP: loopback},
		{BindIP: loopback, RelayIP: loopback, Stats: &Stats{}, MinPort: 5, MaxPort: 4},
		{BindIP: loopback, RelayIP: loopback, Stats: &Stats{}, MaxPort: 4},
	} {
		if err := g.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", g)
		}
	}
}
