package config

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/plexus-chat/plexus/internal/servername"
)

// checkListen checks a listen address: host:port where host is empty (all
// interfaces), an IP literal ([...] for IPv6) or a hostname, and port is
// 0-65535 (0 asks the kernel for a free port).
func checkListen(s string) error {
	const want = "want host:port, e.g. 127.0.0.1:8008, [::1]:8008 or :8008 for all interfaces"
	host, port, err := splitHostPort(s)
	if err != nil {
		return errors.New(want)
	}
	if err := servername.CheckPort(port, 0); err != nil {
		return err
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	return servername.CheckHost(host)
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

// listenIsLoopback reports whether a listen address accepts only loopback
// connections: a loopback IP literal or "localhost". An empty host (all
// interfaces) or any other name is not.
func listenIsLoopback(s string) bool {
	host, _, err := splitHostPort(s)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
