package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/internal/tlscert"
)

// onBackends runs f once per storage backend.
func onBackends(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// world is a set of servers on loopback, each with its own certificate
// for its name, trusted by every client of the world.
type world struct {
	t       *testing.T
	backend string
	clock   *clock
	pool    *x509.CertPool
	nodes   map[string]*node
}

type node struct {
	name  string
	keyID string
	key   ed25519.PrivateKey
	mux   *http.ServeMux
	addr  string
	keys  *Keys // nil for fake servers
	db    *storage.DB
	cli   *transport.Client
}

func newWorld(t *testing.T, backend string) *world {
	return &world{t: t, backend: backend, clock: &clock{t: time.UnixMilli(1_700_000_000_000)}, pool: x509.NewCertPool(), nodes: map[string]*node{}}
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// listen starts name's TLS listener with an empty mux.
func (w *world) listen(name string) *node {
	t := w.t
	t.Helper()
	c, err := tlscert.Load(tlscert.Config{DataDir: t.TempDir(), Hosts: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	w.pool.AddCert(c.Leaf)
	n := &node{name: name, keyID: "ed25519:" + name + "_1", key: newKey(t), mux: http.NewServeMux()}
	s := httptest.NewUnstartedServer(n.mux)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{c.Certificate}}
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	n.addr = s.Listener.Addr().String()
	w.nodes[name] = n
	return n
}

// resolveAll maps every node's name to its address, except the names in
// offline, which go to a port nothing listens on.
func (w *world) resolveAll(offline ...string) map[string]string {
	m := map[string]string{}
	for name, n := range w.nodes {
		m[name] = n.addr
	}
	if len(offline) > 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			w.t.Fatal(err)
		}
		dead := l.Addr().String()
		l.Close()
		for _, name := range offline {
			m[name] = dead
		}
	}
	return m
}

// start gives n a database, a client and Keys, and registers the key
// endpoints. Call it after every node listens.
func (w *world) start(n *node, trusted []string, offline ...string) {
	t := w.t
	t.Helper()
	dsn, dir := storagetest.Fresh(t, w.backend)
	db, err := storage.Open(context.Background(), dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	n.db = db
	cli, err := transport.NewClient(transport.Config{
		ServerName: n.name, KeyID: n.keyID, Key: n.key,
		Resolve: w.resolveAll(offline...), RootCAs: w.pool, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	n.cli = cli
	n.keys = w.newKeys(n, trusted)
	n.keys.Register(n.mux)
}

// newKeys makes (another) Keys for n over n's database and client.
func (w *world) newKeys(n *node, trusted []string) *Keys {
	w.t.Helper()
	k, err := New(Config{ServerName: n.name, KeyID: n.keyID, Key: n.key, TrustedServers: trusted, Now: w.clock.now}, n.db, n.cli, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { k.Close() })
	return k
}

// fakeOrigin serves GET /_matrix/key/v2/server from whatever body()
// returns, counting requests; while offline it answers 503.
type fakeOrigin struct {
	*node
	requests atomic.Int64
	mu       sync.Mutex // guards body, offline and gate
	body     []byte
	offline  bool
	gate     chan struct{} // when set, requests wait for it to close
}

func (w *world) fakeOrigin(name string) *fakeOrigin {
	o := &fakeOrigin{node: w.listen(name)}
	o.mux.HandleFunc("GET /_matrix/key/v2/server", func(rw http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		o.mu.Lock()
		body, offline, gate := o.body, o.offline, o.gate
		o.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		if offline {
			server.WriteJSON(rw, http.StatusServiceUnavailable, map[string]string{"errcode": "M_UNKNOWN", "error": "down"})
			return
		}
		server.WriteRawJSON(rw, http.StatusOK, body)
	})
	return o
}

func (o *fakeOrigin) serve(b []byte) {
	o.mu.Lock()
	o.body = b
	o.mu.Unlock()
}

// response is a key response under construction.
type response struct {
	server     string
	validUntil int64
	verify     map[string]ed25519.PublicKey
	old        map[string]oldKey
}

func (r response) value() cjson.Value {
	vk := []cjson.Member{}
	for id, k := range r.verify {
		vk = append(vk, cjson.M(id, cjson.Obj(cjson.M("key", cjson.Str(base64.RawStdEncoding.EncodeToString(k))))))
	}
	ok := []cjson.Member{}
	for id, o := range r.old {
		ok = append(ok, cjson.M(id, cjson.Obj(
			cjson.M("key", cjson.Str(base64.RawStdEncoding.EncodeToString(o.key))),
			cjson.M("expired_ts", cjson.Integer(o.expiredTS)))))
	}
	return cjson.Obj(
		cjson.M("server_name", cjson.Str(r.server)),
		cjson.M("valid_until_ts", cjson.Integer(r.validUntil)),
		cjson.M("verify_keys", cjson.Obj(vk...)),
		cjson.M("old_verify_keys", cjson.Obj(ok...)),
	)
}

// signed returns the response signed by signer with keyID.
func (r response) signed(t *testing.T, signer, keyID string, priv ed25519.PrivateKey) []byte {
	t.Helper()
	v, err := signing.Sign(r.value(), signer, keyID, priv)
	if err != nil {
		t.Fatal(err)
	}
	return cjson.Marshal(v)
}

// standard makes o serve its key, valid for validFor, self-signed.
func (o *fakeOrigin) standard(t *testing.T, now time.Time, validFor time.Duration) {
	o.serve(response{
		server: o.name, validUntil: now.Add(validFor).UnixMilli(),
		verify: map[string]ed25519.PublicKey{o.keyID: o.key.Public().(ed25519.PublicKey)},
	}.signed(t, o.name, o.keyID, o.key))
}

// rowCount counts server_keys rows of server.
func rowCount(t *testing.T, db *storage.DB, server string) int {
	t.Helper()
	var n int
	err := db.View(context.Background(), func(tx *storage.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT COUNT(*) FROM server_keys WHERE server_name = ?`, server).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// signValue signs v and returns its canonical bytes.
func signValue(v cjson.Value, signer, keyID string, priv ed25519.PrivateKey) ([]byte, error) {
	signed, err := signing.Sign(v, signer, keyID, priv)
	if err != nil {
		return nil, err
	}
	return cjson.Marshal(signed), nil
}

func cjsonSign(v cjson.Value, signer, keyID string, priv ed25519.PrivateKey) (cjson.Value, error) {
	return signing.Sign(v, signer, keyID, priv)
}

func verifyWith(v cjson.Value, entity, keyID string, pub ed25519.PublicKey) error {
	return signing.Verify(v, entity, keyID, pub)
}

func b64(pub ed25519.PublicKey) string { return base64.RawStdEncoding.EncodeToString(pub) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// serveOwnKey serves n's key response (valid for a day) without the rest
// of Keys, for fake notaries.
func (w *world) serveOwnKey(n *node) {
	n.mux.HandleFunc("GET /_matrix/key/v2/server", func(rw http.ResponseWriter, _ *http.Request) {
		b, err := signValue(response{server: n.name, validUntil: w.clock.now().Add(24 * time.Hour).UnixMilli(),
			verify: map[string]ed25519.PublicKey{n.keyID: n.key.Public().(ed25519.PublicKey)}}.value(), n.name, n.keyID, n.key)
		if err != nil {
			w.t.Error(err)
		}
		server.WriteRawJSON(rw, http.StatusOK, b)
	})
}
