package federation

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/internal/tlscert"
	"github.com/plexus-chat/plexus/rooms"
)

// This file is the in-process harness of the inbound tests: our server
// (hs1.test) is a real Federation over real storage, served over HTTPS
// on loopback, and the other servers are peers: a signing key, an HTTPS
// listener that publishes the key and answers (or refuses, or hangs on)
// whatever a test wants, a rooms.Service holding the peer's copy of the
// room that builds and signs its events, and a transport.Client that
// signs requests to us as the peer.

const (
	usName    = "hs1.test"
	alice     = "@alice:" + usName
	testKeyID = "ed25519:t"
)

// keyOf is a test server's deterministic signing key.
func keyOf(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("inbound " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// staticKeys is the peers' KeyFinder: every test server's key is known.
func staticKeys(server rooms.ServerName, keyID string) (rooms.VerifyKey, bool) {
	if keyID != testKeyID {
		return rooms.VerifyKey{}, false
	}
	return rooms.VerifyKey{Key: keyOf(string(server)).Public().(ed25519.PublicKey), ValidUntilTS: 1<<53 - 1}, true
}

// onBackends runs f on each storage backend.
func onBackends(t *testing.T, f func(t *testing.T, backend string)) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Setenv(storagetest.EnvPostgres, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

// holdListener accepts connections and, while holding, keeps them open
// without ever serving them: a server that accepts TCP and never answers.
type holdListener struct {
	net.Listener
	held chan struct{} // one value (best effort) per held connection

	mu   sync.Mutex // guards hold and conns
	hold bool
	// conns are the held connections, closed with the listener.
	conns []net.Conn
}

func (l *holdListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if !l.hold {
			l.mu.Unlock()
			return c, nil
		}
		l.conns = append(l.conns, c)
		l.mu.Unlock()
		select {
		case l.held <- struct{}{}:
		default:
		}
	}
}

func (l *holdListener) Close() error {
	l.mu.Lock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
	l.mu.Unlock()
	return l.Listener.Close()
}

// peer is another homeserver, scripted by the test.
type peer struct {
	t      *testing.T
	name   string
	key    ed25519.PrivateKey
	pem    []byte
	ln     *holdListener
	srv    *http.Server
	db     *storage.DB
	svc    *rooms.Service
	client *transport.Client
	// synced is how much of the env's room history the peer's copy holds.
	synced int

	mu sync.Mutex // guards the fields below
	// override, if set, answers a request before the defaults; it
	// returns false to leave the request to them.
	override func(w http.ResponseWriter, r *http.Request) bool
	// sent are the transaction bodies we sent to the peer.
	sent [][]byte
}

func newPeer(t *testing.T, name string) *peer {
	t.Helper()
	p := &peer{t: t, name: name, key: keyOf(name)}
	cert, err := tlscert.Load(tlscert.Config{DataDir: t.TempDir(), Hosts: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	if p.pem, err = os.ReadFile(cert.CertPath); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.ln = &holdListener{Listener: l, held: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/key/v2/server", p.serveKey)
	mux.HandleFunc("PUT /_matrix/federation/v1/send/{txnId}", p.serveSend)
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.mu.Lock()
			o := p.override
			p.mu.Unlock()
			if o != nil && o(w, r) {
				return
			}
			mux.ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.Certificate}, MinVersion: tls.VersionTLS12},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.srv.ServeTLS(p.ln, "", "")
	}()
	t.Cleanup(func() {
		p.srv.Close()
		<-done
	})

	// The peer's copy of the room; SQLite is enough for a peer.
	_, dir := storagetest.Fresh(t, storagetest.SQLite)
	if p.db, err = storage.Open(context.Background(), "", dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.db.Close() })
	p.svc, err = rooms.New(rooms.Config{Signer: rooms.Signer{Server: rooms.ServerName(name), KeyID: testKeyID, Key: p.key}},
		rooms.Deps{Store: p.db, Keys: staticKeys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.svc.Close() })
	return p
}

func (p *peer) addr() string { return p.ln.Addr().String() }

// user is the peer's user in the room.
func (p *peer) user() rooms.UserID { return rooms.UserID("@u:" + p.name) }

// setOverride installs (or, with nil, removes) a scripted answer.
func (p *peer) setOverride(o func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	p.override = o
	p.mu.Unlock()
}

// sentBodies returns the transactions we sent to the peer.
func (p *peer) sentBodies() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.sent...)
}

