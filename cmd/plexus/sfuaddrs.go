package main

import (
	"net"
	"net/netip"

	"github.com/plexus-chat/plexus/internal/config"
)

// sfuRelayAddrs are the SFU's own transport addresses as configured,
// which the TURN relay must reach even where its peer policy refuses
// local addresses (a relayed client talking to this very SFU). A port of
// 0 is only known once bound; such an SFU is reachable through the relay
// only with --turn-allow-peer.
func sfuRelayAddrs(cfg config.Config) []netip.AddrPort {
	if !cfg.SFU {
		return nil
	}
	var ips []netip.Addr
	if cfg.SFUListenIP != "" {
		ips = append(ips, netip.MustParseAddr(cfg.SFUListenIP))
	} else {
		ips = append(ips, netip.IPv4Unspecified(), netip.IPv6Unspecified())
		ips = append(ips, localIPs()...)
	}
	ips = append(ips, cfg.SFUExternalIPs...)
	var out []netip.AddrPort
	for _, ip := range ips {
		if ip.IsUnspecified() {
			continue
		}
		for _, p := range []int{cfg.SFUUDPPort, cfg.SFUTCPPort} {
			if p > 0 {
				out = append(out, netip.AddrPortFrom(ip, uint16(p)))
			}
		}
	}
	return out
}

// localIPs lists this host's interface addresses, loopback included.
func localIPs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

func isLoopbackIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.IsLoopback()
}
