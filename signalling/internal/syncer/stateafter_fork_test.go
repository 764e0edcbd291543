package syncer

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// setClock is a clock the test sets.
type setClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *setClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *setClock) set(ms int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = time.UnixMilli(ms)
}

// newForkFixture is newFixture whose room service, on a clock the test
// sets, also accepts events of hs2, and hs2's room service on its own
// database.
func newForkFixture(t *testing.T, backend string) (f *fixture, clock *setClock, hs2 *rooms.Service) {
	t.Helper()
	ctx := context.Background()
	keys := map[rooms.ServerName]ed25519.PrivateKey{}
	for _, name := range []rooms.ServerName{"hs1", "hs2"} {
		seed := sha256.Sum256([]byte(name))
		keys[name] = ed25519.NewKeyFromSeed(seed[:])
	}
	finder := func(server rooms.ServerName, keyID string) (rooms.VerifyKey, bool) {
		k, ok := keys[server]
		if !ok || keyID != "ed25519:a" {
			return rooms.VerifyKey{}, false
		}
		return rooms.VerifyKey{Key: k.Public().(ed25519.PublicKey), ValidUntilTS: 1<<53 - 1}, true
	}
	open := func() *storage.DB {
		dsn, dir := storagetest.Fresh(t, backend)
		db, err := storage.Open(ctx, dsn, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	db, db2 := open(), open()
	hub := stream.NewHub()
	idx, err := NewIndex(ctx, IndexConfig{ServerName: "hs1", Window: 64}, IndexDeps{DB: db, Hub: hub})
	if err != nil {
		t.Fatal(err)
	}
	clock = &setClock{t: time.UnixMilli(1_700_000_000_000)}
	svc, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: "hs1", KeyID: "ed25519:a", Key: keys["hs1"]}},
		rooms.Deps{Store: db, Listener: idx, Keys: finder, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	hs2, err = rooms.New(rooms.Config{Signer: rooms.Signer{Server: "hs2", KeyID: "ed25519:a", Key: keys["hs2"]}},
		rooms.Deps{Store: db2, Keys: finder})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	t.Cleanup(func() { svc.Close() })
	t.Cleanup(func() { hs2.Close() })
	eng, err := New(Config{}, Deps{Index: idx, DB: db, Hub: hub})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, db: db, rooms: svc, index: idx, eng: eng}, clock, hs2
}

// TestStateAfterResolutionOnly builds a fork in which a remote message,
// with no state event of its own, makes state resolution bring back an
// older topic: state_after must carry it, though nothing in the timeline
// touches the topic.
//
// hs1's clock is set so that alice's second topic has an earlier
// origin_server_ts than her first: state resolution v2 orders the
// conflicted topics by power levels' mainline, then by timestamp, so the
// first topic wins once a branch that never saw the second one meets it.
func TestStateAfterResolutionOnly(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			f, clock, hs2 := newForkFixture(t, backend)
			h := newHTTPSync(t, f)
			empty := ""
			clock.set(1_700_000_100_000)
			room := f.newRoom()
			r := string(room)
			f.member(room, "@alice:hs1", "@bob:hs1", "invite")
			f.member(room, "@bob:hs1", "@bob:hs1", "join")
			first := f.send(room, "@alice:hs1", "m.room.topic", &empty, `{"topic":"first"}`)
			admit := func(svc *rooms.Service, id string) {
				t.Helper()
				recs, err := f.db.Events(f.ctx, []string{id})
				if err != nil || recs[id] == nil {
					t.Fatalf("event %s: %v", id, err)
				}
				if _, err := svc.Admit(f.ctx, room, recs[id].JSON); err != nil {
					t.Fatalf("admit %s: %v", id, err)
				}
			}
			// hs2 learns the room up to the first topic, and carol joins
			// there.
			recs, err := f.db.EventsSince(f.ctx, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := hs2.Begin(f.ctx, recs[0].JSON); err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs[1:] {
				admit(hs2, rec.EventID)
			}
			carol := "@carol:hs2"
			content := func(s string) cjson.Value {
				v, err := cjson.Parse([]byte(s))
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			cj, err := hs2.Append(f.ctx, room, rooms.LocalEvent{Type: "m.room.member", StateKey: &carol, Sender: rooms.UserID(carol), Content: content(`{"membership":"join"}`)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.rooms.Admit(f.ctx, room, cj.Event.JSON()); err != nil {
				t.Fatal(err)
			}
			// carol writes on a branch that does not see the second topic.
			msg, err := hs2.Append(f.ctx, room, rooms.LocalEvent{Type: "m.room.message", Sender: rooms.UserID(carol), Content: content(`{"msgtype":"m.text","body":"from the branch"}`)})
			if err != nil {
				t.Fatal(err)
			}
			clock.set(1_700_000_050_000) // earlier than the first topic
			second := f.send(room, "@alice:hs1", "m.room.topic", &empty, `{"topic":"second"}`)
			f.caughtUp()
			s := h.sync(url.Values{"use_state_after": {"true"}})
			if got := f.current(room, "m.room.topic"); got != second {
				t.Fatalf("topic %s before the merge, want the second %s", got, second)
			}
			if _, err := f.rooms.Admit(f.ctx, room, msg.Event.JSON()); err != nil {
				t.Fatal(err)
			}
			f.caughtUp()
			if got := f.current(room, "m.room.topic"); got != first {
				t.Fatalf("topic %s after the merge, want state resolution to keep the first %s", got, first)
			}
			jr := h.sync(url.Values{"since": {s.NextBatch}, "use_state_after": {"true"}}).Rooms.Join[r]
			if tl := ids(jr.Timeline.Events); !slices.Equal(tl, []string{string(msg.Event.ID())}) {
				t.Fatalf("timeline %v, want only carol's message", tl)
			}
			if got := stateAfterOf(t, jr); !slices.Equal(got, []string{first}) {
				t.Fatalf("state_after %v, want the topic resolution brought back, %s", got, first)
			}
		})
	}
}

// current is the event of the room's current state for typ with an
// empty state key.
func (f *fixture) current(room rooms.RoomID, typ string) string {
	f.t.Helper()
	info, err := f.db.Room(f.ctx, string(room))
	if err != nil {
		f.t.Fatal(err)
	}
	return info.Current[storage.StateKey{Type: typ}]
}
