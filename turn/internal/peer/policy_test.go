package peer

import (
	"net/netip"
	"testing"
)

func TestDefaultPolicy(t *testing.T) {
	denied := []string{
		"127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.1.2.3", "172.16.0.1",
		"172.31.255.255", "192.168.1.1", "100.64.0.1", "100.127.255.255", "169.254.169.254",
		"169.254.0.1", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
		"192.0.0.170", "198.18.0.1", "192.0.2.1",
		"::", "::1", "::127.0.0.1", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1",
		"fec0::1", "ff02::1", "2002:7f00:1::1", "2002:c0a8:101::1", "2001:0:4136:e378::1",
		"2001:db8::1", "100::1", "64:ff9b:1::1",
		// IPv4-mapped forms of the above (CVE-2020-26262 class).
		"::ffff:127.0.0.1", "::ffff:0.0.0.0", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
		"::ffff:192.168.0.1", "::ffff:0:127.0.0.1",
		// NAT64 well-known prefix embedding a private IPv4 address.
		"64:ff9b::a00:1", "64:ff9b::7f00:1",
	}
	allowed := []string{
		"8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.32.0.1", "11.0.0.1",
		"2606:4700::1111", "2a00:1450:4001::1", "::ffff:8.8.8.8", "64:ff9b::808:808",
	}
	for _, s := range denied {
		a := netip.MustParseAddr(s)
		if v := Default.CheckIP(a); v.OK() {
			t.Errorf("CheckIP(%s) = %v, want denied", s, v)
		}
		if v := Default.Check(netip.AddrPortFrom(a, 3478)); v.OK() {
			t.Errorf("Check(%s:3478) = %v, want denied", s, v)
		}
	}
	for _, s := range allowed {
		a := netip.MustParseAddr(s)
		if v := Default.CheckIP(a); v != Allowed {
			t.Errorf("CheckIP(%s) = %v, want allowed", s, v)
		}
	}
	if v := Default.CheckIP(netip.Addr{}); v != DeniedInvalid {
		t.Errorf("zero address: %v", v)
	}
	if v := Default.Check(netip.MustParseAddrPort("8.8.8.8:0")); v != DeniedInvalid {
		t.Errorf("port 0: %v", v)
	}
}

func TestRules(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	p := New(Rules{
		Allow: pfx("127.0.0.0/8", "10.0.0.0/8", "::ffff:192.168.7.0/120", "203.0.113.5/32"),
		Deny:  pfx("10.9.0.0/16", "8.8.4.0/24", "203.0.113.5/32"),
		SFU:   []netip.AddrPort{netip.MustParseAddrPort("192.168.1.10:7882"), netip.MustParseAddrPort("[::ffff:172.20.0.2]:5000")},
	})
	tests := []struct {
		addr string
		port uint16
		want Verdict
	}{
		{"127.0.0.1", 5000, AllowedByRule},
		{"::ffff:127.0.0.1", 5000, AllowedByRule},
		{"::1", 5000, DeniedBuiltin}, // allowing IPv4 loopback does not allow IPv6's
		{"10.1.2.3", 5000, AllowedByRule},
		{"10.9.1.1", 5000, DeniedByRule},     // the longer deny wins
		{"192.168.7.9", 5000, AllowedByRule}, // a mapped rule means its IPv4 range
		{"192.168.8.9", 5000, DeniedBuiltin}, // outside it
		{"8.8.4.4", 5000, DeniedByRule},      // deny of a public range
		{"8.8.8.8", 5000, Allowed},           // untouched
		{"203.0.113.5", 5000, DeniedByRule},  // deny wins a tie
		{"192.168.1.10", 7882, AllowedSFU},   // the SFU
		{"192.168.1.10", 22, DeniedBuiltin},  // not its other ports
		{"172.20.0.2", 5000, AllowedSFU},     // mapped SFU address
		{"::ffff:192.168.1.10", 7882, AllowedSFU},
	}
	for _, tt := range tests {
		ap := netip.AddrPortFrom(netip.MustParseAddr(tt.addr), tt.port)
		if got := p.Check(ap); got != tt.want {
			t.Errorf("Check(%v) = %v, want %v", ap, got, tt.want)
		}
	}
	// Permissions name only an IP: the SFU's IP is permitted whole.
	if v := p.CheckIP(netip.MustParseAddr("192.168.1.10")); v != AllowedSFU {
		t.Errorf("CheckIP(SFU) = %v", v)
	}
	// An allow-everything rule is the operator's explicit choice.
	open := New(Rules{Allow: pfx("0.0.0.0/0")})
	if v := open.CheckIP(netip.MustParseAddr("127.0.0.1")); v != AllowedByRule {
		t.Errorf("0.0.0.0/0 allow: %v", v)
	}
}

// TestCheckAllocs guards the per-packet path: judging a packet must not
// allocate.
func TestCheckAllocs(t *testing.T) {
	p := New(Rules{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	ap := netip.MustParseAddrPort("8.8.8.8:3478")
	if n := testing.AllocsPerRun(100, func() { p.Check(ap) }); n != 0 {
		t.Errorf("Check allocates %v times", n)
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, uint16(1))
	f.Add(netip.MustParseAddr("::ffff:127.0.0.1").AsSlice(), uint16(80))
	f.Add(netip.MustParseAddr("64:ff9b::7f00:1").AsSlice(), uint16(80))
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		v := Default.Check(netip.AddrPortFrom(a, port))
		// A mapped address is judged exactly as the IPv4 address it maps.
		if a.Is4In6() {
			if w := Default.Check(netip.AddrPortFrom(a.Unmap(), port)); w != v {
				t.Fatalf("%v: %v, but %v: %v", a, v, a.Unmap(), w)
			}
		}
		if v.OK() && (a.Unmap().IsLoopback() || a.Unmap().IsPrivate() || a.Unmap().IsUnspecified() ||
			a.Unmap().IsLinkLocalUnicast() || a.Unmap().IsMulticast()) {
			t.Fatalf("%v allowed by default", a)
		}
	})
}
