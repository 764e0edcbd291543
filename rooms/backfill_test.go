package rooms

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"sort"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage"
)

// backfillFrom answers /backfill from a server's storage: the events from
// and those before them, deepest first, at most limit.
func backfillFrom(t *testing.T, s *testServer, from []string, limit int) [][]byte {
	t.Helper()
	ctx := context.Background()
	var out [][]byte
	seen := map[string]bool{}
	var queue []*storage.EventRecord
	load := func(ids []string) {
		recs, err := s.store.Events(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if r := recs[id]; r != nil && !seen[id] {
				seen[id] = true
				queue = append(queue, r)
			}
		}
	}
	load(from)
	for len(out) < limit && len(queue) > 0 {
		sort.Slice(queue, func(i, j int) bool { return queue[i].Depth > queue[j].Depth })
		r := queue[0]
		queue = queue[1:]
		out = append(out, r.JSON)
		load(r.PrevEvents)
	}
	return out
}

// placedHistory lists a server's placed events of room in stream order.
func placedHistory(t *testing.T, s *testServer, room RoomID, below int64) []string {
	t.Helper()
	recs, err := s.store.EventsSince(context.Background(), -1<<62, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		if r.RoomID == string(room) && !r.Outlier && r.StreamPos < below {
			out = append(out, r.EventID)
		}
	}
	return out
}

func TestBackfill(t *testing.T) {
	onBackends(t, testBackfill)
}

