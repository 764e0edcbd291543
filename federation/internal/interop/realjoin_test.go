package interop

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/fedtest"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// realVersion is the room version of the tests against real Plexus
// processes: the newest one gomatrixserverlib implements (Plexus creates
// rooms in version 12 by default, which it does not know).
const realVersion = "11"

// hs4User is hs4's user.
const hs4User = "@mallory:hs4"

// fourth is a federation of two real Plexus servers, hs1 and hs2, and the
// gomatrixserverlib-driven hs4, sharing a public room hosted on hs1.
type fourth struct {
	f        *fedtest.Federation
	hs1, hs2 *fedtest.Server
	h        *hs4
	// alice is hs1's room creator and admin, bob is on hs2; both are
	// mautrix clients.
	alice, bob *mautrix.Client
	room       id.RoomID
	join       string // mallory's join
	markers    int
}

// newFourth starts hs1 and hs2 on the backend with hs4 beside them,
// creates the room on hs1 and has bob join it through hs1.
func newFourth(t *testing.T, backend string) *fourth {
	t.Helper()
	ctx := context.Background()
	h := newHS4(t)
	opts := h.options()
	if backend == storagetest.Postgres {
		opts.Postgres = func(string) string {
			dsn, _ := storagetest.Fresh(t, backend)
			return dsn
		}
	}
	f := fedtest.New(t, opts, "hs1", "hs2")
	f.Start(t)
	h.meet(t, f)
	x := &fourth{f: f, hs1: f.Servers["hs1"], hs2: f.Servers["hs2"], h: h}
	x.alice = newClient(t, x.hs1, "alice")
	x.bob = newClient(t, x.hs2, "bob")
	created, err := x.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Four servers", RoomVersion: realVersion})
	if err != nil {
		t.Fatal(err)
	}
	x.room = created.RoomID
	if _, err := x.bob.JoinRoom(ctx, x.room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1"}}); err != nil {
		t.Fatalf("bob joining through hs1: %v", err)
	}
	return x
}

// newClient registers an account on s; say sends a text message.
func newClient(t *testing.T, s *fedtest.Server, name string) *mautrix.Client {
	t.Helper()
	return s.Register(t, name)
}

func say(t *testing.T, c *mautrix.Client, room id.RoomID, body string) string {
	t.Helper()
	return fedtest.Send(t, c, room, body)
}

// placed waits until s has placed the event in the room's graph.
func placed(t *testing.T, s *fedtest.Server, room id.RoomID, eventID string) *fedtest.Graph {
	t.Helper()
	var g *fedtest.Graph
	fedtest.Eventually(t, 30*time.Second, s.Name+" to place "+eventID, func() (bool, error) {
		g = s.Graph(t, room.String())
		_, ok := g.Prevs[eventID]
		return ok, nil
	})
	return g
}

// placedWithin reports whether s places the event within d.
func placedWithin(t *testing.T, s *fedtest.Server, room id.RoomID, eventID string, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if _, ok := s.Graph(t, room.String()).Prevs[eventID]; ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(25 * time.Millisecond) // polling the database, with a deadline
	}
}

