package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/servername"

	"github.com/plexus-chat/plexus/internal/flight"
)

// DefaultPort is the federation port used when discovery gives none
// (Server-Server API, "Resolving server names").
const DefaultPort = "8448"

// Cache lifetimes of /.well-known/matrix/server answers ("Resolving server
// names", step 3): the recommended default of 24 hours when the response
// has no cache headers, the recommended maximum of 48 hours, and an hour
// for errors. The floor keeps a "no-store" or "max-age=0" answer from
// costing a fetch before every request; Synapse uses the same five
// minutes.
const (
	wellKnownDefaultTTL = 24 * time.Hour
	wellKnownMaxTTL     = 48 * time.Hour
	wellKnownMinTTL     = 5 * time.Minute
	wellKnownErrorTTL   = time.Hour
	// wellKnownMaxRedirects bounds the redirects followed; loops are
	// refused outright ("redirection loops should be avoided").
	wellKnownMaxRedirects = 30
	// wellKnownMaxBody bounds the response: it holds one short string.
	wellKnownMaxBody = 64 << 10
	// targetTTL is how long a resolved target is reused before SRV
	// records are looked up again (never longer than the well-known
	// answer it came from). Go's resolver does not cache, and without
	// this every request would cost up to two SRV queries.
	targetTTL = 5 * time.Minute
	// cacheSweepSize is the cache size above which expired entries are
	// swept on insert, so that a stream of new names cannot grow it
	// without bound.
	cacheSweepSize = 1024
)

// Target is where requests for one server name go.
type Target struct {
	// Addrs are the host:port pairs to dial, in order of preference. A
	// host may be a DNS name, resolved with AAAA/A records when dialled.
	Addrs []string
	// Host is the Host header of requests.
	Host string
	// TLSName is what the server's certificate must be valid for: a DNS
	// name, or an IP address (then no SNI is sent, see "TLS").
	TLSName string
}

// LookupSRVFunc has the shape of (*net.Resolver).LookupSRV.
type LookupSRVFunc func(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)

// DialFunc has the shape of (*net.Dialer).DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

type wellKnownEntry struct {
	delegated string // "" when the fetch failed or the answer was invalid
	expires   time.Time
}

type targetEntry struct {
	target  Target
	expires time.Time
}

// resolver turns server names into Targets.
type resolver struct {
	override  map[string]string
	lookupSRV LookupSRVFunc
	wkClient  *http.Client
	timeout   time.Duration
	now       func() time.Time
	log       *slog.Logger

	wkFlight     flight.Group[wellKnownEntry]
	targetFlight flight.Group[Target]

	mu sync.Mutex // guards wellKnown and targets
	// wellKnown caches /.well-known/matrix/server per hostname.
	wellKnown map[string]wellKnownEntry
	// targets caches resolutions that needed a well-known fetch or an
	// SRV lookup.
	targets map[string]targetEntry
}

