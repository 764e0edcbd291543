package relay

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/turn/internal/dgram"
)

// TestIndex: a bound channel is relayed both ways without pion, with the
// relay socket's checks; an unbound one is left to pion.
func TestIndex(t *testing.T) { paths(t, testIndex) }

func testIndex(t *testing.T, loop *dgram.Loop) {
	g := newGen(t, &Generator{Loop: loop, Policy: allowLoopback()})
	conn, _, err := g.AllocatePacketConn("udp4", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := conn.(*Conn)
	if g.Lookup(rc.port) != rc {
		t.Fatal("Lookup does not find the socket by its port")
	}
	// The server's UDP listener (nothing reads it here).
	listener, err := loop.Adopt(listenPeer(t), nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	client := listenPeer(t) // a TURN client
	peer := listenPeer(t)
	x := NewIndex(listener)
	clientAddr := client.LocalAddr().(*net.UDPAddr).AddrPort()
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	msg := []byte{0x40, 0x01, 0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0}
	if x.Forward(clientAddr, msg) {
		t.Fatal("Forward relayed an unbound channel")
	}
	x.Bind(clientAddr, 0x4001, peerAddr, rc)
	if !x.Forward(clientAddr, msg) {
		t.Fatal("Forward did not relay a bound channel")
	}
	buf := make([]byte, 100)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	// Both directions of the fast path allocate nothing per datagram.
	if allocs := testing.AllocsPerRun(100, func() { x.Forward(clientAddr, msg) }); allocs != 0 {
		t.Errorf("Forward allocates %v times per datagram", allocs)
	}
	in := make([]byte, dgram.Headroom+160)
	if allocs := testing.AllocsPerRun(100, func() { rc.handle(in, 160, peerAddr) }); allocs != 0 {
		t.Errorf("handle allocates %v times per datagram", allocs)
	}
	// Drain what those sent, to leave the peer and client sockets as
	// they were.
	for _, c := range []*net.UDPConn{peer, client} {
		for range 101 {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := c.ReadFrom(buf); err != nil {
				t.Fatalf("draining: %v", err)
			}
		}
	}
	if x.Forward(clientAddr, []byte{0x40, 0x01, 0, 9, 'x'}) {
		t.Error("Forward relayed ChannelData shorter than its length")
	}

	// The peer answers; the relay socket's reader frames it as
	// ChannelData to the client and gives pion nothing.
	go func() { _, _ = peer.WriteTo([]byte("back"), rc.LocalAddr()) }()
	got := make(chan error, 1)
	go func() {
		_, _, err := rc.ReadFrom(make([]byte, 1600))
		got <- err
	}()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err = client.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], []byte{0x40, 0x01, 0, 4, 'b', 'a', 'c', 'k'}) {
		t.Fatalf("client got %x, %v", buf[:n], err)
	}

	// Unbound, the peer's datagrams go to pion again.
	x.Unbind(clientAddr, 0x4001, peerAddr)
	if x.Forward(clientAddr, msg) {
		t.Error("Forward relayed after Unbind")
	}
	if _, err := peer.WriteTo([]byte("slow"), rc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom did not return a datagram after Unbind")
	}
	if s := g.Stats; s.PacketsToPeer.Load() != 102 || s.PacketsFromPeer.Load() != 103 {
		t.Errorf("counts: to %d, from %d", s.PacketsToPeer.Load(), s.PacketsFromPeer.Load())
	}
	x.Drop(clientAddr)
}
