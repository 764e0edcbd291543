package invites

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

func TestStore(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) { testStore(t, backend) })
	}
}

func testStore(t *testing.T, backend string) {
	ctx := context.Background()
	dsn, dir := storagetest.Fresh(t, backend)
	db, err := storage.Open(ctx, dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var mu sync.Mutex
	var woken []string
	s := New(db, func(users ...string) {
		mu.Lock()
		defer mu.Unlock()
		woken = append(woken, users...)
	})
	const bob, room, other = "@bob:hs2", "!r:hs1", "!o:hs1"
	state := []json.RawMessage{json.RawMessage(`{"type":"m.room.create","state_key":"","content":{},"sender":"@alice:hs1"}`)}

	if inv, err := s.Get(ctx, bob, room); err != nil || inv != nil {
		t.Fatalf("Get before Put: %v, %v", inv, err)
	}
	if err := s.Reject(ctx, bob, room, []byte(`{}`)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Reject without an invite: %v", err)
	}
	start := db.AuxPos()
	put := &Invite{UserID: bob, RoomID: room, Version: "11", EventID: "$inv", Sender: "@alice:hs1",
		Event: []byte(`{"type":"m.room.member"}`), State: state}
	if err := s.Put(ctx, put); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, &Invite{UserID: bob, RoomID: other, Version: "11", EventID: "$o", Sender: "@alice:hs1", Event: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	afterPut := db.AuxPos()
	inv, err := s.Get(ctx, bob, room)
	if err != nil || inv == nil {
		t.Fatalf("Get: %v, %v", inv, err)
	}
	if inv.Membership != "invite" || inv.EventID != "$inv" || inv.Version != "11" || string(inv.Event) != string(put.Event) ||
		len(inv.State) != 1 || string(inv.State[0]) != string(state[0]) || inv.Leave != nil || inv.Pos <= start {
		t.Fatalf("stored %+v", inv)
	}

	rooms := func(invs []*Invite) []string {
		var out []string
		for _, i := range invs {
			out = append(out, i.RoomID+"="+i.Membership)
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		since, upto int64
		want        []string
	}{
		{"initial", -1, afterPut, []string{room + "=invite", other + "=invite"}},
		{"incremental over both", start, afterPut, []string{room + "=invite", other + "=invite"}},
		{"incremental over the second", inv.Pos, afterPut, []string{other + "=invite"}},
		{"nothing new", afterPut, afterPut, nil},
	} {
		got, err := s.Since(ctx, bob, tc.since, tc.upto)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rooms(got), tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, rooms(got), tc.want)
		}
	}

	if err := s.Reject(ctx, bob, room, []byte(`{"leave":true}`)); err != nil {
		t.Fatal(err)
	}
	afterReject := db.AuxPos()
	if afterReject <= afterPut {
		t.Fatalf("Reject did not move the aux stream: %d, was %d", afterReject, afterPut)
	}
	if got, _ := s.Since(ctx, bob, -1, afterReject); !slices.Equal(rooms(got), []string{other + "=invite"}) {
		t.Errorf("initial sync after the rejection: %v", rooms(got))
	}
	got, err := s.Since(ctx, bob, afterPut, afterReject)
	if err != nil || !slices.Equal(rooms(got), []string{room + "=leave"}) || string(got[0].Leave) != `{"leave":true}` {
		t.Fatalf("incremental sync after the rejection: %v %v", rooms(got), err)
	}

	// A new invite replaces the rejection.
	if err := s.Put(ctx, put); err != nil {
		t.Fatal(err)
	}
	if inv, _ := s.Get(ctx, bob, room); inv.Membership != "invite" || inv.Leave != nil {
		t.Fatalf("re-invited: %+v", inv)
	}
	if got, _ := s.Since(ctx, "@carol:hs2", -1, db.AuxPos()); len(got) != 0 {
		t.Fatalf("another user sees %v", rooms(got))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(woken) != 4 || woken[0] != bob {
		t.Fatalf("woken %v, want bob for each of 4 changes", woken)
	}
}
