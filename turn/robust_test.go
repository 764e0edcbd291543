package turn

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// validAllocate returns an authenticated Allocate request, the seed the
// mutations start from.
func validAllocate(t testing.TB, nonce stun.Nonce) []byte {
	user, pass := creds(testUser, time.Hour)
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transportUDP,
		stun.NewUsername(user), stun.NewRealm(testRealm), nonce,
		stun.NewLongTermIntegrity(user, testRealm, pass), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// malformed returns messages a careless parser trips on: truncations,
// lengths that lie, attributes running past the end, and random bit flips
// of a valid authenticated Allocate (which also makes its
// MESSAGE-INTEGRITY wrong).
func malformed(t testing.TB, valid []byte, n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	out := [][]byte{
		{}, {0}, {0, 1}, {0, 1, 0, 0},
		valid[:19], valid[:20], valid[:len(valid)-1],
		{0x40, 0x00, 0xff, 0xff, 1, 2, 3, 4},               // ChannelData claiming 64 KiB
		{0x4f, 0xff, 0x00, 0x00},                           // empty ChannelData on an unbound channel
		{0x7f, 0xff, 0x00, 0x04, 1, 2, 3, 4},               // reserved channel number
		append([]byte(nil), make([]byte, 1600)...),         // zeros, MTU-sized
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),        // wrong protocol
		[]byte("\x16\x03\x01\x00\x05hello over plain UDP"), // TLS record on the UDP port
	}
	// Header says more attributes than there are.
	long := append([]byte(nil), valid...)
	binary.BigEndian.PutUint16(long[2:4], 0xfff0)
	out = append(out, long)
	// An attribute whose length runs past the message.
	bad := append([]byte(nil), valid[:20]...)
	bad = append(bad, 0x00, 0x19, 0xff, 0xf0, 17, 0, 0, 0)
	binary.BigEndian.PutUint16(bad[2:4], 8)
	out = append(out, bad)
	for range n {
		m := append([]byte(nil), valid...)
		for range 1 + rng.IntN(4) {
			i := rng.IntN(len(m))
			m[i] ^= byte(1 << rng.IntN(8))
		}
		if rng.IntN(4) == 0 {
			m = m[:rng.IntN(len(m))]
		}
		out = append(out, m)
	}
	return out
}

// TestMalformedAndBadIntegrity throws malformed messages at the UDP, TCP
// and TLS listeners; the server must neither crash nor leak allocations,
// and must still serve a real client afterwards.
func TestMalformedAndBadIntegrity(t *testing.T) {
	s := startServer(t, func(c *Config, _ *Deps) { c.AllowPeers = loopbackAllowed })
	user, pass := creds(testUser, time.Hour)
	// Learn a valid nonce so that mutations reach the integrity check.
	probe := newRaw(t, s, "udp", user, pass)
	probe.do(stun.MethodBinding)
	_, _ = probe.do(stun.MethodAllocate, transportUDP)
	if _, code := probe.do(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}}); code != 0 {
		t.Fatalf("Refresh 0: %d", code)
	}
	waitFor(t, "the probe's allocation to go", func() bool { return s.Allocations() == 0 })
	msgs := malformed(t, validAllocate(t, probe.nonce), 3000)

	// UDP: every message from one socket.
	flood := newRaw(t, s, "udp", user, pass)
	flood.nonce = probe.nonce
	for _, m := range msgs {
		_, _ = flood.conn.WriteTo(m, flood.server)
	}
	// TCP and TLS: each malformed frame on its own connection; the server
	// may close it. A few hundred suffice: the parser is the same.
	for _, transport := range []string{"tcp", "tls"} {
		for _, m := range msgs[:200] {
			c, srv := dial(t, s, transport)
			_, _ = c.WriteTo(m, srv)
			c.Close()
		}
	}
	// A flip inside FINGERPRINT (which comes after MESSAGE-INTEGRITY and
	// which pion does not check) leaves a validly signed Allocate: that
	// one allocation is legitimate. Deleting it must leave none behind.
	flood.do(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}})
	// A real client still gets through, and when it leaves no allocation
	// is left behind.
	real := newRaw(t, s, "udp", user, pass)
	if _, code := real.allocate(); code != 0 {
		t.Fatalf("real client after the malformed flood: %d", code)
	}
	if _, code := real.do(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}}); code != 0 {
		t.Fatalf("Refresh 0: %d", code)
	}
	waitFor(t, "no allocations", func() bool { return s.Allocations() == 0 })
	waitFor(t, "no connections", func() bool { return s.conns.count() == 0 })
}

