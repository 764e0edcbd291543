package delayed

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint/endpointtest"
)

const (
	alice = "@alice:test.local"
	bob   = "@bob:test.local"
)

var tokens = endpointtest.Tokens{
	"alice1": {UserID: alice, DeviceID: "ALICE1"},
	"bob1":   {UserID: bob, DeviceID: "BOB1"},
}

// clock is a test clock that only moves when told.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set puts the clock at ms milliseconds since the Unix epoch, which may
// be before the time it shows.
func (c *clock) Set(ms int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = time.UnixMilli(ms)
}

// sent is one event the recording sender appended.
type sent struct {
	delayID string
	ev      Event
}

// recorder is the room send path as the Service sees it: it records
// each event and fails while err is set.
type recorder struct {
	mu   sync.Mutex // guards the fields below
	sent []sent
	err  error
}

func (r *recorder) Send(_ context.Context, delayID string, ev Event) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return "", r.err
	}
	r.sent = append(r.sent, sent{delayID, ev})
	return "$event" + delayID, nil
}

func (r *recorder) all() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.sent...)
}

func (r *recorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// env is one Service on a fresh database, served over loopback HTTP.
type env struct {
	t     *testing.T
	db    *storage.DB
	clock *clock
	rec   *recorder
	svc   *Service
	srv   *httptest.Server
	cfg   Config
}

func newEnv(t *testing.T, backend string, cfg Config) *env {
	t.Helper()
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Setenv(storagetest.EnvPostgres, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	dsn, dir := storagetest.Fresh(t, backend)
	db, err := storage.Open(context.Background(), dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db, clock: &clock{t: time.UnixMilli(1_700_000_000_000)}, rec: &recorder{}, cfg: cfg}
	e.open()
	return e
}

// open starts a Service (again) on e's database.
func (e *env) open() {
	e.t.Helper()
	svc, err := New(e.cfg, Deps{DB: e.db, Sender: e.rec, Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(endpoint.NewRouter(mux, tokens))
	srv := httptest.NewServer(mux)
	e.svc, e.srv = svc, srv
	e.t.Cleanup(func() {
		srv.Close()
		svc.Close()
	})
}

// close stops the Service, as a server shutting down would.
func (e *env) close() {
	e.srv.Close()
	if err := e.svc.Close(); err != nil {
		e.t.Fatal(err)
	}
}

func forEachBackend(t *testing.T, cfg Config, fn func(t *testing.T, e *env)) {
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { fn(t, newEnv(t, b, cfg)) })
	}
}

// schedule schedules a message event of alice's.
func (e *env) schedule(user string, delay time.Duration, stateKey *string) string {
	e.t.Helper()
	id, err := e.svc.Schedule(context.Background(), Event{UserID: user, DeviceID: "DEV", RoomID: "!r:test.local",
		Type: "m.room.message", StateKey: stateKey, Content: json.RawMessage(`{"body":"later"}`)}, delay)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// settle returns once the loop has made a full pass that began after
// settle was called: it has seen the clock and schedule as they are now.
func (e *env) settle() {
	e.t.Helper()
	for range 2 {
		r0 := e.svc.rounds.Load()
		e.svc.Poke()
		waitFor(e.t, "a pass of the timer loop", func() bool { return e.svc.rounds.Load() > r0 })
	}
}

// do is a request to the Service's endpoints.
func (e *env) do(method, path, token string, body any) (int, map[string]any) {
	e.t.Helper()
	status, b := endpointtest.Do(e.t, e.srv.Client(), e.srv.URL, method, path, token, body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		e.t.Fatalf("%s %s: %d %s: %v", method, path, status, b, err)
	}
	return status, m
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}
