package servername

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// CheckOwn validates our own server name against the grammar of the spec
// appendices, "Server Name":
//
//	server_name = hostname [ ":" port ]
//	port        = 1*5DIGIT
//	hostname    = IPv4address / "[" IPv6address "]" / dns-name
//	dns-name    = 1*255dns-char        ; DIGIT / ALPHA / "-" / "."
//
// It is stricter than the bare grammar where the prose of that section is:
// IPv4 literals must have components 0-255, IPv6 literals must be valid per
// RFC 3513, DNS names must be dot-separated non-empty labels ("conventional
// restrictions for internet hostnames", which also bound a label to 63
// characters). The port must be 1-65535, since this is our own name and must
// be reachable. Upper case is allowed: the spec only advises against it.
//
// Our own name (config) and remote names (rooms/internal/pdu) are checked
// by this one function.
func CheckOwn(s string) error { return check(s, true) }

// Check validates a server name seen in an identifier or event: the bare
// grammar, accepting what it allows (a trailing dot, port 0, labels over 63
// characters), because rejecting a remote server's name would reject its
// events while other servers accept them.
func Check(s string) error { return check(s, false) }

func check(s string, strict bool) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	host, port, hasPort := s, "", false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return errors.New("IPv6 literal is missing its closing ']'")
		}
		host = s[:end+1]
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return fmt.Errorf("unexpected %q after the IPv6 literal", rest)
			}
			port, hasPort = rest[1:], true
		}
		if err := checkIPv6Literal(host[1 : len(host)-1]); err != nil {
			return err
		}
	} else {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port, hasPort = s[:i], s[i+1:], true
		}
		if strings.Contains(host, ":") {
			return errors.New("an IPv6 address must be written in brackets, e.g. [::1]:8448")
		}
		if err := checkHost(host, strict); err != nil {
			return err
		}
	}
	minPort := 0
	if strict {
		minPort = 1
	}
	if hasPort {
		if err := CheckPort(port, minPort); err != nil {
			return err
		}
	}
	return nil
}

// checkIPv6Literal checks the inside of "[...]": 2 to 45 characters of
// IPv6char (grammar), forming an RFC 3513 address without a zone.
func checkIPv6Literal(a string) error {
	if len(a) < 2 || len(a) > 45 {
		return fmt.Errorf("IPv6 literal %q must be 2 to 45 characters", a)
	}
	for _, r := range a {
		if !isHexDigit(r) && r != ':' && r != '.' {
			return fmt.Errorf("IPv6 literal %q has invalid character %q", a, r)
		}
	}
	ip, err := netip.ParseAddr(a)
	if err != nil || !ip.Is6() {
		return fmt.Errorf("%q is not a valid IPv6 address", a)
	}
	return nil
}

// CheckHost checks a dns-name or IPv4 literal.
func CheckHost(h string) error { return checkHost(h, true) }

func checkHost(h string, strict bool) error {
	if h == "" {
		return errors.New("hostname must not be empty")
	}
	if len(h) > 255 {
		return fmt.Errorf("hostname is %d characters, more than 255", len(h))
	}
	for _, r := range h {
		if !isAlnum(r) && r != '-' && r != '.' {
			return fmt.Errorf("hostname has invalid character %q: only letters, digits, '-' and '.' are allowed", r)
		}
	}
	if !strict {
		return nil
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" {
			return errors.New("hostname has an empty label (leading, trailing or double '.')")
		}
		if len(l) > 63 {
			return fmt.Errorf("hostname label %q is longer than 63 characters", l)
		}
	}
	if isIPv4Shaped(labels) {
		for _, l := range labels {
			if n, _ := strconv.Atoi(l); n > 255 {
				return fmt.Errorf("%q is not a valid IPv4 address: %s is more than 255", h, l)
			}
		}
	}
	return nil
}

// isIPv4Shaped reports whether labels match the grammar's IPv4address,
// 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT.
func isIPv4Shaped(labels []string) bool {
	if len(labels) != 4 {
		return false
	}
	for _, l := range labels {
		if len(l) > 3 {
			return false
		}
		for _, r := range l {
			if r < '0' || r > '9' {
				return false
			}
		}
	}
	return true
}

// CheckPort checks 1*5DIGIT in the range [min, 65535].
func CheckPort(p string, min int) error {
	if p == "" || len(p) > 5 {
		return fmt.Errorf("port %q must be 1 to 5 digits", p)
	}
	for _, r := range p {
		if r < '0' || r > '9' {
			return fmt.Errorf("port %q must be decimal digits", p)
		}
	}
	n, _ := strconv.Atoi(p)
	if n < min || n > 65535 {
		return fmt.Errorf("port %s is out of range %d-65535", p, min)
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}

func isHexDigit(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F'
}
