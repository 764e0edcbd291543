package storage

import (
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"
)

// testGroupCommit: batches of many rooms that queue up behind one writer
// share a transaction, and a bad batch among them fails alone, leaving
// nothing of itself while the others commit.
func testGroupCommit(t *testing.T, h *harness) {
	const rooms = 12
	roomID := func(i int) string { return fmt.Sprintf("!g%d:test", i) }
	before := map[string]string{}
	for i := range rooms {
		createRoom(h, roomID(i))
	}
	for i := range rooms {
		before[roomID(i)] = h.snapshotRoom(roomID(i))
	}
	batch := func(i int) *Batch {
		r, c := roomID(i), "$create"+roomID(i)
		evs := []PersistEvent{{Record: rec(r, fmt.Sprintf("$m%d", i), "m.room.message", 2, ids(c), ids(c)), State: &StateSpec{BaseEvent: c}}}
		if i%3 == 1 {
			// A state change too, so the batch writes a state group.
			id := fmt.Sprintf("$b%d", i)
			evs = append(evs, PersistEvent{
				Record: stateRec(r, id, "m.room.member", "@b:test", 3, ids(fmt.Sprintf("$m%d", i)), ids(c)),
				State:  &StateSpec{BaseEvent: fmt.Sprintf("$m%d", i), Delta: StateMap{{"m.room.member", "@b:test"}: id}},
			})
		}
		return &Batch{RoomID: r, Events: evs, Extremities: ids(fmt.Sprintf("$m%d", i)), MaxDepth: 2}
	}

	// Every third batch fails after writing all its rows.
	errInjected := errors.New("injected failure")
	afterStepsHook = func(b *Batch) error {
		if len(b.Events) > 1 {
			return errInjected
		}
		return nil
	}
	t.Cleanup(func() { afterStepsHook = nil })

	bs := make([]*Batch, rooms)
	for i := range rooms {
		bs[i] = batch(i)
	}
	errs := commitQueued(t, h, bs)

	seen := map[int64]bool{}
	for i := range rooms {
		r := roomID(i)
		if i%3 == 1 {
			if !errors.Is(errs[i], errInjected) {
				t.Errorf("room %d: err = %v, want the injected failure", i, errs[i])
			}
			if after := h.snapshotRoom(r); after != before[r] {
				t.Errorf("room %d: failed batch changed the store:\nbefore %s\nafter  %s", i, before[r], after)
			}
			if pos := bs[i].Events[0].Record.StreamPos; pos != 0 {
				t.Errorf("room %d: failed batch kept stream position %d", i, pos)
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("room %d: %v", i, errs[i])
			continue
		}
		pos := bs[i].Events[0].Record.StreamPos
		if pos == 0 || seen[pos] {
			t.Errorf("room %d: stream position %d is zero or reused", i, pos)
		}
		seen[pos] = true
		info, err := h.db.Room(h.ctx, r)
		if err != nil || len(info.Extremities) != 1 || info.Extremities[0] != fmt.Sprintf("$m%d", i) {
			t.Errorf("room %d: %+v %v", i, info, err)
		}
	}
	// Positions handed out to failed batches are not left as gaps that
	// readers could mistake for lost events: EventsSince sees exactly the
	// committed ones, in order.
	evs, err := h.db.EventsSince(h.ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].StreamPos <= evs[i-1].StreamPos {
			t.Fatalf("EventsSince out of order at %d", i)
		}
	}
	if want := rooms + rooms - rooms/3; len(evs) != want || h.count("state_groups") != rooms {
		t.Errorf("%d events and %d state groups, want %d and %d", len(evs), h.count("state_groups"), want, rooms)
	}
}

