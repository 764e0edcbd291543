package federation_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/fedtest"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// TestBackfill is issue 4's /messages over federation: bob joins from hs2
// a room with a long history on hs1 and pages back through all of it to
// the room's creation; hs2 fetches the history as he goes, without
// replaying it to /sync or moving its copy of the room.
func TestBackfill(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			backfillScenario(t, backend)
		})
	}
}

func backfillScenario(t *testing.T, backend string) {
	ctx := context.Background()
	f := newFederation(t, backend, "hs1", "hs2")
	hs1, hs2 := f.Servers["hs1"], f.Servers["hs2"]
	alice := register(t, hs1, "alice")
	bob := register(t, hs2, "bob")

	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "History"})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID
	const history = 150
	var want []string
	for i := range history {
		body := fmt.Sprint("history #", i)
		send(t, alice, room, body)
		want = append(want, body)
	}
	if _, err := bob.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1"}}); err != nil {
		t.Fatalf("bob joining through hs1: %v", err)
	}
	// The join is partial-state: the members arrive in the background,
	// and the state compared below is the complete one.
	fedtest.Eventually(t, 30*time.Second, "hs2 to complete the room's state", func() (bool, error) {
		return !hs2.PartialState(t, string(room)), nil
	})
	since := syncToken(t, bob)
	before := hs2.Graph(t, string(room))
	if n := len(before.Prevs); n != 1 {
		t.Fatalf("hs2 placed %d events at the join, want the join alone", n)
	}

	// Back to the room's creation, a page of 20 at a time.
	var got []string // newest first
	var create bool
	var midToken string
	var midFirst string // the earliest event of the page midToken ends
	from := ""
	for page := 0; ; page++ {
		if page > 50 {
			t.Fatalf("no end after %d pages; got %d messages", page, len(got))
		}
		msgs, err := bob.Messages(ctx, room, from, "", mautrix.DirectionBackward, nil, 20)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		for _, ev := range msgs.Chunk {
			switch ev.Type {
			case event.EventMessage:
				got = append(got, ev.Content.Raw["body"].(string))
			case event.StateCreate:
				create = true
			}
		}
		if page == 3 && len(msgs.Chunk) > 0 {
			midToken, midFirst = msgs.End, msgs.Chunk[len(msgs.Chunk)-1].ID.String()
		}
		if msgs.End == "" {
			break
		}
		from = msgs.End
	}
	slices.Reverse(got)
	if !slices.Equal(got, want) {
		t.Fatalf("bob paged back through %d messages, want the %d sent, each once, in order:\n%v", len(got), len(want), got)
	}
	if !create {
		t.Fatal("paging back did not reach the room's m.room.create")
	}

	// A token from inside the fetched history pages forward from there.
	if midToken == "" {
		t.Fatal("no token from the fourth page")
	}
	fwd, err := bob.Messages(ctx, room, midToken, "", mautrix.DirectionForward, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(fwd.Chunk) != 1 || fwd.Chunk[0].ID.String() != midFirst {
		t.Fatalf("forward from the fourth page's end: %v, want %s", fwd.Chunk, midFirst)
	}

	// /sync did not hear of the history, and hs2's room did not move.
	resp, err := bob.SyncRequest(ctx, 0, since, "", false, event.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	if jr := resp.Rooms.Join[room]; jr != nil {
		for _, ev := range jr.Timeline.Events {
			t.Errorf("incremental /sync after paging replayed %s %s", ev.Type, ev.ID)
		}
	}
	after := hs2.Graph(t, string(room))
	if !slices.Equal(after.Extremities, before.Extremities) || !mapsEqual(after.State, before.State) {
		t.Fatalf("backfill moved hs2's room: extremities %v -> %v", before.Extremities, after.Extremities)
	}
	if len(after.Prevs) < history {
		t.Fatalf("hs2 placed %d events, want the history too", len(after.Prevs))
	}

	// The room goes on as before.
	last := send(t, alice, room, "after the paging")
	converged(t, f, room, []string{last}, 30*time.Second)
	fedtest.Eventually(t, 10*time.Second, "bob's /sync to bring the new message", func() (bool, error) {
		resp, err := bob.SyncRequest(ctx, 0, since, "", false, event.PresenceOnline)
		if err != nil {
			return false, err
		}
		jr := resp.Rooms.Join[room]
		if jr == nil {
			return false, fmt.Errorf("no entry for the room")
		}
		evs := jr.Timeline.Events
		if len(evs) != 1 || evs[0].ID != id.EventID(last) {
			return false, fmt.Errorf("timeline %v", evs)
		}
		return true, nil
	})
}
