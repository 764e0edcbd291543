package delayed

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
)

// stateFeed is the Service as the room service's Listener.
type stateFeed struct{ *Service }

func (stateFeed) EventsStored(rooms.RoomID, []*rooms.Stored) {}

// TestLosingStateDoesNotCancel runs the real room service of hs1, whose
// current state changes drive the Service, and hs2's, which forks the
// room. Carol's topic from hs2 is accepted by hs1 but loses state
// resolution to alice's (state resolution v2 orders the conflicted topics
// by timestamp, and the clocks make carol's the older): it never becomes
// current state, so bob's delayed topic stays. Carol's next topic, which
// does become current, cancels it.
func TestLosingStateDoesNotCancel(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
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
		dsn, dir := storagetest.Fresh(t, storagetest.SQLite)
		db2, err := storage.Open(ctx, dsn, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db2.Close() })
		clock1 := &clock{t: time.UnixMilli(1_700_000_000_000)}
		clock2 := &clock{t: time.UnixMilli(1_700_000_000_000)}
		hs1, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: "hs1", KeyID: "ed25519:a", Key: keys["hs1"]}},
			rooms.Deps{Store: e.db, Keys: finder, Now: clock1.Now, Listener: stateFeed{e.svc}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hs1.Close() })
		hs2, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: "hs2", KeyID: "ed25519:a", Key: keys["hs2"]}},
			rooms.Deps{Store: db2, Keys: finder, Now: clock2.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hs2.Close() })

		content := func(s string) cjson.Value {
			v, err := cjson.Parse([]byte(s))
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		empty := ""
		send := func(svc *rooms.Service, room rooms.RoomID, sender, typ string, stateKey *string, body string) *rooms.Event {
			t.Helper()
			st, err := svc.Append(ctx, room, rooms.LocalEvent{Type: typ, StateKey: stateKey, Sender: rooms.UserID(sender), Content: content(body)})
			if err != nil {
				t.Fatalf("%s %s: %v", sender, typ, err)
			}
			return st.Event
		}
		admit := func(svc *rooms.Service, room rooms.RoomID, ev *rooms.Event) *rooms.Admitted {
			t.Helper()
			a, err := svc.Admit(ctx, room, ev.JSON())
			if err != nil {
				t.Fatalf("admit %s: %v", ev.ID(), err)
			}
			return a
		}
		const alice, bob, carol = "@alice:hs1", "@bob:hs1", "@carol:hs2"
		create, err := hs1.Create(ctx, "11", alice, content(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		room := create.Event.RoomID()
		base := []*rooms.Event{
			send(hs1, room, alice, "m.room.member", strp(alice), `{"membership":"join"}`),
			send(hs1, room, alice, "m.room.power_levels", &empty, `{"users":{"@alice:hs1":100},"events":{"m.room.topic":0},"state_default":50}`),
			send(hs1, room, alice, "m.room.join_rules", &empty, `{"join_rule":"public"}`),
			send(hs1, room, bob, "m.room.member", strp(bob), `{"membership":"join"}`),
		}
		if _, err := hs2.Begin(ctx, create.Event.JSON()); err != nil {
			t.Fatal(err)
		}
		for _, ev := range base {
			admit(hs2, room, ev)
		}
		cj := send(hs2, room, carol, "m.room.member", strp(carol), `{"membership":"join"}`)
		admit(hs1, room, cj)

		// The fork: carol's topic on hs2, older by its clock, and alice's
		// on hs1, neither seeing the other.
		clock2.Set(1_700_000_050_000)
		lost := send(hs2, room, carol, "m.room.topic", &empty, `{"topic":"carol"}`)
		clock1.Set(1_700_000_100_000)
		won := send(hs1, room, alice, "m.room.topic", &empty, `{"topic":"alice"}`)

		id, err := e.svc.Schedule(ctx, Event{UserID: bob, DeviceID: "BOB", RoomID: string(room),
			Type: "m.room.topic", StateKey: &empty, Content: json.RawMessage(`{"topic":"bob"}`)}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if a := admit(hs1, room, lost); a.Rejected != "" || a.SoftFailed || a.Outlier {
			t.Fatalf("carol's topic: rejected %q soft-failed %v outlier %v, want accepted", a.Rejected, a.SoftFailed, a.Outlier)
		}
		info, err := e.db.Room(ctx, string(room))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Current[storage.StateKey{Type: "m.room.topic"}]; got != string(won.ID()) {
			t.Fatalf("current topic %s, want alice's %s to win state resolution", got, won.ID())
		}
		e.settle()
		if !scheduled(t, e, id) {
			t.Fatal("a topic that lost state resolution cancelled bob's delayed topic")
		}

		// Carol's next topic, after both branches, is current state.
		admit(hs2, room, won)
		clock2.Set(1_700_000_200_000)
		admit(hs1, room, send(hs2, room, carol, "m.room.topic", &empty, `{"topic":"carol again"}`))
		waitFor(t, "carol's current topic to cancel bob's delayed topic", func() bool { return !scheduled(t, e, id) })
	})
}

func strp(s string) *string { return &s }

// scheduled reports whether delayID is still in the table.
func scheduled(t *testing.T, e *env, delayID string) bool {
	t.Helper()
	var n int
	err := e.db.View(context.Background(), func(tx *storage.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT COUNT(*) FROM delayed_events WHERE delay_id = ?`, delayID).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}
