package dgram

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// paths runs f on each way of serving sockets: Linux's event loop, where
// there is one, and the portable path (a nil loop).
func paths(t *testing.T, f func(t *testing.T, loop *Loop)) {
	loop, err := NewLoop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Close() })
	if loop != nil {
		t.Run("loop", func(t *testing.T) { f(t, loop) })
	}
	t.Run("portable", func(t *testing.T) { f(t, nil) })
}

func listen(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("%s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c interface{ LocalAddr() net.Addr }) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestHandler: the handler sees every datagram with writable headroom; the
// ones it consumes never reach ReadFrom, the others do, in order.
func TestHandler(t *testing.T) { paths(t, testHandler) }

func testHandler(t *testing.T, loop *Loop) {
	peer := listen(t, "udp4", "127.0.0.1:0")
	var handled atomic.Int32
	var self atomic.Value // the Socket, for the handler to reply with
	s, err := loop.Adopt(listen(t, "udp4", "127.0.0.1:0"), func(buf []byte, n int, from netip.AddrPort) bool {
		handled.Add(1)
		if from != addrOf(peer) {
			t.Errorf("from %v, want %v", from, addrOf(peer))
		}
		if string(buf[Headroom:Headroom+n]) != "echo" {
			return false
		}
		// Reply from the handler, the header in the headroom.
		copy(buf, "re: ")
		_ = self.Load().(Socket).Send(buf[:Headroom+n], from)
		return true
	}, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	self.Store(s)
	to := s.LocalAddr().AddrPort()
	for _, m := range []string{"echo", "one", "echo", "two"} {
		if _, err := peer.WriteToUDPAddrPort([]byte(m), to); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 100)
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"one", "two"} {
		n, from, err := s.ReadFrom(buf)
		if err != nil || string(buf[:n]) != want || from != addrOf(peer) {
			t.Fatalf("ReadFrom = %q from %v, %v; want %q", buf[:n], from, err, want)
		}
	}
	for range 2 {
		_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := peer.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "re: echo" {
			t.Fatalf("peer got %q, %v", buf[:n], err)
		}
	}
	if _, err := s.WriteTo([]byte("hi"), addrOf(peer)); err != nil {
		t.Fatal(err)
	}
	if n, _, err := peer.ReadFrom(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	if h := handled.Load(); h != 4 {
		t.Errorf("handler saw %d datagrams, want 4", h)
	}
}

// TestDeadlineAndClose: ReadFrom honours its deadline, including one set
// while it waits, and returns net.ErrClosed once the socket is closed.
func TestDeadlineAndClose(t *testing.T) { paths(t, testDeadlineAndClose) }

func testDeadlineAndClose(t *testing.T, loop *Loop) {
	s, err := loop.Adopt(listen(t, "udp4", "127.0.0.1:0"), nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := s.ReadFrom(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom past its deadline: %v", err)
	}
	_ = s.SetReadDeadline(time.Time{})
	got := make(chan error, 1)
	go func() {
		_, _, err := s.ReadFrom(make([]byte, 10))
		got <- err
	}()
	time.Sleep(10 * time.Millisecond) // let it block; either order passes
	_ = s.SetReadDeadline(time.Now())
	select {
	case err := <-got:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ReadFrom after a new deadline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline set while ReadFrom waits does not end it")
	}
	_ = s.SetReadDeadline(time.Time{})
	go func() {
		_, _, err := s.ReadFrom(make([]byte, 10))
		got <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.Close() // idempotent
	select {
	case err := <-got:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadFrom on a closed socket: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close does not end ReadFrom")
	}
	if _, err := s.WriteTo([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9")); err == nil {
		t.Error("WriteTo on a closed socket succeeded")
	}
}

// TestIPv6: addresses round-trip on an IPv6 socket.
func TestIPv6(t *testing.T) { paths(t, testIPv6) }

func testIPv6(t *testing.T, loop *Loop) {
	peer := listen(t, "udp6", "[::1]:0")
	s, err := loop.Adopt(listen(t, "udp6", "[::1]:0"), nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.WriteTo([]byte("six"), addrOf(peer)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "six" || from != s.LocalAddr().AddrPort() {
		t.Fatalf("peer got %q from %v, %v", buf[:n], from, err)
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("back"), from); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, got, err := s.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "back" || got != addrOf(peer) {
		t.Fatalf("ReadFrom = %q from %v, %v", buf[:n], got, err)
	}
}

// TestLoopClose: closing the loop closes the sockets still open, so that
// their readers end.
func TestLoopClose(t *testing.T) {
	loop, err := NewLoop()
	if err != nil || loop == nil {
		t.Skip("no event loop here")
	}
	s, err := loop.Adopt(listen(t, "udp4", "127.0.0.1:0"), nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, _, err := s.ReadFrom(make([]byte, 10))
		got <- err
	}()
	loop.Close()
	loop.Close() // idempotent
	if err := <-got; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadFrom after the loop closed: %v", err)
	}
	if _, err := loop.Adopt(listen(t, "udp4", "127.0.0.1:0"), nil, 4); err == nil {
		t.Error("Adopt on a closed loop succeeded")
	}
}