// splitServerName splits a server name into its host (IPv6 literals
// without their brackets) and port ("" if none).
func splitServerName(name string) (host, port string) {
	if strings.HasPrefix(name, "[") {
		end := strings.IndexByte(name, ']')
		if end < 0 {
			return name, ""
		}
		host, rest := name[1:end], name[end+1:]
		return host, strings.TrimPrefix(rest, ":")
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return name, ""
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// Resolve returns the target for a server name.
func (r *resolver) Resolve(ctx context.Context, name string) (Target, error) {
	if addr, ok := r.override[name]; ok {
		host, _ := splitServerName(name)
		return Target{Addrs: []string{addr}, Host: name, TLSName: host}, nil
	}
	if err := servername.Check(name); err != nil {
		return Target{}, fmt.Errorf("transport: bad server name %q: %w", name, err)
	}
	host, port := splitServerName(name)
	// Step 1: an IP literal, with its port or 8448; the certificate must
	// be valid for the IP and Host is the server name.
	if isIP(host) {
		return Target{Addrs: []string{net.JoinHostPort(host, orDefault(port))}, Host: name, TLSName: host}, nil
	}
	// Step 2: a hostname with an explicit port.
	if port != "" {
		return Target{Addrs: []string{net.JoinHostPort(host, port)}, Host: name, TLSName: host}, nil
	}
	if t, ok := r.cachedTarget(name); ok {
		return t, nil
	}
	// Concurrent requests to one name share one discovery, run apart
	// from any one caller's context so that a caller giving up does not
	// fail the others.
	return r.targetFlight.Do(ctx, name, func() (Target, error) {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		t, expires := r.discover(ctx, host)
		r.mu.Lock()
		if len(r.targets) > cacheSweepSize {
			now := r.now()
			for k, e := range r.targets {
				if !now.Before(e.expires) {
					delete(r.targets, k)
				}
			}
		}
		r.targets[name] = targetEntry{target: t, expires: expires}
		r.mu.Unlock()
		return t, nil
	})
}

func orDefault(port string) string {
	if port == "" {
		return DefaultPort
	}
	return port
}

func (r *resolver) cachedTarget(name string) (Target, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.targets[name]
	if !ok || !r.now().Before(e.expires) {
		return Target{}, false
	}
	return e.target, true
}

// discover runs steps 3 to 6 for a hostname without a port and returns
// the target and until when it may be reused.
func (r *resolver) discover(ctx context.Context, host string) (Target, time.Time) {
	expires := r.now().Add(targetTTL)
	wk := r.wellKnownFor(ctx, host)
	if wk.expires.Before(expires) {
		expires = wk.expires
	}
	if wk.delegated == "" {
		// Steps 4 to 6: SRV records of the hostname itself, else port
		// 8448; in every case the certificate must name <hostname>, not
		// the SRV target (DNS is insecure, so the target proves it is a
		// valid delegate through TLS).
		if addrs := r.srv(ctx, host); len(addrs) > 0 {
			return Target{Addrs: addrs, Host: host, TLSName: host}, expires
		}
		return Target{Addrs: []string{net.JoinHostPort(host, DefaultPort)}, Host: host, TLSName: host}, expires
	}
	dhost, dport := splitServerName(wk.delegated)
	switch {
	case isIP(dhost):
		// Step 3.1: the Host header carries the IP, with the port if one
		// was given.
		return Target{Addrs: []string{net.JoinHostPort(dhost, orDefault(dport))}, Host: wk.delegated, TLSName: dhost}, expires
	case dport != "":
		// Step 3.2.
		return Target{Addrs: []string{net.JoinHostPort(dhost, dport)}, Host: wk.delegated, TLSName: dhost}, expires
	}
	// Steps 3.3 to 3.5: SRV records of the delegated hostname, else 8448;
	// the certificate must name the delegated hostname.
	if addrs := r.srv(ctx, dhost); len(addrs) > 0 {
		return Target{Addrs: addrs, Host: dhost, TLSName: dhost}, expires
	}
	return Target{Addrs: []string{net.JoinHostPort(dhost, DefaultPort)}, Host: dhost, TLSName: dhost}, expires
}

// srv looks up _matrix-fed._tcp.<host>, then the deprecated
// _matrix._tcp.<host>, and returns the targets in the resolver's order
// (priority, then weighted random, RFC 2782). A lookup error counts as no
// record: discovery then falls back to port 8448.
func (r *resolver) srv(ctx context.Context, host string) []string {
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, recs, err := r.lookupSRV(ctx, service, "tcp", host)
		if err != nil {
			continue
		}
		var addrs []string
		for _, rec := range recs {
			target := strings.TrimSuffix(rec.Target, ".")
			// A single record with target "." means the service is
			// decidedly not available at this domain (RFC 2782).
			if target == "" {
				continue
			}
			addrs = append(addrs, net.JoinHostPort(target, strconv.Itoa(int(rec.Port))))
		}
		if len(addrs) > 0 {
			return addrs
		}
	}
	return nil
}

// wellKnownFor returns the cached or freshly fetched well-known answer.
func (r *resolver) wellKnownFor(ctx context.Context, host string) wellKnownEntry {
	r.mu.Lock()
	e, ok := r.wellKnown[host]
	r.mu.Unlock()
	if ok && r.now().Before(e.expires) {
		return e
	}
	e, _ = r.wkFlight.Do(ctx, host, func() (wellKnownEntry, error) {
		delegated, ttl, err := r.fetchWellKnown(ctx, host)
		if err != nil {
			r.log.Debug("no usable /.well-known/matrix/server", "host", host, "err", err)
		}
		e := wellKnownEntry{delegated: delegated, expires: r.now().Add(ttl)}
		r.mu.Lock()
		if len(r.wellKnown) > cacheSweepSize {
			now := r.now()
			for k, old := range r.wellKnown {
				if !now.Before(old.expires) {
					delete(r.wellKnown, k)
				}
			}
		}
		r.wellKnown[host] = e
		r.mu.Unlock()
		return e, nil
	})
	return e
}

// fetchWellKnown GETs https://<host>/.well-known/matrix/server and returns
// the m.server value and how long to cache the answer. Any failure (no
// answer, a status other than 200, bad JSON, a missing or invalid m.server)
// is an error, cached for wellKnownErrorTTL.
func (r *resolver) fetchWellKnown(ctx context.Context, host string) (string, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/.well-known/matrix/server", nil)
	if err != nil {
		return "", wellKnownErrorTTL, err
	}
	res, err := r.wkClient.Do(req)
	if err != nil {
		return "", wellKnownErrorTTL, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", wellKnownErrorTTL, fmt.Errorf("status %d", res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, wellKnownMaxBody+1))
	if err != nil {
		return "", wellKnownErrorTTL, err
	}
	if len(body) > wellKnownMaxBody {
		return "", wellKnownErrorTTL, errors.New("response too large")
	}
	// The body is JSON whatever its Content-Type says (the endpoint's
	// description in the spec).
	var doc struct {
		Server *string `json:"m.server"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", wellKnownErrorTTL, fmt.Errorf("bad JSON: %w", err)
	}
	if doc.Server == nil {
		return "", wellKnownErrorTTL, errors.New("no m.server")
	}
	if err := servername.Check(*doc.Server); err != nil {
		return "", wellKnownErrorTTL, fmt.Errorf("bad m.server %q: %w", *doc.Server, err)
	}
	return *doc.Server, cacheTTL(res.Header, r.now()), nil
}

// cacheTTL reads Cache-Control max-age (or no-store/no-cache) and Expires,
// defaulting to 24 hours and clamped to [wellKnownMinTTL, wellKnownMaxTTL].
func cacheTTL(h http.Header, now time.Time) time.Duration {
	ttl, found := time.Duration(0), false
	for _, cc := range h.Values("Cache-Control") {
		for _, d := range strings.Split(cc, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store" || d == "no-cache":
				ttl, found = 0, true
			case strings.HasPrefix(d, "max-age="):
				if n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64); err == nil && !found {
					ttl, found = time.Duration(min(n, int64(wellKnownMaxTTL/time.Second)))*time.Second, true
				}
			}
		}
	}
	if !found {
		if exp := h.Get("Expires"); exp != "" {
			found = true
			if t, err := http.ParseTime(exp); err == nil {
				base := now
				if d, err := http.ParseTime(h.Get("Date")); err == nil {
					base = d
				}
				ttl = t.Sub(base)
			}
		}
	}
	if !found {
		ttl = wellKnownDefaultTTL
	}
	return max(wellKnownMinTTL, min(ttl, wellKnownMaxTTL))
}

// newWellKnownClient returns the HTTP client for well-known fetches:
// normal certificate validation against the hostname, bounded redirects,
// https only.
func newWellKnownClient(tr *http.Transport, timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= wellKnownMaxRedirects {
				return fmt.Errorf("more than %d redirects", wellKnownMaxRedirects)
			}
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to non-https %s", req.URL.Redacted())
			}
			for _, v := range via {
				if v.URL.String() == req.URL.String() {
					return fmt.Errorf("redirect loop at %s", req.URL.Redacted())
				}
			}
			return nil
		},
	}
}