// holdConnections makes the peer accept TCP and never answer: new
// connections are held unserved and idle ones are closed, so that the
// next request has to connect again.
func (p *peer) holdConnections() {
	p.ln.mu.Lock()
	p.ln.hold = true
	p.ln.mu.Unlock()
	p.srv.SetKeepAlivesEnabled(false)
}

func (p *peer) serveKey(w http.ResponseWriter, _ *http.Request) {
	obj := cjson.Obj(
		cjson.M("server_name", cjson.Str(p.name)),
		cjson.M("verify_keys", cjson.Obj(cjson.M(testKeyID,
			cjson.Obj(cjson.M("key", cjson.Str(base64.RawStdEncoding.EncodeToString(p.key.Public().(ed25519.PublicKey)))))))),
		cjson.M("old_verify_keys", cjson.Obj()),
		cjson.M("valid_until_ts", cjson.Integer(time.Now().Add(24*time.Hour).UnixMilli())),
	)
	signed, err := signing.Sign(obj, p.name, testKeyID, p.key)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, cjson.Marshal(signed))
}

func (p *peer) serveSend(w http.ResponseWriter, r *http.Request) {
	var body json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		server.WriteError(w, mxerr.NotJSON("bad body"))
		return
	}
	p.mu.Lock()
	p.sent = append(p.sent, body)
	p.mu.Unlock()
	server.WriteJSON(w, http.StatusOK, map[string]any{"pdus": map[string]any{}})
}

// refuse is an override refusing every federation request but /send.
func refuse(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPut {
		return false
	}
	if len(r.URL.Path) > len("/_matrix/federation/") && r.URL.Path[:len("/_matrix/federation/")] == "/_matrix/federation/" {
		server.WriteError(w, mxerr.Forbidden("not telling"))
		return true
	}
	return false
}

// hangOn is an override that holds requests to paths with one of the
// prefixes until the request is cancelled or release is closed; entered
// gets a value (best effort) as each arrives.
func hangOn(entered chan<- string, release <-chan struct{}, prefixes ...string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		for _, pre := range prefixes {
			if len(r.URL.Path) >= len(pre) && r.URL.Path[:len(pre)] == pre {
				select {
				case entered <- r.URL.Path:
				default:
				}
				select {
				case <-r.Context().Done():
				case <-release:
					server.WriteError(w, mxerr.Forbidden("gave up"))
				}
				return true
			}
		}
		return false
	}
}

// nopLocal is a client side with no users, aliases or media.
type nopLocal struct{}

func (nopLocal) ResolveAlias(context.Context, string) (string, error) {
	return "", mxerr.NotFound("no aliases")
}
func (nopLocal) Profile(context.Context, string) (map[string]json.RawMessage, error) {
	return nil, mxerr.NotFound("no users")
}
func (nopLocal) PublicRooms(context.Context, fedlocal.PublicRoomsQuery) (json.RawMessage, error) {
	return json.RawMessage(`{"chunk":[]}`), nil
}
func (nopLocal) UserDevices(context.Context, string) (json.RawMessage, error) {
	return nil, mxerr.NotFound("no users")
}
func (nopLocal) QueryKeys(context.Context, map[string][]string) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}
func (nopLocal) ClaimKeys(context.Context, map[string]map[string]string) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}
func (nopLocal) OpenIDUser(context.Context, string) (string, error) {
	return "", mxerr.UnknownToken("no tokens")
}
func (nopLocal) Media(context.Context, fedlocal.MediaQuery) (*fedlocal.MediaFile, error) {
	return nil, mxerr.NotFound("no media")
}

// eduLog records the EDUs federation delivers.
type eduLog struct {
	mu  sync.Mutex // guards got
	got []string   // "origin type"
}

func (l *eduLog) HandleEDU(_ context.Context, origin, eduType string, _ []byte) error {
	l.mu.Lock()
	l.got = append(l.got, origin+" "+eduType)
	l.mu.Unlock()
	return nil
}

func (l *eduLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got)
}