// TestBadIntegrity: a request whose MESSAGE-INTEGRITY was made with the
// wrong key, or that was changed after signing, is refused.
func TestBadIntegrity(t *testing.T) {
	s := startServer(t, nil)
	user, pass := creds(testUser, time.Hour)
	c := newRaw(t, s, "udp", user, pass)
	c.do(stun.MethodAllocate, transportUDP) // learn the nonce; succeeds
	for _, tamper := range []string{"wrong key", "changed after signing"} {
		key := pass
		if tamper == "wrong key" {
			key = pass + "x"
		}
		m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodCreatePermission, stun.ClassRequest),
			peerAttr{netip.MustParseAddr("8.8.8.8"), 53},
			stun.NewUsername(user), stun.NewRealm(testRealm), c.nonce,
			stun.NewLongTermIntegrity(user, testRealm, key))
		if err != nil {
			t.Fatal(err)
		}
		if tamper == "changed after signing" {
			m.Raw[len(m.Raw)-30] ^= 1 // inside XOR-PEER-ADDRESS... or the nonce: covered by the HMAC either way
		}
		r, err := c.roundTrip(m)
		if err != nil {
			t.Fatal(err)
		}
		if r.Type.Class != stun.ClassErrorResponse {
			t.Errorf("%s: %v, want an error response", tamper, r.Type)
		}
	}
}

// TestFloods sends bursts of unauthenticated Allocates, of bad-integrity
// Allocates from many sources, and of TCP connections that never speak or
// speak garbage; afterwards nothing is left over and a client gets
// through.
func TestFloods(t *testing.T) {
	base := runtime.NumGoroutine()
	s := startServer(t, func(c *Config, _ *Deps) { c.MaxConns = 64 })
	user, pass := creds(testUser, time.Hour)
	probe := newRaw(t, s, "udp", user, pass)
	probe.do(stun.MethodBinding)
	bad := validAllocate(t, stun.NewNonce("ffffffffffffffff"))

	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			c, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			noAuth, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transportUDP)
			for i := range 1000 {
				msg := noAuth.Raw
				if (i+w)%2 == 0 {
					msg = bad
				}
				_, _ = c.WriteTo(msg, s.UDPAddr())
			}
		})
	}
	// More TCP connections than MaxConns: the surplus is refused at once;
	// the silent ones are cut after the first-frame timeout, the garbage
	// ones at once.
	var conns []net.Conn
	for i := range 100 {
		c, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			_, _ = c.Write([]byte("\x00\x01garbage that is not a frame.................."))
		}
		conns = append(conns, c)
	}
	wg.Wait()
	if n := s.conns.count(); n > 64 {
		t.Errorf("%d connections open, over the cap of 64", n)
	}
	// Meanwhile a real client gets through.
	real := newRaw(t, s, "udp", user, pass)
	if _, code := real.allocate(); code != 0 {
		t.Fatalf("real client during the flood: %d", code)
	}
	if n := s.Allocations(); n != 1 {
		t.Errorf("Allocations() = %d, want just the real client's", n)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "flood connections to close", func() bool { return s.conns.count() == 0 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	probe.conn.Close()
	real.conn.Close()
	goroutinesSettle(t, base+2) // the test's own UDP sockets' cleanup may lag
}
