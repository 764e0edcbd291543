package storage

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestStateDeltas checks that each committed CurrentDelta is recorded at
// its batch's last stream position, removals included, whether the
// batch commits alone or in a merged group.
func TestStateDeltas(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			h := newHarness(t, be)
			createRoom(h, room)
			c := "$create" + room
			topic := StateKey{"m.room.topic", ""}
			name := StateKey{"m.room.name", ""}
			b := &Batch{RoomID: room, Events: []PersistEvent{
				{Record: stateRec(room, "$t1", topic.Type, "", 2, ids(c), ids(c)), State: &StateSpec{BaseEvent: c, Delta: StateMap{topic: "$t1"}}},
				{Record: stateRec(room, "$n1", name.Type, "", 3, ids("$t1"), ids(c)), State: &StateSpec{BaseEvent: "$t1", Delta: StateMap{name: "$n1"}}},
			}, Extremities: ids("$n1"), CurrentDelta: StateMap{topic: "$t1", name: "$n1"}, MaxDepth: 3}
			h.commit(b)
			pos := b.Events[1].Record.StreamPos
			// A message whose placement brings an older topic back and
			// drops the name, as state resolution may.
			m := &Batch{RoomID: room, Events: []PersistEvent{
				{Record: rec(room, "$m", "m.room.message", 4, ids("$n1"), ids(c)), State: &StateSpec{BaseEvent: "$n1"}},
			}, Extremities: ids("$m"), CurrentDelta: StateMap{topic: "$t0", name: ""}, MaxDepth: 4}
			h.commit(m)
			mpos := m.Events[0].Record.StreamPos

			got, err := h.db.StateDeltas(h.ctx, room, pos-1, mpos)
			if err != nil {
				t.Fatal(err)
			}
			sortDeltas(got)
			want := []StateDelta{
				{pos, name, "$n1"}, {pos, topic, "$t1"},
				{mpos, name, ""}, {mpos, topic, "$t0"},
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("deltas\n got %v\nwant %v", got, want)
			}
			if got, err := h.db.StateDeltas(h.ctx, room, pos, mpos-1); err != nil || len(got) != 0 {
				t.Fatalf("deltas between the batches: %v, %v; want none", got, err)
			}

			// A merged group: each batch's delta at its own position.
			bs := make([]*Batch, 4)
			for i := range bs {
				r := fmt.Sprintf("!g%d:test", i)
				createRoom(h, r)
				id := fmt.Sprintf("$g%d", i)
				bs[i] = &Batch{RoomID: r, Events: []PersistEvent{
					{Record: stateRec(r, id, topic.Type, "", 2, ids("$create"+r), ids("$create"+r)), State: &StateSpec{BaseEvent: "$create" + r, Delta: StateMap{topic: id}}},
				}, Extremities: ids(id), CurrentDelta: StateMap{topic: id}, MaxDepth: 2}
			}
			for i, err := range commitQueued(t, h, bs) {
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
			}
			for i, b := range bs {
				p := b.Events[0].Record.StreamPos
				got, err := h.db.StateDeltas(h.ctx, b.RoomID, p-1, p)
				if err != nil {
					t.Fatal(err)
				}
				if want := []StateDelta{{p, topic, fmt.Sprintf("$g%d", i)}}; !reflect.DeepEqual(got, want) {
					t.Fatalf("group batch %d: deltas %v, want %v", i, got, want)
				}
			}
		})
	}
}

// sortDeltas orders deltas by position, then type.
func sortDeltas(ds []StateDelta) {
	slices.SortFunc(ds, func(a, b StateDelta) int {
		return cmp.Or(cmp.Compare(a.StreamPos, b.StreamPos), strings.Compare(a.Key.Type, b.Key.Type))
	})
}
