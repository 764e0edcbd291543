package storage

import (
	"errors"
	"fmt"
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

	// Hold the writer so every batch queues, then let them all go.
	h.db.writeSem <- struct{}{}
	errs := make([]error, rooms)
	bs := make([]*Batch, rooms)
	var wg sync.WaitGroup
	for i := range rooms {
		bs[i] = batch(i)
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
		if n == rooms-1 {
			break
		}
		if time.Now().After(deadline) {
			<-h.db.writeSem
			t.Fatalf("only %d of %d commits queued", n, rooms-1)
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline, not timing
	}
	<-h.db.writeSem
	wg.Wait()

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
