package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/server"
)

// discoveryNet is a fake internet on loopback: every dial lands on one
// TLS server (whatever the address), which answers well-known requests by
// Host header and echoes the Host header and SNI of every other request.
// SRV records come from a table.
type discoveryNet struct {
	t    *testing.T
	addr string // the real listener
	cert tls.Certificate

	mu        sync.Mutex // guards the fields below
	now       time.Time
	dialed    []string
	conns     map[string]string // client-side address of each connection -> address dialled
	wkFetches map[string]int
	srvLooks  int
	wellKnown map[string]wkAnswer
	srv       map[string][]*net.SRV // "_service._tcp.name"
	refuse    map[string]bool       // addresses whose dials fail
}

type wkAnswer struct {
	status int
	body   string
	header map[string]string
}

var discoveryHosts = []string{
	"127.0.0.1", "::1", "plain.test", "delegated.test", "delegated2.test", "delegated3.test",
	"srv.test", "legacy.test", "nothing.test", "cache.test", "err.test",
	// Serve well-known only; requests to them go elsewhere.
	"wk.test", "wksrv.test", "wkip.test", "wkipnoport.test", "wkplain.test", "wklegacy.test",
	"hop.test", "loop.test", "insecure.test",
}

func newDiscoveryNet(t *testing.T) *discoveryNet {
	d := &discoveryNet{
		t:         t,
		now:       time.Unix(1_700_000_000, 0),
		wkFetches: map[string]int{},
		wellKnown: map[string]wkAnswer{},
		srv:       map[string][]*net.SRV{},
		refuse:    map[string]bool{},
		conns:     map[string]string{},
	}
	d.cert = newCert(t, discoveryHosts...)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/matrix/server", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.wkFetches[r.Host]++
		a, ok := d.wellKnown[r.Host]
		d.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(a.body))
	})
	mux.HandleFunc("GET /_matrix/federation/v1/version", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		dialed := d.conns[r.RemoteAddr]
		d.mu.Unlock()
		server.WriteJSON(w, http.StatusOK, map[string]string{"host": r.Host, "sni": r.TLS.ServerName, "dialed": dialed})
	})
	d.addr = startTLS(t, d.cert, mux).Listener.Addr().String()
	return d
}

func (d *discoveryNet) clock() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.now
}

func (d *discoveryNet) advance(by time.Duration) {
	d.mu.Lock()
	d.now = d.now.Add(by)
	d.mu.Unlock()
}

func (d *discoveryNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	refused := d.refuse[addr]
	if !strings.HasSuffix(addr, ":443") {
		d.dialed = append(d.dialed, addr)
	}
	d.mu.Unlock()
	if refused {
		return nil, errors.New("connection refused (test)")
	}
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, network, d.addr)
	if err == nil {
		d.mu.Lock()
		d.conns[conn.LocalAddr().String()] = addr
		d.mu.Unlock()
	}
	return conn, err
}

func (d *discoveryNet) lookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.srvLooks++
	recs, ok := d.srv["_"+service+"._"+proto+"."+name]
	if !ok {
		return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return "", recs, nil
}

// lastDial returns the last federation (non-443) address dialled.
func (d *discoveryNet) lastDial() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.dialed) == 0 {
		return ""
	}
	return d.dialed[len(d.dialed)-1]
}

func (d *discoveryNet) client(t *testing.T) *Client {
	return newClient(t, Config{
		ServerName: "origin.test",
		RootCAs:    poolOf(d.cert),
		Timeout:    5 * time.Second,
		LookupSRV:  d.lookupSRV,
		Dial:       d.dial,
		Now:        d.clock,
	})
}

func json200(body string) wkAnswer { return wkAnswer{status: 200, body: body} }

