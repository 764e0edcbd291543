package storage

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
)

// TestConformance runs every case against SQLite, and against PostgreSQL
// when PLEXUS_TEST_POSTGRES names a server. Each case gets a fresh store.
func TestConformance(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"room create and Room", testRoomCreate},
		{"event fields round trip", testRoundTrip},
		{"commit is atomic", testAtomicity},
		{"stream positions strictly increase", testStreamPositions},
		{"state after long delta chains", testDeltaChains},
		{"empty delta reuses the base group", testDeltaReuse},
		{"auth chain", testAuthChain},
		{"de-outliering", testDeoutlier},
		{"missing prevs", testMissingPrevs},
		{"events since paging", testEventsSince},
		{"migrations idempotent on reopen", testMigrationsIdempotent},
		{"data survives reopen", testSurvivesReopen},
		{"concurrent reads during commits", testConcurrentReads},
		{"close is idempotent", testClose},
		{"statements are prepared once", testStatementCache},
		{"state and auth walks use indexes", testQueryPlans},
		{"group commit isolates a bad batch", testGroupCommit},
		{"group commit shares statements", testGroupCommitMerged},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, newHarness(t, be))
				})
			}
		})
	}
}

const room = "!room:test"

var createKey = StateKey{"m.room.create", ""}

// createRoom commits a room with its create event $create.
func createRoom(h *harness, roomID string) {
	h.tb.Helper()
	h.commit(&Batch{
		RoomID:        roomID,
		CreateVersion: "10",
		Events: []PersistEvent{{
			Record: stateRec(roomID, "$create"+roomID, "m.room.create", "", 1, nil, nil),
			State:  &StateSpec{Delta: StateMap{createKey: "$create" + roomID}},
		}},
		Extremities:  ids("$create" + roomID),
		CurrentDelta: StateMap{createKey: "$create" + roomID},
		MaxDepth:     1,
	})
}

