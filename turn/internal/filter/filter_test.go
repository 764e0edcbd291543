package filter

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error {
	m.Add(a.t, a.v)
	return nil
}

func build(t testing.TB, method stun.Method, class stun.MessageClass, attrs ...stun.Setter) []byte {
	t.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.NewType(method, class)}, attrs...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func peerAttr(ip string, port int) stun.Setter {
	return &xorPeer{stun.XORMappedAddress{IP: net.ParseIP(ip), Port: port}}
}

type xorPeer struct{ stun.XORMappedAddress }

func (p *xorPeer) AddTo(m *stun.Message) error { return p.AddToAs(m, stun.AttrXORPeerAddress) }

func TestInspect(t *testing.T) {
	permit := func(a netip.Addr) bool { return !a.Unmap().IsLoopback() }
	udp := rawAttr{attrRequestedTransport, []byte{17, 0, 0, 0}}
	tcp := rawAttr{attrRequestedTransport, []byte{6, 0, 0, 0}}
	v6 := rawAttr{attrRequestedAddressFamily, []byte{2, 0, 0, 0}}
	v4 := rawAttr{attrRequestedAddressFamily, []byte{1, 0, 0, 0}}
	methodConnect := stun.Method(0x00a)
	methodConnectionBind := stun.Method(0x00b)
	tests := []struct {
		name   string
		msg    []byte
		action Action
		code   stun.ErrorCode
	}{
		{"channel data", []byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}, Pass, 0},
		{"short", []byte{0, 1}, Drop, 0},
		{"junk", []byte("GET / HTTP/1.1\r\n\r\nxxxxxxxxxxxxxxx"), Drop, 0},
		{"binding", build(t, stun.MethodBinding, stun.ClassRequest), Pass, 0},
		{"allocate udp", build(t, stun.MethodAllocate, stun.ClassRequest, udp, v4), Pass, 0},
		{"allocate without transport", build(t, stun.MethodAllocate, stun.ClassRequest), Pass, 0},
		{"allocate tcp", build(t, stun.MethodAllocate, stun.ClassRequest, tcp), Reply, stun.CodeUnsupportedTransProto},
		{"allocate ipv6", build(t, stun.MethodAllocate, stun.ClassRequest, udp, v6), Reply, stun.CodeAddrFamilyNotSupported},
		{"refresh", build(t, stun.MethodRefresh, stun.ClassRequest), Pass, 0},
		{"send indication", build(t, stun.MethodSend, stun.ClassIndication), Pass, 0},
		{"data indication to server", build(t, stun.MethodData, stun.ClassIndication), Drop, 0},
		{"a response", build(t, stun.MethodAllocate, stun.ClassSuccessResponse), Drop, 0},
		{"unknown method", build(t, stun.Method(0x0ff), stun.ClassRequest), Drop, 0},
		{"connect to loopback", build(t, methodConnect, stun.ClassRequest, peerAttr("127.0.0.1", 22)), Reply, stun.CodeForbidden},
		{"connect to mapped loopback", build(t, methodConnect, stun.ClassRequest, peerAttr("::ffff:127.0.0.1", 22)), Reply, stun.CodeForbidden},
		{"connect to a public peer", build(t, methodConnect, stun.ClassRequest, peerAttr("8.8.8.8", 443)), Reply, stun.CodeAllocMismatch},
		{"connect without peer", build(t, methodConnect, stun.ClassRequest), Reply, stun.CodeBadRequest},
		{"connection bind", build(t, methodConnectionBind, stun.ClassRequest), Reply, stun.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Inspect(tt.msg, permit)
			if v.Action != tt.action {
				t.Fatalf("action = %d (%s), want %d", v.Action, v.Reason, tt.action)
			}
			if v.Action != Reply {
				return
			}
			checkReply(t, tt.msg, v.Reply, tt.code)
		})
	}
}

func checkReply(t *testing.T, req, rep []byte, code stun.ErrorCode) {
	t.Helper()
	m := &stun.Message{Raw: append([]byte(nil), rep...)}
	if err := m.Decode(); err != nil {
		t.Fatalf("reply does not decode: %v", err)
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil || (code != 0 && ec.Code != code) {
		t.Errorf("reply error code = %v (%v), want %v", ec.Code, err, code)
	}
	if m.Type.Class != stun.ClassErrorResponse || string(m.TransactionID[:]) != string(req[8:20]) {
		t.Errorf("reply is %v with transaction %x, want an error response to %x", m.Type, m.TransactionID, req[8:20])
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Errorf("reply fingerprint: %v", err)
	}
}

func FuzzInspect(f *testing.F) {
	f.Add(build(f, stun.MethodAllocate, stun.ClassRequest, rawAttr{attrRequestedTransport, []byte{6, 0, 0, 0}}))
	f.Add(build(f, stun.Method(0x00a), stun.ClassRequest, peerAttr("127.0.0.1", 22)))
	f.Add(build(f, stun.MethodChannelBind, stun.ClassRequest, peerAttr("10.0.0.1", 22)))
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		v := Inspect(b, func(a netip.Addr) bool { return false })
		if v.Action == Reply {
			checkReply(t, b, v.Reply, 0)
		}
	})
}
