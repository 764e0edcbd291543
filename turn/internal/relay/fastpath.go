package relay

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/plexus-chat/plexus/turn/internal/dgram"
)

// Index is the ChannelData fast path for clients on the UDP listener.
//
// pion handles each datagram through its generic request path: a string
// formatted for a debug line, a five-tuple allocated and looked up under
// a lock, a linear scan of the channels, a fresh buffer for each
// ChannelData it sends. For the one message kind that carries nearly all
// traffic, ChannelData over UDP (RFC 8656 section 12.4), the server keeps
// its own index of bound channels, fed by pion's OnChannelCreated and
// OnChannelDeleted events, and relays those datagrams itself:
//
//   - client to peer: Forward finds the channel's peer and the
//     allocation's relay socket, and sends the payload (the relay
//     socket's policy and bandwidth checks apply as always);
//   - peer to client: a relay socket that knows the peer's channel frames
//     the datagram as ChannelData and sends it to the client itself.
//
// Everything else (requests, Send and Data indications, unbound channels,
// TCP and TLS clients) still goes through pion. A binding is only ever
// added after pion granted it (the peer policy ran then), and removed
// when pion's channel or allocation goes.
type Index struct {
	out dgram.Socket // the UDP listener: where clients are reached

	mu sync.RWMutex
	// mu guards the following fields.
	clients map[netip.AddrPort]*client
}

type client struct {
	conn  *Conn
	chans map[uint16]netip.AddrPort // channel number -> peer
}

// NewIndex returns an index for clients of the UDP listener out.
func NewIndex(out dgram.Socket) *Index {
	return &Index{out: out, clients: map[netip.AddrPort]*client{}}
}

// Bind records that client's allocation, relayed on conn, bound channel
// ch to peer (RFC 8656 section 11.2).
func (x *Index) Bind(clientAddr netip.AddrPort, ch uint16, peer netip.AddrPort, conn *Conn) {
	clientAddr, peer = unmap(clientAddr), unmap(peer)
	x.mu.Lock()
	cl := x.clients[clientAddr]
	if cl == nil || cl.conn != conn {
		cl = &client{conn: conn, chans: map[uint16]netip.AddrPort{}}
		x.clients[clientAddr] = cl
	}
	cl.chans[ch] = peer
	x.mu.Unlock()
	conn.bindFast(peer, ch, clientAddr, x.out)
}

// Unbind removes a channel binding (expired, or its allocation gone).
func (x *Index) Unbind(clientAddr netip.AddrPort, ch uint16, peer netip.AddrPort) {
	clientAddr, peer = unmap(clientAddr), unmap(peer)
	x.mu.Lock()
	cl := x.clients[clientAddr]
	if cl != nil {
		delete(cl.chans, ch)
		if len(cl.chans) == 0 {
			delete(x.clients, clientAddr)
		}
	}
	x.mu.Unlock()
	if cl != nil {
		cl.conn.unbindFast(peer)
	}
}

// Drop forgets every binding of a client whose allocation ended.
func (x *Index) Drop(clientAddr netip.AddrPort) {
	x.mu.Lock()
	delete(x.clients, unmap(clientAddr))
	x.mu.Unlock()
}

// Forward relays one ChannelData message b from clientAddr if its channel
// is bound, and reports whether it did; if not, the caller hands b to
// pion. b must be a whole datagram.
func (x *Index) Forward(clientAddr netip.AddrPort, b []byte) bool {
	if len(b) < 4 {
		return false
	}
	ch := binary.BigEndian.Uint16(b[0:2])
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > len(b)-4 {
		return false
	}
	x.mu.RLock()
	cl := x.clients[unmap(clientAddr)]
	var conn *Conn
	var peer netip.AddrPort
	if cl != nil {
		peer = cl.chans[ch]
		conn = cl.conn
	}
	x.mu.RUnlock()
	if !peer.IsValid() {
		return false
	}
	conn.forward(b[4:4+n], peer)
	return true
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
