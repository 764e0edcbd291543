package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// checkServerName validates a server name against the grammar of the spec
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
// TODO(ids): move to the typed ServerName once the ID package exists, so
// that remote server names are checked by the same code.
func checkServerName(s string) error {
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
		if err := checkHostname(host); err != nil {
			return err
		}
	}
	if hasPort {
		if err := checkPort(port, 1); err != nil {
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

// checkHostname checks a dns-name or IPv4 literal.
func checkHostname(h string) error {
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

// checkPort checks 1*5DIGIT in the range [min, 65535].
func checkPort(p string, min int) error {
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

// checkListen checks a listen address: host:port where host is empty (all
// interfaces), an IP literal ([...] for IPv6) or a hostname, and port is
// 0-65535 (0 asks the kernel for a free port).
func checkListen(s string) error {
	const want = "want host:port, e.g. 127.0.0.1:8008, [::1]:8008 or :8008 for all interfaces"
	host, port, err := splitHostPort(s)
	if err != nil {
		return errors.New(want)
	}
	if err := checkPort(port, 0); err != nil {
		return err
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	return checkHostname(host)
}

// splitHostPort is like net.SplitHostPort, and insists on brackets around
// IPv6 hosts, since "::1:8008" is ambiguous.
func splitHostPort(s string) (host, port string, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", errors.New("missing port")
	}
	host, port = s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return "", "", errors.New("missing ']'")
		}
		host = host[1 : len(host)-1]
		if host == "" {
			return "", "", errors.New("empty IPv6 literal")
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return "", "", err
		}
	} else if strings.ContainsAny(host, "[]") {
		return "", "", errors.New("stray bracket")
	} else if strings.Contains(host, ":") {
		return "", "", errors.New("IPv6 host without brackets")
	}
	return host, port, nil
}

func isAlnum(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}

func isHexDigit(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F'
}
