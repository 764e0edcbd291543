package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// PortRange is an inclusive range of ports; the zero value is "any".
type PortRange struct {
	Min, Max uint16
}

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Min, r.Max) }

func parseTURNListen(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	host, _, err := splitHostPort(s)
	if err != nil {
		return "", errors.New("want IP:port, [IPv6]:port, :port for every interface, or empty to disable")
	}
	if err := checkListen(s); err != nil {
		return "", err
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return "", errors.New("the host must be an IP address (relay sockets bind to it), or empty for every interface")
		}
	}
	return s, nil
}

func parseTURNFile(s string) (string, error) { return s, nil }

func parseExternalIP(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Unmap().Is4() {
		return netip.Addr{}, errors.New("want an IPv4 address (the relay allocates IPv4 addresses), or empty")
	}
	return a.Unmap(), nil
}

func parsePortRange(s string) (PortRange, error) {
	const want = "want MIN-MAX, ports from 1 to 65535, e.g. 49152-65535"
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return PortRange{}, errors.New(want)
	}
	min, err1 := strconv.ParseUint(lo, 10, 16)
	max, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || min == 0 || min > max {
		return PortRange{}, errors.New(want)
	}
	return PortRange{uint16(min), uint16(max)}, nil
}

// parsePeerPrefix takes a CIDR or a bare address (one host).
func parsePeerPrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, errors.New("want a CIDR such as 10.0.0.0/8 or fd00::/8, or one address")
}

func parseCount(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errors.New("want a whole number, 0 or more")
	}
	return n, nil
}

func parseKbps(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 100_000_000 {
		return 0, errors.New("want kbit/s as a whole number from 0 (no cap) to 100000000")
	}
	return n, nil
}

func parseLifetime(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("want a duration such as 12h or 90m, or 0")
	}
	if d > 0 && d < time.Minute {
		return 0, errors.New("want at least 1m (an allocation lives 10 minutes between refreshes), or 0")
	}
	return d, nil
}

// checkTURN reports conflicts between the TURN settings.
func checkTURN(c *Config) error {
	if (c.TURNTLSCert == "") != (c.TURNTLSKey == "") {
		return errors.New("turn_tls_cert and turn_tls_key go together: set both, or neither for a generated certificate")
	}
	if c.TURNListen != "" && c.TURNListen == c.TURNTLSListen && !strings.HasSuffix(c.TURNListen, ":0") {
		return fmt.Errorf("turn_tls_listen %q is the same as turn_listen: TLS needs a port of its own", c.TURNTLSListen)
	}
	return nil
}
