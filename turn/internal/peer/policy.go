package peer

import (
	"net/netip"
	"sort"
)

// Verdict is a policy's answer and the reason for it, for logs and tests.
type Verdict uint8

const (
	// Allowed: no rule refuses the address.
	Allowed Verdict = iota
	// AllowedByRule: an operator allow rule covers it.
	AllowedByRule
	// AllowedSFU: it is the SFU's own address.
	AllowedSFU
	// DeniedByRule: an operator deny rule covers it.
	DeniedByRule
	// DeniedBuiltin: it is in a range refused by default (loopback,
	// private, link-local...).
	DeniedBuiltin
	// DeniedInvalid: not a usable unicast address at all.
	DeniedInvalid
)

// OK reports whether the verdict permits relaying.
func (v Verdict) OK() bool { return v <= AllowedSFU }

func (v Verdict) String() string {
	switch v {
	case Allowed:
		return "allowed"
	case AllowedByRule:
		return "allowed by --turn-allow-peer"
	case AllowedSFU:
		return "allowed: the SFU's own address"
	case DeniedByRule:
		return "denied by --turn-deny-peer"
	case DeniedBuiltin:
		return "denied: local, private or special-purpose address"
	case DeniedInvalid:
		return "denied: not a unicast address"
	}
	return "unknown"
}

// builtin lists the ranges refused unless an operator rule allows them.
// Sources: RFC 6890 and the IANA special-purpose address registries;
// RFC 8656 section 21.1.2.
var builtin = []netip.Prefix{
	// IPv4
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network", incl. 0.0.0.0 (RFC 1122)
	netip.MustParsePrefix("10.0.0.0/8"),      // private (RFC 1918)
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space, CGNAT (RFC 6598)
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, incl. cloud metadata 169.254.169.254 (RFC 3927)
	netip.MustParsePrefix("172.16.0.0/12"),   // private (RFC 1918)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments (RFC 6890)
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation, TEST-NET-1 (RFC 5737)
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast (RFC 7526)
	netip.MustParsePrefix("192.168.0.0/16"),  // private (RFC 1918)
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking (RFC 2544)
	netip.MustParsePrefix("198.51.100.0/24"), // documentation, TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation, TEST-NET-3
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, incl. broadcast 255.255.255.255
	// IPv6. IPv4-mapped addresses (::ffff:0:0/96) are unmapped and judged
	// as IPv4 before these are consulted.
	netip.MustParsePrefix("::/96"),           // unspecified ::, loopback ::1, deprecated IPv4-compatible (RFC 4291)
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (RFC 2765)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("100::/64"),        // discard-only (RFC 6666)
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments, incl. Teredo 2001::/32 (RFC 4380)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation (RFC 3849)
	netip.MustParsePrefix("2002::/16"),       // 6to4 (RFC 3056): embeds any IPv4 address
	netip.MustParsePrefix("fc00::/7"),        // unique local (RFC 4193)
	netip.MustParsePrefix("fe80::/10"),       // link-local
	netip.MustParsePrefix("fec0::/10"),       // site-local, deprecated (RFC 3879)
	netip.MustParsePrefix("ff00::/8"),        // multicast
}

// nat64 is the well-known NAT64 prefix (RFC 6052): its addresses reach the
// IPv4 address in their last 32 bits, so they are judged as that address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Rules are the operator's adjustments.
type Rules struct {
	// Allow and Deny are --turn-allow-peer and --turn-deny-peer. The most
	// specific prefix covering an address decides; a deny wins a tie. An
	// address no rule covers falls back to the built-in ranges.
	Allow, Deny []netip.Prefix
	// SFU are the SFU's own transport addresses, always allowed: the
	// address by CreatePermission and ChannelBind (which name an IP only),
	// and each packet only to these exact ports.
	SFU []netip.AddrPort
}

// Policy is an immutable peer filter, safe for concurrent use.
type Policy struct {
	rules []rule // sorted most specific first; deny before allow at equal length
	sfu   []netip.AddrPort
}

type rule struct {
	p     netip.Prefix
	allow bool
}

// New builds a Policy. Prefixes are masked and IPv4-mapped ones unmapped,
// so ::ffff:10.0.0.0/104 means 10.0.0.0/8.
func New(r Rules) *Policy {
	p := &Policy{}
	add := func(ps []netip.Prefix, allow bool) {
		for _, x := range ps {
			if !x.IsValid() {
				continue
			}
			p.rules = append(p.rules, rule{unmapPrefix(x), allow})
		}
	}
	add(r.Deny, false)
	add(r.Allow, true)
	sort.SliceStable(p.rules, func(i, j int) bool {
		a, b := p.rules[i], p.rules[j]
		if a.p.Bits() != b.p.Bits() {
			return a.p.Bits() > b.p.Bits()
		}
		return !a.allow && b.allow
	})
	for _, ap := range r.SFU {
		p.sfu = append(p.sfu, netip.AddrPortFrom(normalize(ap.Addr()), ap.Port()))
	}
	return p
}

// Default is the policy with no operator rules.
var Default = New(Rules{})

func unmapPrefix(x netip.Prefix) netip.Prefix {
	a := x.Addr()
	if a.Is4In6() {
		bits := x.Bits() - 96
		if bits < 0 {
			bits = 0
		}
		return netip.PrefixFrom(a.Unmap(), bits).Masked()
	}
	return netip.PrefixFrom(a.WithZone(""), x.Bits()).Masked()
}

// normalize strips the zone and the IPv4-mapped and NAT64 wrappings, so an
// address is judged by where packets to it really go.
func normalize(a netip.Addr) netip.Addr {
	a = a.WithZone("").Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	return a
}

// CheckIP judges an address for CreatePermission, ChannelBind and Connect
// (RFC 8656 sections 9 and 11; RFC 6062 section 5.2).
func (p *Policy) CheckIP(a netip.Addr) Verdict {
	if !a.IsValid() {
		return DeniedInvalid
	}
	a = normalize(a)
	for _, s := range p.sfu {
		if s.Addr() == a {
			return AllowedSFU
		}
	}
	return p.check(a)
}

// Check judges the destination or source of one relayed packet. Unlike
// CheckIP, an SFU address is allowed only at the SFU's own ports, and port
// 0 is refused.
func (p *Policy) Check(ap netip.AddrPort) Verdict {
	a := ap.Addr()
	if !a.IsValid() || ap.Port() == 0 {
		return DeniedInvalid
	}
	a = normalize(a)
	if len(p.sfu) > 0 {
		n := netip.AddrPortFrom(a, ap.Port())
		for _, s := range p.sfu {
			if s == n {
				return AllowedSFU
			}
		}
	}
	return p.check(a)
}

func (p *Policy) check(a netip.Addr) Verdict {
	for _, r := range p.rules {
		if r.p.Contains(a) {
			if r.allow {
				return AllowedByRule
			}
			return DeniedByRule
		}
	}
	for _, b := range builtin {
		if b.Contains(a) {
			return DeniedBuiltin
		}
	}
	return Allowed
}
