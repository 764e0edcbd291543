package config

import (
	"errors"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// sfuOptions are the settings of the built-in SFU. They follow LiveKit's
// defaults (rtc.udp_port 7882, rtc.tcp_port 7881) so that an operator who
// knows LiveKit opens the same ports in the firewall.
var sfuOptions = []option{
	define("sfu", "on|off", "on",
		"run the built-in SFU for group calls (LiveKit protocol at /livekit/sfu, token service at /livekit/jwt)",
		func(c *Config) *bool { return &c.SFU }, parseOnOff),
	define("sfu-udp-port", "PORT", "7882",
		"the one UDP port all SFU media uses; 0: any free port",
		func(c *Config) *int { return &c.SFUUDPPort }, parsePort),
	define("sfu-tcp-port", "PORT", "7881",
		"ICE over TCP for clients whose UDP is blocked; 0: any free port; off: none",
		func(c *Config) *int { return &c.SFUTCPPort }, parsePortOrOff),
	define("sfu-listen-ip", "IP", "",
		"IP the SFU's media sockets bind; empty: every interface",
		func(c *Config) *string { return &c.SFUListenIP }, parseIPOrEmpty),
	defineList("sfu-external-ip", "IP",
		"public IP advertised in the SFU's ICE candidates when behind 1:1 NAT (repeatable)",
		func(c *Config) *[]netip.Addr { return &c.SFUExternalIPs }, parseAddr),
	define("sfu-api-key", "KEY", "plexus",
		"API key named in SFU access tokens (LiveKit's API key)",
		func(c *Config) *string { return &c.SFUAPIKey }, parseAPIKey),
	define("sfu-api-secret", "SECRET", "",
		"secret signing SFU access tokens; empty: generated into <data>/sfu.secret",
		func(c *Config) *string { return &c.SFUAPISecret }, parseSFUSecret).secret(),
	define("sfu-url", "URL", "",
		"the SFU's public ws:// or wss:// URL handed out with tokens; empty: derived from each token request",
		func(c *Config) *string { return &c.SFUURL }, parseWSURL),
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return 0, errors.New("want a port from 1 to 65535, or 0 for any free port")
	}
	return n, nil
}

// parsePortOrOff maps "off" (and "") to -1, the SFU's "disabled".
func parsePortOrOff(s string) (int, error) {
	if s == "off" || s == "" {
		return -1, nil
	}
	n, err := parsePort(s)
	if err != nil {
		return 0, errors.New("want a port from 1 to 65535, 0 for any free port, or off")
	}
	return n, nil
}

func parseIPOrEmpty(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", errors.New("want an IP address, or empty for every interface")
	}
	return a.Unmap().String(), nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.IsUnspecified() {
		return netip.Addr{}, errors.New("want an IP address")
	}
	return a.Unmap(), nil
}

func parseAPIKey(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return "", errors.New("want a non-empty key without spaces")
	}
	return s, nil
}

// parseSFUSecret asks for enough key material for HS256: LiveKit refuses
// secrets under 32 characters for the same reason.
func parseSFUSecret(s string) (string, error) {
	if s != "" && len(s) < 32 {
		return "", errors.New("want at least 32 characters, or empty for a generated secret")
	}
	return s, nil
}

func parseWSURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return "", errors.New("want a ws:// or wss:// URL")
	}
	return strings.TrimSuffix(s, "/"), nil
}