// env is our server and its peers, sharing one room created by alice.
type env struct {
	t     *testing.T
	db    *storage.DB
	svc   *rooms.Service
	fed   *Federation
	addr  string
	edus  *eduLog
	peers map[string]*peer
	// roots trusts our certificate.
	roots *x509.CertPool
	room  rooms.RoomID
	// history is the room's events as we stored them, in order.
	history [][]byte
}

// envOptions tune an env.
type envOptions struct {
	// requestTimeout bounds our outbound requests (default 2 s: the
	// tests of hanging peers wait for it).
	requestTimeout time.Duration
}

// newEnv starts our server with the named peers, each with a user joined
// to alice's room.
func newEnv(t *testing.T, backend string, opts envOptions, peerNames ...string) *env {
	t.Helper()
	ctx := context.Background()
	if opts.requestTimeout == 0 {
		opts.requestTimeout = 2 * time.Second
	}
	e := &env{t: t, edus: &eduLog{}, peers: map[string]*peer{}}
	roots := x509.NewCertPool()
	resolve := map[string]string{}
	for _, n := range peerNames {
		p := newPeer(t, n)
		e.peers[n] = p
		roots.AppendCertsFromPEM(p.pem)
		resolve[n] = p.addr()
	}

	dsn, dir := storagetest.Fresh(t, backend)
	db, err := storage.Open(ctx, dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db = db
	fed, err := New(Config{
		ServerName: usName, KeyID: testKeyID, Key: keyOf(usName),
		Resolve: resolve, RootCAs: roots, RequestTimeout: opts.requestTimeout,
	}, Deps{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fed.Close() })
	e.fed = fed
	svc, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: usName, KeyID: testKeyID, Key: keyOf(usName)}},
		rooms.Deps{Store: db, Keys: fed.KeyFinder(), Listener: fed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	e.svc = svc
	fed.SetRooms(svc)
	fed.SetLocal(nopLocal{}, e.edus)

	cert, err := tlscert.Load(tlscert.Config{DataDir: t.TempDir(), Hosts: []string{usName}})
	if err != nil {
		t.Fatal(err)
	}
	ourPEM, err := os.ReadFile(cert.CertPath)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Listen: "127.0.0.1:0",
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert.Certificate}, MinVersion: tls.VersionTLS12},
	}, server.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fed.Register(srv); err != nil {
		t.Fatal(err)
	}
	if err := fed.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e.addr = srv.Addr().String()

	ourRoots := x509.NewCertPool()
	ourRoots.AppendCertsFromPEM(ourPEM)
	e.roots = ourRoots
	for _, p := range e.peers {
		p.client, err = transport.NewClient(transport.Config{
			ServerName: p.name, KeyID: testKeyID, Key: p.key,
			Resolve: map[string]string{usName: e.addr}, RootCAs: ourRoots,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.client.Close() })
	}

	create, err := svc.Create(ctx, "", alice, cjson.NullValue())
	if err != nil {
		t.Fatal(err)
	}
	e.room = create.Event.RoomID()
	e.history = append(e.history, create.Event.JSON())
	e.appendState("m.room.member", alice, `{"membership":"join"}`)
	e.appendState("m.room.power_levels", "", `{"users":{}}`)
	e.appendState("m.room.join_rules", "", `{"join_rule":"public"}`)
	e.appendState("m.room.history_visibility", "", `{"history_visibility":"shared"}`)
	for _, n := range peerNames {
		e.join(e.peers[n])
	}
	return e
}

func (e *env) append(typ string, stateKey *string, content string) *rooms.Stored {
	e.t.Helper()
	c, err := cjson.Parse([]byte(content))
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := e.svc.Append(context.Background(), e.room, rooms.LocalEvent{Type: typ, StateKey: stateKey, Sender: alice, Content: c})
	if err != nil {
		e.t.Fatalf("append %s: %v", typ, err)
	}
	e.history = append(e.history, st.Event.JSON())
	return st
}

func (e *env) appendState(typ, stateKey, content string) *rooms.Stored {
	e.t.Helper()
	return e.append(typ, &stateKey, content)
}

