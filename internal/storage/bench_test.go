package storage

import (
	"fmt"
	"testing"
)

// BenchmarkCommit appends message events to one room, the shape of a busy
// room's local traffic: each event names the previous one as its prev event
// and its state base, carries three auth events, and replaces the room's
// extremity. It reports events/s for one event per batch and for 64.
//
// The PostgreSQL runs need PLEXUS_TEST_POSTGRES.
func BenchmarkCommit(b *testing.B) {
	for _, be := range backends {
		for _, size := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", be.name, size), func(b *testing.B) {
				benchmarkCommit(b, be, size, false)
			})
		}
	}
}

// BenchmarkCommitState is BenchmarkCommit where every event is a membership
// change in a room of stateMembers members: each event writes a one-entry
// delta state group, and every 33rd group a full snapshot of about
// stateMembers entries.
func BenchmarkCommitState(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name+"/batch=64", func(b *testing.B) {
			benchmarkCommit(b, be, 64, true)
		})
	}
}

const stateMembers = 1000

func benchmarkCommit(b *testing.B, be backend, size int, state bool) {
	h := newHarness(b, be)
	createRoom(h, room)
	c := "$create" + room
	auth := ids(c, "$power", "$member")
	prev := c
	n := 0
	batch := func() *Batch {
		bt := &Batch{RoomID: room, Events: make([]PersistEvent, size)}
		for i := range bt.Events {
			n++
			id := fmt.Sprintf("$bench%09d:test", n)
			r := rec(room, id, "m.room.message", int64(n+1), ids(prev), auth)
			r.JSON = make([]byte, 600) // a typical signed PDU
			spec := &StateSpec{BaseEvent: prev}
			if state {
				user := fmt.Sprintf("@u%d:test", n%stateMembers)
				r.Type, r.StateKey = "m.room.member", &user
				spec.Delta = StateMap{{"m.room.member", user}: id}
			}
			bt.Events[i] = PersistEvent{Record: r, State: spec}
			prev = id
		}
		bt.Extremities = ids(prev)
		bt.MaxDepth = int64(n + 1)
		return bt
	}
	// Warm the statement cache so the measurement is the steady state.
	h.commit(batch())
	b.ResetTimer()
	// Building the batch is timed too: it is a few microseconds of string
	// formatting, and StopTimer would cost more than that.
	for b.Loop() {
		bt := batch()
		if err := h.db.Commit(h.ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
}