// TestResolveBranches runs every step of "Resolving server names" against
// a real TLS server, checking the address dialled, the Host header sent,
// and the SNI (and so the name the certificate was checked against).
func TestResolveBranches(t *testing.T) {
	d := newDiscoveryNet(t)
	d.wellKnown["wk.test"] = json200(`{"m.server":"delegated.test:9999"}`)
	d.wellKnown["wksrv.test"] = json200(`{"m.server":"delegated.test"}`)
	d.srv["_matrix-fed._tcp.delegated.test"] = []*net.SRV{{Target: "target.example.", Port: 7777}}
	d.wellKnown["wkip.test"] = json200(`{"m.server":"127.0.0.1:4444"}`)
	d.wellKnown["wkipnoport.test"] = json200(`{"m.server":"127.0.0.1"}`)
	d.wellKnown["wkplain.test"] = json200(`{"m.server":"delegated2.test"}`)
	d.wellKnown["wklegacy.test"] = json200(`{"m.server":"delegated3.test"}`)
	d.srv["_matrix._tcp.delegated3.test"] = []*net.SRV{{Target: "legacy-target.example.", Port: 7778}}
	d.wellKnown["srv.test"] = wkAnswer{status: 404, body: `{}`}
	d.srv["_matrix-fed._tcp.srv.test"] = []*net.SRV{{Target: "target.example.", Port: 8449}}
	d.wellKnown["legacy.test"] = json200(`not json`)
	d.srv["_matrix._tcp.legacy.test"] = []*net.SRV{{Target: "legacy-target.example.", Port: 8450}}
	d.wellKnown["nothing.test"] = json200(`{"m.server": 5}`)
	d.refuse["plain.test:443"] = true
	// A first SRV target that refuses connections: the next one is tried.
	d.wellKnown["srv2.test"] = wkAnswer{status: 500}
	d.srv["_matrix-fed._tcp.srv2.test"] = []*net.SRV{{Target: "down.example.", Port: 1}, {Target: "up.example.", Port: 2}}
	d.refuse["down.example:1"] = true

	tests := []struct {
		name               string
		dial, host, sniWas string
	}{
		{"127.0.0.1", "127.0.0.1:8448", "127.0.0.1", ""},
		{"127.0.0.1:1234", "127.0.0.1:1234", "127.0.0.1:1234", ""},
		{"[::1]", "[::1]:8448", "[::1]", ""},
		{"[::1]:99", "[::1]:99", "[::1]:99", ""},
		{"plain.test:5555", "plain.test:5555", "plain.test:5555", "plain.test"},
		{"wk.test", "delegated.test:9999", "delegated.test:9999", "delegated.test"},
		{"wksrv.test", "target.example:7777", "delegated.test", "delegated.test"},
		{"wkip.test", "127.0.0.1:4444", "127.0.0.1:4444", ""},
		{"wkipnoport.test", "127.0.0.1:8448", "127.0.0.1", ""},
		{"wkplain.test", "delegated2.test:8448", "delegated2.test", "delegated2.test"},
		{"wklegacy.test", "legacy-target.example:7778", "delegated3.test", "delegated3.test"},
		{"srv.test", "target.example:8449", "srv.test", "srv.test"},
		{"legacy.test", "legacy-target.example:8450", "legacy.test", "legacy.test"},
		{"nothing.test", "nothing.test:8448", "nothing.test", "nothing.test"},
		{"plain.test", "plain.test:8448", "plain.test", "plain.test"},
	}
	c := d.client(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got struct{ Host, SNI, Dialed string }
			if err := c.GetUnsigned(context.Background(), tc.name, "/_matrix/federation/v1/version", &got); err != nil {
				t.Fatal(err)
			}
			if got.Dialed != tc.dial {
				t.Errorf("connection dialled to %q, want %q", got.Dialed, tc.dial)
			}
			if got.Host != tc.host || got.SNI != tc.sniWas {
				t.Errorf("Host %q SNI %q, want Host %q SNI %q", got.Host, got.SNI, tc.host, tc.sniWas)
			}
		})
	}
	t.Run("srv fallback to the next target", func(t *testing.T) {
		// The certificate has no name srv2.test, so the request itself
		// fails; what matters is that both targets were dialled.
		tgt, err := c.Resolve(context.Background(), "srv2.test")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(tgt.Addrs, " ") != "down.example:1 up.example:2" || tgt.TLSName != "srv2.test" {
			t.Fatalf("target %+v", tgt)
		}
		err = c.GetUnsigned(context.Background(), "srv2.test", "/_matrix/federation/v1/version", nil)
		if err == nil || !strings.Contains(err.Error(), "srv2.test") {
			t.Fatalf("err = %v, want a certificate error for srv2.test", err)
		}
		if dialed := d.lastDial(); dialed != "up.example:2" {
			t.Errorf("last dial %q", dialed)
		}
	})
	t.Run("bad server name", func(t *testing.T) {
		if err := c.GetUnsigned(context.Background(), "bad name!", "/x", nil); err == nil {
			t.Fatal("no error")
		}
	})
}