// commitQueued commits bs concurrently while the writer is held, so that
// they all queue and are written as groups, and returns their errors.
func commitQueued(t *testing.T, h *harness, bs []*Batch) []error {
	t.Helper()
	h.db.writeSem <- struct{}{}
	errs := make([]error, len(bs))
	var wg sync.WaitGroup
	for i := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.db.Commit(h.ctx, bs[i])
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.db.group.mu.Lock()
		n := len(h.db.group.pending)
		h.db.group.mu.Unlock()
		// The first leader has taken its own batch; the rest wait.
		if n == len(bs)-1 {
			break
		}
		if time.Now().After(deadline) {
			<-h.db.writeSem
			t.Fatalf("only %d of %d commits queued", n, len(bs)-1)
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline, not timing
	}
	<-h.db.writeSem
	wg.Wait()
	return errs
}

// testGroupCommitMerged: a group of healthy batches is written with shared
// statements, and each room ends exactly as if committed alone; a batch
// that would store an event twice fails alone before anything is written.
func testGroupCommitMerged(t *testing.T, h *harness) {
	const rooms = 10
	roomID := func(i int) string { return fmt.Sprintf("!m%d:test", i) }
	for i := range rooms {
		createRoom(h, roomID(i))
	}
	const dup = 4
	before := h.snapshotRoom(roomID(dup))
	bs := make([]*Batch, rooms)
	for i := range rooms {
		r, c := roomID(i), "$create"+roomID(i)
		m, b := fmt.Sprintf("$mm%d", i), fmt.Sprintf("$mb%d", i)
		member := StateKey{"m.room.member", "@b:test"}
		bs[i] = &Batch{RoomID: r, Events: []PersistEvent{
			{Record: rec(r, m, "m.room.message", 2, ids(c), ids(c)), State: &StateSpec{BaseEvent: c}},
			{Record: stateRec(r, b, "m.room.member", "@b:test", 3, ids(m), ids(c)), State: &StateSpec{BaseEvent: m, Delta: StateMap{member: b}}},
		}, Extremities: ids(b), CurrentDelta: StateMap{member: b}, MaxDepth: 3}
		if i == dup {
			bs[i].Events = append(bs[i].Events, PersistEvent{Record: stateRec(r, c, "m.room.create", "", 1, nil, nil), State: &StateSpec{Delta: StateMap{createKey: c}}})
		}
	}
	errs := commitQueued(t, h, bs)
	for i := range rooms {
		r := roomID(i)
		if i == dup {
			if !errors.Is(errs[i], ErrDuplicateEvent) {
				t.Errorf("room %d: err = %v, want ErrDuplicateEvent", i, errs[i])
			}
			if after := h.snapshotRoom(r); after != before {
				t.Errorf("room %d: failed batch changed the store:\nbefore %s\nafter  %s", i, before, after)
			}
			continue
		}
		if errs[i] != nil {
			t.Fatalf("room %d: %v", i, errs[i])
		}
		b := fmt.Sprintf("$mb%d", i)
		info, err := h.db.Room(h.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		want := StateMap{createKey: "$create" + r, {"m.room.member", "@b:test"}: b}
		if len(info.Extremities) != 1 || info.Extremities[0] != b || !maps.Equal(info.Current, want) || info.MaxDepth != 3 {
			t.Errorf("room %d: %+v, want extremity %s, current %v, depth 3", i, *info, b, want)
		}
		if st, err := h.db.StateAfter(h.ctx, b); err != nil || !maps.Equal(st, want) {
			t.Errorf("room %d: state after %s = %v (%v), want %v", i, b, st, err, want)
		}
	}
}

// snapshotRoom summarises one room's rows.
func (h *harness) snapshotRoom(roomID string) string {
	h.tb.Helper()
	var n int
	if err := h.db.read.QueryRowContext(h.ctx, h.db.d.rebind("SELECT COUNT(*) FROM events WHERE room_id = ?"), roomID).Scan(&n); err != nil {
		h.tb.Fatal(err)
	}
	info, err := h.db.Room(h.ctx, roomID)
	if err != nil {
		h.tb.Fatal(err)
	}
	return fmt.Sprintf("events=%d room=%+v", n, *info)
}
