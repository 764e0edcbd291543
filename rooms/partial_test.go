package rooms

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// completions is a Listener that also hears of completed rooms.
type completions struct {
	recorder
	mu   sync.Mutex // guards done
	done []RoomID
}

func (c *completions) StateCompleted(room RoomID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = append(c.done, room)
}

func (c *completions) heardCompleted(room RoomID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.done {
		if r == room {
			return true
		}
	}
	return false
}

// partialAnswer is send_join's answer with omit_members: the state before
// the join without its member events, and the auth chain without what the
// state already holds.
func partialAnswer(t *testing.T, resident *testServer, room RoomID, join EventID) (state, chain [][]byte) {
	t.Helper()
	st, ch, err := resident.svc.StateBefore(context.Background(), room, join)
	if err != nil {
		t.Fatal(err)
	}
	var keep []EventID
	inState := map[EventID]bool{}
	recs, err := resident.store.Events(context.Background(), toStrings(st))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range st {
		if recs[string(id)].Type != pdu.TypeMember {
			keep = append(keep, id)
			inState[id] = true
		}
	}
	var rest []EventID
	for _, id := range ch {
		if !inState[id] {
			rest = append(rest, id)
		}
	}
	return eventsJSON(t, resident, keep), eventsJSON(t, resident, rest)
}