// TestCertificateHost: the certificate is checked against the server
// name (or delegated name), never the SRV target or an override address,
// and a pooled connection verified for one name never serves another.
func TestCertificateHost(t *testing.T) {
	d := newDiscoveryNet(t)
	// victim.test's SRV record points at a host whose certificate (the
	// discovery server's) does not name victim.test.
	d.srv["_matrix-fed._tcp.victim.test"] = []*net.SRV{{Target: "srv.test.", Port: 8448}}
	c := d.client(t)
	err := c.GetUnsigned(context.Background(), "victim.test", "/_matrix/federation/v1/version", nil)
	if err == nil || !strings.Contains(err.Error(), "victim.test") {
		t.Fatalf("err = %v, want a certificate error naming victim.test", err)
	}

	// Two names overridden to one address: the certificate names only
	// "a.test", so b.test must fail even after a.test's connection is
	// pooled.
	certA := newCert(t, "a.test")
	s := startTLS(t, certA, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		server.WriteJSON(w, http.StatusOK, map[string]any{})
	}))
	addr := s.Listener.Addr().String()
	c2 := newClient(t, Config{ServerName: "origin.test", RootCAs: poolOf(certA), Resolve: map[string]string{"a.test": addr, "b.test": addr}})
	if err := c2.GetUnsigned(context.Background(), "a.test", "/x", nil); err != nil {
		t.Fatal(err)
	}
	if err := c2.GetUnsigned(context.Background(), "b.test", "/x", nil); err == nil {
		t.Fatal("b.test accepted a certificate for a.test")
	}
	// Untrusted: the certificate is fine for the name but not signed by a
	// trusted CA; Insecure accepts it.
	c3 := newClient(t, Config{ServerName: "origin.test", Resolve: map[string]string{"a.test": addr}, RootCAs: poolOf(d.cert)})
	if err := c3.GetUnsigned(context.Background(), "a.test", "/x", nil); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
	c4 := newClient(t, Config{ServerName: "origin.test", Resolve: map[string]string{"b.test": addr}, Insecure: true})
	if err := c4.GetUnsigned(context.Background(), "b.test", "/x", nil); err != nil {
		t.Fatalf("insecure: %v", err)
	}
}

