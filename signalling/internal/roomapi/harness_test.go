package roomapi

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint/endpointtest"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

const server = "hs1"

// Users of the tests; each has one access token, "<localpart>-token",
// on device "<LOCALPART>DEV".
const (
	alice = "@alice:hs1"
	bob   = "@bob:hs1"
	carol = "@carol:hs1"
	dave  = "@dave:remote.example"
)

// tokenAuth maps fixed tokens to sessions.
type tokenAuth = endpointtest.Tokens

// stateMembers answers Members from the stored current state, as the
// sync engine would.
type stateMembers struct{ db *storage.DB }

func (m stateMembers) Membership(ctx context.Context, roomID, userID string) (string, error) {
	info, err := m.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	id := info.Current[storage.StateKey{Type: "m.room.member", StateKey: userID}]
	if id == "" {
		return "", nil
	}
	recs, err := m.db.Events(ctx, []string{id})
	if err != nil {
		return "", err
	}
	var ev struct {
		Content struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	if err := json.Unmarshal(recs[id].JSON, &ev); err != nil {
		return "", err
	}
	return ev.Content.Membership, nil
}

func (m stateMembers) JoinedRooms(ctx context.Context, userID string) ([]string, error) {
	ids, err := m.db.RoomIDs(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		if ms, err := m.Membership(ctx, id, userID); err != nil {
			return nil, err
		} else if ms == "join" {
			out = append(out, id)
		}
	}
	return out, nil
}

type profiles map[string][2]string

func (p profiles) Profile(_ context.Context, userID string) (string, string, error) {
	v := p[userID]
	return v[0], v[1], nil
}

// testClock is a clock the test moves by hand.
type testClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// autoClock moves on by a millisecond per reading, so events get
// distinct timestamps.
type autoClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *autoClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

type accountData struct {
	mu sync.Mutex // guards m
	m  map[string]string
}

func (d *accountData) set(_ context.Context, userID, roomID, typ string, content json.RawMessage) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[userID+" "+roomID+" "+typ] = string(content)
	return nil
}

func (d *accountData) get(key string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[key]
}

type env struct {
	t       *testing.T
	api     *API
	db      *storage.DB
	svc     *rooms.Service
	hub     *stream.Hub
	clock   *testClock
	data    *accountData
	srv     *httptest.Server
	invites []string
	mu      sync.Mutex // guards invites
}

type envOpts struct {
	sendRate ratelimit.Config
}

// forBackends runs f once per storage backend with a fresh server.
func forBackends(t *testing.T, f func(t *testing.T, e *env)) {
	forBackendsWith(t, envOpts{}, f)
}

func forBackendsWith(t *testing.T, o envOpts, f func(t *testing.T, e *env)) {
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { f(t, newEnv(t, b, o)) })
	}
}

func newEnv(t *testing.T, backend string, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	dsn, dir := storagetest.Fresh(t, backend)
	db, err := storage.Open(ctx, dsn, dir)
	if err != nil {
		t.Fatalf("open storage: %v", err)
	}
	seed := sha256.Sum256([]byte(server))
	rc := &autoClock{t: time.UnixMilli(1_700_000_000_000)}
	svc, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: server, KeyID: "ed25519:test", Key: ed25519.NewKeyFromSeed(seed[:])}},
		rooms.Deps{Store: db, Now: rc.now})
	if err != nil {
		t.Fatalf("rooms: %v", err)
	}
	e := &env{t: t, db: db, svc: svc, hub: stream.NewHub(), clock: &testClock{t: time.UnixMilli(1_700_000_000_000)},
		data: &accountData{m: map[string]string{}}}
	e.api, err = New(Config{ServerName: server, SendRate: o.sendRate}, Deps{
		Rooms: svc, DB: db, Hub: e.hub, Members: stateMembers{db},
		Profiles:           profiles{alice: {"Alice", "mxc://hs1/alice"}},
		SetRoomAccountData: e.data.set,
		OnRemoteInvite: func(_ context.Context, roomID, eventID, userID string) {
			e.mu.Lock()
			e.invites = append(e.invites, userID)
			e.mu.Unlock()
		},
		Now: e.clock.now,
	})
	if err != nil {
		t.Fatalf("roomapi: %v", err)
	}
	auth := tokenAuth{}
	for _, u := range []string{alice, bob, carol} {
		local := strings.TrimPrefix(strings.Split(u, ":")[0], "@")
		auth[local+"-token"] = &endpoint.Session{UserID: u, DeviceID: strings.ToUpper(local) + "DEV"}
	}
	auth["alice-token2"] = &endpoint.Session{UserID: alice, DeviceID: "ALICEDEV2"}
	auth["admin-token"] = &endpoint.Session{UserID: "@admin:hs1", DeviceID: "ADMINDEV", Admin: true}
	mux := http.NewServeMux()
	e.api.Register(endpoint.NewRouter(mux, auth))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		e.srv.Close()
		e.api.Close()
		svc.Close()
		db.Close()
	})
	return e
}

