package turn

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	pionturn "github.com/pion/turn/v4"

	"github.com/plexus-chat/plexus/turn/internal/dgram"
	"github.com/plexus-chat/plexus/turn/internal/filter"
)

// packetConn is the UDP listener as pion sees it: bound ChannelData is
// relayed on the fast path (relay.Index), and everything else passes
// filter.Inspect before pion's read loop gets it. Both run in handle, on
// the socket's reader (see package dgram: on Linux, the event loop that
// serves the relay sockets too, reading in batches).
type packetConn struct {
	sock     dgram.Socket
	s        *Server
	doneOnce sync.Once
}

const (
	// listenerBuffer is the socket buffer asked for the listener: every
	// client's traffic arrives on it, and a burst that overflows the
	// default is lost. The kernel caps it at net.core.rmem_max.
	listenerBuffer = 4 << 20
	// listenerQueue bounds the datagrams waiting for pion's read loop
	// (requests, indications, unbound channels).
	listenerQueue = 512
	// pionMTU is the size of pion's read buffer (ServerConfig.InboundMTU's
	// default): a larger datagram would be dropped by pion, and is here.
	pionMTU = 1600
)

// newPacketConn serves udp, which it takes over, as the listener.
func newPacketConn(udp *net.UDPConn, s *Server) (*packetConn, error) {
	_ = udp.SetReadBuffer(listenerBuffer)
	_ = udp.SetWriteBuffer(listenerBuffer)
	c := &packetConn{s: s}
	sock, err := s.loop.Adopt(udp, c.handle, listenerQueue)
	if err != nil {
		return nil, err
	}
	c.sock = sock
	return c, nil
}

// handle is the listener's dgram.Handler: it relays bound ChannelData and
// answers or drops what filter.Inspect refuses; the rest goes to pion.
func (c *packetConn) handle(buf []byte, n int, from netip.AddrPort) bool {
	if n > pionMTU {
		return true
	}
	b := buf[dgram.Headroom : dgram.Headroom+n]
	if n > 0 && b[0]&0xc0 == 0x40 && c.s.fast.Forward(from, b) {
		return true
	}
	v := c.s.inspect(b, net.UDPAddrFromAddrPort(from))
	switch v.Action {
	case filter.Pass:
		return false
	case filter.Reply:
		_ = c.sock.Send(v.Reply, from)
	}
	return true
}

