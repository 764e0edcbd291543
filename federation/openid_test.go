package federation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
)

// TestOpenIDUserInfo asks a TLS server on loopback, standing for hs2.test's
// federation listener, about OpenID tokens.
func TestOpenIDUserInfo(t *testing.T) {
	o := &mediaOrigins{resolve: map[string]string{}, roots: x509.NewCertPool()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/federation/v1/openid/userinfo", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			server.WriteError(w, mxerr.Forbidden("userinfo requests are not signed"))
			return
		}
		subs := map[string]string{"good+/=": "@bob:hs2.test", "liar": "@eve:hs3.test", "junk": "hs2.test"}
		sub, ok := subs[r.URL.Query().Get("access_token")]
		if !ok {
			server.WriteError(w, mxerr.UnknownToken("Access token unknown or expired"))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"sub": sub})
	})
	o.resolve["hs2.test"] = startTLSServer(t, "hs2.test", o.roots, mux)
	// down.test resolves to a port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.resolve["down.test"] = ln.Addr().String()
	ln.Close()
	onBackends(t, func(t *testing.T, backend string) {
		f := newMediaFederation(t, backend, o)
		tests := []struct {
			name, server, token, want string
			errHas                    string
		}{
			{"valid", "hs2.test", "good+/=", "@bob:hs2.test", ""},
			{"unknown token", "hs2.test", "nope", "", "M_UNKNOWN_TOKEN"},
			{"another server's user", "hs2.test", "liar", "", "not one of its users"},
			{"not a user ID", "hs2.test", "junk", "", "not one of its users"},
			{"no token", "hs2.test", "", "", "required"},
			{"unreachable", "down.test", "good+/=", "", "openid userinfo"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := f.OpenIDUserInfo(context.Background(), tt.server, tt.token)
				if tt.errHas == "" {
					if err != nil || got != tt.want {
						t.Fatalf("got %q, %v; want %q", got, err, tt.want)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("got %q, %v; want an error with %q", got, err, tt.errHas)
				}
			})
		}
	})
}
