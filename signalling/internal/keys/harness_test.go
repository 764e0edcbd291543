package keys

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint/endpointtest"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

const hs = "test.local"

const (
	alice = "@alice:" + hs
	bob   = "@bob:" + hs
	carol = "@carol:" + hs // shares no room with alice or bob
)

// tokens maps the test access tokens to sessions.
var tokens = map[string]*endpoint.Session{
	"alice1": {UserID: alice, DeviceID: "ALICE1"},
	"alice2": {UserID: alice, DeviceID: "ALICE2"},
	"bob1":   {UserID: bob, DeviceID: "BOB1"},
	"carol1": {UserID: carol, DeviceID: "CAROL1"},
}

// env is one Keys served over real HTTP on loopback, with a fresh store.
type env struct {
	t   *testing.T
	k   *Keys
	db  *storage.DB
	hub *stream.Hub
	srv *httptest.Server

	mu      sync.Mutex // guards devices
	devices map[string][]string
}

var errWrongPassword = errors.New("wrong password")

func newEnv(t *testing.T, backend string) *env {
	t.Helper()
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Setenv(storagetest.EnvPostgres, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	dsn, dir := storagetest.Fresh(t, backend)
	ctx := context.Background()
	db, err := storage.Open(ctx, dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db, hub: stream.NewHub(), devices: map[string][]string{
		alice: {"ALICE1", "ALICE2"},
		bob:   {"BOB1"},
		carol: {"CAROL1"},
	}}
	e.k, err = New(Config{ServerName: hs}, Deps{
		DB:  db,
		Hub: e.hub,
		CheckPassword: func(_ context.Context, user, pw string) error {
			if pw == "secret-of-"+user {
				return nil
			}
			return errWrongPassword
		},
		SharedUsers: func(_ context.Context, user string) ([]string, error) {
			if user == carol {
				return []string{carol}, nil
			}
			return []string{alice, bob}, nil
		},
		KnownDevices: func(_ context.Context, user string) ([]string, error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			return append([]string(nil), e.devices[user]...), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The accounts tables hold device display names.
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)`,
			alice, "ALICE1", "Alice's phone", 1)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.k.Register(endpoint.NewRouter(mux, endpointtest.Tokens(tokens)))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// forEachBackend runs fn against a fresh env on every backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { fn(t, newEnv(t, b)) })
	}
}

// do sends a request; body is sent as is if it is a string or []byte,
// else encoded as JSON.
func (e *env) do(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	return endpointtest.Do(e.t, e.srv.Client(), e.srv.URL, method, path, token, body)
}

// ok sends a request that must succeed and decodes the answer into dst
// (if not nil).
func (e *env) ok(method, path, token string, body, dst any) []byte {
	e.t.Helper()
	st, out := e.do(method, path, token, body)
	if st != http.StatusOK {
		e.t.Fatalf("%s %s: status %d, body %s", method, path, st, out)
	}
	if dst != nil {
		if err := json.Unmarshal(out, dst); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, out, err)
		}
	}
	return out
}

// wantError checks a standard error response.
func wantError(t *testing.T, status int, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	var eb struct {
		Code string `json:"errcode"`
	}
	_ = json.Unmarshal(body, &eb)
	if status != wantStatus || eb.Code != wantCode {
		t.Fatalf("got %d %s, want %d %s", status, body, wantStatus, wantCode)
	}
}

// waitWake waits for a wake-up on sub.
func waitWake(t *testing.T, sub *stream.Sub, what string) {
	t.Helper()
	select {
	case <-sub.C():
	case <-time.After(5 * time.Second):
		t.Fatalf("no wake-up for %s", what)
	}
}

// noWake checks that sub has no pending wake-up.
func noWake(t *testing.T, sub *stream.Sub, what string) {
	t.Helper()
	select {
	case <-sub.C():
		t.Fatalf("unexpected wake-up for %s", what)
	default:
	}
}

// keyPair is an ed25519 key with its unpadded base64 public key.
type keyPair struct {
	priv ed25519.PrivateKey
	id   string
}

func newKeyPair(t *testing.T) keyPair {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{priv: priv, id: signing.Base64.EncodeToString(pub)}
}

// signText signs the JSON object text (kept as written, in any order and
// spacing) as entity with key keyID, inserting a "signatures" member
// before its closing brace. The text must not already have signatures.
func signText(t *testing.T, text, entity, keyID string, priv ed25519.PrivateKey) []byte {
	t.Helper()
	v, err := cjson.Parse([]byte(text))
	if err != nil {
		t.Fatalf("parse %s: %v", text, err)
	}
	msg, err := signing.SigningBytes(v)
	if err != nil {
		t.Fatal(err)
	}
	sig := signing.Base64.EncodeToString(ed25519.Sign(priv, msg))
	i := strings.LastIndexByte(text, '}')
	return []byte(fmt.Sprintf(`%s, "signatures" : {%q: {%q: %q}}%s`, text[:i], entity, keyID, sig, text[i:]))
}

// addSignature re-signs a signed object, adding entity's signature: the
// result is canonical, as a client's re-signed object would be.
func addSignature(t *testing.T, obj []byte, entity, keyID string, priv ed25519.PrivateKey) []byte {
	t.Helper()
	out, err := signing.SignJSON(obj, entity, keyID, priv)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// deviceKeysText returns signed device keys for user's device, written
// with odd spacing and member order, a non-ASCII escape and HTML
// characters, so that any re-encoding would show.
func deviceKeysText(t *testing.T, user, device string, kp keyPair) []byte {
	t.Helper()
	text := fmt.Sprintf(`{ "user_id" : %q,
	"keys": {"ed25519:%s": %q, "curve25519:%s": "curve+%s"},
	"device_id": %q, "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
	"org.example.note": "caf\u00e9 <b>&</b>"
}`, user, device, kp.id, device, device, device)
	return signText(t, text, user, "ed25519:"+device, kp.priv)
}

// rawTree decodes a response keeping the innermost objects raw.
func rawTree(t *testing.T, body []byte) map[string]map[string]map[string]json.RawMessage {
	t.Helper()
	var out map[string]map[string]map[string]json.RawMessage
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return out
}

func (e *env) setDevices(user string, ids ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.devices[user] = ids
}
