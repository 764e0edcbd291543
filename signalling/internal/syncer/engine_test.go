package syncer

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// fixture is one server's room service, index and engine over a fresh
// store.
type fixture struct {
	t     testing.TB
	ctx   context.Context
	db    *storage.DB
	rooms *rooms.Service
	index *Index
	eng   *Engine
}

func newFixture(t testing.TB, backend string) *fixture {
	t.Helper()
	ctx := context.Background()
	dsn, dir := storagetest.Fresh(t, backend)
	db, err := storage.Open(ctx, dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	hub := stream.NewHub()
	idx, err := NewIndex(ctx, IndexConfig{ServerName: "hs1", Window: 64}, IndexDeps{DB: db, Hub: hub})
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	svc, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: "hs1", KeyID: "ed25519:a", Key: key}},
		rooms.Deps{Store: db, Listener: idx})
	if err != nil {
		t.Fatal(err)
	}
	// Close order: rooms, then the index, then storage (registered first,
	// so it runs last).
	t.Cleanup(func() { idx.Close() })
	t.Cleanup(func() { svc.Close() })
	eng, err := New(Config{}, Deps{Index: idx, DB: db, Hub: hub})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, db: db, rooms: svc, index: idx, eng: eng}
}

func (f *fixture) send(room rooms.RoomID, sender, typ string, stateKey *string, content string) string {
	f.t.Helper()
	c, err := cjson.Parse([]byte(content))
	if err != nil {
		f.t.Fatal(err)
	}
	st, err := f.rooms.Append(f.ctx, room, rooms.LocalEvent{Type: typ, StateKey: stateKey, Sender: rooms.UserID(sender), Content: c})
	if err != nil {
		f.t.Fatalf("%s %s: %v", sender, typ, err)
	}
	return string(st.Event.ID())
}

func (f *fixture) member(room rooms.RoomID, sender, target, membership string) {
	f.send(room, sender, "m.room.member", &target, fmt.Sprintf(`{"membership":%q}`, membership))
}

func (f *fixture) message(room rooms.RoomID, sender, body string) string {
	return f.send(room, sender, "m.room.message", nil, fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, body))
}

// newRoom makes a public room of alice's.
func (f *fixture) newRoom() rooms.RoomID {
	f.t.Helper()
	st, err := f.rooms.Create(f.ctx, "", "@alice:hs1", cjson.NullValue())
	if err != nil {
		f.t.Fatal(err)
	}
	room := st.Event.RoomID()
	f.member(room, "@alice:hs1", "@alice:hs1", "join")
	empty := ""
	f.send(room, "@alice:hs1", "m.room.join_rules", &empty, `{"join_rule":"public"}`)
	return room
}

// caughtUp waits until the index has read everything stored.
func (f *fixture) caughtUp() {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		want, _ := f.db.MaxStreamPos(f.ctx)
		if f.index.Head() >= want {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("index stuck at %d, stream at %d", f.index.Head(), want)
		}
		f.index.Poke()
		time.Sleep(time.Millisecond) // polling a condition with a deadline, not synchronising
	}
}

func (f *fixture) sync(user string, since *stream.Token, filter *Filter, timeout time.Duration) (*Response, stream.Token) {
	f.t.Helper()
	resp, next, err := f.eng.Sync(f.ctx, Request{UserID: user, DeviceID: "DEV", Since: since, Filter: filter, Timeout: timeout})
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, next
}

