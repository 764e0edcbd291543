//go:build goolm

package signalling_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/signalling"
	"github.com/plexus-chat/plexus/signalling/internal/rtcauth"
)

// testCallWorld saves and loads a call's world snapshot as the room's
// org.plexus.world state (part of TestRTC: alice created room, bob is a
// local user with power level 0, aliceIdentity is alice's get_token
// identity in the room's call).
func testCallWorld(t *testing.T, srv *testServer, alice, bob *mautrix.Client, room id.RoomID, aliceIdentity string) {
	ctx := context.Background()
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	var bobSince string
	syncUntil(t, bob, &bobSince, "the joined room", func(r *mautrix.RespSync) bool { return r.Rooms.Join[room] != nil })
	body := map[string]any{"room_id": room, "slot_id": "m.call#ROOM", "openid_token": openIDOf(t, bob),
		"member": map[string]string{"id": "member-b", "claimed_user_id": string(bob.UserID), "claimed_device_id": string(bob.DeviceID)}}
	a := postRTC(t, srv, "/get_token", body)
	if a.status != http.StatusOK {
		t.Fatalf("bob's token: %d %s", a.status, a.errcode)
	}
	bobIdentity := verifyJWT(t, a.JWT).Identity
	lk := rtcauth.RoomAlias(string(room), "m.call#ROOM")
	world := srv.Sig.CallWorld()
	if w, err := world.LoadWorld(ctx, lk); err != nil || w != nil {
		t.Fatalf("no world yet: %s %v", w, err)
	}
	if w, err := world.LoadWorld(ctx, "unknown"); err != nil || w != nil {
		t.Fatalf("unknown room: %s %v", w, err)
	}
	snap := []byte(`{"v":1,"entries":{"cube":{"x":1,"y":2}}}`)
	// bob (power 0) may not send it; alice (the creator) may.
	if err := world.SaveWorld(ctx, lk, snap, []string{bobIdentity}); !errors.Is(err, signalling.ErrNoWorldWriter) {
		t.Fatalf("bob alone: %v", err)
	}
	if err := world.SaveWorld(ctx, lk, snap, []string{"@stranger:hs9.test:D", bobIdentity, aliceIdentity}); err != nil {
		t.Fatal(err)
	}
	got, err := world.LoadWorld(ctx, lk)
	if err != nil || !jsonEqual(got, snap) {
		t.Fatalf("loaded %s %v", got, err)
	}
	first := worldEvent(t, alice, room)
	if first.Sender != alice.UserID {
		t.Fatalf("world sent by %s", first.Sender)
	}
	// Unchanged: no new event. The legacy identity form works too.
	legacy := string(alice.UserID) + ":" + string(alice.DeviceID)
	if err := world.SaveWorld(ctx, lk, []byte(`{"entries":{"cube":{"y":2,"x":1}},"v":1}`), []string{legacy}); err != nil {
		t.Fatal(err)
	}
	if again := worldEvent(t, alice, room); again.ID != first.ID {
		t.Fatalf("unchanged snapshot sent again: %s then %s", first.ID, again.ID)
	}
	for _, bad := range [][]byte{[]byte(`[1]`), []byte(`{"x":1.5}`), bytes.Repeat([]byte(" "), signalling.MaxWorldBytes+1)} {
		if err := world.SaveWorld(ctx, lk, bad, []string{legacy}); err == nil {
			t.Fatalf("saved %.20q", bad)
		}
	}
}

// worldEvent returns the room's current world state event.
func worldEvent(t *testing.T, c *mautrix.Client, room id.RoomID) *event.Event {
	t.Helper()
	evs, err := c.State(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	ev := evs[event.Type{Type: signalling.WorldEventType, Class: event.StateEventType}][""]
	if ev == nil {
		t.Fatal("no world state event")
	}
	return ev
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}