func testBackfill(t *testing.T, newNet func() *testNet) {
	ctx := context.Background()
	net := newNet()
	rec := &recorder{}
	hs1, hs2 := net.server(t, "hs1"), net.serverWith(t, "hs2", rec)
	room := residentRoom(t, hs1, DefaultVersion, "public")
	alice := UserID("@alice:hs1")
	for i := range 40 {
		if i == 20 {
			hs1.send(t, room, alice, "m.room.topic", str(""), map[string]any{"topic": "halfway"})
		}
		hs1.send(t, room, alice, "m.room.message", nil, map[string]any{"body": i})
	}
	join := federatedJoin(t, hs1, hs2, room, "@bob:hs2")
	joinRecs, err := hs1.store.Events(ctx, []string{string(join.ID())})
	if err != nil {
		t.Fatal(err)
	}
	want := placedHistory(t, hs1, room, joinRecs[string(join.ID())].StreamPos)

	extrem, current := hs2.extremities(t, room), hs2.current(t, room)
	head, _ := hs2.store.MaxStreamPos(ctx)
	heard := len(rec.stored)
	frontier, err := hs2.store.BackwardExtremities(ctx, string(room))
	if err != nil || !slices.Equal(frontier, []string{string(join.PrevEvents()[0])}) {
		t.Fatalf("backward extremities after the join = %v, %v; want the join's prev event", frontier, err)
	}

	rounds := 0
	for ; len(frontier) > 0; rounds++ {
		if rounds > 20 {
			t.Fatalf("backfill does not end; frontier %v", frontier)
		}
		pdus := backfillFrom(t, hs1, frontier, 10)
		roots, err := hs2.svc.BackfillRoots(ctx, room, pdus)
		if err != nil {
			t.Fatal(err)
		}
		states := map[EventID]*ReportedState{}
		for _, r := range roots {
			state, chain := sendJoinAnswer(t, hs1, room, r)
			states[r] = &ReportedState{State: state, AuthChain: chain}
		}
		stored, err := hs2.svc.Backfill(ctx, room, pdus, states)
		if err != nil {
			t.Fatalf("round %d: %v", rounds, err)
		}
		if len(stored) == 0 {
			t.Fatalf("round %d placed nothing from %d events", rounds, len(pdus))
		}
		for i, s := range stored {
			if s.StreamPos >= 0 || s.Outlier || s.Rejected != "" || s.SoftFailed || i > 0 && s.StreamPos <= stored[i-1].StreamPos {
				t.Fatalf("round %d: backfilled %s as %+v", rounds, s.Event.ID(), s)
			}
		}
		if frontier, err = hs2.store.BackwardExtremities(ctx, string(room)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds for %d events", rounds, len(want))
	if rounds < 3 {
		t.Fatalf("%d rounds of 10 for %d events", rounds, len(want))
	}
	if got := placedHistory(t, hs2, room, 0); !slices.Equal(got, want) {
		t.Fatalf("hs2's history in stream order\n %v\nwant hs1's\n %v", got, want)
	}
	// The states at history events agree with the resident's.
	for _, id := range []string{want[0], want[len(want)/2], want[len(want)-1]} {
		got, _, err := hs2.svc.StateBefore(ctx, room, EventID(id))
		if err != nil {
			t.Fatal(err)
		}
		w, _, _ := hs1.svc.StateBefore(ctx, room, EventID(id))
		if !slices.Equal(got, w) {
			t.Fatalf("state before %s on hs2\n %v\nwant\n %v", id, got, w)
		}
	}

	// Nothing a live reader sees moved.
	if got := hs2.extremities(t, room); !slices.Equal(got, extrem) {
		t.Fatalf("extremities %v after backfill, want %v", got, extrem)
	}
	if got := hs2.current(t, room); !maps.Equal(got, current) {
		t.Fatalf("current state changed by backfill")
	}
	if h, _ := hs2.store.MaxStreamPos(ctx); h != head {
		t.Fatalf("stream head %d after backfill, want %d", h, head)
	}
	if len(rec.stored) != heard {
		t.Fatalf("the listener heard %d backfilled events", len(rec.stored)-heard)
	}

	// Again: nothing new.
	if stored, err := hs2.svc.Backfill(ctx, room, backfillFrom(t, hs1, want[len(want)-1:], 5), nil); err != nil || len(stored) != 0 {
		t.Fatalf("backfilling stored history again = %v, %v", stored, err)
	}
	// The room goes on.
	msg := hs1.send(t, room, alice, "m.room.message", nil, map[string]any{"body": "after"}).Event
	a, err := hs2.svc.Admit(ctx, room, msg.JSON())
	if err != nil || a.Outlier || a.Rejected != "" || a.StreamPos <= head {
		t.Fatalf("live event after backfill: %+v, %v", a, err)
	}
}

func TestBackfillRefusals(t *testing.T) {
	onBackends(t, testBackfillRefusals)
}

func testBackfillRefusals(t *testing.T, newNet func() *testNet) {
	ctx := context.Background()
	net := newNet()
	hs1, hs2 := net.server(t, "hs1"), net.server(t, "hs2")
	room := residentRoom(t, hs1, DefaultVersion, "public")
	join := federatedJoin(t, hs1, hs2, room, "@bob:hs2")
	prev := string(join.PrevEvents()[0])
	pdus := backfillFrom(t, hs1, []string{prev}, 3)

	t.Run("no state for the root", func(t *testing.T) {
		stored, err := hs2.svc.Backfill(ctx, room, pdus, nil)
		if err != nil || len(stored) != 0 {
			t.Fatalf("Backfill without the state before its oldest event = %v, %v; want nothing placed", stored, err)
		}
		if f, _ := hs2.store.BackwardExtremities(ctx, string(room)); !slices.Equal(f, []string{prev}) {
			t.Fatalf("backward extremities %v, want %v kept for a retry", f, prev)
		}
	})
	t.Run("forged event", func(t *testing.T) {
		// A changed timestamp: the signature no longer verifies.
		bad := bytes.Replace(pdus[0], []byte(`"origin_server_ts":1`), []byte(`"origin_server_ts":2`), 1)
		if bytes.Equal(bad, pdus[0]) {
			t.Fatal("no timestamp to change")
		}
		stored, err := hs2.svc.Backfill(ctx, room, [][]byte{bad}, nil)
		if err != nil || len(stored) != 0 {
			t.Fatalf("Backfill of a forged event = %v, %v", stored, err)
		}
		v, _ := LookupVersion(DefaultVersion)
		ev, err := ParseEvent(bad, v)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := hs2.store.Events(ctx, []string{string(ev.ID())}); len(got) != 0 {
			t.Fatalf("the forged event was stored: %+v", got)
		}
	})
	t.Run("unknown room", func(t *testing.T) {
		if _, err := hs2.svc.Backfill(ctx, "!nowhere:hs1", pdus, nil); err == nil {
			t.Fatal("Backfill into an unknown room succeeded")
		}
	})
}
