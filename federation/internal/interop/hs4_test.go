package interop

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/plexus-chat/plexus/internal/fedtest"
	"github.com/plexus-chat/plexus/internal/tlscert"
)

// hs4Name is the foreign server's name in the federation tests against
// real Plexus processes.
const hs4Name = "hs4"

// hs4 is a foreign homeserver beside a federation of real Plexus
// processes: gomatrixserverlib builds and signs its events and requests
// and checks everything Plexus sends it, and an in-test HTTPS server on
// loopback, with a certificate for "hs4" that the Plexus servers trust
// (fedtest.Options.ExtraPEM), publishes its key at /_matrix/key/v2/server
// and receives their transactions. The Plexus servers reach it through
// --federation-resolve hs4=host:port (fedtest.Options.Extra).
//
// It keeps its own copy of the room as a real server would: the state and
// auth chain of the send_join answer and every PDU it receives.
type hs4 struct {
	foreign *foreignServer
	srv     *httptest.Server
	pem     []byte
	// keys is gomatrixserverlib's KeyRing over the Plexus servers' keys,
	// fetched over HTTPS from /_matrix/key/v2/server, and hs4's own.
	keys *gmsl.KeyRing

	mu sync.Mutex // guards the fields below
	// peers maps each Plexus server name to its federation host:port.
	peers   map[string]string
	pool    *x509.CertPool
	clients map[string]*http.Client
	// keyCache holds the verified keys of the Plexus servers.
	keyCache map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult
	// gv is the joined room's version; nil before the join.
	gv gmsl.IRoomVersion
	// events are every event hs4 knows, by ID; from says which server
	// sent each PDU it received in a transaction.
	events map[string]gmsl.PDU
	from   map[string]string
	// state is hs4's view of the room's current state, "type\x00key" ->
	// event ID, and latest the last event it placed.
	state  map[string]string
	latest string
	// problems are what failed gomatrixserverlib's checks of what the
	// Plexus servers sent (X-Matrix signature, PDU signatures and hashes).
	problems []string
	// unexpected lists requests to endpoints hs4 does not serve.
	unexpected []string
	txnSeq     int
}

func newHS4(t *testing.T) *hs4 {
	t.Helper()
	seed := sha256.Sum256([]byte("interop hs4"))
	h := &hs4{
		foreign:  &foreignServer{name: hs4Name, keyID: "ed25519:gmsl", priv: ed25519.NewKeyFromSeed(seed[:])},
		clients:  map[string]*http.Client{},
		keyCache: map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult{},
		events:   map[string]gmsl.PDU{},
		from:     map[string]string{},
		state:    map[string]string{},
	}
	h.keys = &gmsl.KeyRing{KeyDatabase: h}
	cert, err := tlscert.Load(tlscert.Config{DataDir: t.TempDir(), Hosts: []string{hs4Name}})
	if err != nil {
		t.Fatal(err)
	}
	if h.pem, err = os.ReadFile(cert.CertPath); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/key/v2/server", h.serveKeys)
	mux.HandleFunc("GET /_matrix/key/v2/server/{keyID}", h.serveKeys)
	mux.HandleFunc("PUT /_matrix/federation/v1/send/{txnId}", h.receiveTxn)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.unexpected = append(h.unexpected, r.Method+" "+r.URL.Path)
		h.mu.Unlock()
		matrixError(w, http.StatusNotFound, "M_UNRECOGNIZED", "hs4 does not serve this")
	})
	h.srv = httptest.NewUnstartedServer(mux)
	h.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.Certificate}, MinVersion: tls.VersionTLS12}
	h.srv.StartTLS()
	t.Cleanup(func() {
		h.srv.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.clients {
			c.CloseIdleConnections()
		}
		if t.Failed() {
			t.Logf("hs4: requests to endpoints it does not serve: %v", h.unexpected)
		}
	})
	return h
}

// options are the fedtest options that make the Plexus servers resolve
// and trust hs4.
func (h *hs4) options() fedtest.Options {
	return fedtest.Options{
		Extra:    []string{hs4Name + "=" + strings.TrimPrefix(h.srv.URL, "https://")},
		ExtraPEM: [][]byte{h.pem},
	}
}