// sync gives the peer's copy of the room every event we stored.
func (e *env) sync(p *peer) {
	e.t.Helper()
	ctx := context.Background()
	if p.synced == 0 {
		if _, err := p.svc.Begin(ctx, e.history[0]); err != nil {
			e.t.Fatal(err)
		}
		p.synced = 1
	}
	if p.synced == len(e.history) {
		return
	}
	res, err := p.svc.AdmitMany(ctx, e.room, e.history[p.synced:])
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.Rejected != "" || r.SoftFailed || len(r.MissingPrevs) > 0 {
			e.t.Fatalf("%s admitting our events: %v %+v", p.name, r.Err, r.Admitted)
		}
	}
	p.synced = len(e.history)
}

// join makes the peer's user join the room: the peer builds the join on
// its copy and we admit it straight into our room service (the setup, not
// what the tests test).
func (e *env) join(p *peer) {
	e.t.Helper()
	e.sync(p)
	join := e.build(p, "m.room.member", ptr(string(p.user())), `{"membership":"join"}`)
	adm, err := e.svc.Admit(context.Background(), e.room, join.Event.JSON())
	if err != nil || adm.Rejected != "" || adm.SoftFailed || len(adm.MissingPrevs) > 0 {
		e.t.Fatalf("admitting %s's join: %v %+v", p.name, err, adm)
	}
	e.history = append(e.history, join.Event.JSON())
	p.synced = len(e.history)
}

// build makes an event of the peer's user on the peer's copy of the room
// (which must be synced for the event to cite our latest events). It is
// not sent anywhere.
func (e *env) build(p *peer, typ string, stateKey *string, content string) *rooms.Stored {
	e.t.Helper()
	c, err := cjson.Parse([]byte(content))
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := p.svc.Append(context.Background(), e.room, rooms.LocalEvent{Type: typ, StateKey: stateKey, Sender: p.user(), Content: c})
	if err != nil {
		e.t.Fatalf("%s building %s: %v", p.name, typ, err)
	}
	return st
}

// message builds a message of the peer's user.
func (e *env) message(p *peer, body string) *rooms.Stored {
	e.t.Helper()
	return e.build(p, "m.room.message", nil, `{"msgtype":"m.text","body":"`+body+`"}`)
}

func ptr[T any](v T) *T { return &v }

// txnResponse is the answer to PUT /send.
type txnResponse struct {
	PDUs map[string]struct {
		Error *string `json:"error"`
	} `json:"pdus"`
}

// send PUTs a transaction as the peer and returns the raw answer, or the
// *transport.RemoteError.
func (e *env) send(ctx context.Context, p *peer, txnID string, body any) (json.RawMessage, error) {
	var out json.RawMessage
	err := p.client.Do(ctx, usName, http.MethodPut, "/_matrix/federation/v1/send/"+txnID, body, &out)
	return out, err
}

// txn is a well-formed transaction body from the peer.
func txn(p *peer, pdus []json.RawMessage, edus []map[string]any) map[string]any {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	b := map[string]any{"origin": p.name, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus}
	if edus != nil {
		b["edus"] = edus
	}
	return b
}

// wantMatrixError checks err is a remote Matrix error with the status and
// errcode.
func wantMatrixError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var re *transport.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want %d %s", err, status, code)
	}
	if re.Status != status || re.ErrCode != code {
		t.Fatalf("got %d %s (%s), want %d %s", re.Status, re.ErrCode, re.Body, status, code)
	}
}

// eventCount is how many events of the room we store, in any form.
func (e *env) eventCount() int {
	e.t.Helper()
	var n int
	err := e.db.View(context.Background(), func(tx *storage.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT COUNT(*) FROM events WHERE room_id = ?`, string(e.room)).Scan(&n)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// stored returns our record of an event, or nil.
func (e *env) stored(id rooms.EventID) *storage.EventRecord {
	e.t.Helper()
	recs, err := e.db.Events(context.Background(), []string{string(id)})
	if err != nil {
		e.t.Fatal(err)
	}
	return recs[string(id)]
}

// recordedTxn reports whether a received transaction was recorded as
// processed.
func (e *env) recordedTxn(origin, txnID string) bool {
	e.t.Helper()
	var n int
	err := e.db.View(context.Background(), func(tx *storage.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT COUNT(*) FROM fed_received_txns WHERE origin = ? AND txn_id = ?`, origin, txnID).Scan(&n)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return n > 0
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}
