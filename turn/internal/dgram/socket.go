package dgram

import (
	"net"
	"net/netip"
	"time"
)

// Headroom is the number of bytes a Handler may write before the datagram
// in its buffer: room for a ChannelData header (RFC 8656 section 12.4),
// so that a datagram from a peer is framed for the client without a copy.
const Headroom = 4

// MaxDatagram is the largest datagram read; longer ones are truncated.
// pion's MTU is 1600 bytes, and TURN messages are smaller than that.
const MaxDatagram = 2048

// Handler is called for each datagram a socket receives, with
// buf[Headroom:Headroom+n] the datagram from from; the Headroom bytes
// before it may be overwritten. buf is only valid during the call. It
// returns whether it consumed the datagram; if not, ReadFrom returns it.
// On a Loop it runs on the loop's goroutine: it must not block, and it
// must send with Socket.Send rather than WriteTo.
type Handler func(buf []byte, n int, from netip.AddrPort) bool

// Socket is a UDP socket served with a Handler.
type Socket interface {
	// ReadFrom returns the next datagram its handler did not consume.
	ReadFrom(p []byte) (int, netip.AddrPort, error)
	// WriteTo sends a datagram, waiting for room in the send buffer.
	WriteTo(p []byte, to netip.AddrPort) (int, error)
	// Send sends a datagram without ever blocking: one that does not fit
	// in the send buffer is dropped, as a congested link would.
	Send(p []byte, to netip.AddrPort) error
	LocalAddr() *net.UDPAddr
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	// Close closes the socket; it is idempotent.
	Close() error
}

// portable is a Socket on Go's own networking: the handler runs in
// ReadFrom, in the goroutine that reads the socket.
type portable struct {
	*net.UDPConn
	h Handler
	// buf is the reader's buffer; only the one reader touches it.
	buf [Headroom + MaxDatagram]byte
}

func newPortable(c *net.UDPConn, h Handler) *portable {
	return &portable{UDPConn: c, h: h}
}

func (s *portable) ReadFrom(p []byte) (int, netip.AddrPort, error) {
	for {
		n, from, err := s.ReadFromUDPAddrPort(s.buf[Headroom:])
		if err != nil {
			return 0, from, err
		}
		if s.h != nil && s.h(s.buf[:], n, from) {
			continue
		}
		return copy(p, s.buf[Headroom:Headroom+n]), from, nil
	}
}

func (s *portable) WriteTo(p []byte, to netip.AddrPort) (int, error) {
	return s.WriteToUDPAddrPort(p, to)
}

func (s *portable) Send(p []byte, to netip.AddrPort) error {
	_, err := s.WriteToUDPAddrPort(p, to)
	return err
}

func (s *portable) LocalAddr() *net.UDPAddr { return s.UDPConn.LocalAddr().(*net.UDPAddr) }
