package turn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"

	"github.com/plexus-chat/plexus/internal/pionlog"
	"github.com/plexus-chat/plexus/internal/tlscert"
	"github.com/plexus-chat/plexus/internal/turncred"
)

// This file is the test harness: a server on loopback, credentials, an
// echo peer, pion's client over UDP, TCP and TLS, and a raw client that
// sends exactly the STUN messages a test needs.

const (
	testRealm = "test.example"
	testUser  = "@alice:test.example"
)

var testSecret = []byte("correct horse battery staple")

var loopbackAllowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// testLogger sends warnings and errors to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startServer runs a server on 127.0.0.1 with a fresh self-signed TLS
// certificate, adjusted by edit, and closes it at the end of the test.
func startServer(t testing.TB, edit func(*Config, *Deps)) *Server {
	t.Helper()
	cert := testCert(t)
	cfg := Config{
		Realm:          testRealm,
		Secret:         testSecret,
		Listen:         "127.0.0.1:0",
		TLSListen:      "127.0.0.1:0",
		TLSCertificate: &cert.Certificate,
	}
	deps := Deps{Logger: testLogger(t)}
	if edit != nil {
		edit(&cfg, &deps)
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func testCert(t testing.TB) *tlscert.Cert {
	t.Helper()
	c, err := tlscert.Load(tlscert.Config{DataDir: t.TempDir(), Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func creds(user string, ttl time.Duration) (string, string) {
	return turncred.Mint(testSecret, user, ttl, time.Now())
}

// echoPeer is a UDP socket on 127.0.0.1 that sends every datagram back.
type echoPeer struct {
	conn *net.UDPConn
	got  chan []byte // every datagram received, for tests that count
	done chan struct{}
}

func startEcho(t testing.TB) *echoPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	e := &echoPeer{conn: c, got: make(chan []byte, 1024), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case e.got <- append([]byte(nil), buf[:n]...):
			default:
			}
			_, _ = c.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-e.done
	})
	return e
}

func (e *echoPeer) addr() *net.UDPAddr { return e.conn.LocalAddr().(*net.UDPAddr) }

func (e *echoPeer) port() int { return e.addr().Port }

// dial returns the client side of a transport to the server: a UDP socket,
// or a TCP or TLS connection wrapped as pion's STUNConn.
func dial(t testing.TB, s *Server, transport string) (net.PacketConn, net.Addr) {
	t.Helper()
	switch transport {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, s.UDPAddr()
	case "tcp":
		c, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return pionturn.NewSTUNConn(c), s.TCPAddr()
	case "tls":
		pool := x509.NewCertPool()
		pool.AddCert(s.cfg.TLSCertificate.Leaf)
		c, err := tls.Dial("tcp", s.TLSAddr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return pionturn.NewSTUNConn(c), s.TLSAddr()
	}
	t.Fatalf("unknown transport %q", transport)
	return nil, nil
}

// pionClient returns a listening pion TURN client over transport.
func pionClient(t testing.TB, s *Server, transport, user, pass string) *pionturn.Client {
	t.Helper()
	conn, server := dial(t, s, transport)
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server.String(),
		TURNServerAddr: server.String(),
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          testRealm,
		LoggerFactory:  &pionlog.Factory{Logger: slog.New(slog.DiscardHandler)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// goroutinesSettle waits until the goroutine count is back to at most base.
func goroutinesSettle(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawClient speaks STUN to the server directly, for requests pion's client
// will not make (an IPv4-mapped XOR-PEER-ADDRESS, Connect) and for checking
// error codes.
type rawClient struct {
	t      testing.TB
	conn   net.PacketConn
	server net.Addr
	user   string
	pass   string
	realm  string
	nonce  stun.Nonce
}

func newRaw(t testing.TB, s *Server, transport, user, pass string) *rawClient {
	conn, server := dial(t, s, transport)
	return &rawClient{t: t, conn: conn, server: server, user: user, pass: pass, realm: testRealm}
}

// errNoCode is an error response without an ERROR-CODE attribute, which
// pion sends when a CreatePermission is refused.
const errNoCode = -1

// roundTrip sends a request and returns the response to it, resending over
// UDP every 250 ms.
func (c *rawClient) roundTrip(m *stun.Message) (*stun.Message, error) {
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		if _, err := c.conn.WriteTo(m.Raw, c.server); err != nil {
			return nil, err
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		for {
			n, _, err := c.conn.ReadFrom(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if err != nil {
				return nil, err
			}
			r := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if r.Decode() == nil && r.TransactionID == m.TransactionID {
				return r, nil
			}
		}
	}
	return nil, fmt.Errorf("no response to %v", m.Type)
}

// do sends an authenticated request, learning the nonce first if needed,
// and returns 0 for success or the error code.
func (c *rawClient) do(method stun.Method, attrs ...stun.Setter) (*stun.Message, int) {
	c.t.Helper()
	for range 3 {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		if c.nonce != nil {
			setters = append(setters, stun.NewUsername(c.user), stun.NewRealm(c.realm), c.nonce,
				stun.NewLongTermIntegrity(c.user, c.realm, c.pass))
		}
		setters = append(setters, stun.Fingerprint)
		m, err := stun.Build(setters...)
		if err != nil {
			c.t.Fatal(err)
		}
		r, err := c.roundTrip(m)
		if err != nil {
			c.t.Fatal(err)
		}
		if r.Type.Class == stun.ClassSuccessResponse {
			return r, 0
		}
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(r); err != nil {
			return r, errNoCode
		}
		if ec.Code == stun.CodeUnauthorized && c.nonce == nil || ec.Code == stun.CodeStaleNonce {
			var n stun.Nonce
			if err := n.GetFrom(r); err != nil {
				c.t.Fatalf("%d without a nonce", ec.Code)
			}
			c.nonce = n
			continue
		}
		return r, int(ec.Code)
	}
	c.t.Fatal("nonce dance did not converge")
	return nil, 0
}

type rawAttr struct {
	typ stun.AttrType
	val []byte
}

func (a rawAttr) AddTo(m *stun.Message) error {
	m.Add(a.typ, a.val)
	return nil
}

var transportUDP = rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}}

// allocate makes a UDP allocation; it returns the relayed address and 0,
// or the error code.
func (c *rawClient) allocate() (netip.AddrPort, int) {
	c.t.Helper()
	r, code := c.do(stun.MethodAllocate, transportUDP)
	if code != 0 {
		return netip.AddrPort{}, code
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(r, stun.AttrXORRelayedAddress); err != nil {
		c.t.Fatal(err)
	}
	ip, _ := netip.AddrFromSlice(relayed.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(relayed.Port)), 0
}

// peerAttr is an XOR-PEER-ADDRESS (RFC 8656 section 18.3) written exactly
// as given: a 16-byte address is sent as an IPv6 one even when it is an
// IPv4-mapped address, which pion's client would rewrite as IPv4.
type peerAttr struct {
	ip   netip.Addr
	port uint16
}

func (p peerAttr) AddTo(m *stun.Message) error {
	ip := p.ip.AsSlice()
	family := byte(1)
	if len(ip) == 16 {
		family = 2
	}
	key := make([]byte, 16)
	copy(key, []byte{0x21, 0x12, 0xa4, 0x42})
	copy(key[4:], m.TransactionID[:])
	v := []byte{0, family, byte(p.port>>8) ^ 0x21, byte(p.port) ^ 0x12}
	for i, b := range ip {
		v = append(v, b^key[i])
	}
	m.Add(stun.AttrXORPeerAddress, v)
	return nil
}

func (c *rawClient) createPermission(p peerAttr) int {
	_, code := c.do(stun.MethodCreatePermission, p)
	return code
}

func (c *rawClient) channelBind(ch uint16, p peerAttr) int {
	_, code := c.do(stun.MethodChannelBind, rawAttr{stun.AttrChannelNumber, []byte{byte(ch >> 8), byte(ch), 0, 0}}, p)
	return code
}

// sendChannel sends ChannelData (RFC 8656 section 12.4), padded to 4
// bytes as TCP requires.
func (c *rawClient) sendChannel(ch uint16, data []byte) {
	b := []byte{byte(ch >> 8), byte(ch), byte(len(data) >> 8), byte(len(data))}
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	if _, err := c.conn.WriteTo(b, c.server); err != nil {
		c.t.Fatal(err)
	}
}

// sendIndication sends data to a peer in a Send indication.
func (c *rawClient) sendIndication(p peerAttr, data []byte) {
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		p, rawAttr{stun.AttrData, data}, stun.Fingerprint)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.WriteTo(m.Raw, c.server); err != nil {
		c.t.Fatal(err)
	}
}
