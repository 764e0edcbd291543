package federation

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
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
// (Server-Server API, "Resolving server names") and an IP literal outside
// the public unicast space is refused unless the operator's Resolve map
// names it: otherwise anyone could make this server connect to its own
// loopback or private network.
func (f *Federation) OpenIDUserInfo(ctx context.Context, server, token string) (string, error) {
	if server == "" || token == "" {
		return "", fmt.Errorf("federation: openid userinfo: server and token are required")
	}
	if _, pinned := f.cfg.Resolve[server]; !pinned && nonPublicIPLiteral(server) {
		return "", fmt.Errorf("federation: openid userinfo: %q is not a public address", server)
	}
	var resp struct {
		Sub string `json:"sub"`
	}
	path := "/_matrix/federation/v1/openid/userinfo?" + url.Values{"access_token": {token}}.Encode()
	if err := f.client.GetUnsigned(ctx, server, path, &resp); err != nil {
		return "", fmt.Errorf("federation: openid userinfo from %s: %w", server, err)
	}
	local, domain, ok := strings.Cut(resp.Sub, ":")
	if !strings.HasPrefix(local, "@") || len(local) < 2 || !ok || domain != server {
		return "", fmt.Errorf("federation: openid userinfo from %s names %q, not one of its users", server, resp.Sub)
	}
	return resp.Sub, nil
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
	a = a.Unmap()
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