// meet lets hs4 reach the federation's Plexus servers: their addresses and
// the certificates their listeners present.
func (h *hs4) meet(t *testing.T, f *fedtest.Federation) {
	t.Helper()
	pem, err := os.ReadFile(f.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("the federation's CA file holds no certificate")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pool = pool
	h.peers = map[string]string{}
	for name, s := range f.Servers {
		h.peers[name] = s.FedAddr
	}
}

// client is an HTTPS client for one Plexus server: it checks the
// listener's certificate against the server's name, as the --federation
// -resolve entries make the Plexus servers do among themselves.
func (h *hs4) client(name string) *http.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.clients[name]; ok {
		return c
	}
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: h.pool, ServerName: name, MinVersion: tls.VersionTLS12},
	}}
	h.clients[name] = c
	return c
}

func (h *hs4) baseURL(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return "https://" + h.peers[name]
}

// serveKeys is GET /_matrix/key/v2/server (Server-Server API, "Publishing
// Keys"): hs4's key, self-signed, valid for an hour.
func (h *hs4) serveKeys(w http.ResponseWriter, _ *http.Request) {
	pub := h.foreign.priv.Public().(ed25519.PublicKey)
	raw, err := json.Marshal(map[string]any{
		"server_name":     hs4Name,
		"valid_until_ts":  time.Now().Add(time.Hour).UnixMilli(),
		"verify_keys":     map[string]any{string(h.foreign.keyID): map[string]string{"key": base64.RawStdEncoding.EncodeToString(pub)}},
		"old_verify_keys": map[string]any{},
	})
	if err == nil {
		raw, err = gmsl.SignJSON(hs4Name, h.foreign.keyID, h.foreign.priv, raw)
	}
	if err != nil {
		matrixError(w, http.StatusInternalServerError, "M_UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw)
}

// FetchKeys implements gmsl.KeyFetcher (the KeyRing's database): hs4's own
// key, and the Plexus servers' keys fetched from their /_matrix/key/v2/server
// and checked by gomatrixserverlib (server name, validity, self-signature).
func (h *hs4) FetchKeys(ctx context.Context, reqs map[gmsl.PublicKeyLookupRequest]spec.Timestamp) (map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult, error) {
	out := map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult{}
	for req := range reqs {
		if req.ServerName == hs4Name {
			if req.KeyID == h.foreign.keyID {
				out[req] = gmsl.PublicKeyLookupResult{
					VerifyKey:    gmsl.VerifyKey{Key: spec.Base64Bytes(h.foreign.priv.Public().(ed25519.PublicKey))},
					ExpiredTS:    gmsl.PublicKeyNotExpired,
					ValidUntilTS: spec.AsTimestamp(time.Now().Add(time.Hour)),
				}
			}
			continue
		}
		h.mu.Lock()
		res, ok := h.keyCache[req]
		h.mu.Unlock()
		if !ok {
			if err := h.fetchPlexusKeys(ctx, string(req.ServerName)); err != nil {
				return nil, err
			}
			h.mu.Lock()
			res, ok = h.keyCache[req]
			h.mu.Unlock()
		}
		if ok {
			out[req] = res
		}
	}
	return out, nil
}

func (h *hs4) fetchPlexusKeys(ctx context.Context, name string) error {
	h.mu.Lock()
	_, known := h.peers[name]
	h.mu.Unlock()
	if !known {
		return fmt.Errorf("hs4 does not know server %q", name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.baseURL(name)+"/_matrix/key/v2/server", nil)
	if err != nil {
		return err
	}
	resp, err := h.client(name).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("keys of %s: %s: %s", name, resp.Status, data)
	}
	var sk gmsl.ServerKeys
	if err := json.Unmarshal(data, &sk); err != nil {
		return fmt.Errorf("keys of %s: %w", name, err)
	}
	checks, verified := gmsl.CheckKeys(spec.ServerName(name), time.Now(), sk)
	if !checks.AllChecksOK || len(verified) == 0 {
		return fmt.Errorf("keys of %s fail gomatrixserverlib's checks: %+v", name, checks)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, key := range verified {
		h.keyCache[gmsl.PublicKeyLookupRequest{ServerName: spec.ServerName(name), KeyID: id}] = gmsl.PublicKeyLookupResult{
			VerifyKey: gmsl.VerifyKey{Key: key}, ExpiredTS: gmsl.PublicKeyNotExpired, ValidUntilTS: sk.ValidUntilTS,
		}
	}
	return nil
}

// FetcherName implements gmsl.KeyFetcher.
func (h *hs4) FetcherName() string { return "hs4" }

// StoreKeys implements gmsl.KeyDatabase; the cache fills itself.
func (h *hs4) StoreKeys(context.Context, map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult) error {
	return nil
}

func (h *hs4) problem(format string, args ...any) {
	h.mu.Lock()
	h.problems = append(h.problems, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

// receiveTxn is PUT /_matrix/federation/v1/send/{txnId} as a receiving
// server written with gomatrixserverlib checks it: the X-Matrix signature
// ("Request Authentication"), then each PDU's content hash and signatures
// ("Checks performed on receipt of a PDU", steps 1 to 3). Plexus must
// pass every check; a failure is recorded as a problem.
func (h *hs4) receiveTxn(w http.ResponseWriter, r *http.Request) {
	fr, res := fclient.VerifyHTTPRequest(r, time.Now(), hs4Name, nil, h.keys)
	if fr == nil {
		h.problem("%s %s: X-Matrix check failed: %d %v", r.Method, r.URL.Path, res.Code, res.JSON)
		writeJSON(w, res.Code, res.JSON)
		return
	}
	origin := string(fr.Origin())
	var body struct {
		Origin string            `json:"origin"`
		PDUs   []json.RawMessage `json:"pdus"`
	}
	if err := json.Unmarshal(fr.Content(), &body); err != nil {
		h.problem("transaction from %s is not JSON: %v", origin, err)
		matrixError(w, http.StatusBadRequest, "M_NOT_JSON", err.Error())
		return
	}
	if body.Origin != origin {
		h.problem("transaction signed by %s says its origin is %q", origin, body.Origin)
	}
	h.mu.Lock()
	gv := h.gv
	h.mu.Unlock()
	results := map[string]any{}
	for _, raw := range body.PDUs {
		if gv == nil {
			h.problem("%s sent a PDU before hs4 joined: %s", origin, raw)
			continue
		}
		ev, err := gv.NewEventFromUntrustedJSON(raw)
		if err != nil {
			h.problem("%s sent a PDU gomatrixserverlib cannot parse: %v: %s", origin, err, raw)
			continue
		}
		if ev.Redacted() {
			h.problem("%s sent %s with a content hash that does not match", origin, ev.EventID())
		}
		if err := gmsl.VerifyEventSignatures(r.Context(), ev, h.keys, userIDForSender); err != nil {
			h.problem("%s sent %s with bad signatures: %v", origin, ev.EventID(), err)
			results[ev.EventID()] = map[string]string{"error": err.Error()}
			continue
		}
		h.place(ev, origin)
		results[ev.EventID()] = map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"pdus": results})
}

// place adds a checked event to hs4's copy of the room. The room's events
// reach hs4 in order in these tests, so the last state event of a key is
// the current one.
func (h *hs4) place(ev gmsl.PDU, from string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.events[ev.EventID()]; dup {
		return
	}
	h.events[ev.EventID()] = ev
	if from != "" {
		h.from[ev.EventID()] = from
	}
	if sk := ev.StateKey(); sk != nil {
		h.state[ev.Type()+"\x00"+*sk] = ev.EventID()
	}
	h.latest = ev.EventID()
}

// joined stores the room from the send_join answer gomatrixserverlib
// checked: the state before the join, its auth chain and the join.
func (h *hs4) joined(t *testing.T, version gmsl.RoomVersion, res *gmsl.PerformJoinResponse) {
	t.Helper()
	gv, err := gmsl.GetRoomVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.gv = gv
	h.mu.Unlock()
	for _, ev := range res.StateSnapshot.GetStateEvents().UntrustedEvents(version) {
		h.place(ev, "")
	}
	h.place(res.JoinEvent, "")
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range res.StateSnapshot.GetAuthEvents().UntrustedEvents(version) {
		if _, ok := h.events[ev.EventID()]; !ok {
			h.events[ev.EventID()] = ev
		}
	}
}

// received reports whether hs4 got the event in a transaction from the
// given server.
func (h *hs4) received(id, from string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.from[id] == from
}

// view is a snapshot of hs4's copy of the room, to build events on.
type view struct {
	prev  string
	state map[string]string
}

func (h *hs4) snapshot() view {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := make(map[string]string, len(h.state))
	for k, v := range h.state {
		st[k] = v
	}
	return view{prev: h.latest, state: st}
}

// build has gomatrixserverlib build and sign an event of hs4's user on
// the view: prev_events the view's latest event, auth events selected
// from the view's state ("Auth events selection").
func (h *hs4) build(t *testing.T, room, sender, typ string, stateKey *string, content any, at view) gmsl.PDU {
	t.Helper()
	c, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, ok := h.events[at.prev]
	if !ok {
		t.Fatalf("hs4 does not have its prev event %s", at.prev)
	}
	pe := gmsl.ProtoEvent{
		SenderID: sender, RoomID: room, Type: typ, StateKey: stateKey,
		PrevEvents: []string{at.prev}, Depth: prev.Depth() + 1, Content: c,
	}
	needed, err := gmsl.StateNeededForProtoEvent(&pe)
	if err != nil {
		t.Fatal(err)
	}
	ae := gmsl.NewAuthEvents(nil)
	for _, id := range at.state {
		if err := ae.AddEvent(h.events[id]); err != nil {
			t.Fatal(err)
		}
	}
	if pe.AuthEvents, err = needed.AuthEventReferences(&ae); err != nil {
		t.Fatal(err)
	}
	ev, err := h.gv.NewEventBuilderFromProtoEvent(&pe).Build(time.Now(), h.foreign.name, h.foreign.keyID, h.foreign.priv)
	if err != nil {
		t.Fatalf("gomatrixserverlib build %s: %v", typ, err)
	}
	return ev
}

// fedResponse is a Plexus server's answer to one of hs4's requests.
type fedResponse struct {
	status int
	body   []byte
}

func (r fedResponse) errcode() string {
	var e struct {
		Errcode string `json:"errcode"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Errcode
}

// request sends an X-Matrix request signed by gomatrixserverlib's fclient
// to a Plexus server. key signs it: hs4's own key, or another for a
// forged request.
func (h *hs4) request(t *testing.T, dest, method, uri string, content []byte, key ed25519.PrivateKey) fedResponse {
	t.Helper()
	fr := fclient.NewFederationRequest(method, hs4Name, spec.ServerName(dest), uri)
	if content != nil {
		if err := fr.SetContent(spec.RawJSON(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.Sign(hs4Name, h.foreign.keyID, key); err != nil {
		t.Fatal(err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimPrefix(h.baseURL(dest), "https://")
	req.URL.Scheme, req.URL.Host = "https", base
	resp, err := h.client(dest).Do(req)
	if err != nil {
		t.Fatalf("%s %s to %s: %v", method, uri, dest, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatal(err)
	}
	return fedResponse{status: resp.StatusCode, body: data}
}

// txnResult is the answer to PUT /send: per-PDU results by event ID.
type txnResult struct {
	fedResponse
	PDUs map[string]struct {
		Error *string `json:"error"`
	} `json:"pdus"`
}

// sendTxn sends PDUs to dest in one transaction (Server-Server API,
// "Transactions") with the given txnId ("" for a new one), signed with
// key.
func (h *hs4) sendTxn(t *testing.T, dest, txnID string, key ed25519.PrivateKey, pdus ...[]byte) txnResult {
	t.Helper()
	if txnID == "" {
		h.mu.Lock()
		h.txnSeq++
		txnID = fmt.Sprintf("hs4-%d-%d", time.Now().UnixNano(), h.txnSeq)
		h.mu.Unlock()
	}
	list := make([]json.RawMessage, len(pdus))
	for i, p := range pdus {
		list[i] = p
	}
	body, err := json.Marshal(map[string]any{"origin": hs4Name, "origin_server_ts": time.Now().UnixMilli(), "pdus": list})
	if err != nil {
		t.Fatal(err)
	}
	res := txnResult{fedResponse: h.request(t, dest, http.MethodPut, "/_matrix/federation/v1/send/"+txnID, body, key)}
	if res.status == http.StatusOK {
		if err := json.NewDecoder(bytes.NewReader(res.body)).Decode(&res); err != nil {
			t.Fatalf("PUT /send answer %s: %v", res.body, err)
		}
	}
	return res
}

// checkProblems fails the test with everything gomatrixserverlib found
// wrong in what the Plexus servers sent hs4.
func (h *hs4) checkProblems(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.problems {
		t.Errorf("hs4 (gomatrixserverlib): %s", p)
	}
}
