package storage

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestGraphReads covers the operator's reads (graph.go) on every backend.
func TestGraphReads(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Run("graph pages", func(t *testing.T) { testRoomGraph(t, newHarness(t, be)) })
			t.Run("room counts", func(t *testing.T) { testCountRooms(t, newHarness(t, be)) })
		})
	}
}

func testRoomGraph(t *testing.T, h *harness) {
	if _, err := h.db.RoomGraph(h.ctx, room, GraphTop, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("graph of an unknown room: %v, want ErrNotFound", err)
	}
	createRoom(h, room)
	createRoom(h, "!other:test")
	c := "$create" + room
	// A fork ($a, $b on $create), a merge ($m), a rejected and a
	// soft-failed event and an outlier: the graph has them all.
	a := rec(room, "$a", "m.room.message", 2, ids(c), ids(c))
	b := rec(room, "$b", "m.room.message", 2, ids(c), ids(c))
	rej := rec(room, "$rej", "m.room.message", 3, ids("$a"), ids(c))
	rej.Rejected = "auth: not a member"
	soft := rec(room, "$soft", "m.room.message", 3, ids("$b"), ids(c))
	soft.SoftFailed = true
	out := stateRec(room, "$out", "m.room.member", "@x:test", 2, ids(c), ids(c))
	out.Outlier = true
	m := rec(room, "$m", "m.room.message", 3, ids("$a", "$b"), ids(c))
	h.commit(&Batch{RoomID: room, Events: []PersistEvent{
		{Record: a, State: &StateSpec{BaseEvent: c}},
		{Record: b, State: &StateSpec{BaseEvent: c}},
		{Record: rej},
		{Record: soft, State: &StateSpec{BaseEvent: "$b"}},
		{Record: out},
		{Record: m, State: &StateSpec{BaseEvent: "$a"}},
	}, Extremities: ids("$m")})
	h.commit(&Batch{RoomID: "!other:test", Events: []PersistEvent{
		{Record: rec("!other:test", "$elsewhere", "m.room.message", 2, ids("$create!other:test"), nil), State: &StateSpec{BaseEvent: "$create!other:test"}},
	}})

	p, err := h.db.RoomGraph(h.ctx, room, GraphTop, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := graphIDs(p), ids("$m", "$out", "$soft", "$rej"); !slices.Equal(got, want) || !p.More {
		t.Fatalf("first page %v more=%v, want %v more=true", got, p.More, want)
	}
	if !slices.Equal(p.Extremities, ids("$m")) {
		t.Errorf("extremities %v", p.Extremities)
	}
	if r := p.Events[3]; r.Rejected == "" || r.StateGroup != 0 {
		t.Errorf("rejected event read back as %+v", r)
	}
	if r := p.Events[1]; !r.Outlier || r.StateKey == nil || *r.StateKey != "@x:test" {
		t.Errorf("outlier read back as %+v", r)
	}
	if r := p.Events[0]; !slices.Equal(r.PrevEvents, ids("$a", "$b")) || !slices.Equal(r.AuthEvents, ids(c)) || r.Depth != 3 {
		t.Errorf("merge read back as %+v", r)
	}
	p, err = h.db.RoomGraph(h.ctx, room, p.Events[3].StreamPos, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := graphIDs(p), ids("$b", "$a", c); !slices.Equal(got, want) || p.More {
		t.Fatalf("second page %v more=%v, want %v more=false", got, p.More, want)
	}
	// Exactly a page's worth left: no empty page after it.
	p, err = h.db.RoomGraph(h.ctx, room, p.Events[0].StreamPos, 2)
	if err != nil || !slices.Equal(graphIDs(p), ids("$a", c)) || p.More {
		t.Fatalf("last page %v more=%v err=%v", graphIDs(p), p.More, err)
	}
	if _, err := h.db.RoomGraph(h.ctx, room, GraphTop, 0); err == nil {
		t.Error("limit 0 accepted")
	}
}

func graphIDs(p *GraphPage) []string {
	out := []string{}
	for _, e := range p.Events {
		out = append(out, e.EventID)
	}
	return out
}

func testCountRooms(t *testing.T, h *harness) {
	got, err := h.db.CountRooms(h.ctx, ":test")
	if err != nil || got != (RoomCounts{}) {
		t.Fatalf("empty server: %+v %v", got, err)
	}
	rooms, err := h.db.RoomsWithState(h.ctx, "m.call.member")
	if err != nil || len(rooms) != 0 {
		t.Fatalf("RoomsWithState on an empty server: %v %v", rooms, err)
	}
	createRoom(h, room)
	createRoom(h, "!other:test")
	member := func(roomID, user, membership string, depth int64) PersistEvent {
		r := stateRec(roomID, "$"+membership+user+roomID, "m.room.member", user, depth, nil, nil)
		r.JSON = []byte(fmt.Sprintf(`{"content":{"membership":%q},"type":"m.room.member"}`, membership))
		return PersistEvent{Record: r, State: &StateSpec{BaseEvent: "$create" + roomID, Delta: StateMap{{"m.room.member", user}: r.EventID}}}
	}
	joinA, joinB, inviteC := member(room, "@a:test", "join", 2), member(room, "@b:remote", "join", 3), member(room, "@c:test", "invite", 4)
	leaveA := member("!other:test", "@a:test", "leave", 2)
	call := stateRec(room, "$call", "m.call.member", "@a:test", 5, nil, nil)
	h.commit(&Batch{RoomID: room, Events: []PersistEvent{joinA, joinB, inviteC, {Record: call, State: &StateSpec{BaseEvent: "$create" + room}}},
		CurrentDelta: StateMap{
			{"m.room.member", "@a:test"}: joinA.Record.EventID, {"m.room.member", "@b:remote"}: joinB.Record.EventID,
			{"m.room.member", "@c:test"}: inviteC.Record.EventID, {"m.call.member", "@a:test"}: "$call",
		}})
	h.commit(&Batch{RoomID: "!other:test", Events: []PersistEvent{leaveA},
		CurrentDelta: StateMap{{"m.room.member", "@a:test"}: leaveA.Record.EventID}})

	got, err = h.db.CountRooms(h.ctx, ":test")
	want := RoomCounts{Rooms: 2, Joined: 2, Invited: 1, LocalJoined: 1, Active: 1}
	if err != nil || got != want {
		t.Fatalf("CountRooms = %+v %v, want %+v", got, err, want)
	}
	rooms, err = h.db.RoomsWithState(h.ctx, "org.matrix.msc3401.call.member", "m.call.member")
	if err != nil || !slices.Equal(rooms, ids(room)) {
		t.Fatalf("RoomsWithState = %v %v", rooms, err)
	}
}
