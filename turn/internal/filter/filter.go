package filter

import (
	"encoding/binary"
	"net/netip"

	"github.com/pion/stun/v3"
)

// Action is what to do with a message.
type Action uint8

const (
	// Pass hands the message to pion.
	Pass Action = iota
	// Drop discards it without an answer.
	Drop
	// Reply sends the returned error response and discards the message.
	Reply
)

// Reason says why a message was not passed, for metrics and logs.
type Reason string

const (
	ReasonNone          Reason = ""
	ReasonJunk          Reason = "junk"
	ReasonUnexpected    Reason = "unexpected_message"
	ReasonTransport     Reason = "transport"
	ReasonFamily        Reason = "address_family"
	ReasonConnectDenied Reason = "connect_denied"
	ReasonConnect       Reason = "connect"
)

// Verdict is Inspect's answer.
type Verdict struct {
	Action Action
	Reason Reason
	// Peer is the XOR-PEER-ADDRESS of a refused Connect.
	Peer netip.AddrPort
	// Reply is the error response to send when Action is Reply.
	Reply []byte
}

// STUN methods (RFC 8489 section 18.2, RFC 8656 section 17, RFC 6062
// section 6.1).
const (
	methodBinding          = 0x001
	methodAllocate         = 0x003
	methodRefresh          = 0x004
	methodSend             = 0x006
	methodCreatePermission = 0x008
	methodChannelBind      = 0x009
	methodConnect          = 0x00a
	methodConnectionBind   = 0x00b
)

const (
	attrRequestedAddressFamily = 0x0017
	attrRequestedTransport     = 0x0019
	protoUDP                   = 17 // IANA protocol number (RFC 8656 section 18.7)
	familyIPv4                 = 0x01
)

// Inspect judges one message (one datagram, or one frame of a stream).
// permit is the peer policy for Connect.
func Inspect(b []byte, permit func(netip.Addr) bool) Verdict {
	if len(b) < 4 {
		return Verdict{Action: Drop, Reason: ReasonJunk}
	}
	// The first two bits tell STUN (00) from ChannelData (01), RFC 8656
	// section 12; ChannelData must hold the length it declares (plus
	// padding, over TCP).
	if b[0]&0xc0 == 0x40 {
		if int(binary.BigEndian.Uint16(b[2:4])) > len(b)-4 {
			return Verdict{Action: Drop, Reason: ReasonJunk}
		}
		return Verdict{}
	}
	if b[0]&0xc0 != 0 || !stun.IsMessage(b) || int(binary.BigEndian.Uint16(b[2:4]))+20 != len(b) {
		return Verdict{Action: Drop, Reason: ReasonJunk}
	}
	t := binary.BigEndian.Uint16(b[0:2])
	method := t&0x000f | (t&0x00e0)>>1 | (t&0x3e00)>>2
	class := (t&0x0010)>>4 | (t&0x0100)>>7
	switch {
	case class == 1: // indication
		if method != methodSend {
			return Verdict{Action: Drop, Reason: ReasonUnexpected}
		}
		return Verdict{}
	case class != 0: // responses are never for a server
		return Verdict{Action: Drop, Reason: ReasonUnexpected}
	}
	switch method {
	case methodBinding, methodRefresh, methodCreatePermission, methodChannelBind:
		return Verdict{}
	case methodAllocate:
		return inspectAllocate(b)
	case methodConnect:
		return inspectConnect(b, permit)
	case methodConnectionBind:
		return reply(b, methodConnectionBind, stun.CodeBadRequest, ReasonConnect, netip.AddrPort{})
	}
	return Verdict{Action: Drop, Reason: ReasonUnexpected}
}

func inspectAllocate(b []byte) Verdict {
	m := &stun.Message{Raw: b}
	if err := m.Decode(); err != nil {
		return Verdict{Action: Drop, Reason: ReasonJunk}
	}
	// A missing or malformed REQUESTED-TRANSPORT is pion's to refuse
	// with 400; only a well-formed request for another protocol is ours.
	if v, err := m.Get(attrRequestedTransport); err == nil && len(v) >= 1 && v[0] != protoUDP {
		return reply(b, methodAllocate, stun.CodeUnsupportedTransProto, ReasonTransport, netip.AddrPort{})
	}
	if v, err := m.Get(attrRequestedAddressFamily); err == nil && len(v) >= 1 && v[0] != familyIPv4 {
		return reply(b, methodAllocate, stun.CodeAddrFamilyNotSupported, ReasonFamily, netip.AddrPort{})
	}
	return Verdict{}
}

func inspectConnect(b []byte, permit func(netip.Addr) bool) Verdict {
	m := &stun.Message{Raw: b}
	if err := m.Decode(); err != nil {
		return Verdict{Action: Drop, Reason: ReasonJunk}
	}
	var pa stun.XORMappedAddress
	if err := pa.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
		return reply(b, methodConnect, stun.CodeBadRequest, ReasonConnect, netip.AddrPort{})
	}
	ip, _ := netip.AddrFromSlice(pa.IP)
	peer := netip.AddrPortFrom(ip, uint16(pa.Port))
	if permit == nil || !permit(ip) {
		// RFC 6062 section 5.2: a peer the server's policy refuses is
		// answered 403 (Forbidden).
		return reply(b, methodConnect, stun.CodeForbidden, ReasonConnectDenied, peer)
	}
	return reply(b, methodConnect, stun.CodeAllocMismatch, ReasonConnect, peer)
}

func reply(req []byte, method stun.Method, code stun.ErrorCode, why Reason, peer netip.AddrPort) Verdict {
	var id [stun.TransactionIDSize]byte
	copy(id[:], req[8:20])
	m, err := stun.Build(
		stun.NewTransactionIDSetter(id),
		stun.NewType(method, stun.ClassErrorResponse),
		code,
		stun.Fingerprint,
	)
	if err != nil {
		return Verdict{Action: Drop, Reason: why, Peer: peer}
	}
	return Verdict{Action: Reply, Reason: why, Peer: peer, Reply: m.Raw}
}
