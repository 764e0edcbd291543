package rooms

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

func TestLocalAppendLinear(t *testing.T) {
	onBackends(t, testLocalAppendLinear)
}

func testLocalAppendLinear(t *testing.T, newNet func() *testNet) {
	for _, version := range SupportedVersions() {
		t.Run("v"+version, func(t *testing.T) {
			net := newNet()
			hs := net.server(t, "hs1")
			alice := UserID("@alice:hs1")
			create, err := hs.svc.Create(context.Background(), version, alice, mustContent(t, nil))
			if err != nil {
				t.Fatal(err)
			}
			room := create.Event.RoomID()
			if version == "12" && string(room[1:]) != string(create.Event.ID()[1:]) {
				t.Fatalf("v12 room ID %s is not the create event hash %s", room, create.Event.ID())
			}
			join := hs.send(t, room, alice, pdu.TypeMember, str(string(alice)), map[string]any{"membership": "join"})
			users := map[string]any{string(alice): 100}
			if version == "12" {
				users = map[string]any{} // creators are not listed (rooms v12, rule 10.4)
			}
			pl := hs.send(t, room, alice, pdu.TypePowerLevels, str(""), map[string]any{"users": users, "users_default": 0})
			jr := hs.send(t, room, alice, pdu.TypeJoinRules, str(""), map[string]any{"join_rule": "public"})
			var last *Stored
			prevPos := jr.StreamPos
			for i := 0; i < 20; i++ {
				last = hs.send(t, room, alice, "m.room.message", nil, map[string]any{"body": "hello", "msgtype": "m.text"})
				if last.StreamPos <= prevPos {
					t.Fatalf("stream position %d not after %d", last.StreamPos, prevPos)
				}
				prevPos = last.StreamPos
			}
			// The message's auth events are create (not in v12), power
			// levels and the sender's membership; its prev event the last one.
			want := map[EventID]bool{pl.Event.ID(): true, join.Event.ID(): true}
			if version != "12" {
				want[create.Event.ID()] = true
			}
			got := last.Event.AuthEvents()
			if len(got) != len(want) {
				t.Fatalf("auth events %v, want %v", got, want)
			}
			for _, id := range got {
				if !want[id] {
					t.Fatalf("unexpected auth event %s", id)
				}
			}
			if ex := hs.extremities(t, room); len(ex) != 1 || ex[0] != string(last.Event.ID()) {
				t.Fatalf("extremities %v, want [%s]", ex, last.Event.ID())
			}
			cur := hs.current(t, room)
			if cur[storage.StateKey{Type: pdu.TypeJoinRules}] != string(jr.Event.ID()) {
				t.Fatalf("current join rules %q", cur[storage.StateKey{Type: pdu.TypeJoinRules}])
			}
			st, err := hs.store.StateAfter(context.Background(), string(last.Event.ID()))
			if err != nil || len(st) != len(cur) {
				t.Fatalf("state after last event %v (%v), want %v", st, err, cur)
			}

			// A restarted service continues the same graph.
			hs.svc.Close()
			svc2, err := New(hs.svc.cfg, hs.svc.deps)
			if err != nil {
				t.Fatal(err)
			}
			defer svc2.Close()
			next, err := svc2.Append(context.Background(), room, LocalEvent{Type: "m.room.message", Sender: alice, Content: mustContent(t, map[string]any{"body": "again"})})
			if err != nil {
				t.Fatal(err)
			}
			if p := next.Event.PrevEvents(); len(p) != 1 || p[0] != last.Event.ID() {
				t.Fatalf("after restart prev_events %v, want [%s]", p, last.Event.ID())
			}
			if next.Event.Depth() != last.Event.Depth()+1 {
				t.Fatalf("depth %d, want %d", next.Event.Depth(), last.Event.Depth()+1)
			}
		})
	}
}

func TestLocalEventRefusedLeavesNothing(t *testing.T) {
	net := newTestNet()
	hs := net.server(t, "hs1")
	alice, mallory := UserID("@alice:hs1"), UserID("@mallory:hs1")
	create, err := hs.svc.Create(context.Background(), "", alice, mustContent(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	room := create.Event.RoomID()
	hs.send(t, room, alice, pdu.TypeMember, str(string(alice)), map[string]any{"membership": "join"})
	before, _ := hs.store.MaxStreamPos(context.Background())

	_, err = hs.svc.Append(context.Background(), room, LocalEvent{Type: "m.room.message", Sender: mallory, Content: mustContent(t, map[string]any{"body": "hi"})})
	var na *NotAllowedError
	if !errors.As(err, &na) {
		t.Fatalf("non-member message: got %v, want NotAllowedError", err)
	}
	if na.Rule == "" {
		t.Fatalf("NotAllowedError without a rule: %v", na)
	}
	after, _ := hs.store.MaxStreamPos(context.Background())
	if after != before {
		t.Fatalf("refused event moved the stream from %d to %d", before, after)
	}
	if _, err := hs.svc.Append(context.Background(), room, LocalEvent{Type: "m.room.message", Sender: "@bob:elsewhere", Content: mustContent(t, nil)}); !errors.Is(err, ErrNotLocal) {
		t.Fatalf("remote sender: got %v, want ErrNotLocal", err)
	}
	if _, err := hs.svc.Append(context.Background(), "!nope:hs1", LocalEvent{Type: "m.room.message", Sender: alice, Content: mustContent(t, nil)}); !errors.Is(err, ErrUnknownRoom) {
		t.Fatalf("unknown room: got %v, want ErrUnknownRoom", err)
	}
}

// TestCreateSameMillisecond: in room version 12 the room ID is the create
// event's hash, so identical create requests in one millisecond must still
// give distinct rooms.
func TestCreateSameMillisecond(t *testing.T) {
	net := newTestNet()
	hs := net.server(t, "hs1")
	frozen := time.UnixMilli(1_700_000_000_000)
	hs.svc.deps.Now = func() time.Time { return frozen }
	seen := map[RoomID]bool{}
	for i := 0; i < 3; i++ {
		c, err := hs.svc.Create(context.Background(), "12", "@alice:hs1", mustContent(t, nil))
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if seen[c.Event.RoomID()] {
			t.Fatalf("room %s created twice", c.Event.RoomID())
		}
		seen[c.Event.RoomID()] = true
	}
}
