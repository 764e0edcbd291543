package dgram

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// polled is a Socket served by a Loop. The loop reads it and runs the
// handler; the datagrams left go through queue to ReadFrom.
type polled struct {
	loop  *Loop
	id    uint64
	h     Handler
	local *net.UDPAddr
	v6    bool // an AF_INET6 socket: IPv4 destinations go IPv4-mapped

	mu sync.RWMutex
	// mu guards fd, -1 once closed: held shared while the descriptor is
	// used, exclusively to close it, so that no call ever reaches a
	// descriptor number the kernel has handed to another file.
	fd int

	queue     chan datagram
	closed    chan struct{}
	closeOnce sync.Once

	dmu sync.Mutex
	// dmu guards the following fields.
	readDeadline time.Time
	kick         chan struct{} // closed when readDeadline changes

	writeDeadline atomic.Int64 // Unix nanoseconds; 0: none
}

type datagram struct {
	b    []byte
	from netip.AddrPort
}

// deliver queues a copy of a datagram the handler left, for ReadFrom;
// with the queue full it is dropped, as a full socket buffer would.
func (s *polled) deliver(b []byte, from netip.AddrPort) {
	select {
	case s.queue <- datagram{b: append([]byte(nil), b...), from: from}:
	default:
	}
}

func (s *polled) ReadFrom(p []byte) (int, netip.AddrPort, error) {
	for {
		select {
		case <-s.closed:
			return 0, netip.AddrPort{}, s.opError("read", net.ErrClosed)
		default:
		}
		s.dmu.Lock()
		deadline, kick := s.readDeadline, s.kick
		s.dmu.Unlock()
		var timer *time.Timer
		var expired <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return 0, netip.AddrPort{}, s.opError("read", os.ErrDeadlineExceeded)
			}
			timer = time.NewTimer(d)
			expired = timer.C
		}
		select {
		case dg := <-s.queue:
			if timer != nil {
				timer.Stop()
			}
			return copy(p, dg.b), dg.from, nil
		case <-s.closed:
		case <-kick:
		case <-expired:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

func (s *polled) SetReadDeadline(t time.Time) error {
	s.dmu.Lock()
	s.readDeadline = t
	close(s.kick)
	s.kick = make(chan struct{})
	s.dmu.Unlock()
	return nil
}

func (s *polled) SetWriteDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	s.writeDeadline.Store(ns)
	return nil
}

func (s *polled) Send(p []byte, to netip.AddrPort) error {
	var sa sockaddr
	salen, err := sa.encode(to, s.v6)
	if err != nil {
		return err
	}
	s.mu.RLock()
	if s.fd < 0 {
		s.mu.RUnlock()
		return net.ErrClosed
	}
	err = sendto(s.fd, p, &sa, salen)
	s.mu.RUnlock()
	return err
}

// writeWait is how long WriteTo waits at a time for room in a full send
// buffer before it checks for Close and its deadline again.
const writeWait = 50 * time.Millisecond

func (s *polled) WriteTo(p []byte, to netip.AddrPort) (int, error) {
	for {
		err := s.Send(p, to)
		if err == nil {
			return len(p), nil
		}
		if !errors.Is(err, unix.EAGAIN) {
			return 0, s.opError("write", err)
		}
		wait := writeWait
		if ns := s.writeDeadline.Load(); ns != 0 {
			if wait = min(wait, time.Until(time.Unix(0, ns))); wait <= 0 {
				return 0, s.opError("write", os.ErrDeadlineExceeded)
			}
		}
		s.mu.RLock()
		if s.fd < 0 {
			s.mu.RUnlock()
			return 0, s.opError("write", net.ErrClosed)
		}
		pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
		_, _ = unix.Poll(pfd, int(wait.Milliseconds())+1)
		s.mu.RUnlock()
	}
}

func (s *polled) opError(op string, err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return &net.OpError{Op: op, Net: "udp", Addr: s.local, Err: err}
	}
	return &net.OpError{Op: op, Net: "udp", Addr: s.local, Err: os.NewSyscallError(op, err)}
}

func (s *polled) LocalAddr() *net.UDPAddr { return s.local }

// Close unregisters and closes the socket; it is idempotent.
func (s *polled) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		_ = unix.EpollCtl(s.loop.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
		unix.Close(s.fd)
		s.fd = -1
		s.mu.Unlock()
		s.loop.forget(s.id)
		close(s.closed)
	})
	return nil
}
