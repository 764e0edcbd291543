package fedapi

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
)

const (
	hs1   = "hs1.test" // us
	hs2   = "hs2.test" // a server with a user in the room
	hs3   = "hs3.test" // a server with none
	alice = "@alice:" + hs1
	bob   = "@bob:" + hs2
)

// originHeader carries the origin the stub authenticator vouches for.
const originHeader = "X-Test-Origin"

// stubAuth stands in for the X-Matrix verifier: the origin is whatever
// the test put in originHeader, and a request without it is refused.
type stubAuth struct{}

func (stubAuth) Authenticate(r *http.Request, _ []byte) (string, error) {
	if o := r.Header.Get(originHeader); o != "" {
		return o, nil
	}
	return "", mxerr.New(http.StatusUnauthorized, "M_UNAUTHORIZED", "no origin")
}

// onBackends runs f on a fresh store of each backend.
func onBackends(t *testing.T, f func(t *testing.T, backend string)) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Setenv(storagetest.EnvPostgres, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

// keyOf is a test server's deterministic signing key.
func keyOf(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func findKey(server rooms.ServerName, keyID string) (rooms.VerifyKey, bool) {
	if keyID != "ed25519:t" {
		return rooms.VerifyKey{}, false
	}
	return rooms.VerifyKey{Key: keyOf(string(server)).Public().(ed25519.PublicKey), ValidUntilTS: 1<<53 - 1}, true
}

// roomServer is one server's room service and store.
type roomServer struct {
	db  *storage.DB
	svc *rooms.Service
}

func newRoomServer(t *testing.T, backend, name string) *roomServer {
	t.Helper()
	dsn, dir := storagetest.Fresh(t, backend)
	db, err := storage.Open(context.Background(), dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: rooms.ServerName(name), KeyID: "ed25519:t", Key: keyOf(name)}},
		rooms.Deps{Store: db, Keys: findKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return &roomServer{db: db, svc: svc}
}

// storeGraph computes the state before an event from the store, for
// events with at most one prev event (the test rooms are linear). It
// stands in for the room service's StateBefore when that is missing.
type storeGraph struct{ db *storage.DB }

func (g storeGraph) StateBefore(ctx context.Context, roomID rooms.RoomID, eventID rooms.EventID) (state, chain []rooms.EventID, err error) {
	evs, err := g.db.Events(ctx, []string{string(eventID)})
	if err != nil {
		return nil, nil, err
	}
	rec := evs[string(eventID)]
	if rec == nil || rec.RoomID != string(roomID) {
		return nil, nil, storage.ErrNotFound
	}
	if len(rec.PrevEvents) > 1 {
		return nil, nil, errors.New("storeGraph: forks are not supported")
	}
	var ids []string
	if len(rec.PrevEvents) == 1 {
		m, err := g.db.StateAfter(ctx, rec.PrevEvents[0])
		if err != nil {
			return nil, nil, err
		}
		for _, id := range m {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	ch, err := g.db.AuthChain(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		state = append(state, rooms.EventID(id))
	}
	for _, id := range ch {
		chain = append(chain, rooms.EventID(id))
	}
	return state, chain, nil
}

// env is our server (hs1) serving the API on loopback, holding a room
// in which hs2's bob has joined.
type env struct {
	t     *testing.T
	us    *roomServer
	url   string
	local *fakeLocal
	room  string
	// ev names the room's events: create, alice, pl, jr, hv, m1..m5,
	// bob, m6.
	ev map[string]*rooms.Stored
}

func newEnv(t *testing.T, backend string) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, us: newRoomServer(t, backend, hs1), local: newFakeLocal(), ev: map[string]*rooms.Stored{}}
	peer := newRoomServer(t, storagetest.SQLite, hs2)

	create, err := e.us.svc.Create(ctx, "", alice, cjson.NullValue())
	if err != nil {
		t.Fatal(err)
	}
	e.room = string(create.Event.RoomID())
	e.ev["create"] = create
	e.appendState("alice", "m.room.member", alice, `{"membership":"join"}`)
	e.appendState("pl", "m.room.power_levels", "", `{"users":{}}`)
	e.appendState("jr", "m.room.join_rules", "", `{"join_rule":"public"}`)
	e.appendState("hv", "m.room.history_visibility", "", `{"history_visibility":"shared"}`)
	for _, m := range []string{"m1", "m2", "m3", "m4", "m5"} {
		e.appendMessage(m)
	}

	// hs2 learns the room as a joining server would, and bob joins.
	if _, err := peer.svc.Begin(ctx, create.Event.JSON()); err != nil {
		t.Fatal(err)
	}
	var pdus [][]byte
	for _, k := range []string{"alice", "pl", "jr", "hv", "m1", "m2", "m3", "m4", "m5"} {
		pdus = append(pdus, e.ev[k].Event.JSON())
	}
	res, err := peer.svc.AdmitMany(ctx, rooms.RoomID(e.room), pdus)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.Rejected != "" {
			t.Fatalf("hs2 admitting: %v %q", r.Err, r.Rejected)
		}
	}
	key := bob
	join, err := peer.svc.Append(ctx, rooms.RoomID(e.room), rooms.LocalEvent{
		Type: "m.room.member", StateKey: &key, Sender: bob, Content: cjson.MustFromGo(map[string]any{"membership": "join"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	adm, err := e.us.svc.Admit(ctx, rooms.RoomID(e.room), join.Event.JSON())
	if err != nil || adm.Rejected != "" || adm.SoftFailed || len(adm.MissingPrevs) > 0 {
		t.Fatalf("hs1 admitting bob's join: %v %+v", err, adm)
	}
	e.ev["bob"] = adm.Stored
	e.appendMessage("m6")

	var graph Graph = storeGraph{db: e.us.db}
	if g, ok := any(e.us.svc).(Graph); ok {
		graph = g // the room service's own, once it has one
	}
	api, err := New(Config{ServerName: hs1, Version: "1.2.3"}, Deps{Store: e.us.db, Graph: graph, Local: e.local})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0"}, server.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	api.Register(srv, stubAuth{})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e.url = "http://" + srv.Addr().String()
	return e
}

func (e *env) appendState(name, typ, stateKey, content string) *rooms.Stored {
	e.t.Helper()
	return e.appendIn(e.room, name, typ, &stateKey, content)
}

func (e *env) appendMessage(name string) *rooms.Stored {
	e.t.Helper()
	return e.appendIn(e.room, name, "m.room.message", nil, `{"msgtype":"m.text","body":"`+name+`"}`)
}

func (e *env) appendIn(room, name, typ string, stateKey *string, content string) *rooms.Stored {
	e.t.Helper()
	c, err := cjson.Parse([]byte(content))
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := e.us.svc.Append(context.Background(), rooms.RoomID(room),
		rooms.LocalEvent{Type: typ, StateKey: stateKey, Sender: alice, Content: c})
	if err != nil {
		e.t.Fatalf("append %s: %v", name, err)
	}
	if name != "" {
		e.ev[name] = st
	}
	return st
}

// newRoom creates another room of alice's with the given history
// visibility and returns its ID.
func (e *env) newRoom(historyVisibility string) string {
	e.t.Helper()
	create, err := e.us.svc.Create(context.Background(), "", alice, cjson.NullValue())
	if err != nil {
		e.t.Fatal(err)
	}
	room := string(create.Event.RoomID())
	empty, self := "", alice
	e.appendIn(room, "", "m.room.member", &self, `{"membership":"join"}`)
	e.appendIn(room, "", "m.room.power_levels", &empty, `{"users":{}}`)
	e.appendIn(room, "", "m.room.history_visibility", &empty, `{"history_visibility":"`+historyVisibility+`"}`)
	return room
}

// id is the event ID of a named event.
func (e *env) id(name string) string {
	e.t.Helper()
	st := e.ev[name]
	if st == nil {
		e.t.Fatalf("no event %q", name)
	}
	return string(st.Event.ID())
}

// do sends a request as origin ("" for none) and returns the status and
// body.
func (e *env) do(method, origin, path string, body string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set(originHeader, origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// wantError checks that a response is the Matrix error status/code.
func wantError(t *testing.T, status int, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	var me struct {
		Code string `json:"errcode"`
	}
	if status != wantStatus || json.Unmarshal(body, &me) != nil || me.Code != wantCode {
		t.Fatalf("got %d %s, want %d %s", status, body, wantStatus, wantCode)
	}
}

// decode unmarshals a 200 response.
func decode(t *testing.T, status int, body []byte, dst any) {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
}