// ReadFrom returns the next datagram for pion. Its first error is the end
// of pion's read loop for this listener, which releases the loop's count.
func (c *packetConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, from, err := c.sock.ReadFrom(p)
	if err != nil {
		c.doneOnce.Do(c.s.wg.Done)
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteTo sends pion's messages to clients.
func (c *packetConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, net.InvalidAddrError("turn: not a UDP address")
	}
	return c.sock.WriteTo(p, ua.AddrPort())
}

// Close closes the socket.
func (c *packetConn) Close() error { return c.sock.Close() }

// LocalAddr returns the listener's address.
func (c *packetConn) LocalAddr() net.Addr { return c.sock.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (c *packetConn) SetDeadline(t time.Time) error {
	return errors.Join(c.sock.SetReadDeadline(t), c.sock.SetWriteDeadline(t))
}

// SetReadDeadline implements net.PacketConn.
func (c *packetConn) SetReadDeadline(t time.Time) error { return c.sock.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (c *packetConn) SetWriteDeadline(t time.Time) error { return c.sock.SetWriteDeadline(t) }

// listener is a TCP or TLS listener as pion sees it: it caps connections,
// keeps accepting through transient errors (pion's accept loop would stop
// for good at the first) and frames and filters each connection.
type listener struct {
	net.Listener
	s        *Server
	tls      *tls.Config // nil: plain TCP
	doneOnce sync.Once
}

// Accept returns the next connection. Its first error is the end of pion's
// accept loop, which releases the loop's count.
func (l *listener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.doneOnce.Do(l.s.wg.Done)
				return nil, err
			}
			// EMFILE and the like: wait for connections to close.
			l.s.logLimited("turn_accept", "TURN accept failed; retrying", "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		c := &framedConn{raw: raw, s: l.s, first: true}
		c.Conn = raw
		if l.tls != nil {
			c.Conn = tls.Server(raw, l.tls)
		}
		if !l.s.conns.add(c) {
			raw.Close()
			l.s.metrics.refuse("connections")
			l.s.logLimited("turn_conns", "TURN connection refused: too many connections", "remote", raw.RemoteAddr().String())
			continue
		}
		c.stun = pionturn.NewSTUNConn(c.Conn)
		l.s.wg.Add(1)
		return c, nil
	}
}

// handshakeTimeout bounds the TLS handshake and the first TURN frame of a
// connection, so that idle connections cannot pile up.
const handshakeTimeout = 10 * time.Second

// framedConn splits a TCP or TLS stream into TURN frames (RFC 8656 section
// 12.5: STUN messages and padded ChannelData), runs each through
// filter.Inspect and hands pion the ones to pass, one frame per Read.
type framedConn struct {
	net.Conn          // what pion reads and writes: raw, or TLS over it
	raw      net.Conn // the TCP connection, closed directly on shutdown
	s        *Server
	stun     *pionturn.STUNConn // framing over Conn

	// Read state; pion's per-connection loop is the only reader.
	first   bool
	buf     [2048]byte
	pending []byte

	closeOnce sync.Once
}

func (c *framedConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.first {
			_ = c.raw.SetReadDeadline(time.Now().Add(handshakeTimeout))
		}
		n, _, err := c.stun.ReadFrom(c.buf[:])
		if err != nil {
			return 0, err
		}
		if c.first {
			_ = c.raw.SetReadDeadline(time.Time{})
			c.first = false
		}
		if n > len(c.buf) {
			// Larger than any TURN message pion takes (its MTU is 1600):
			// consumed from the stream, dropped here.
			c.s.metrics.drop(filter.ReasonJunk)
			continue
		}
		v := c.s.inspect(c.buf[:n], c.Conn.RemoteAddr())
		switch v.Action {
		case filter.Pass:
			c.pending = c.buf[:n]
		case filter.Reply:
			if _, err := c.Conn.Write(v.Reply); err != nil {
				return 0, err
			}
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Close is called by pion when its loop for the connection ends. Errors
// are not reported: the peer has usually gone already (a TLS close_notify
// then fails with a broken pipe) and the socket is closed either way.
func (c *framedConn) Close() error {
	c.closeOnce.Do(func() {
		// A TLS close_notify must not block on a peer that stopped reading.
		_ = c.raw.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.Conn.Close()
		_ = c.raw.Close()
		c.s.conns.remove(c)
		c.s.wg.Done()
	})
	return nil
}

// connSet tracks open TCP and TLS connections, to cap them and to close
// them all on shutdown (closing a listener leaves its connections open).
type connSet struct {
	max int

	mu sync.Mutex
	// mu guards the following fields.
	conns  map[*framedConn]struct{}
	closed bool
}

func newConnSet(max int) *connSet {
	return &connSet{max: max, conns: map[*framedConn]struct{}{}}
}

func (cs *connSet) add(c *framedConn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed || len(cs.conns) >= cs.max {
		return false
	}
	cs.conns[c] = struct{}{}
	return true
}

func (cs *connSet) remove(c *framedConn) {
	cs.mu.Lock()
	delete(cs.conns, c)
	cs.mu.Unlock()
}

func (cs *connSet) count() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.conns)
}

// closeAll closes every connection's socket; pion's loops then end and
// call Close on each.
func (cs *connSet) closeAll() {
	cs.mu.Lock()
	cs.closed = true
	raws := make([]net.Conn, 0, len(cs.conns))
	for c := range cs.conns {
		raws = append(raws, c.raw)
	}
	cs.mu.Unlock()
	for _, r := range raws {
		r.Close()
	}
}