// tokenOf is the access token of a test user.
func tokenOf(user string) string {
	return strings.TrimPrefix(strings.Split(user, ":")[0], "@") + "-token"
}

// resp is an HTTP answer.
type resp struct {
	status int
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %s is not a JSON object: %v", r.body, err)
	}
	return m
}

func (r resp) errcode(t *testing.T) string {
	t.Helper()
	c, _ := r.json(t)["errcode"].(string)
	return c
}

// call makes a request as the holder of token; body is marshalled
// unless it is a string, sent as is.
func (e *env) call(token, method, path string, body any) resp {
	e.t.Helper()
	status, b := endpointtest.Do(e.t, http.DefaultClient, e.srv.URL, method, path, token, body)
	return resp{status: status, body: b}
}

// as calls as a test user.
func (e *env) as(user, method, path string, body any) resp {
	e.t.Helper()
	return e.call(tokenOf(user), method, path, body)
}

// ok calls and fails the test unless the answer is 200.
func (e *env) ok(user, method, path string, body any) map[string]any {
	e.t.Helper()
	r := e.as(user, method, path, body)
	if r.status != http.StatusOK {
		e.t.Fatalf("%s %s as %s: %d %s", method, path, user, r.status, r.body)
	}
	var m map[string]any
	_ = json.Unmarshal(r.body, &m)
	return m
}

// fails checks that a call fails with status and errcode.
func (e *env) fails(user, method, path string, body any, status int, code string) {
	e.t.Helper()
	r := e.as(user, method, path, body)
	if r.status != status || r.errcode(e.t) != code {
		e.t.Fatalf("%s %s as %s: got %d %s, want %d %s", method, path, user, r.status, r.body, status, code)
	}
}

func esc(s string) string { return url.PathEscape(s) }

// createRoom makes a room as user with body and returns its ID.
func (e *env) createRoom(user string, body map[string]any) string {
	e.t.Helper()
	m := e.ok(user, "POST", v3+"/createRoom", body)
	id, _ := m["room_id"].(string)
	if id == "" {
		e.t.Fatalf("createRoom: no room_id in %v", m)
	}
	return id
}

// sendMsg sends an m.room.message and returns the event ID.
func (e *env) sendMsg(user, roomID, txn, text string) string {
	e.t.Helper()
	m := e.ok(user, "PUT", v3+"/rooms/"+esc(roomID)+"/send/m.room.message/"+txn, map[string]any{"msgtype": "m.text", "body": text})
	return m["event_id"].(string)
}

// state reads a current state event's content via the API, as user.
func (e *env) state(user, roomID, typ, key string) map[string]any {
	e.t.Helper()
	return e.ok(user, "GET", v3+"/rooms/"+esc(roomID)+"/state/"+typ+"/"+esc(key), nil)
}

// stateEvents reads the whole current state as a list.
func (e *env) stateList(user, roomID string) []map[string]any {
	e.t.Helper()
	r := e.as(user, "GET", v3+"/rooms/"+esc(roomID)+"/state", nil)
	if r.status != 200 {
		e.t.Fatalf("state: %d %s", r.status, r.body)
	}
	var out []map[string]any
	if err := json.Unmarshal(r.body, &out); err != nil {
		e.t.Fatal(err)
	}
	return out
}