func testRoomCreate(t *testing.T, h *harness) {
	if got := h.db.Backend(); got != h.backend {
		t.Errorf("Backend() = %q, want %q", got, h.backend)
	}
	if _, err := h.db.Room(h.ctx, room); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Room before create: err = %v, want ErrNotFound", err)
	}
	createRoom(h, room)
	createRoom(h, "!other:test")

	got, err := h.db.Room(h.ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	want := &RoomInfo{
		RoomID: room, Version: "10", Extremities: ids("$create" + room),
		Current: StateMap{createKey: "$create" + room}, MaxDepth: 1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Room = %+v, want %+v", got, want)
	}
	roomIDs, err := h.db.RoomIDs(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := ids("!other:test", room); !slices.Equal(roomIDs, want) {
		t.Errorf("RoomIDs = %v, want %v", roomIDs, want)
	}
	err = h.db.Commit(h.ctx, &Batch{RoomID: room, CreateVersion: "11"})
	if err == nil {
		t.Error("creating an existing room succeeded")
	}
	err = h.db.Commit(h.ctx, &Batch{RoomID: "!nope:test", MaxDepth: 3})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("commit to an unknown room: err = %v, want ErrNotFound", err)
	}

	// Extremities come back sorted; current state deletes with "".
	topic := StateKey{"m.room.topic", ""}
	h.commit(&Batch{
		RoomID:       room,
		Extremities:  ids("$z", "$a", "$m"),
		CurrentDelta: StateMap{topic: "$t"},
		MaxDepth:     9,
	})
	h.commit(&Batch{RoomID: room, CurrentDelta: StateMap{topic: "", createKey: "$create2"}, MaxDepth: 4})
	got, err = h.db.Room(h.ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	want = &RoomInfo{
		RoomID: room, Version: "10", Extremities: ids("$a", "$m", "$z"),
		Current: StateMap{createKey: "$create2"}, MaxDepth: 9,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Room = %+v, want %+v", got, want)
	}
}

func testRoundTrip(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	empty := stateRec(room, "$empty-key", "m.room.name", "", 2, ids(c), ids(c))
	none := ""
	empty.ReplacesState = &none // "" (nothing replaced) stays distinct from nil
	msg := rec(room, "$msg", "m.room.message", 3, ids("$empty-key", "$gone"), ids(c, c))
	msg.JSON = []byte{0, 1, 2, 0xff, '"'}
	msg.SoftFailed = true
	rejected := stateRec(room, "$rejected", "m.room.power_levels", "", 4, ids("$msg"), ids(c))
	rejected.Rejected = "auth: not allowed"
	outlier := stateRec(room, "$outlier", "m.room.member", "@a:test", 1, nil, ids(c))
	outlier.Outlier = true
	replaced := "$older"
	rejected.ReplacesState = &replaced
	// A rejected event may carry the state before it as its state after,
	// so that its children can be placed.
	placed := rec(room, "$rejected-placed", "m.room.message", 5, ids("$rejected"), ids(c))
	placed.Rejected = "not a member"
	b := &Batch{RoomID: room, Events: []PersistEvent{
		{Record: empty, State: &StateSpec{BaseEvent: c, Delta: StateMap{{"m.room.name", ""}: "$empty-key"}}},
		{Record: msg, State: &StateSpec{BaseEvent: "$empty-key"}},
		{Record: rejected},
		{Record: outlier},
		{Record: placed, State: &StateSpec{BaseEvent: "$msg"}},
	}}
	h.commit(b)
	if got, err := h.db.StateAfter(h.ctx, "$rejected-placed"); err != nil || len(got) != 2 {
		t.Errorf("StateAfter(rejected with state) = %v, %v; want the state after $msg", got, err)
	}
	b.Events = b.Events[:4]

	got, err := h.db.Events(h.ctx, ids("$msg", "$empty-key", "$rejected", "$outlier", "$absent", "$msg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("Events returned %d records, want 4", len(got))
	}
	for _, pe := range b.Events {
		want := pe.Record
		if !reflect.DeepEqual(got[want.EventID], &want) {
			t.Errorf("Events[%s] =\n %+v, want\n %+v", want.EventID, got[want.EventID], &want)
		}
	}
	if got["$empty-key"].StateKey == nil || got["$msg"].StateKey != nil {
		t.Error("empty state key and no state key must stay distinct")
	}
	for _, id := range ids("$rejected", "$outlier") {
		if _, err := h.db.StateAfter(h.ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("StateAfter(%s): err = %v, want ErrNotFound", id, err)
		}
	}
	have, err := h.db.HaveEvents(h.ctx, ids("$msg", "$outlier", "$absent"))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"$msg": true, "$outlier": true, "$absent": false}; !maps.Equal(have, want) {
		t.Errorf("HaveEvents = %v, want %v", have, want)
	}
}

func testAtomicity(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	h.commit(&Batch{RoomID: room, Events: []PersistEvent{
		{Record: rec(room, "$a", "m.room.message", 2, ids(c), ids(c)), State: &StateSpec{BaseEvent: c}},
	}, Extremities: ids("$a"), MaxDepth: 2})
	before := h.snapshot(room)

	member := func(id string, depth int64, base string) PersistEvent {
		return PersistEvent{
			Record: stateRec(room, id, "m.room.member", "@"+id[1:]+":test", depth, ids(base), ids(c)),
			State:  &StateSpec{BaseEvent: base, Delta: StateMap{{"m.room.member", "@" + id[1:] + ":test"}: id}},
		}
	}
	bad := []struct {
		name   string
		events []PersistEvent
		want   error
	}{
		{"second event duplicates a stored one", []PersistEvent{
			member("$b", 3, "$a"),
			{Record: rec(room, "$a", "m.room.message", 2, ids(c), ids(c)), State: &StateSpec{BaseEvent: c}},
		}, ErrDuplicateEvent},
		{"third event has an unknown base after two new groups", []PersistEvent{
			member("$b", 3, "$a"),
			member("$c", 4, "$b"),
			member("$d", 5, "$unknown"),
		}, ErrNotFound},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			b := &Batch{
				RoomID: room, Events: tc.events, Extremities: ids("$b"), MaxDepth: 99,
				CurrentDelta: StateMap{{"m.room.topic", ""}: "$b", createKey: ""},
				MissingPrevs: []MissingPrev{{RoomID: room, EventID: "$x", ReferencedBy: "$b"}},
			}
			err := h.db.Commit(h.ctx, b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Commit: err = %v, want %v", err, tc.want)
			}
			if after := h.snapshot(room); after != before {
				t.Errorf("failed commit changed the store:\nbefore %s\nafter  %s", before, after)
			}
			for _, pe := range b.Events {
				if pe.Record.StreamPos != 0 || pe.Record.StateGroup != 0 {
					t.Errorf("%s: StreamPos %d StateGroup %d after failed commit, want 0", pe.Record.EventID,
						pe.Record.StreamPos, pe.Record.StateGroup)
				}
			}
		})
	}
	// The store still works, and positions continue without reuse trouble.
	b := &Batch{RoomID: room, Events: []PersistEvent{member("$b", 3, "$a")}}
	h.commit(b)
	if got, _ := h.db.StateAfter(h.ctx, "$b"); len(got) != 2 {
		t.Errorf("state after $b = %v, want create and member", got)
	}
}

