package transport

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/servername"
)

// DefaultTimeout bounds one request, from resolution to the last byte of
// the response, when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// MaxResponseBody bounds a response body. The largest legitimate answers
// (a /state or /send_join of a big room) run to tens of megabytes.
const MaxResponseBody = 64 << 20

// maxErrorBody bounds what is kept of a non-2xx answer.
const maxErrorBody = 64 << 10

// Config configures a Client.
type Config struct {
	// ServerName is our server name: the origin of every request.
	ServerName string
	// KeyID and Key sign requests.
	KeyID string
	Key   ed25519.PrivateKey
	// Resolve sends traffic for a server name straight to "host:port"
	// without discovery; the certificate must then be valid for the
	// server name's host.
	Resolve map[string]string
	// RootCAs are the CAs trusted for outbound TLS; nil is the system
	// pool.
	RootCAs *x509.CertPool
	// Insecure skips certificate checks, for private test federations
	// only.
	Insecure bool
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
	// Logger receives the client's warnings; nil discards them.
	Logger *slog.Logger

	// LookupSRV and Dial replace DNS SRV lookups and TCP dials (every
	// connection, well-known fetches included), so tests can run each
	// discovery branch on loopback. Nil means the system's.
	LookupSRV LookupSRVFunc
	Dial      DialFunc
	// Now is the clock for the discovery caches; nil means time.Now.
	Now func() time.Time
}

// RemoteError is a non-2xx answer from another server.
type RemoteError struct {
	// Status is the HTTP status.
	Status int
	// ErrCode and Message are the standard error body's errcode and
	// error, when the body was one.
	ErrCode, Message string
	// Body is the answer as received (at most 64 KiB of it).
	Body []byte
}

func (e *RemoteError) Error() string {
	if e.ErrCode != "" {
		return fmt.Sprintf("remote server answered HTTP %d %s: %s", e.Status, e.ErrCode, e.Message)
	}
	return fmt.Sprintf("remote server answered HTTP %d", e.Status)
}

// Client makes requests to other homeservers. It is safe for concurrent
// use; requests to different destinations never wait for each other.
type Client struct {
	serverName string
	keyID      string
	key        ed25519.PrivateKey
	timeout    time.Duration
	tlsConfig  *tls.Config // base config; ServerName is set per connection
	dial       DialFunc
	res        *resolver
	fed        *http.Client
	wk         *http.Client

	closeOnce sync.Once
}

// NewClient returns a Client.
func NewClient(cfg Config) (*Client, error) {
	if err := servername.CheckOwn(cfg.ServerName); err != nil {
		return nil, fmt.Errorf("transport: server name: %w", err)
	}
	if cfg.KeyID == "" || len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("transport: signing key not set")
	}
	for name, addr := range cfg.Resolve {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("transport: resolve %s=%s: want host:port: %w", name, addr, err)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext
	}
	if cfg.LookupSRV == nil {
		cfg.LookupSRV = net.DefaultResolver.LookupSRV
	}
	if cfg.Insecure {
		log.Warn("federation: TLS certificates of other servers are NOT checked (insecure mode); " +
			"anyone on the network path can impersonate them. Use this only for private test federations.")
	}
	override := make(map[string]string, len(cfg.Resolve))
	for k, v := range cfg.Resolve {
		override[k] = v
	}
	c := &Client{
		serverName: cfg.ServerName,
		keyID:      cfg.KeyID,
		key:        cfg.Key,
		timeout:    cfg.Timeout,
		tlsConfig: &tls.Config{
			RootCAs:            cfg.RootCAs,
			InsecureSkipVerify: cfg.Insecure, // the operator's explicit choice, logged above
			MinVersion:         tls.VersionTLS12,
			NextProtos:         []string{"h2", "http/1.1"},
		},
		dial: cfg.Dial,
	}
	c.fed = &http.Client{
		Transport: &http.Transport{
			DialTLSContext:      c.dialTLS,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     90 * time.Second,
		},
		// Federation endpoints do not redirect; following one would
		// resend a signed request somewhere it was not meant for.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.wk = newWellKnownClient(&http.Transport{
		DialContext:         cfg.Dial,
		TLSClientConfig:     &tls.Config{RootCAs: cfg.RootCAs, InsecureSkipVerify: cfg.Insecure, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
	}, cfg.Timeout)
	c.res = &resolver{
		override:  override,
		lookupSRV: cfg.LookupSRV,
		wkClient:  c.wk,
		timeout:   cfg.Timeout,
		now:       cfg.Now,
		log:       log,
		wellKnown: map[string]wellKnownEntry{},
		targets:   map[string]targetEntry{},
	}
	return c, nil
}

// Close waits for discoveries in progress and closes idle connections.
// Requests still running are not interrupted; cancel their contexts.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.res.targetFlight.Wait()
		c.res.wkFlight.Wait()
		c.fed.CloseIdleConnections()
		c.wk.CloseIdleConnections()
	})
	return nil
}

