package accounts

import (
	"context"
	"encoding/json"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint/endpointtest"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

const testServer = "test.example"

func TestMain(m *testing.M) {
	// The production cost (19 MiB, two passes) takes a quarter second
	// per hash under the race detector; TestPasswordHashFormat checks it.
	argonCost.memoryKiB, argonCost.time = 64, 1
	os.Exit(m.Run())
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one Accounts behind a real HTTP server on loopback.
type env struct {
	t     *testing.T
	a     *Accounts
	db    *storage.DB
	hub   *stream.Hub
	clock *clock
	srv   *httptest.Server

	mu sync.Mutex // guards the hook records below
	// deleted records OnDeviceDeleted calls as "user/device".
	deleted []string
	// profiles records OnProfileChanged calls.
	profiles []string
}

// forEachBackend runs fn against a fresh store on every backend.
func forEachBackend(t *testing.T, cfg Config, fn func(t *testing.T, e *env)) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			fn(t, newEnv(t, backend, cfg))
		})
	}
}

func newEnv(t *testing.T, backend string, cfg Config) *env {
	t.Helper()
	ctx := context.Background()
	dsn, dir := storagetest.Fresh(t, backend)
	db, err := storage.Open(ctx, dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db, hub: stream.NewHub(), clock: &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}}
	if cfg.ServerName == "" {
		cfg.ServerName = testServer
	}
	if cfg.Registration == "" {
		cfg.Registration = RegistrationOpen
	}
	e.a, err = New(cfg, Deps{
		DB: db, Hub: e.hub, Now: e.clock.Now,
		OnDeviceDeleted: func(_ context.Context, user, device string) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.deleted = append(e.deleted, user+"/"+device)
		},
		OnProfileChanged: func(_ context.Context, user string) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.profiles = append(e.profiles, user)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.a.Register(endpoint.NewRouter(mux, e.a))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) deletedDevices() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.deleted...)
}

func (e *env) profileChanges() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.profiles...)
}

// obj is a decoded JSON object.
type obj = map[string]any

// do sends a request; body is sent as is if it is a string or []byte,
// else encoded as JSON (nil: no body). It returns the status and the
// decoded object body (nil if the body is not an object).
func (e *env) do(method, path, token string, body any) (int, obj) {
	e.t.Helper()
	status, raw := endpointtest.Do(e.t, e.srv.Client(), e.srv.URL, method, path, token, body)
	var out obj
	_ = json.Unmarshal(raw, &out)
	return status, out
}

// expect asserts status and, if code is not empty, errcode.
func (e *env) expect(method, path, token string, body any, status int, code string) obj {
	e.t.Helper()
	st, out := e.do(method, path, token, body)
	if st != status || code != "" && out["errcode"] != code {
		e.t.Fatalf("%s %s: got %d %v, want %d %s", method, path, st, out, status, code)
	}
	return out
}

const v3 = "/_matrix/client/v3"

// register makes an account through open registration and returns its
// user ID, access token and device ID.
func (e *env) register(username, password string) (userID, token, deviceID string) {
	e.t.Helper()
	out := e.expect("POST", v3+"/register", "", obj{"username": username, "password": password}, 401, "")
	out = e.expect("POST", v3+"/register", "", obj{
		"username": username, "password": password,
		"auth": obj{"type": "m.login.dummy", "session": out["session"]},
	}, 200, "")
	return out["user_id"].(string), out["access_token"].(string), out["device_id"].(string)
}

// login logs in with a password and returns the token and device.
func (e *env) login(user, password string) (token, deviceID string) {
	e.t.Helper()
	out := e.expect("POST", v3+"/login", "", obj{
		"type": "m.login.password", "identifier": obj{"type": "m.id.user", "user": user}, "password": password,
	}, 200, "")
	return out["access_token"].(string), out["device_id"].(string)
}

// passwordAuth is an m.login.password auth dict.
func passwordAuth(session any, user, password string) obj {
	return obj{"type": "m.login.password", "session": session,
		"identifier": obj{"type": "m.id.user", "user": user}, "password": password}
}

// rateConfig is a limit of burst requests, refilling one per hour.
func rateConfig(burst int) ratelimit.Config {
	return ratelimit.Config{Rate: 1.0 / 3600, Burst: burst}
}
