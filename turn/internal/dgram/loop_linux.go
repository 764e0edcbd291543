package dgram

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batch is how many datagrams one recvmmsg(2) reads from a socket. The
// sockets are level-triggered, so a socket with more is served again on
// the next round, after the others.
const batch = 32

// Loop serves UDP sockets from one goroutine blocked in epoll_wait(2)
// (see the package comment for why). A nil *Loop is the portable path:
// Adopt then leaves each socket on Go's networking.
type Loop struct {
	epfd, evfd int // the epoll instance; the eventfd that stops the loop
	done       chan struct{}
	closeOnce  sync.Once

	mu sync.Mutex
	// mu guards the following fields.
	socks  map[uint64]*polled // by the id in their epoll registration
	nextID uint64             // 0 is the eventfd's
	closed bool

	// The loop goroutine's own state.
	events [128]unix.EpollEvent
	msgs   [batch]unix.Mmsghdr
	iovs   [batch]unix.Iovec
	names  [batch]sockaddr
	bufs   [batch][Headroom + MaxDatagram]byte
}

// NewLoop starts a loop. The caller must Close it.
func NewLoop() (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("dgram: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("dgram: eventfd: %w", err)
	}
	l := &Loop{epfd: epfd, evfd: evfd, done: make(chan struct{}), socks: map[uint64]*polled{}, nextID: 1}
	if err := l.register(evfd, 0); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, err
	}
	for i := range l.msgs {
		l.iovs[i].Base = &l.bufs[i][Headroom]
		l.iovs[i].SetLen(MaxDatagram)
		l.msgs[i].Hdr.Iov = &l.iovs[i]
		l.msgs[i].Hdr.SetIovlen(1)
		l.msgs[i].Hdr.Name = &l.names[i][0]
	}
	go l.run()
	return l, nil
}

func (l *Loop) register(fd int, id uint64) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	*(*uint64)(unsafe.Pointer(&ev.Fd)) = id // the 64 bits of epoll_data
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("dgram: epoll_ctl: %w", err)
	}
	return nil
}

// Adopt takes c over (the caller must no longer use it) and serves it
// with h; queue bounds the datagrams h leaves that wait for ReadFrom
// (more are dropped). On a nil Loop, c stays on Go's networking.
func (l *Loop) Adopt(c *net.UDPConn, h Handler, queue int) (Socket, error) {
	if l == nil {
		return newPortable(c, h), nil
	}
	local := c.LocalAddr().(*net.UDPAddr)
	// A duplicate of the descriptor, and then closing c, takes the socket
	// out of the runtime's poller, which would otherwise be woken by each
	// datagram too.
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	fd, family := -1, 0
	cerr := rc.Control(func(s uintptr) {
		if fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0); err == nil {
			family, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		}
	})
	c.Close()
	if err = errors.Join(cerr, err); err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("dgram: adopting socket: %w", err)
	}
	s := &polled{loop: l, fd: fd, v6: family == unix.AF_INET6, h: h, local: local,
		queue: make(chan datagram, queue), closed: make(chan struct{}), kick: make(chan struct{})}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		unix.Close(fd)
		return nil, net.ErrClosed
	}
	s.id = l.nextID
	l.nextID++
	l.socks[s.id] = s
	l.mu.Unlock()
	if err := l.register(fd, s.id); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// run is the loop: wait for sockets with datagrams, serve each.
func (l *Loop) run() {
	defer close(l.done)
	for {
		n, err := unix.EpollWait(l.epfd, l.events[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return // only on a closed or broken epoll instance
		}
		for i := range n {
			id := *(*uint64)(unsafe.Pointer(&l.events[i].Fd))
			if id == 0 {
				return // Close
			}
			l.mu.Lock()
			s := l.socks[id]
			l.mu.Unlock()
			if s != nil {
				l.serve(s)
			}
		}
	}
}

// serve reads one batch from s and runs its handler on each datagram.
func (l *Loop) serve(s *polled) {
	for i := range l.msgs {
		l.msgs[i].Hdr.Namelen = uint32(len(sockaddr{}))
	}
	s.mu.RLock()
	if s.fd < 0 {
		s.mu.RUnlock()
		return
	}
	n, err := recvmmsg(s.fd, l.msgs[:])
	s.mu.RUnlock()
	if err != nil {
		return // EAGAIN: another reader of a shared socket was first
	}
	for i := range n {
		size := min(int(l.msgs[i].Len), MaxDatagram)
		from := l.names[i].decode()
		if s.h != nil && s.h(l.bufs[i][:], size, from) {
			continue
		}
		s.deliver(l.bufs[i][Headroom:Headroom+size], from)
	}
}

func (l *Loop) forget(id uint64) {
	l.mu.Lock()
	delete(l.socks, id)
	l.mu.Unlock()
}

// Close stops the loop, waits for its goroutine and closes the sockets
// still open. It is idempotent.
func (l *Loop) Close() error {
	if l == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		one := [8]byte{1}
		_, _ = unix.Write(l.evfd, one[:])
		<-l.done
		l.mu.Lock()
		l.closed = true
		open := make([]*polled, 0, len(l.socks))
		for _, s := range l.socks {
			open = append(open, s)
		}
		l.mu.Unlock()
		for _, s := range open {
			s.Close()
		}
		unix.Close(l.evfd)
		unix.Close(l.epfd)
	})
	return nil
}
