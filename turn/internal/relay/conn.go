package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plexus-chat/plexus/turn/internal/dgram"
)

// Conn is one allocation's relay socket. Its checks run in handle, on
// each datagram the socket receives (see package dgram), and in the
// writes.
type Conn struct {
	sock    dgram.Socket
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

	fastMu sync.RWMutex
	// fastMu guards the following fields: the channels bound on this
	// allocation, for relaying datagrams from those peers straight to
	// the client as ChannelData (see Index).
	fastChans  map[netip.AddrPort]uint16
	fastClient netip.AddrPort
	fastOut    dgram.Socket
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
	if !c.admitToPeer(p, ap) {
		return len(p), nil
	}
	n, err := c.sock.WriteTo(p, ap)
	if err == nil {
		c.countToPeer(n)
	}
	return n, err
}

// forward is WriteToAddrPort for the fast path, which runs on the
// listener's reader: it never waits for room in the send buffer.
func (c *Conn) forward(p []byte, ap netip.AddrPort) {
	if c.admitToPeer(p, ap) && c.sock.Send(p, ap) == nil {
		c.countToPeer(len(p))
	}
}

// admitToPeer runs the checks on a datagram to a peer: the policy, then
// the bandwidth cap.
func (c *Conn) admitToPeer(p []byte, ap netip.AddrPort) bool {
	if v := c.g.Policy.Check(ap); !v.OK() {
		c.g.Stats.DeniedToPeer.Add(1)
		if c.g.Denied != nil {
			c.g.Denied(ap, v, true)
		}
		return false
	}
	if c.bucket != nil && !c.bucket.take(len(p), time.Now()) {
		c.g.Stats.Throttled.Add(1)
		return false
	}
	return true
}

func (c *Conn) countToPeer(n int) {
	c.g.Stats.PacketsToPeer.Add(1)
	c.g.Stats.BytesToPeer.Add(uint64(n))
}

// handle is the socket's dgram.Handler: it drops a datagram from a peer
// that the policy refuses or the bandwidth cap leaves no room for, counts
// the others and relays those of a fast-path channel itself (RFC 8656,
// section 12.6). The rest go to ReadFrom.
func (c *Conn) handle(buf []byte, n int, from netip.AddrPort) bool {
	if v := c.g.Policy.Check(from); !v.OK() {
		c.g.Stats.DeniedFromPeer.Add(1)
		if c.g.Denied != nil {
			c.g.Denied(from, v, false)
		}
		return true
	}
	if c.bucket != nil && !c.bucket.take(n, time.Now()) {
		c.g.Stats.Throttled.Add(1)
		return true
	}
	c.g.Stats.PacketsFromPeer.Add(1)
	c.g.Stats.BytesFromPeer.Add(uint64(n))
	return c.sendFast(buf, n, from)
}

// ReadFrom returns the next datagram from a peer that handle passed on;
// pion then checks the allocation's permissions.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.reading.Store(true)
	n, ap, err := c.sock.ReadFrom(p)
	if err != nil {
		c.done()
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// sendFast sends the datagram buf[dgram.Headroom:][:n] from peer to the
// client as ChannelData (RFC 8656 section 12.4; over UDP no padding is
// needed), its header written in the headroom, if peer's channel is in
// the fast path.
func (c *Conn) sendFast(buf []byte, n int, peer netip.AddrPort) bool {
	c.fastMu.RLock()
	ch, ok := c.fastChans[unmap(peer)]
	client, out := c.fastClient, c.fastOut
	c.fastMu.RUnlock()
	if !ok {
		return false
	}
	const h = dgram.Headroom - 4
	buf[h], buf[h+1] = byte(ch>>8), byte(ch)
	buf[h+2], buf[h+3] = byte(n>>8), byte(n)
	_ = out.Send(buf[h:dgram.Headroom+n], client)
	return true
}

func (c *Conn) bindFast(peer netip.AddrPort, ch uint16, client netip.AddrPort, out dgram.Socket) {
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
		err = c.sock.Close()
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
func (c *Conn) LocalAddr() net.Addr { return c.sock.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (c *Conn) SetDeadline(t time.Time) error {
	return errors.Join(c.sock.SetReadDeadline(t), c.sock.SetWriteDeadline(t))
}

// SetReadDeadline implements net.PacketConn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.sock.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.sock.SetWriteDeadline(t) }

var _ net.PacketConn = (*Conn)(nil)
