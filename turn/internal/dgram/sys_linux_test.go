package dgram

import (
	"net/netip"
	"testing"
)

func TestSockaddr(t *testing.T) {
	for _, tt := range []struct {
		ap   string
		v6   bool
		want string // after a round trip; "" is an encoding error
	}{
		{"192.0.2.1:3478", false, "192.0.2.1:3478"},
		{"[::ffff:192.0.2.1]:3478", false, "192.0.2.1:3478"},
		{"192.0.2.1:3478", true, "192.0.2.1:3478"}, // IPv4-mapped on the wire
		{"[2001:db8::1]:5", true, "[2001:db8::1]:5"},
		{"[fe80::1%7]:5", true, "[fe80::1%7]:5"},
		{"[2001:db8::1]:5", false, ""},
	} {
		var sa sockaddr
		n, err := sa.encode(netip.MustParseAddrPort(tt.ap), tt.v6)
		if tt.want == "" {
			if err == nil {
				t.Errorf("encode(%s, v6=%v) succeeded", tt.ap, tt.v6)
			}
			continue
		}
		if err != nil || n == 0 {
			t.Errorf("encode(%s, v6=%v): %d, %v", tt.ap, tt.v6, n, err)
			continue
		}
		if got := sa.decode().String(); got != tt.want {
			t.Errorf("round trip of %s (v6=%v) = %s, want %s", tt.ap, tt.v6, got, tt.want)
		}
	}
}