func bodies(t *testing.T, evs []json.RawMessage) []string {
	t.Helper()
	var out []string
	for _, raw := range evs {
		var ev struct {
			Type    string `json:"type"`
			Content struct {
				Body string `json:"body"`
			} `json:"content"`
			Unsigned struct {
				Age *int64 `json:"age"`
			} `json:"unsigned"`
			RoomID *string `json:"room_id"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Unsigned.Age == nil {
			t.Errorf("event without unsigned.age: %s", raw)
		}
		if ev.RoomID != nil {
			t.Errorf("sync event carries room_id: %s", raw)
		}
		if ev.Type == "m.room.message" {
			out = append(out, ev.Content.Body)
		}
	}
	return out
}

func TestSync(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			room := f.newRoom()
			f.member(room, "@bob:hs1", "@bob:hs1", "join")
			f.message(room, "@alice:hs1", "hello")
			f.caughtUp()

			// Initial sync: the room, its state and its timeline.
			resp, next := f.sync("@bob:hs1", nil, nil, 0)
			jr := resp.Rooms.Join[string(room)]
			if jr == nil {
				t.Fatalf("initial sync lacks the room: %+v", resp.Rooms)
			}
			if got := bodies(t, jr.Timeline.Events); len(got) != 1 || got[0] != "hello" {
				t.Fatalf("timeline bodies %v", got)
			}
			if len(jr.State.Events)+len(jr.Timeline.Events) < 5 {
				t.Fatalf("state %d + timeline %d events, want the whole room", len(jr.State.Events), len(jr.Timeline.Events))
			}
			if *jr.Summary.JoinedMemberCount != 2 {
				t.Fatalf("joined count %d", *jr.Summary.JoinedMemberCount)
			}

			// A long-poll returns as soon as a message is stored.
			type result struct {
				resp *Response
				next stream.Token
			}
			got := make(chan result, 1)
			go func() {
				r, n, err := f.eng.Sync(f.ctx, Request{UserID: "@bob:hs1", DeviceID: "DEV", Since: &next, Timeout: time.Minute})
				if err != nil {
					t.Error(err)
				}
				got <- result{r, n}
			}()
			f.message(room, "@alice:hs1", "are you there")
			var r result
			select {
			case r = <-got:
			case <-time.After(30 * time.Second):
				t.Fatal("long-poll did not wake")
			}
			if b := bodies(t, r.resp.Rooms.Join[string(room)].Timeline.Events); len(b) != 1 || b[0] != "are you there" {
				t.Fatalf("woken sync bodies %v", b)
			}
			if r.resp.Rooms.Join[string(room)].Timeline.Limited {
				t.Fatal("short incremental timeline marked limited")
			}

			// Nothing new: a zero-timeout sync returns empty with the same
			// token.
			again, next2 := f.sync("@bob:hs1", &r.next, nil, 0)
			if !again.empty() || next2 != r.next {
				t.Fatalf("empty sync: %+v, token %v -> %v", again.Rooms, r.next, next2)
			}

			// More messages than the timeline limit: limited, with the last
			// ones, and a prev_batch before them.
			for i := range 15 {
				f.message(room, "@alice:hs1", fmt.Sprintf("m%d", i))
			}
			f.caughtUp()
			lim, next3 := f.sync("@bob:hs1", &next2, nil, 0)
			tl := lim.Rooms.Join[string(room)].Timeline
			if b := bodies(t, tl.Events); !tl.Limited || len(b) != DefaultTimelineLimit || b[0] != "m5" || b[9] != "m14" {
				t.Fatalf("limited=%v bodies %v", tl.Limited, b)
			}
			if pb, err := stream.ParseToken(tl.PrevBatch); err != nil || pb.Events >= next3.Events || pb.Events <= next2.Events {
				t.Fatalf("prev_batch %q between %v and %v", tl.PrevBatch, next2, next3)
			}

			// A filter's timeline limit and types apply.
			one, types := 1, []string{"m.room.member"}
			fl := &Filter{}
			fl.Room.Timeline.Limit = &one
			fl.Room.Timeline.Types = &types
			fr, _ := f.sync("@bob:hs1", nil, fl, 0)
			if evs := fr.Rooms.Join[string(room)].Timeline.Events; len(evs) != 0 {
				t.Fatalf("filtered timeline %s", evs)
			}

			// Carol is invited: her sync shows the invite with stripped
			// state; after she joins, the room with its whole state.
			_, cnext := f.sync("@carol:hs1", nil, nil, 0)
			f.member(room, "@alice:hs1", "@carol:hs1", "invite")
			f.caughtUp()
			inv, cnext2 := f.sync("@carol:hs1", &cnext, nil, 0)
			ir := inv.Rooms.Invite[string(room)]
			if ir == nil || len(ir.InviteState.Events) < 2 {
				t.Fatalf("invite section %+v", inv.Rooms)
			}
			if !strings.Contains(string(ir.InviteState.Events[len(ir.InviteState.Events)-1]), `"invite"`) {
				t.Fatalf("invite state lacks the invite: %s", ir.InviteState.Events)
			}
			f.member(room, "@carol:hs1", "@carol:hs1", "join")
			f.caughtUp()
			joined, _ := f.sync("@carol:hs1", &cnext2, nil, 0)
			if jr := joined.Rooms.Join[string(room)]; jr == nil || len(jr.State.Events) < 4 {
				t.Fatalf("newly joined room %+v", joined.Rooms)
			}

			// Bob leaves: the room moves to leave, and later messages do
			// not reach him.
			f.member(room, "@bob:hs1", "@bob:hs1", "leave")
			f.message(room, "@alice:hs1", "after bob left")
			f.caughtUp()
			left, next4 := f.sync("@bob:hs1", &next3, nil, 0)
			lr := left.Rooms.Leave[string(room)]
			if lr == nil || left.Rooms.Join[string(room)] != nil {
				t.Fatalf("leave section %+v", left.Rooms)
			}
			for _, b := range bodies(t, lr.Timeline.Events) {
				if b == "after bob left" {
					t.Fatal("a message after the leave reached bob")
				}
			}
			f.message(room, "@alice:hs1", "still gone")
			f.caughtUp()
			if later, _ := f.sync("@bob:hs1", &next4, nil, 0); !later.empty() {
				t.Fatalf("bob got %+v after leaving", later.Rooms)
			}

			// A since token older than the window (64 events) is answered
			// like an initial sync, marked limited.
			for i := range 70 {
				f.message(room, "@alice:hs1", fmt.Sprintf("flood %d", i))
			}
			f.caughtUp()
			old, _ := f.sync("@carol:hs1", &cnext2, nil, 0)
			if jr := old.Rooms.Join[string(room)]; jr == nil || !jr.Timeline.Limited || len(jr.State.Events) < 4 {
				t.Fatalf("window miss: %+v", old.Rooms)
			}

			// Malformed tokens are refused by the parser.
			if _, err := stream.ParseToken("s1_2"); err == nil {
				t.Fatal("short token accepted")
			}
		})
	}
}

func TestUnreadCounts(t *testing.T) {
	f := newFixture(t, storagetest.SQLite)
	room := f.newRoom()
	f.member(room, "@bob:hs1", "@bob:hs1", "join")
	f.message(room, "@alice:hs1", "one")
	f.message(room, "@alice:hs1", "hey bob, look")
	f.message(room, "@bob:hs1", "my own message does not count")
	f.send(room, "@alice:hs1", "m.room.message", nil, `{"msgtype":"m.text","body":"ping","m.mentions":{"user_ids":["@bob:hs1"]}}`)
	f.caughtUp()
	resp, next := f.sync("@bob:hs1", nil, nil, 0)
	u := resp.Rooms.Join[string(room)].UnreadNotifications
	if u.NotificationCount != 3 || u.HighlightCount != 2 {
		t.Fatalf("unread %+v, want 3 notifying, 2 highlights", u)
	}
	if n, _ := f.index.Unread("@alice:hs1", string(room)); n != 1 {
		t.Fatalf("alice's unread %d, want 1 (bob's message)", n)
	}
	// A read receipt for the second message leaves the mention after it.
	last := f.message(room, "@alice:hs1", "after")
	f.caughtUp()
	recs, err := f.db.Events(f.ctx, []string{last})
	if err != nil {
		t.Fatal(err)
	}
	f.index.MarkRead("@bob:hs1", string(room), recs[last].StreamPos-1)
	resp, _ = f.sync("@bob:hs1", &next, nil, 0)
	if u := resp.Rooms.Join[string(room)].UnreadNotifications; u.NotificationCount != 1 || u.HighlightCount != 0 {
		t.Fatalf("after the receipt: %+v, want 1 notifying, 0 highlights", u)
	}
}

func TestDeviceListsFromMembership(t *testing.T) {
	f := newFixture(t, storagetest.SQLite)
	room := f.newRoom()
	f.caughtUp()
	_, since := f.sync("@alice:hs1", nil, nil, 0)
	f.member(room, "@bob:hs1", "@bob:hs1", "join")
	f.caughtUp()
	resp, since2 := f.sync("@alice:hs1", &since, nil, 0)
	if resp.DeviceLists == nil || !slices.Equal(resp.DeviceLists.Changed, []string{"@bob:hs1"}) {
		t.Fatalf("after bob joined: %+v, want changed [bob]", resp.DeviceLists)
	}
	f.member(room, "@bob:hs1", "@bob:hs1", "leave")
	f.caughtUp()
	resp, _ = f.sync("@alice:hs1", &since2, nil, 0)
	if resp.DeviceLists == nil || !slices.Equal(resp.DeviceLists.Left, []string{"@bob:hs1"}) {
		t.Fatalf("after bob left: %+v, want left [bob]", resp.DeviceLists)
	}
}

// TestSyncEdgeCases covers the membership and filter cases a review
// found: each failed before its fix.
func TestSyncEdgeCases(t *testing.T) {
	t.Run("filter before limit", func(t *testing.T) {
		f := newFixture(t, storagetest.SQLite)
		room := f.newRoom()
		f.member(room, "@bob:hs1", "@bob:hs1", "join")
		f.caughtUp()
		_, since := f.sync("@bob:hs1", nil, nil, 0)
		f.message(room, "@alice:hs1", "the one message")
		for range 3 {
			f.send(room, "@alice:hs1", "m.reaction", nil, `{}`)
		}
		f.caughtUp()
		two, types := 2, []string{"m.room.message"}
		fl := &Filter{}
		fl.Room.Timeline.Limit = &two
		fl.Room.Timeline.Types = &types
		resp, _ := f.sync("@bob:hs1", &since, fl, 0)
		jr := resp.Rooms.Join[string(room)]
		if jr == nil || !slices.Equal(bodies(t, jr.Timeline.Events), []string{"the one message"}) || jr.Timeline.Limited {
			t.Fatalf("filtered timeline: %+v", resp.Rooms)
		}
	})
	t.Run("leave and rejoin within one window", func(t *testing.T) {
		f := newFixture(t, storagetest.SQLite)
		room := f.newRoom()
		f.member(room, "@bob:hs1", "@bob:hs1", "join")
		f.caughtUp()
		_, since := f.sync("@bob:hs1", nil, nil, 0)
		f.member(room, "@bob:hs1", "@bob:hs1", "leave")
		empty := ""
		f.send(room, "@alice:hs1", "m.room.name", &empty, `{"name":"renamed while away"}`)
		f.member(room, "@bob:hs1", "@bob:hs1", "join")
		f.caughtUp()
		resp, _ := f.sync("@bob:hs1", &since, nil, 0)
		jr := resp.Rooms.Join[string(room)]
		if jr == nil || !strings.Contains(string(joinRaw(jr.State.Events)+joinRaw(jr.Timeline.Events)), "renamed while away") {
			t.Fatalf("the rename made while bob was away is missing: %+v", jr)
		}
	})
	t.Run("many profile changes keep the join", func(t *testing.T) {
		f := newFixture(t, storagetest.SQLite)
		room := f.newRoom()
		f.caughtUp()
		_, since := f.sync("@bob:hs1", nil, nil, 0)
		f.member(room, "@bob:hs1", "@bob:hs1", "join")
		bob := "@bob:hs1"
		for i := range 2 * keepChanges {
			f.send(room, bob, "m.room.member", &bob, fmt.Sprintf(`{"membership":"join","displayname":"bob %d"}`, i))
		}
		f.caughtUp()
		resp, _ := f.sync(bob, &since, nil, 0)
		jr := resp.Rooms.Join[string(room)]
		if jr == nil || jr.Summary == nil || !strings.Contains(string(joinRaw(jr.State.Events)), "m.room.create") {
			t.Fatalf("newly joined room without its state: %+v", jr)
		}
	})
	t.Run("joined-only history", func(t *testing.T) {
		f := newFixture(t, storagetest.SQLite)
		room := f.newRoom()
		empty := ""
		f.send(room, "@alice:hs1", "m.room.history_visibility", &empty, `{"history_visibility":"joined"}`)
		f.message(room, "@alice:hs1", "secret before bob joined")
		f.member(room, "@bob:hs1", "@bob:hs1", "join")
		f.message(room, "@alice:hs1", "hello bob")
		f.caughtUp()
		resp, _ := f.sync("@bob:hs1", nil, nil, 0)
		if b := bodies(t, resp.Rooms.Join[string(room)].Timeline.Events); !slices.Equal(b, []string{"hello bob"}) {
			t.Fatalf("bob's timeline %v, want only what followed his join", b)
		}
	})
	t.Run("leave reported after a window miss", func(t *testing.T) {
		f := newFixture(t, storagetest.SQLite)
		room := f.newRoom()
		f.member(room, "@bob:hs1", "@bob:hs1", "join")
		f.caughtUp()
		_, since := f.sync("@bob:hs1", nil, nil, 0)
		f.member(room, "@alice:hs1", "@bob:hs1", "leave")
		for i := range 70 {
			f.message(room, "@alice:hs1", fmt.Sprint(i))
		}
		f.caughtUp()
		resp, _ := f.sync("@bob:hs1", &since, nil, 0)
		if resp.Rooms == nil || resp.Rooms.Leave[string(room)] == nil {
			t.Fatalf("the kick is not reported: %+v", resp.Rooms)
		}
	})
}

func joinRaw(evs []json.RawMessage) string {
	var b strings.Builder
	for _, e := range evs {
		b.Write(e)
	}
	return b.String()
}

func TestPrevContent(t *testing.T) {
	f := newFixture(t, storagetest.SQLite)
	room := f.newRoom()
	bob := "@bob:hs1"
	f.member(room, bob, bob, "join")
	f.caughtUp()
	_, since := f.sync("@alice:hs1", nil, nil, 0)
	f.send(room, bob, "m.room.member", &bob, `{"membership":"join","displayname":"Bobby"}`)
	f.caughtUp()
	resp, _ := f.sync("@alice:hs1", &since, nil, 0)
	evs := resp.Rooms.Join[string(room)].Timeline.Events
	if len(evs) != 1 || !strings.Contains(string(evs[0]), `"prev_content":{"membership":"join"}`) {
		t.Fatalf("rename without prev_content: %s", evs)
	}
	// The same through a full sync's timeline (read from storage).
	full, _ := f.sync("@alice:hs1", nil, nil, 0)
	raw := joinRaw(full.Rooms.Join[string(room)].Timeline.Events)
	if !strings.Contains(raw, `"displayname":"Bobby","membership":"join"}`) || !strings.Contains(raw, `"prev_content":{"membership":"join"}`) {
		t.Fatalf("full timeline without prev_content: %s", raw)
	}
}

func TestFullStateAndIncludeLeave(t *testing.T) {
	f := newFixture(t, storagetest.SQLite)
	room := f.newRoom()
	gone := f.newRoom()
	f.member(room, "@bob:hs1", "@bob:hs1", "join")
	f.member(gone, "@bob:hs1", "@bob:hs1", "join")
	f.member(gone, "@bob:hs1", "@bob:hs1", "leave")
	f.message(room, "@alice:hs1", "old")
	f.caughtUp()
	_, since := f.sync("@bob:hs1", nil, nil, 0)
	f.message(room, "@alice:hs1", "new")
	f.caughtUp()

	// full_state with a token: the timeline still starts at the token,
	// the state is whole.
	resp, _, err := f.eng.Sync(f.ctx, Request{UserID: "@bob:hs1", DeviceID: "DEV", Since: &since, FullState: true})
	if err != nil {
		t.Fatal(err)
	}
	jr := resp.Rooms.Join[string(room)]
	if b := bodies(t, jr.Timeline.Events); !slices.Equal(b, []string{"new"}) {
		t.Fatalf("full_state timeline %v, want only what followed the token", b)
	}
	if !strings.Contains(joinRaw(jr.State.Events), "m.room.create") {
		t.Fatalf("full_state without the whole state: %s", joinRaw(jr.State.Events))
	}

	// include_leave lists left rooms in an initial sync; without it they
	// are left out.
	plain, _ := f.sync("@bob:hs1", nil, nil, 0)
	if plain.Rooms.Leave[string(gone)] != nil {
		t.Fatal("left room in an initial sync without include_leave")
	}
	fl := &Filter{}
	fl.Room.IncludeLeave = true
	withLeave, _ := f.sync("@bob:hs1", nil, fl, 0)
	if withLeave.Rooms.Leave[string(gone)] == nil {
		t.Fatalf("include_leave did not list the left room: %+v", withLeave.Rooms)
	}
}
