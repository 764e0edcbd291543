package federation

import (
	"context"
	"fmt"
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
func (f *Federation) OpenIDUserInfo(ctx context.Context, server, token string) (string, error) {
	if server == "" || token == "" {
		return "", fmt.Errorf("federation: openid userinfo: server and token are required")
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
