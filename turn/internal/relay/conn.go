package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is one allocation's relay socket.
type Conn struct {
	udp     *net.UDPConn
	port    uint16
	g       *Generator
	bucket  *bucket // nil: no cap
	release func()  // nil: not tracked

	timerMu sync.Mutex
	// timerMu guards timer, set just after the timer starts and read by
	// Close, which the timer itself may call.
	timer *time.Timer // nil: no maximum lifetime

	closeOnce   sync.Once
	releaseOnce sync.Once
	reading     atomic.Bool // a reader has started; it releases on exit

	// rbuf is the reader's buffer, with room before the datagram for a
	// ChannelData header. Only the one reader touches it.
	rbuf [4 + 2048]byte

	fastMu sync.RWMutex
	// fastMu guards the following fields: the channels bound on this
	// allocation, for relaying datagrams from those peers straight to
	// the client as ChannelData (see Index).
	fastChans  map[netip.AddrPort]uint16
	fastClient netip.AddrPort
	fastOut    *net.UDPConn
}

// WriteTo sends a datagram from the client to a peer (RFC 8656, sections
// 11.5 and 12.5). A refused or throttled datagram is dropped silently, as
// a datagram network would: reporting an error would only make pion log
// each one.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, net.InvalidAddrError("relay: not a UDP address")
	}
	return c.WriteToAddrPort(p, ua.AddrPort())
}

// WriteToAddrPort is WriteTo without the net.Addr.
func (c *Conn) WriteToAddrPort(p []byte, ap netip.AddrPort) (int, error) {
	if v := c.g.Policy.Check(ap); !v.OK() {
		c.g.Stats.DeniedToPeer.Add(1)
		if c.g.Denied != nil {
			c.g.Denied(ap, v, true)
		}
		return len(p), nil
	}
	if c.bucket != nil && !c.bucket.take(len(p), time.Now()) {
		c.g.Stats.Throttled.Add(1)
		return len(p), nil
	}
	n, err := c.udp.WriteToUDPAddrPort(p, ap)
	if err == nil {
		c.g.Stats.PacketsToPeer.Add(1)
		c.g.Stats.BytesToPeer.Add(uint64(n))
	}
	return n, err
}

// ReadFrom returns the next datagram from a peer that the policy admits and
// the bandwidth cap leaves room for (RFC 8656, section 12.6); pion then
// checks the allocation's permissions.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.reading.Store(true)
	buf := c.rbuf[4:]
	if len(p) < len(buf) {
		buf = buf[:len(p)]
	}
	for {
		n, ap, err := c.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			c.done()
			return 0, nil, err
		}
		if v := c.g.Policy.Check(ap); !v.OK() {
			c.g.Stats.DeniedFromPeer.Add(1)
			if c.g.Denied != nil {
				c.g.Denied(ap, v, false)
			}
			continue
		}
		if c.bucket != nil && !c.bucket.take(n, time.Now()) {
			c.g.Stats.Throttled.Add(1)
			continue
		}
		c.g.Stats.PacketsFromPeer.Add(1)
		c.g.Stats.BytesFromPeer.Add(uint64(n))
		if c.sendFast(ap, n) {
			continue
		}
		copy(p, buf[:n])
		return n, net.UDPAddrFromAddrPort(ap), nil
	}
}

// sendFast sends the datagram of n bytes in rbuf from peer to the client
// as ChannelData (RFC 8656 section 12.4; over UDP no padding is needed) if
// peer's channel is in the fast path.
func (c *Conn) sendFast(peer netip.AddrPort, n int) bool {
	c.fastMu.RLock()
	ch, ok := c.fastChans[unmap(peer)]
	client, out := c.fastClient, c.fastOut
	c.fastMu.RUnlock()
	if !ok {
		return false
	}
	c.rbuf[0], c.rbuf[1] = byte(ch>>8), byte(ch)
	c.rbuf[2], c.rbuf[3] = byte(n>>8), byte(n)
	_, _ = out.WriteToUDPAddrPort(c.rbuf[:4+n], client)
	return true
}

func (c *Conn) bindFast(peer netip.AddrPort, ch uint16, client netip.AddrPort, out *net.UDPConn) {
	c.fastMu.Lock()
	defer c.fastMu.Unlock()
	if c.fastChans == nil {
		c.fastChans = map[netip.AddrPort]uint16{}
	}
	c.fastChans[peer] = ch
	c.fastClient, c.fastOut = client, out
}

func (c *Conn) unbindFast(peer netip.AddrPort) {
	c.fastMu.Lock()
	delete(c.fastChans, peer)
	c.fastMu.Unlock()
}

// Close closes the socket; it is idempotent.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.timerMu.Lock()
		if c.timer != nil {
			c.timer.Stop()
		}
		c.timerMu.Unlock()
		c.g.live.Add(-1)
		c.g.mu.Lock()
		if c.g.byPort[c.port] == c {
			delete(c.g.byPort, c.port)
		}
		c.g.mu.Unlock()
		err = c.udp.Close()
		// With no reader, nothing else will release it; with one, the
		// reader does on its way out.
		if !c.reading.Load() {
			c.done()
		}
	})
	return err
}

func (c *Conn) done() {
	if c.release != nil {
		c.releaseOnce.Do(c.release)
	}
}

// LocalAddr returns the socket's bound address (not the advertised one).
func (c *Conn) LocalAddr() net.Addr { return c.udp.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (c *Conn) SetDeadline(t time.Time) error { return c.udp.SetDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.udp.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.udp.SetWriteDeadline(t) }

var _ net.PacketConn = (*Conn)(nil)
