package cable

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
	"github.com/plexus-chat/plexus/signalling/internal/syncer"
)

// engineFixture is the real stack under the cable server: storage, the
// room service, the sync index and engine, and a Server over them.
type engineFixture struct {
	tb    testing.TB
	ctx   context.Context
	db    *storage.DB
	rooms *rooms.Service
	index *syncer.Index
	hub   *stream.Hub
	srv   *Server
	wsURL string
	auth  tokenAuth
}

func newEngineFixture(tb testing.TB, backend string, cfg Config) *engineFixture {
	tb.Helper()
	ctx := context.Background()
	dsn, dir := storagetest.Fresh(tb, backend)
	db, err := storage.Open(ctx, dsn, dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	hub := stream.NewHub()
	idx, err := syncer.NewIndex(ctx, syncer.IndexConfig{ServerName: "hs1"}, syncer.IndexDeps{DB: db, Hub: hub})
	if err != nil {
		tb.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	svc, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: "hs1", KeyID: "ed25519:a", Key: key}},
		rooms.Deps{Store: db, Listener: idx})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { idx.Close() })
	tb.Cleanup(func() { svc.Close() })
	eng, err := syncer.New(syncer.Config{}, syncer.Deps{Index: idx, DB: db, Hub: hub})
	if err != nil {
		tb.Fatal(err)
	}
	f := &engineFixture{tb: tb, ctx: ctx, db: db, rooms: svc, index: idx, hub: hub, auth: tokenAuth{}}
	srv, err := New(cfg, Deps{Auth: f.auth, Sync: eng, Rooms: &serviceActions{svc: svc, hub: hub}, Hub: hub})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	srv.Register(endpoint.NewRouter(mux, f.auth))
	hs := httptest.NewServer(mux)
	// Cleanups run last-registered first: the cable server closes before
	// the room service, the index and storage.
	tb.Cleanup(hs.Close)
	tb.Cleanup(func() { srv.Close() })
	f.srv, f.wsURL = srv, "ws"+strings.TrimPrefix(hs.URL, "http")+DefaultPath
	return f
}

// user registers a local user and returns its access token.
func (f *engineFixture) user(name string) string {
	tok := "tok-" + name
	f.auth[tok] = &endpoint.Session{UserID: "@" + name + ":hs1", DeviceID: strings.ToUpper(name)}
	return tok
}

func (f *engineFixture) dial(token string) *client {
	f.tb.Helper()
	ws, resp, err := dialer.Dial(f.wsURL, http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		f.tb.Fatalf("dial: %v (%v)", err, resp)
	}
	c := &client{t: f.tb, ws: ws}
	f.tb.Cleanup(func() { ws.Close() })
	if fr := c.next(); fr.Type != "welcome" {
		f.tb.Fatalf("first frame %+v", fr)
	}
	return c
}

func (f *engineFixture) send(room rooms.RoomID, sender, typ string, stateKey *string, content string) string {
	f.tb.Helper()
	c, err := cjson.Parse([]byte(content))
	if err != nil {
		f.tb.Fatal(err)
	}
	st, err := f.rooms.Append(f.ctx, room, rooms.LocalEvent{Type: typ, StateKey: stateKey, Sender: rooms.UserID(sender), Content: c})
	if err != nil {
		f.tb.Fatalf("%s %s: %v", sender, typ, err)
	}
	return string(st.Event.ID())
}

// newRoom makes a public room of creator's that members join.
func (f *engineFixture) newRoom(creator string, members ...string) rooms.RoomID {
	f.tb.Helper()
	st, err := f.rooms.Create(f.ctx, "", rooms.UserID(creator), cjson.NullValue())
	if err != nil {
		f.tb.Fatal(err)
	}
	room := st.Event.RoomID()
	f.send(room, creator, "m.room.member", &creator, `{"membership":"join"}`)
	empty := ""
	f.send(room, creator, "m.room.join_rules", &empty, `{"join_rule":"public"}`)
	for _, m := range members {
		f.send(room, m, "m.room.member", &m, `{"membership":"join"}`)
	}
	f.caughtUp()
	return room
}

// caughtUp waits until the index has read everything stored.
func (f *engineFixture) caughtUp() {
	f.tb.Helper()
	want, err := f.db.MaxStreamPos(f.ctx)
	if err != nil {
		f.tb.Fatal(err)
	}
	waitFor(f.tb, "the index", func() bool { f.index.Poke(); return f.index.Head() >= want })
}

// serviceActions is a small RoomActions over rooms.Service: what the
// lead's real one does, minus transaction IDs and history visibility.
type serviceActions struct {
	svc *rooms.Service
	hub *stream.Hub
}

func (a *serviceActions) CanSee(_ context.Context, userID, roomID string) (bool, error) {
	return slices.Contains(a.hub.Members(roomID), userID), nil
}

func (a *serviceActions) Send(ctx context.Context, s *endpoint.Session, roomID, eventType string, content json.RawMessage, _ string) (string, error) {
	c, err := cjson.Parse(content)
	if err != nil {
		return "", mxerr.BadJSON("content is not JSON")
	}
	st, err := a.svc.Append(ctx, rooms.RoomID(roomID), rooms.LocalEvent{Type: eventType, Sender: rooms.UserID(s.UserID), Content: c})
	var na *rooms.NotAllowedError
	if errors.As(err, &na) {
		return "", mxerr.Forbidden(na.Error())
	}
	if err != nil {
		return "", err
	}
	return string(st.Event.ID()), nil
}

