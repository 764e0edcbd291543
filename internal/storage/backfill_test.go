package storage

import (
	"reflect"
	"slices"
	"testing"
)

// TestBackfill checks backfilled batches on both backends: their events
// sit below every stored position in batch order, out of EventsSince's
// reach, without touching extremities, current state or the stream head;
// the backward extremities move with them and survive a restart.
func TestBackfill(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			testBackfill(t, newHarness(t, be))
		})
	}
}

func testBackfill(t *testing.T, h *harness) {
	createRoom(h, room)
	create := "$create" + room
	// A join whose prev event is not stored, and an outlier the
	// history will place.
	memberKey := StateKey{"m.room.member", "@a:test"}
	h.commit(&Batch{
		RoomID: room,
		Events: []PersistEvent{
			{Record: func() EventRecord {
				r := stateRec(room, "$old-member", "m.room.member", "@a:test", 2, ids(create), ids(create))
				r.Outlier = true
				return r
			}()},
			{
				Record: stateRec(room, "$join", "m.room.member", "@b:test", 10, ids("$m4"), ids(create)),
				State:  &StateSpec{BaseEvent: create, Delta: StateMap{{"m.room.member", "@b:test"}: "$join", memberKey: "$old-member"}},
			},
		},
		Extremities:         ids("$join"),
		CurrentDelta:        StateMap{{"m.room.member", "@b:test"}: "$join", memberKey: "$old-member"},
		BackwardExtremities: ids("$m4"),
	})
	head, _ := h.db.MaxStreamPos(h.ctx)
	before := h.snapshot(room)
	backward := func() []string {
		t.Helper()
		got, err := h.db.BackwardExtremities(h.ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := backward(); !reflect.DeepEqual(got, ids("$m4")) {
		t.Fatalf("backward extremities after the join = %v, want [$m4]", got)
	}

	state := &StateSpec{Delta: StateMap{createKey: create, memberKey: "$old-member"}}
	b1 := &Batch{
		RoomID:   room,
		Backfill: true,
		Events: []PersistEvent{
			{Record: rec(room, "$m3", "m.room.message", 8, ids("$m2"), ids(create)), State: state},
			{Record: rec(room, "$m4", "m.room.message", 9, ids("$m3"), ids(create)), State: &StateSpec{BaseEvent: "$m3"}},
		},
		BackwardExtremities: ids("$m2"),
	}
	h.commit(b1)
	p3, p4 := b1.Events[0].Record.StreamPos, b1.Events[1].Record.StreamPos
	if !(p3 < p4 && p4 < 0) {
		t.Fatalf("first backfill positions %d, %d: want negative and ascending", p3, p4)
	}
	if got := backward(); !reflect.DeepEqual(got, ids("$m2")) {
		t.Fatalf("backward extremities after one batch = %v, want [$m2]", got)
	}

	// A restart must not hand out positions the stored history holds.
	h.reopen()
	b2 := &Batch{
		RoomID:   room,
		Backfill: true,
		Events: []PersistEvent{
			{Record: stateRec(room, "$old-member", "m.room.member", "@a:test", 2, ids(create), ids(create)),
				State: &StateSpec{BaseEvent: create, Delta: StateMap{memberKey: "$old-member"}}},
			{Record: rec(room, "$m2", "m.room.message", 7, ids("$old-member", "$lost"), ids(create)), State: &StateSpec{BaseEvent: "$old-member"}},
		},
		BackwardExtremities: ids("$lost"),
	}
	h.commit(b2)
	pm, p2 := b2.Events[0].Record.StreamPos, b2.Events[1].Record.StreamPos
	if !(pm < p2 && p2 < p3) {
		t.Fatalf("second backfill positions %d, %d: want ascending below %d", pm, p2, p3)
	}
	if got := backward(); !reflect.DeepEqual(got, ids("$lost")) {
		t.Fatalf("backward extremities after two batches = %v, want [$lost]", got)
	}
	recs, err := h.db.Events(h.ctx, ids("$old-member"))
	if err != nil {
		t.Fatal(err)
	}
	if r := recs["$old-member"]; r == nil || r.Outlier || r.StreamPos != pm {
		t.Fatalf("de-outliered history event = %+v, want placed at %d", r, pm)
	}
	st, err := h.db.StateAfter(h.ctx, "$m4")
	if err != nil {
		t.Fatal(err)
	}
	if want := (StateMap{createKey: create, memberKey: "$old-member"}); !reflect.DeepEqual(st, want) {
		t.Fatalf("state after a backfilled event = %v, want %v", st, want)
	}

	// Nothing the live stream shows changed.
	if h2, _ := h.db.MaxStreamPos(h.ctx); h2 != head {
		t.Fatalf("stream head moved from %d to %d", head, h2)
	}
	since, err := h.db.EventsSince(h.ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range since {
		if slices.Contains(ids("$m2", "$m3", "$m4"), r.EventID) || r.StreamPos <= 0 {
			t.Fatalf("EventsSince(0) returned backfilled %s at %d", r.EventID, r.StreamPos)
		}
	}
	info, err := h.db.Room(h.ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(info.Extremities, ids("$join")) || info.Current[memberKey] != "$old-member" {
		t.Fatalf("room after backfill = %+v; before: %s", info, before)
	}

	// History that cannot be fetched is dropped from the edge.
	h.commit(&Batch{RoomID: room, Backfill: true, DropBackward: ids("$lost")})
	if got := backward(); len(got) != 0 {
		t.Fatalf("backward extremities after the drop = %v, want none", got)
	}

	// A backfill batch may not move the room.
	err = h.db.Commit(h.ctx, &Batch{RoomID: room, Backfill: true, Extremities: ids("$m4")})
	if err == nil {
		t.Fatal("a backfill batch replaced the extremities")
	}
}