// TestWellKnownCache: answers are cached per Cache-Control, errors for an
// hour, and resolved targets for at most targetTTL.
func TestWellKnownCache(t *testing.T) {
	d := newDiscoveryNet(t)
	d.wellKnown["cache.test"] = wkAnswer{status: 200, body: `{"m.server":"delegated.test:1"}`, header: map[string]string{"Cache-Control": "public, max-age=7200"}}
	d.wellKnown["err.test"] = wkAnswer{status: 500, body: `oops`}
	c := d.client(t)
	resolve := func(name, wantAddr string, wantFetches int) {
		t.Helper()
		tgt, err := c.Resolve(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if tgt.Addrs[0] != wantAddr {
			t.Errorf("%s resolved to %v, want %s", name, tgt.Addrs, wantAddr)
		}
		d.mu.Lock()
		n := d.wkFetches[name]
		d.mu.Unlock()
		if n != wantFetches {
			t.Errorf("%s: %d well-known fetches, want %d", name, n, wantFetches)
		}
	}
	resolve("cache.test", "delegated.test:1", 1)
	resolve("err.test", "err.test:8448", 1)
	resolve("cache.test", "delegated.test:1", 1)
	resolve("err.test", "err.test:8448", 1)

	// Past the target cache, within both well-known lifetimes: SRV is
	// looked up again, well-known is not fetched again.
	d.mu.Lock()
	looks := d.srvLooks
	d.mu.Unlock()
	d.advance(targetTTL + time.Second)
	resolve("err.test", "err.test:8448", 1)
	d.mu.Lock()
	if d.srvLooks == looks {
		t.Error("SRV not looked up again after the target cache expired")
	}
	d.mu.Unlock()
	resolve("cache.test", "delegated.test:1", 1)

	// Past the error lifetime (1h), within max-age (2h).
	d.advance(time.Hour)
	resolve("err.test", "err.test:8448", 2)
	resolve("cache.test", "delegated.test:1", 1)

	// Past max-age: fetched again, and a changed answer is used.
	d.mu.Lock()
	d.wellKnown["cache.test"] = json200(`{"m.server":"delegated.test:2"}`)
	d.mu.Unlock()
	d.advance(time.Hour)
	resolve("cache.test", "delegated.test:2", 2)
}

func TestCacheTTL(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"none", nil, 24 * time.Hour},
		{"max-age", map[string]string{"Cache-Control": "max-age=3600"}, time.Hour},
		{"max-age capped", map[string]string{"Cache-Control": "max-age=999999999"}, 48 * time.Hour},
		{"max-age floor", map[string]string{"Cache-Control": "max-age=1"}, 5 * time.Minute},
		{"no-store", map[string]string{"Cache-Control": "no-store, max-age=3600"}, 5 * time.Minute},
		{"expires", map[string]string{"Expires": now.Add(3 * time.Hour).Format(http.TimeFormat)}, 3 * time.Hour},
		{"expires against Date", map[string]string{"Date": now.Add(-time.Hour).Format(http.TimeFormat), "Expires": now.Add(time.Hour).Format(http.TimeFormat)}, 2 * time.Hour},
		{"max-age beats expires", map[string]string{"Cache-Control": "max-age=600", "Expires": now.Add(3 * time.Hour).Format(http.TimeFormat)}, 10 * time.Minute},
		{"bad expires", map[string]string{"Expires": "0"}, 5 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.header {
				h.Set(k, v)
			}
			if got := cacheTTL(h, now); got != tc.want {
				t.Errorf("cacheTTL = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestWellKnownRedirects: redirects are followed, loops are not.
func TestWellKnownRedirects(t *testing.T) {
	d := newDiscoveryNet(t)
	d.wellKnown["hop.test"] = wkAnswer{status: 302, header: map[string]string{"Location": "https://delegated.test/.well-known/matrix/server"}}
	d.wellKnown["delegated.test"] = json200(`{"m.server":"delegated2.test:3"}`)
	d.wellKnown["loop.test"] = wkAnswer{status: 302, header: map[string]string{"Location": "https://loop.test/.well-known/matrix/server"}}
	d.wellKnown["insecure.test"] = wkAnswer{status: 302, header: map[string]string{"Location": "http://delegated.test/.well-known/matrix/server"}}
	c := d.client(t)
	for name, want := range map[string]string{
		"hop.test":      "delegated2.test:3",
		"loop.test":     "loop.test:8448",
		"insecure.test": "insecure.test:8448",
	} {
		tgt, err := c.Resolve(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if tgt.Addrs[0] != want {
			t.Errorf("%s: %v, want %s", name, tgt.Addrs, want)
		}
	}
}

// TestResolveOverride: an overridden name skips discovery entirely.
func TestResolveOverride(t *testing.T) {
	d := newDiscoveryNet(t)
	c := newClient(t, Config{ServerName: "origin.test", Resolve: map[string]string{"hs1": "127.0.0.1:1", "hs2:8448": "127.0.0.1:2"},
		LookupSRV: d.lookupSRV, Dial: d.dial})
	for name, want := range map[string]Target{
		"hs1":      {Addrs: []string{"127.0.0.1:1"}, Host: "hs1", TLSName: "hs1"},
		"hs2:8448": {Addrs: []string{"127.0.0.1:2"}, Host: "hs2:8448", TLSName: "hs2"},
	} {
		got, err := c.Resolve(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got.Addrs, ",") != strings.Join(want.Addrs, ",") || got.Host != want.Host || got.TLSName != want.TLSName {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.wkFetches) != 0 || d.srvLooks != 0 {
		t.Errorf("discovery ran for an overridden name: %v well-known, %d SRV", d.wkFetches, d.srvLooks)
	}
}