// ServerName is the origin this Client signs as.
func (c *Client) ServerName() string { return c.serverName }

// Resolve returns where requests for destination go.
func (c *Client) Resolve(ctx context.Context, destination string) (Target, error) {
	return c.res.Resolve(ctx, destination)
}

// poolKey encodes a target as the host of the request URL. The transport
// pools connections by that host, and dialTLS decodes it back: keying by
// certificate name and addresses together keeps a connection checked for
// one name from serving another.
var poolKeyEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

func poolKey(t Target) string {
	raw := t.TLSName + "\x00" + strings.Join(t.Addrs, "\x00")
	return strings.ToLower(poolKeyEncoding.EncodeToString([]byte(raw))) + ".fed.invalid"
}

func parsePoolKey(host string) (Target, error) {
	enc, ok := strings.CutSuffix(host, ".fed.invalid")
	if !ok {
		return Target{}, fmt.Errorf("transport: unexpected dial to %q", host)
	}
	raw, err := poolKeyEncoding.DecodeString(strings.ToUpper(enc))
	if err != nil {
		return Target{}, fmt.Errorf("transport: bad pool key: %w", err)
	}
	parts := strings.Split(string(raw), "\x00")
	return Target{TLSName: parts[0], Addrs: parts[1:]}, nil
}

// dialTLS connects to the first of the target's addresses that answers and
// completes a TLS handshake checking the certificate against TLSName.
func (c *Client) dialTLS(ctx context.Context, _, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	t, err := parsePoolKey(host)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cfg := c.tlsConfig.Clone()
	cfg.ServerName = t.TLSName // Go sends no SNI when this is an IP ("TLS")
	var errs []error
	for _, a := range t.Addrs {
		raw, err := c.dial(ctx, "tcp", a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			errs = append(errs, fmt.Errorf("TLS with %s (%s): %w", a, t.TLSName, err))
			continue
		}
		return conn, nil
	}
	return nil, errors.Join(errs...)
}

// Do sends a signed request to destination and decodes a 2xx answer
// into out. path is the path and query, starting "/_matrix/". body is
// encoded as JSON unless it is a json.RawMessage or []byte, which are sent
// as they are; nil sends no body. out nil discards the answer; a
// *json.RawMessage receives the raw bytes. A non-2xx answer is a
// *RemoteError.
func (c *Client) Do(ctx context.Context, destination, method, path string, body, out any) error {
	return c.do(ctx, destination, method, path, body, out, true)
}

// GetUnsigned GETs path from destination without an Authorization header,
// for the endpoints that need none (server keys, version).
func (c *Client) GetUnsigned(ctx context.Context, destination, path string, out any) error {
	return c.do(ctx, destination, http.MethodGet, path, nil, out, false)
}

func (c *Client) do(ctx context.Context, destination, method, path string, body, out any, sign bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("transport: path %q must start with /", path)
	}
	var payload []byte
	switch b := body.(type) {
	case nil:
	case json.RawMessage:
		payload = b
	case []byte:
		payload = b
	default:
		var err error
		if payload, err = json.Marshal(b); err != nil {
			return fmt.Errorf("transport: encoding body: %w", err)
		}
	}
	target, err := c.res.Resolve(ctx, destination)
	if err != nil {
		return err
	}
	u, err := url.Parse(path)
	if err != nil {
		return fmt.Errorf("transport: bad path %q: %w", path, err)
	}
	u.Scheme, u.Host = "https", poolKey(target)
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	req.Host = target.Host
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if sign {
		// The signed URI is exactly what goes on the request line.
		auth, err := SignRequest(c.serverName, destination, c.keyID, c.key, method, req.URL.RequestURI(), payload)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", auth)
	}
	res, err := c.fed.Do(req)
	if err != nil {
		return fmt.Errorf("transport: %s %s to %s: %w", method, path, destination, unwrapURLError(err))
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
		re := &RemoteError{Status: res.StatusCode, Body: b}
		var eb struct {
			ErrCode string `json:"errcode"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(b, &eb) == nil {
			re.ErrCode, re.Message = eb.ErrCode, eb.Error
		}
		return re
	}
	if out == nil {
		_, err := io.Copy(io.Discard, io.LimitReader(res.Body, MaxResponseBody))
		return err
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, MaxResponseBody+1))
	if err != nil {
		return fmt.Errorf("transport: reading answer of %s: %w", destination, err)
	}
	if len(b) > MaxResponseBody {
		return fmt.Errorf("transport: answer of %s larger than %d bytes", destination, MaxResponseBody)
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = b
		return nil
	}
	if v, ok := out.(*cjson.Value); ok {
		parsed, err := cjson.Parse(b)
		if err != nil {
			return fmt.Errorf("transport: answer of %s: %w", destination, err)
		}
		*v = parsed
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("transport: answer of %s: %w", destination, err)
	}
	return nil
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the
// pool key standing in for the host.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