// foreignJoinReal has gomatrixserverlib join mallory to the room through
// hs1's real federation listener (make_join, send_join v2 over HTTPS with
// X-Matrix requests), then checks that the Plexus servers took the join
// and that hs1 sends hs4 the room's next events.
func (x *fourth) foreignJoinReal(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	res, err := foreignJoin(ctx, x.h.client("hs1"), x.h.baseURL("hs1"), x.h.foreign, x.h.keys, "hs1", x.room.String(), hs4User)
	if err != nil {
		t.Fatalf("gomatrixserverlib could not join the Plexus room through hs1's federation listener: %v", err)
	}
	x.h.joined(t, realVersion, res)
	x.join = res.JoinEvent.EventID()

	// The state gomatrixserverlib accepted is hs1's state before the
	// join: hs1's current state now, the join apart.
	g := placed(t, x.hs1, x.room, x.join)
	if got := g.State["m.room.member\x00"+hs4User]; got != x.join {
		t.Fatalf("hs1's membership of %s is %q, want the join %s", hs4User, got, x.join)
	}
	states := res.StateSnapshot.GetStateEvents().UntrustedEvents(realVersion)
	if len(states) != len(g.State)-1 {
		t.Errorf("send_join returned %d state events, hs1 holds %d besides the join", len(states), len(g.State)-1)
	}
	for _, ev := range states {
		if g.State[ev.Type()+"\x00"+*ev.StateKey()] != ev.EventID() {
			t.Errorf("send_join state event %s (%s) is not hs1's current state", ev.EventID(), ev.Type())
		}
	}
	var member event.MemberEventContent
	if err := x.alice.StateEvent(ctx, x.room, event.StateMember, hs4User, &member); err != nil || member.Membership != event.MembershipJoin {
		t.Fatalf("alice does not see %s joined: %v %+v", hs4User, err, member)
	}
	// "The resident server must also send the event to other servers
	// participating in the room" (Server-Server API, "Joining Rooms"):
	// hs2 hears of the join from hs1, before any later event of hs1's
	// would make it fetch it.
	if !placedWithin(t, x.hs2, x.room, x.join, 10*time.Second) {
		t.Errorf("hs1 did not send hs4's join %s on to hs2 within 10s", x.join)
	}

	// (Checked without stopping the test: the later events of hs1 cite
	// the join and bring it to hs2 anyway, and the cases after this one
	// are independent of it.)
	//
	// hs1 sends the room's next events to hs4, which checks the
	// transaction's X-Matrix signature and each PDU's hashes and
	// signatures with gomatrixserverlib.
	hello := say(t, x.alice, x.room, "hello hs4")
	fedtest.Eventually(t, 30*time.Second, "hs4 to receive alice's message from hs1", func() (bool, error) {
		return x.h.received(hello, "hs1"), nil
	})
	x.h.checkProblems(t)
}

// marker has alice send a message and waits until both clients see it:
// whatever hs1 stored before it has been processed on hs1, and has
// reached hs2 if hs1 passes it on.
func (x *fourth) marker(t *testing.T) string {
	t.Helper()
	x.markers++
	id := say(t, x.alice, x.room, fmt.Sprint("marker ", x.markers))
	for _, c := range []*mautrix.Client{x.alice, x.bob} {
		fedtest.Eventually(t, 30*time.Second, fmt.Sprintf("%s to see marker %d", c.UserID, x.markers), func() (bool, error) {
			_, ok := clientView(t, c, x.room)[id]
			return ok, nil
		})
	}
	return id
}

// clientView is everything a client is shown of the room's timeline: an
// initial /sync and /messages back from its prev_batch to the room's
// start (the rooms in these tests are small).
func clientView(t *testing.T, c *mautrix.Client, room id.RoomID) map[string]*event.Event {
	t.Helper()
	ctx := context.Background()
	resp, err := c.SyncRequest(ctx, 0, "", "", false, event.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]*event.Event{}
	joined, ok := resp.Rooms.Join[room]
	if !ok {
		return seen
	}
	for _, ev := range joined.Timeline.Events {
		seen[ev.ID.String()] = ev
	}
	from := joined.Timeline.PrevBatch
	for range 100 {
		if from == "" {
			break
		}
		msgs, err := c.Messages(ctx, room, from, "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range msgs.Chunk {
			seen[ev.ID.String()] = ev
		}
		if len(msgs.Chunk) == 0 || msgs.End == "" {
			break
		}
		from = msgs.End
	}
	return seen
}

// syncSince is the timeline events of an incremental /sync from since:
// what a client that was listening was sent live.
func syncSince(t *testing.T, c *mautrix.Client, room id.RoomID, since string) (events map[string]*event.Event, next string) {
	t.Helper()
	resp, err := c.SyncRequest(context.Background(), 0, since, "", false, event.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	events = map[string]*event.Event{}
	if joined, ok := resp.Rooms.Join[room]; ok {
		for _, ev := range joined.Timeline.Events {
			events[ev.ID.String()] = ev
		}
	}
	return events, resp.NextBatch
}

// hostileText marks the bodies of every message hs4 forges; no client
// may ever be shown one.
const hostileText = "hostile"

func bodyOf(ev *event.Event) string {
	b, _ := ev.Content.Raw["body"].(string)
	return b
}

// noHostileBodies fails if any event shown to a client carries a forged
// body.
func noHostileBodies(t *testing.T, who string, events map[string]*event.Event) {
	t.Helper()
	for id, ev := range events {
		if strings.Contains(bodyOf(ev), hostileText) {
			t.Errorf("%s was shown %s with hs4's forged body %q", who, id, bodyOf(ev))
		}
	}
}
