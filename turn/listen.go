package turn

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	pionturn "github.com/pion/turn/v4"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/plexus-chat/plexus/turn/internal/filter"
)

// packetConn is the UDP listener as pion sees it: bound ChannelData is
// relayed on the fast path (relay.Index), and everything else passes
// filter.Inspect before pion's read loop gets it. Datagrams are read in
// batches (recvmmsg): the clients of a call send in bursts, and one system
// call for a burst instead of one per datagram is most of what a relay
// spends.
type packetConn struct {
	*net.UDPConn
	s        *Server
	doneOnce sync.Once

	// Batch state; pion's read loop is the only reader.
	batch      batchReader
	msgs       []ipv4.Message
	next, have int
}

// batchReader is ipv4.PacketConn or ipv6.PacketConn (their Message types
// are the same).
type batchReader interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
}

const (
	batchSize = 32
	// listenerBuffer is the socket buffer asked for the listener: every
	// client's traffic arrives on it, and a burst that overflows the
	// default is lost. The kernel caps it at net.core.rmem_max.
	listenerBuffer = 4 << 20
)

func newPacketConn(udp *net.UDPConn, s *Server) *packetConn {
	_ = udp.SetReadBuffer(listenerBuffer)
	_ = udp.SetWriteBuffer(listenerBuffer)
	c := &packetConn{UDPConn: udp, s: s, msgs: make([]ipv4.Message, batchSize)}
	if a, ok := udp.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		c.batch = ipv4.NewPacketConn(udp)
	} else {
		c.batch = ipv6.NewPacketConn(udp)
	}
	for i := range c.msgs {
		c.msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	return c
}

// ReadFrom returns the next datagram for pion. Its first error is the end
// of pion's read loop for this listener, which releases the loop's count.
func (c *packetConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		if c.next == c.have {
			n, err := c.batch.ReadBatch(c.msgs, 0)
			if err != nil {
				c.doneOnce.Do(c.s.wg.Done)
				return 0, nil, err
			}
			c.next, c.have = 0, n
		}
		m := &c.msgs[c.next]
		c.next++
		ua, ok := m.Addr.(*net.UDPAddr)
		if !ok || m.N > len(p) {
			continue // larger than pion's MTU: pion would drop it too
		}
		b := m.Buffers[0][:m.N]
		ap := ua.AddrPort()
		if m.N > 0 && b[0]&0xc0 == 0x40 && c.s.fast.Forward(ap, b) {
			continue
		}
		v := c.s.inspect(b, ua)
		switch v.Action {
		case filter.Pass:
			return copy(p, b), ua, nil
		case filter.Reply:
			_, _ = c.UDPConn.WriteToUDPAddrPort(v.Reply, ap)
		}
	}
}

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
