package federation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
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

// TestOpenIDUserInfoRefusesPrivateIPs checks that a matrix_server_name
// that is an IP literal of loopback or a private network is refused
// without a connection (a client must not make us reach our own
// network), unless the operator's Resolve map names it.
func TestOpenIDUserInfoRefusesPrivateIPs(t *testing.T) {
	ln, accepted := countingListener(t)
	port := ln.Addr().(*net.TCPAddr).Port
	o := &mediaOrigins{resolve: map[string]string{"10.9.9.9:8448": ln.Addr().String()}, roots: x509.NewCertPool()}
	onBackends(t, func(t *testing.T, backend string) {
		f := newMediaFederation(t, backend, o)
		for _, name := range []string{
			fmt.Sprintf("127.0.0.1:%d", port),
			fmt.Sprintf("[::1]:%d", port),
			fmt.Sprintf("[::ffff:127.0.0.1]:%d", port),
			"10.0.0.1", "192.168.1.1:8448", "169.254.169.254", "[fd00::1]:8448", "0.0.0.0:8448", "100.64.0.1",
		} {
			before := accepted.Load()
			_, err := f.OpenIDUserInfo(context.Background(), name, "tok")
			if err == nil || !strings.Contains(err.Error(), "not a public address") {
				t.Fatalf("%s: got %v, want a refusal", name, err)
			}
			if n := accepted.Load() - before; n != 0 {
				t.Fatalf("%s: %d connections made, want none", name, n)
			}
		}
		// A pinned name is the operator's choice: it is asked.
		before := accepted.Load()
		_, err := f.OpenIDUserInfo(context.Background(), "10.9.9.9:8448", "tok")
		if err == nil || strings.Contains(err.Error(), "not a public address") {
			t.Fatalf("pinned: got %v, want a connection failure", err)
		}
		if accepted.Load() == before {
			t.Fatal("pinned: no connection made")
		}
	})
}

// TestOpenIDUserInfoRefusesNamesOfPrivateIPs checks that a hostname
// that resolves to loopback is refused at the dial, the check seeing the
// address the name resolved to: no connection is made.
func TestOpenIDUserInfoRefusesNamesOfPrivateIPs(t *testing.T) {
	ln, accepted := countingListener(t)
	port := ln.Addr().(*net.TCPAddr).Port
	addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip4", "localhost")
	if err != nil || len(addrs) == 0 || !addrs[0].IsLoopback() {
		t.Fatalf("localhost resolves to %v, %v; the test needs a name of 127.0.0.1", addrs, err)
	}
	o := &mediaOrigins{resolve: map[string]string{}, roots: x509.NewCertPool()}
	f := newMediaFederation(t, storagetest.SQLite, o)
	// A hostname with a port skips well-known and SRV discovery
	// (Server-Server API, "Resolving server names", step 2): the name
	// itself is dialled.
	name := fmt.Sprintf("localhost:%d", port)
	_, err = f.OpenIDUserInfo(context.Background(), name, "tok")
	if !errors.Is(err, errNotPublic) {
		t.Fatalf("%s: got %v, want the dial refused as not public", name, err)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%s: %d connections made, want none", name, n)
	}
}

func TestRefuseNonPublic(t *testing.T) {
	for _, tt := range []struct {
		addr    string
		refused bool
	}{
		{"127.0.0.1:443", true},
		{"[::1]:8448", true},
		{"[::ffff:192.168.1.1]:8448", true},
		{"[fe80::1%eth0]:8448", true},
		{"10.1.2.3:8448", true},
		{"not an address", true},
		{"1.1.1.1:8448", false},
		{"[2606:4700::1111]:443", false},
	} {
		err := refuseNonPublic(context.Background(), "tcp", tt.addr, nil)
		if got := errors.Is(err, errNotPublic); got != tt.refused {
			t.Errorf("refuseNonPublic(%q) = %v, want refused=%v", tt.addr, err, tt.refused)
		}
	}
}

func TestNonPublicIPLiteral(t *testing.T) {
	tests := []struct {
		server string
		want   bool
	}{
		{"hs.example", false},
		{"hs.example:8448", false},
		{"localhost:8448", false}, // a hostname: discovery decides
		{"1.1.1.1", false},
		{"1.1.1.1:8448", false},
		{"[2606:4700::1111]:8448", false},
		{"127.0.0.1", true},
		{"127.1.2.3:80", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"192.168.0.1", true},
		{"169.254.169.254:80", true},
		{"100.100.100.100", true},
		{"198.18.0.1", true},
		{"224.0.0.1", true},
		{"255.255.255.255", true},
		{"0.0.0.0", true},
		{"[::1]", true},
		{"[::]:8448", true},
		{"[fe80::1]", true},
		{"[fc00::1]", true},
		{"[::ffff:10.0.0.1]", true},
		{"[64:ff9b::a00:1]", true},
		{"[2002:a00:1::]", true},
		{"[ff02::1]", true},
	}
	for _, tt := range tests {
		if got := nonPublicIPLiteral(tt.server); got != tt.want {
			t.Errorf("nonPublicIPLiteral(%q) = %v, want %v", tt.server, got, tt.want)
		}
	}
}

// countingListener is a TCP listener on loopback that counts the
// connections made to it and closes them.
func countingListener(t *testing.T) (net.Listener, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln, accepted
}