func (a *serviceActions) Typing(context.Context, *endpoint.Session, string, bool, int64) error {
	return nil
}

func (a *serviceActions) Receipt(context.Context, *endpoint.Session, string, string, string) error {
	return nil
}

// collector reads a connection's frames and sorts the m.room.message
// bodies of each subscription's messages.
type collector struct {
	c *client
	// bodies and next are per identifier: the bodies received, in
	// order, and the last next_batch.
	bodies map[string][]string
	next   map[string]string
}

func newCollector(c *client) *collector {
	return &collector{c: c, bodies: map[string][]string{}, next: map[string]string{}}
}

// until reads frames until done holds.
func (co *collector) until(done func() bool) {
	co.c.t.Helper()
	for !done() {
		f := co.c.next()
		if f.Type == "confirm_subscription" {
			continue
		}
		if f.Identifier == "" || f.Type != "" {
			co.c.t.Fatalf("unexpected frame %+v", f)
		}
		var m struct {
			Type      string          `json:"type"`
			NextBatch string          `json:"next_batch"`
			Timeline  syncer.Timeline `json:"timeline"`
			Sync      syncer.Response `json:"sync"`
		}
		if err := json.Unmarshal(f.Message, &m); err != nil {
			co.c.t.Fatal(err)
		}
		var evs []json.RawMessage
		switch m.Type {
		case "room":
			evs = m.Timeline.Events
		case "sync":
			if m.Sync.Rooms != nil {
				for _, jr := range m.Sync.Rooms.Join {
					evs = append(evs, jr.Timeline.Events...)
				}
			}
		default:
			continue // acks
		}
		co.bodies[f.Identifier] = append(co.bodies[f.Identifier], timelineBodies(co.c.t, evs)...)
		co.next[f.Identifier] = m.NextBatch
	}
}

// has reports whether id received body.
func (co *collector) has(id, body string) func() bool {
	return func() bool { return slices.Contains(co.bodies[id], body) }
}

func TestEngineDelivery(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newEngineFixture(t, backend, Config{})
			aliceTok, bobTok, carolTok := f.user("alice"), f.user("bob"), f.user("carol")
			room := f.newRoom("@alice:hs1", "@bob:hs1")
			roomID := identifier(map[string]string{"channel": RoomChannel, "room_id": string(room)})
			syncID := identifier(map[string]string{"channel": SyncChannel})

			// Carol is not in the room: her subscription is rejected.
			carol := f.dial(carolTok)
			if fr := carol.subscribe(roomID); fr.Type != "reject_subscription" {
				t.Fatalf("carol's subscription: %+v", fr)
			}

			alice := f.dial(aliceTok)
			if fr := alice.subscribe(roomID); fr.Type != "confirm_subscription" {
				t.Fatalf("%+v", fr)
			}
			var first roomMsg
			alice.message(roomID, &first)

			bob := f.dial(bobTok)
			bc := newCollector(bob)
			for _, id := range []string{syncID, roomID} {
				if fr := bob.subscribe(id); fr.Type != "confirm_subscription" {
					t.Fatalf("%+v", fr)
				}
				bc.until(func() bool { return bc.next[id] != "" }) // the initial message
			}

			// Alice sends over her socket; bob's two channels get it.
			alice.perform(roomID, actSendMessage, map[string]any{"content": map[string]string{"msgtype": "m.text", "body": "hello bob"}, "txn_id": "a1"})
			var ack roomMsg
			for ack.Type != "ack" {
				alice.message(roomID, &ack)
			}
			if !strings.HasPrefix(ack.EventID, "$") || ack.TxnID != "a1" {
				t.Fatalf("ack %+v", ack)
			}
			bc.until(func() bool { return bc.has(syncID, "hello bob")() && bc.has(roomID, "hello bob")() })

			// Bob goes away; alice sends three messages; bob comes back
			// with his last tokens and gets exactly those three.
			lastSync, lastRoom := bc.next[syncID], bc.next[roomID]
			bob.ws.Close()
			waitFor(t, "bob's connection to go", func() bool { return f.srv.Connections() == 2 })
			for _, b := range []string{"m1", "m2", "m3"} {
				f.send(room, "@alice:hs1", "m.room.message", nil, fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, b))
			}
			bob = f.dial(bobTok)
			bc = newCollector(bob)
			syncSince := identifier(map[string]string{"channel": SyncChannel, "since": lastSync})
			roomSince := identifier(map[string]string{"channel": RoomChannel, "room_id": string(room), "since": lastRoom})
			for _, id := range []string{syncSince, roomSince} {
				bob.send(command{Command: cmdSubscribe, Identifier: id})
			}
			bc.until(func() bool { return bc.has(syncSince, "m3")() && bc.has(roomSince, "m3")() })
			// One more, so a duplicate would show before it.
			f.send(room, "@alice:hs1", "m.room.message", nil, `{"msgtype":"m.text","body":"m4"}`)
			bc.until(func() bool { return bc.has(syncSince, "m4")() && bc.has(roomSince, "m4")() })
			for _, id := range []string{syncSince, roomSince} {
				if got := fmt.Sprint(bc.bodies[id]); got != "[m1 m2 m3 m4]" {
					t.Fatalf("%s after reconnecting: %s, want [m1 m2 m3 m4]", id, got)
				}
			}
		})
	}
}
