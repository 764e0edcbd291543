package federation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/transport"
)

// OpenIDUserInfo asks server who an OpenID token it issued belongs to,
// with GET /_matrix/federation/v1/openid/userinfo?access_token=
// (Server-Server API, "OpenID"; the request is not signed: the token is
// the credential). The answer's sub must be a user of server: a server
// vouches only for its own users. Any failure, the remote's 401
// M_UNKNOWN_TOKEN included, is an error; the SFU token service answers
// all of them alike.
//
// server comes from an unauthenticated client (the token service's
// matrix_server_name), so it is resolved like any federation destination
// (Server-Server API, "Resolving server names") and nothing outside the
// public unicast space is connected to unless the operator's Resolve map
// names it: otherwise anyone could make this server connect to its own
// loopback or private network. An IP literal is refused before any
// work; a hostname (and whatever its well-known delegation and SRV
// records name) is checked on every dial against the address it
// resolved to, so a DNS answer that changes between a check and the
// connection (DNS rebinding) cannot slip past.
func (f *Federation) OpenIDUserInfo(ctx context.Context, server, token string) (string, error) {
	if server == "" || token == "" {
		return "", fmt.Errorf("federation: openid userinfo: server and token are required")
	}
	if _, pinned := f.cfg.Resolve[server]; !pinned && nonPublicIPLiteral(server) {
		return "", fmt.Errorf("federation: openid userinfo: %q: %w", server, errNotPublic)
	}
	var resp struct {
		Sub string `json:"sub"`
	}
	path := "/_matrix/federation/v1/openid/userinfo?" + url.Values{"access_token": {token}}.Encode()
	if err := f.openid.GetUnsigned(ctx, server, path, &resp); err != nil {
		return "", fmt.Errorf("federation: openid userinfo from %s: %w", server, err)
	}
	local, domain, ok := strings.Cut(resp.Sub, ":")
	if !strings.HasPrefix(local, "@") || len(local) < 2 || !ok || domain != server {
		return "", fmt.Errorf("federation: openid userinfo from %s names %q, not one of its users", server, resp.Sub)
	}
	return resp.Sub, nil
}

// errNotPublic is the refusal of a destination outside the public
// unicast space.
var errNotPublic = errors.New("not a public address")

// newOpenIDClient is the transport client of OpenIDUserInfo: the
// federation client's configuration with a dialer that connects only to
// public unicast addresses. The addresses the operator's Resolve map pins
// are dialled as they are (a private test federation, a peer on the
// operator's own network): they are configuration, not client input.
func newOpenIDClient(cfg transport.Config) (*transport.Client, error) {
	pinned := make(map[string]bool, len(cfg.Resolve))
	for _, addr := range cfg.Resolve {
		pinned[addr] = true
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = transport.DefaultTimeout
	}
	plain := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	public := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, ControlContext: refuseNonPublic}
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if pinned[addr] {
			return plain.DialContext(ctx, network, addr)
		}
		return public.DialContext(ctx, network, addr)
	}
	return transport.NewClient(cfg)
}

// refuseNonPublic is a net.Dialer hook: it runs for each address a name
// resolved to, just before the socket connects, so it sees exactly the
// address that will be reached.
func refuseNonPublic(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%s: %w", address, errNotPublic)
	}
	if nonPublicAddr(ap.Addr()) {
		return fmt.Errorf("%s: %w", address, errNotPublic)
	}
	return nil
}

// nonPublicRanges are the special-purpose blocks of the IANA IPv4 and
// IPv6 registries (RFC 6890 and its updates) that netip's predicates do
// not cover and that no homeserver is reached at: shared address space
// (RFC 6598), IETF protocol assignments, the documentation and
// benchmarking nets, 6to4 relay anycast, NAT64 (RFC 6052) and 6to4
// (RFC 3056), which embed IPv4 addresses, and the site-local block.
var nonPublicRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("192.88.99.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("fec0::/10"),
}

// nonPublicIPLiteral reports whether server's host is an IP literal
// (Appendices, "Server Name": IPv4 dotted quad or bracketed IPv6) that is
// not a public unicast address.
func nonPublicIPLiteral(server string) bool {
	host := server
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return false // not a server name; resolution refuses it
		}
		host = host[1:end]
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false // a hostname
	}
	return nonPublicAddr(a)
}

// nonPublicAddr reports whether a is not a public unicast address.
func nonPublicAddr(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() {
		return true
	}
	for _, p := range nonPublicRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