func testStreamPositions(t *testing.T, h *harness) {
	createRoom(h, room)
	prev := "$create" + room
	var last int64
	n := 0
	for _, size := range []int{1, 3, 64, 2, 1, 130} {
		b := &Batch{RoomID: room}
		for range size {
			n++
			id := fmt.Sprintf("$e%d", n)
			b.Events = append(b.Events, PersistEvent{
				Record: rec(room, id, "m.room.message", int64(n+1), ids(prev), ids("$create"+room)),
				State:  &StateSpec{BaseEvent: prev},
			})
			prev = id
		}
		h.commit(b)
		for _, pe := range b.Events {
			if pe.Record.StreamPos <= last {
				t.Fatalf("%s got position %d after %d", pe.Record.EventID, pe.Record.StreamPos, last)
			}
			last = pe.Record.StreamPos
		}
		if got, err := h.db.MaxStreamPos(h.ctx); err != nil || got != last {
			t.Fatalf("MaxStreamPos = %d, %v; want %d", got, err, last)
		}
	}
	all, err := h.db.EventsSince(h.ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n+1 {
		t.Fatalf("EventsSince returned %d events, want %d", len(all), n+1)
	}
	for i := 1; i < len(all); i++ {
		if all[i].StreamPos <= all[i-1].StreamPos {
			t.Fatalf("EventsSince out of order at %d", i)
		}
	}
}

// testDeltaChains grows state over many more groups than maxDeltaChain, in
// batches of uneven size, and checks every event's state against a plain
// map maintained alongside.
func testDeltaChains(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	rng := rand.New(rand.NewPCG(1, 2))
	naive := StateMap{createKey: c}
	want := map[string]StateMap{c: maps.Clone(naive)}
	order := []string{c}
	prev := c
	n := 0
	for _, size := range []int{1, 5, 40, 1, 1, 17, 33, 3} {
		b := &Batch{RoomID: room}
		for range size {
			n++
			id := fmt.Sprintf("$s%d", n)
			delta := StateMap{}
			changes := 1 + rng.IntN(3)
			if n%7 == 0 { // a non-state event now and then shares its group
				changes = 0
			}
			for range changes {
				k := StateKey{"m.room.member", fmt.Sprintf("@u%d:test", rng.IntN(20))}
				if _, ok := naive[k]; ok && rng.IntN(3) == 0 {
					delta[k] = "" // remove
					delete(naive, k)
				} else {
					delta[k] = id
					naive[k] = id
				}
			}
			b.Events = append(b.Events, PersistEvent{
				Record: rec(room, id, "m.room.member", int64(n+1), ids(prev), ids(c)),
				State:  &StateSpec{BaseEvent: prev, Delta: delta},
			})
			want[id] = maps.Clone(naive)
			order = append(order, id)
			prev = id
		}
		h.commit(b)
	}
	check := func(label string) {
		t.Helper()
		for _, id := range order {
			got, err := h.db.StateAfter(h.ctx, id)
			if err != nil {
				t.Fatalf("%s: StateAfter(%s): %v", label, id, err)
			}
			if !maps.Equal(got, want[id]) {
				t.Fatalf("%s: StateAfter(%s) =\n %v\nwant\n %v", label, id, got, want[id])
			}
		}
	}
	check("warm cache")
	h.reopen()
	check("cold cache")
	// The returned map is a copy: changing it must not change the store.
	got, _ := h.db.StateAfter(h.ctx, prev)
	clear(got)
	check("after caller mutation")

	var maxLen, snapshots int
	if err := h.db.read.QueryRowContext(h.ctx, `SELECT MAX(chain_len),
		SUM(CASE WHEN prev_group IS NULL THEN 1 ELSE 0 END) FROM state_groups`).Scan(&maxLen, &snapshots); err != nil {
		t.Fatal(err)
	}
	if maxLen > maxDeltaChain || maxLen < maxDeltaChain-1 {
		t.Errorf("longest delta chain %d, want about %d", maxLen, maxDeltaChain)
	}
	if snapshots < 1+n/(maxDeltaChain+1)-1 {
		t.Errorf("%d snapshots for %d groups: chains are not being cut", snapshots, n)
	}
}

func testDeltaReuse(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	groups := h.count("state_groups")
	b := &Batch{RoomID: room, Events: []PersistEvent{
		{Record: rec(room, "$m1", "m.room.message", 2, ids(c), ids(c)), State: &StateSpec{BaseEvent: c}},
		{Record: rec(room, "$m2", "m.room.message", 3, ids("$m1"), ids(c)), State: &StateSpec{BaseEvent: "$m1", Delta: StateMap{}}},
	}}
	h.commit(b)
	if got := h.count("state_groups"); got != groups {
		t.Errorf("state_groups went from %d to %d for events without state changes", groups, got)
	}
	gc, err := h.db.StateGroupOf(h.ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, pe := range b.Events {
		g, err := h.db.StateGroupOf(h.ctx, pe.Record.EventID)
		if err != nil || g != gc || pe.Record.StateGroup != gc {
			t.Errorf("%s: group %d (record %d), %v; want %d", pe.Record.EventID, g, pe.Record.StateGroup, err, gc)
		}
	}
	if _, err := h.db.StateGroupOf(h.ctx, "$absent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("StateGroupOf(absent): err = %v, want ErrNotFound", err)
	}
	st, err := h.db.StateOfGroup(h.ctx, gc)
	if err != nil || !maps.Equal(st, StateMap{createKey: c}) {
		t.Errorf("StateOfGroup = %v, %v", st, err)
	}
	if _, err := h.db.StateOfGroup(h.ctx, 1<<40); !errors.Is(err, ErrNotFound) {
		t.Errorf("StateOfGroup(absent): err = %v, want ErrNotFound", err)
	}
}

func testAuthChain(t *testing.T, h *harness) {
	createRoom(h, room)
	createRoom(h, "!unrelated:test")
	c := "$create" + room
	// create <- member <- power <- join_rules <- msg, plus an unrelated
	// room's events and a sibling branch that msg does not reach.
	type e struct {
		id, typ string
		auth    []string
	}
	chain := []e{
		{"$member", "m.room.member", ids(c)},
		{"$power", "m.room.power_levels", ids(c, "$member")},
		{"$rules", "m.room.join_rules", ids(c, "$member", "$power")},
		{"$sibling", "m.room.topic", ids(c, "$power")},
		{"$msg", "m.room.message", ids(c, "$rules", "$power", "$member")},
	}
	b := &Batch{RoomID: room}
	for i, x := range chain {
		b.Events = append(b.Events, PersistEvent{
			Record: stateRec(room, x.id, x.typ, "", int64(i+2), ids(c), x.auth),
			State:  &StateSpec{BaseEvent: c},
		})
	}
	h.commit(b)
	other := "$create!unrelated:test"
	h.commit(&Batch{RoomID: "!unrelated:test", Events: []PersistEvent{{
		Record: rec("!unrelated:test", "$far", "m.room.message", 2, ids(other), ids(other)),
		State:  &StateSpec{BaseEvent: other},
	}}})

	tests := []struct {
		in   []string
		want []string
	}{
		{ids("$msg"), ids(c, "$member", "$power", "$rules")},
		{ids("$rules"), ids(c, "$member", "$power")},
		{ids("$msg", "$power"), ids(c, "$member", "$power", "$rules")},
		{ids("$sibling", "$far"), ids(c, other, "$member", "$power")},
		{ids(c), ids()},
		{ids("$absent"), ids()},
		{nil, ids()},
	}
	for _, tc := range tests {
		got, err := h.db.AuthChain(h.ctx, tc.in)
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("AuthChain(%v) = %v, want %v", tc.in, got, want)
		}
	}
}

func testDeoutlier(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	out := stateRec(room, "$join", "m.room.member", "@a:test", 2, ids(c), ids(c))
	out.Outlier = true
	first := &Batch{RoomID: room, Events: []PersistEvent{{Record: out}}}
	h.commit(first)
	oldPos := first.Events[0].Record.StreamPos
	if _, err := h.db.StateGroupOf(h.ctx, "$join"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("outlier has a state group: %v", err)
	}

	again := &Batch{RoomID: room, Events: []PersistEvent{{Record: out}}}
	if err := h.db.Commit(h.ctx, again); !errors.Is(err, ErrDuplicateEvent) {
		t.Errorf("storing an outlier twice: err = %v, want ErrDuplicateEvent", err)
	}

	full := out
	full.Outlier = false
	full.SoftFailed = true
	none := ""
	full.ReplacesState = &none
	key := StateKey{"m.room.member", "@a:test"}
	b := &Batch{RoomID: room, Events: []PersistEvent{{
		Record: full, State: &StateSpec{BaseEvent: c, Delta: StateMap{key: "$join"}},
	}}}
	h.commit(b)
	got, err := h.db.Events(h.ctx, ids("$join"))
	if err != nil {
		t.Fatal(err)
	}
	r := got["$join"]
	if r.Outlier || !r.SoftFailed || r.StateGroup == 0 || r.ReplacesState == nil || *r.ReplacesState != "" || r.StreamPos <= oldPos || r.StreamPos != b.Events[0].Record.StreamPos {
		t.Errorf("de-outliered record = %+v (old position %d)", r, oldPos)
	}
	st, err := h.db.StateAfter(h.ctx, "$join")
	if err != nil || !maps.Equal(st, StateMap{createKey: c, key: "$join"}) {
		t.Errorf("StateAfter = %v, %v", st, err)
	}
	if ch, _ := h.db.AuthChain(h.ctx, ids("$join")); !slices.Equal(ch, ids(c)) {
		t.Errorf("auth edges lost: AuthChain = %v", ch)
	}
	if err := h.db.Commit(h.ctx, b); !errors.Is(err, ErrDuplicateEvent) {
		t.Errorf("storing a full event twice: err = %v, want ErrDuplicateEvent", err)
	}
	since, _ := h.db.EventsSince(h.ctx, oldPos, 10)
	if len(since) != 1 || since[0].EventID != "$join" || since[0].Outlier {
		t.Errorf("EventsSince(old position) = %v, want the de-outliered event", since)
	}
}

func testMissingPrevs(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	h.commit(&Batch{
		RoomID: room,
		Events: []PersistEvent{{
			Record: rec(room, "$late", "m.room.message", 5, ids("$gap1", "$gap2", c), ids(c)),
			State:  &StateSpec{BaseEvent: c},
		}},
		MissingPrevs: []MissingPrev{
			{RoomID: room, EventID: "$gap1", ReferencedBy: "$late"},
			{EventID: "$gap2", ReferencedBy: "$late"},
			{EventID: c, ReferencedBy: "$late"}, // already stored: never recorded
		},
	})
	want := []MissingPrev{{room, "$gap1", "$late"}, {room, "$gap2", "$late"}}
	if got, err := h.db.MissingPrevs(h.ctx, room); err != nil || !slices.Equal(got, want) {
		t.Fatalf("MissingPrevs = %v, %v; want %v", got, err, want)
	}
	// A filled gap drops the rows of the event placed with reported state,
	// and only those.
	h.commit(&Batch{
		RoomID:       room,
		Events:       []PersistEvent{{Record: rec(room, "$held", "m.room.message", 6, ids("$gap3"), ids(c)), State: &StateSpec{BaseEvent: c}}},
		MissingPrevs: []MissingPrev{{EventID: "$gap3", ReferencedBy: "$held"}},
	})
	if got, _ := h.db.MissingPrevs(h.ctx, room); len(got) != 3 {
		t.Fatalf("MissingPrevs = %v, want 3 rows", got)
	}
	h.commit(&Batch{RoomID: room, FilledGaps: []string{"$held"}})
	if got, _ := h.db.MissingPrevs(h.ctx, room); !slices.Equal(got, want) {
		t.Fatalf("after filling $held: MissingPrevs = %v, want %v", got, want)
	}
	// $gap1 arrives (as an outlier: stored counts).
	gap := rec(room, "$gap1", "m.room.message", 4, ids(c), ids(c))
	gap.Outlier = true
	h.commit(&Batch{RoomID: room, Events: []PersistEvent{{Record: gap}}})
	if got, _ := h.db.MissingPrevs(h.ctx, room); !slices.Equal(got, want[1:]) {
		t.Fatalf("after $gap1: MissingPrevs = %v, want %v", got, want[1:])
	}
	h.commit(&Batch{RoomID: room, Events: []PersistEvent{{
		Record: rec(room, "$gap2", "m.room.message", 4, ids(c), ids(c)), State: &StateSpec{BaseEvent: c},
	}}})
	if got, _ := h.db.MissingPrevs(h.ctx, room); len(got) != 0 {
		t.Fatalf("after $gap2: MissingPrevs = %v, want none", got)
	}
}

func testEventsSince(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	b := &Batch{RoomID: room}
	for i := range 24 {
		b.Events = append(b.Events, PersistEvent{
			Record: rec(room, fmt.Sprintf("$p%02d", i), "m.room.message", int64(i+2), ids(c), ids(c)),
			State:  &StateSpec{BaseEvent: c},
		})
	}
	h.commit(b)
	var got []string
	var pages []int
	for pos := int64(0); ; {
		page, err := h.db.EventsSince(h.ctx, pos, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		pages = append(pages, len(page))
		for _, e := range page {
			got = append(got, e.EventID)
		}
		pos = page[len(page)-1].StreamPos
	}
	if !slices.Equal(pages, []int{10, 10, 5}) {
		t.Errorf("page sizes %v, want [10 10 5]", pages)
	}
	want := []string{c}
	for _, pe := range b.Events {
		want = append(want, pe.Record.EventID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged events %v, want %v", got, want)
	}
	if _, err := h.db.EventsSince(h.ctx, 0, 0); err == nil {
		t.Error("EventsSince with limit 0 succeeded")
	}
}

func testMigrationsIdempotent(t *testing.T, h *harness) {
	ms, err := loadMigrations(migrationFS, h.db.d)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got := h.count("schema_migrations"); got != len(ms) {
			t.Fatalf("open %d: %d migrations recorded, want %d", i+1, got, len(ms))
		}
		if err := migrate(h.ctx, h.db.write, h.db.d, migrationFS); err != nil {
			t.Fatalf("migrate again: %v", err)
		}
		h.reopen()
	}
}

func testSurvivesReopen(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	key := StateKey{"m.room.member", "@a:test"}
	h.commit(&Batch{RoomID: room, Events: []PersistEvent{{
		Record: stateRec(room, "$m", "m.room.member", "@a:test", 2, ids(c), ids(c)),
		State:  &StateSpec{BaseEvent: c, Delta: StateMap{key: "$m"}},
	}}, Extremities: ids("$m"), CurrentDelta: StateMap{key: "$m"}, MaxDepth: 2})
	before := h.snapshot(room)
	events, _ := h.db.EventsSince(h.ctx, 0, 100)

	h.reopen()
	if after := h.snapshot(room); after != before {
		t.Fatalf("reopen changed the store:\nbefore %s\nafter  %s", before, after)
	}
	again, _ := h.db.EventsSince(h.ctx, 0, 100)
	if !reflect.DeepEqual(events, again) {
		t.Errorf("events changed across reopen")
	}
	// Counters resume above what is stored.
	b := &Batch{RoomID: room, Events: []PersistEvent{{
		Record: stateRec(room, "$n", "m.room.name", "", 3, ids("$m"), ids(c)),
		State:  &StateSpec{BaseEvent: "$m", Delta: StateMap{{"m.room.name", ""}: "$n"}},
	}}}
	h.commit(b)
	last := events[len(events)-1]
	if r := b.Events[0].Record; r.StreamPos <= last.StreamPos || r.StateGroup <= last.StateGroup {
		t.Errorf("after reopen: position %d group %d, stored max %d / %d", r.StreamPos, r.StateGroup, last.StreamPos, last.StateGroup)
	}
	st, err := h.db.StateAfter(h.ctx, "$n")
	if want := (StateMap{createKey: c, key: "$m", {"m.room.name", ""}: "$n"}); err != nil || !maps.Equal(st, want) {
		t.Errorf("StateAfter($n) = %v, %v; want %v", st, err, want)
	}
}

// testConcurrentReads commits while readers poll; under -race it checks the
// store's locking, and readers must never see positions go backwards.
func testConcurrentReads(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	const batches = 40
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	done := make(chan struct{})
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seen int64
			for {
				select {
				case <-done:
					return
				default:
				}
				page, err := h.db.EventsSince(h.ctx, seen, 50)
				if err != nil {
					errs <- err
					return
				}
				for _, e := range page {
					if e.StreamPos <= seen {
						errs <- fmt.Errorf("reader %d: position %d after %d", r, e.StreamPos, seen)
						return
					}
					seen = e.StreamPos
					if _, err := h.db.StateAfter(h.ctx, e.EventID); err != nil {
						errs <- fmt.Errorf("reader %d: StateAfter(%s): %w", r, e.EventID, err)
						return
					}
				}
			}
		}()
	}
	prev := c
	for i := range batches {
		b := &Batch{RoomID: room}
		for j := range 4 {
			id := fmt.Sprintf("$c%d_%d", i, j)
			b.Events = append(b.Events, PersistEvent{
				Record: stateRec(room, id, "m.room.member", id, int64(i*4+j+2), ids(prev), ids(c)),
				State:  &StateSpec{BaseEvent: prev, Delta: StateMap{{"m.room.member", id}: id}},
			})
			prev = id
		}
		if err := h.db.Commit(h.ctx, b); err != nil {
			t.Error(err)
			break
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testClose(t *testing.T, h *harness) {
	createRoom(h, room)
	if err := h.db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := h.db.Commit(h.ctx, &Batch{RoomID: room, MaxDepth: 5}); err == nil {
		t.Error("Commit after Close succeeded")
	}
	h.open() // for the harness cleanup
}

// testStatementCache checks that statements first met inside a transaction
// (where they cannot be prepared on the one-connection writer pool) end up
// cached, and that later commits of the same shape prepare nothing new.
func testStatementCache(t *testing.T, h *harness) {
	createRoom(h, room)
	c := "$create" + room
	commitN := func(prefix string, n int) {
		b := &Batch{RoomID: room, Extremities: ids(c)}
		for i := range n {
			b.Events = append(b.Events, PersistEvent{
				Record: rec(room, fmt.Sprintf("$%s%d", prefix, i), "m.room.message", 2, ids(c), ids(c)),
				State:  &StateSpec{BaseEvent: c},
			})
		}
		h.commit(b)
	}
	sizes := func() (cached, pending int) {
		h.db.wstmts.mu.Lock()
		defer h.db.wstmts.mu.Unlock()
		return len(h.db.wstmts.m), len(h.db.wstmts.pending)
	}
	commitN("a", 3)
	cached, pending := sizes()
	if cached == 0 || pending != 0 {
		t.Fatalf("after a commit: %d cached, %d pending statements", cached, pending)
	}
	commitN("b", 3)
	if again, _ := sizes(); again != cached {
		t.Errorf("a commit of the same shape prepared %d new statements", again-cached)
	}
}