func toStrings(ids []EventID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

func TestPartialStateJoin(t *testing.T) {
	onBackends(t, testPartialStateJoin)
}

func testPartialStateJoin(t *testing.T, newNet func() *testNet) {
	for _, version := range SupportedVersions() {
		t.Run("v"+version, func(t *testing.T) {
			ctx := context.Background()
			net := newNet()
			lis := &completions{}
			hs1, hs2 := net.server(t, "hs1"), net.serverWith(t, "hs2", lis)
			room := residentRoom(t, hs1, version, "public")
			alice, bob, carl := UserID("@alice:hs1"), UserID("@bob:hs2"), UserID("@carl:hs2")
			for i := range 5 {
				u := fmt.Sprintf("@u%d:hs1", i)
				hs1.send(t, room, UserID(u), pdu.TypeMember, str(u), map[string]any{"membership": "join"})
			}
			// carl, on hs2, was invited before bob's join: the full
			// state holds the invite, which carl's join on hs2 during
			// the partial state must override.
			inv, err := hs1.svc.Invite(ctx, room, LocalEvent{Type: pdu.TypeMember, StateKey: str(string(carl)), Sender: alice,
				Content: mustContent(t, map[string]any{"membership": "invite"})})
			if err != nil {
				t.Fatal(err)
			}
			signed, err := hs2.svc.Countersign(version, inv.JSON())
			if err != nil {
				t.Fatal(err)
			}
			hs1.admitAll(t, room, signed)

			// bob joins with a partial state.
			proto, _, err := hs1.svc.Template(ctx, room, LocalEvent{Type: pdu.TypeMember, StateKey: str(string(bob)), Sender: bob, Content: mustContent(t, map[string]any{"membership": "join"})})
			if err != nil {
				t.Fatal(err)
			}
			join, err := hs2.svc.Complete(version, proto)
			if err != nil {
				t.Fatal(err)
			}
			hs1.admitAll(t, room, join)
			state, chain := partialAnswer(t, hs1, room, join.ID())
			j, err := hs2.svc.JoinPartial(ctx, room, join.JSON(), state, chain, []string{"hs1"})
			if err != nil || j.Outlier || j.Rejected != "" || j.StreamPos == 0 {
				t.Fatalf("JoinPartial = %+v, %v", j, err)
			}
			if p, err := hs2.svc.PartialState(ctx, room); err != nil || !p {
				t.Fatalf("PartialState after JoinPartial = %v, %v", p, err)
			}
			rec, err := hs2.store.PartialStateRoom(ctx, string(room))
			if err != nil || rec.JoinEvent != string(join.ID()) || len(rec.Servers) != 1 || rec.Servers[0] != "hs1" {
				t.Fatalf("stored partial state %+v, %v", rec, err)
			}
			if _, ok := hs2.current(t, room)[stateKey(pdu.TypeMember, string(alice))]; ok {
				t.Fatal("alice's membership is in the partial state")
			}
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			if err := hs2.svc.AwaitFullState(cancelled, room); !errors.Is(err, context.Canceled) {
				t.Fatalf("AwaitFullState on a partial room with a cancelled context = %v", err)
			}

			// A restart keeps the room partial.
			if err := hs2.svc.Close(); err != nil {
				t.Fatal(err)
			}
			hs2.svc, err = New(hs2.svc.cfg, Deps{Store: hs2.store, Keys: net.finder, Listener: lis})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { hs2.svc.Close() })
			if p, err := hs2.svc.PartialState(ctx, room); err != nil || !p {
				t.Fatalf("PartialState after a restart = %v, %v", p, err)
			}

			// Meanwhile hs2's users go on: carl joins (his invite is not
			// in hs2's state) and bob changes his display name often
			// enough for storage to take a new state snapshot.
			var placed []*Event
			placed = append(placed, hs2.send(t, room, carl, pdu.TypeMember, str(string(carl)), map[string]any{"membership": "join"}).Event)
			for i := range maxDeltaChainForTest + 3 {
				placed = append(placed, hs2.send(t, room, bob, pdu.TypeMember, str(string(bob)), map[string]any{"membership": "join", "displayname": fmt.Sprintf("Bob %d", i)}).Event)
			}
			placed = append(placed, hs2.send(t, room, bob, "m.room.message", nil, map[string]any{"body": "hi"}).Event)
			// Cache a partial state, which the completion must not leave
			// behind.
			if _, err := hs2.store.StateAfter(ctx, string(placed[len(placed)-1].ID())); err != nil {
				t.Fatal(err)
			}
			hs1.admitAll(t, room, placed...)

			full, fullChain := sendJoinAnswer(t, hs1, room, join.ID())
			if err := hs2.svc.CompleteState(ctx, room, "$other", full, fullChain); err == nil {
				t.Fatal("CompleteState for another join succeeded")
			}
			if err := hs2.svc.CompleteState(ctx, room, join.ID(), state, chain); err == nil {
				t.Fatal("CompleteState with the partial state succeeded")
			}
			if err := hs2.svc.CompleteState(ctx, room, join.ID(), full, fullChain); err != nil {
				t.Fatalf("CompleteState: %v", err)
			}
			if err := hs2.svc.AwaitFullState(cancelled, room); err != nil {
				t.Fatalf("AwaitFullState after completion = %v", err)
			}
			if !lis.heardCompleted(room) {
				t.Error("the listener did not hear of the completion")
			}
			if _, err := hs2.store.PartialStateRoom(ctx, string(room)); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("partial state record after completion: %v", err)
			}
			// Completing again is a no-op.
			if err := hs2.svc.CompleteState(ctx, room, join.ID(), full, fullChain); err != nil {
				t.Fatalf("second CompleteState: %v", err)
			}

			check := func(when string) {
				t.Helper()
				if got, want := hs2.current(t, room), hs1.current(t, room); !maps.Equal(got, want) {
					t.Fatalf("%s: hs2 current state\n %v\nwant hs1's\n %v", when, got, want)
				}
				if got := hs2.current(t, room)[stateKey(pdu.TypeMember, string(carl))]; got != string(placed[0].ID()) {
					t.Fatalf("%s: carl's membership is %s, want his join", when, got)
				}
				for _, ev := range append([]*Event{join}, placed...) {
					got, err := hs2.store.StateAfter(ctx, string(ev.ID()))
					if err != nil {
						t.Fatal(err)
					}
					want, err := hs1.store.StateAfter(ctx, string(ev.ID()))
					if err != nil {
						t.Fatal(err)
					}
					if !maps.Equal(got, want) {
						t.Fatalf("%s: state after %s differs: hs2 has %d entries, hs1 %d", when, ev.ID(), len(got), len(want))
					}
				}
			}
			check("after completion")

			// The worker's memory is complete too: an event of hs1's
			// that needs alice's membership is accepted, and so is
			// one of u0, whose join was omitted.
			for _, u := range []UserID{alice, "@u0:hs1"} {
				msg := hs1.send(t, room, u, "m.room.message", nil, map[string]any{"body": "welcome"}).Event
				a, err := hs2.svc.Admit(ctx, room, msg.JSON())
				if err != nil || a.Outlier || a.Rejected != "" || a.SoftFailed {
					t.Fatalf("hs2 admits %s's message: %+v, %v", u, a, err)
				}
			}
			check("after more events")

			// And storage keeps it across a restart.
			if err := hs2.svc.Close(); err != nil {
				t.Fatal(err)
			}
			hs2.svc, err = New(hs2.svc.cfg, Deps{Store: hs2.store, Keys: net.finder})
			if err != nil {
				t.Fatal(err)
			}
			if p, err := hs2.svc.PartialState(ctx, room); err != nil || p {
				t.Fatalf("PartialState after completion and a restart = %v, %v", p, err)
			}
			hs1.admitAll(t, room, hs2.send(t, room, bob, "m.room.message", nil, map[string]any{"body": "after restart"}).Event)
			check("after a restart")
		})
	}
}

// maxDeltaChainForTest is storage's bound on delta chains: past it a new
// snapshot is written, which the completion must reach too.
const maxDeltaChainForTest = 32
