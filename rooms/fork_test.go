package rooms

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// forkScenario is the seed's race: Alice asks a question on hs1; Bob on hs2
// and Charlie on hs3 both answer it, each without seeing the other, and
// both change the topic; Alice's next event merges the fork by referencing
// both branches.
type forkScenario struct {
	room   RoomID
	create *Event
	events []*Event // every event after create, in creation order
	net    *testNet
	hs1    *testServer
	hs2    *testServer
	hs3    *testServer
	bobBr  []*Event
	charBr []*Event
	merge  *Event
}

func buildFork(t *testing.T, net *testNet, version string) *forkScenario {
	t.Helper()
	ctx := context.Background()
	f := &forkScenario{net: net, hs1: net.server(t, "hs1"), hs2: net.server(t, "hs2"), hs3: net.server(t, "hs3")}
	alice, bob, charlie := UserID("@alice:hs1"), UserID("@bob:hs2"), UserID("@charlie:hs3")
	c, err := f.hs1.svc.Create(ctx, version, alice, mustContent(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	f.create, f.room = c.Event, c.Event.RoomID()
	rec := func(s *Stored) *Event { f.events = append(f.events, s.Event); return s.Event }
	users := map[string]any{string(alice): 100}
	if version == "12" {
		users = map[string]any{} // creators may not be listed (rooms v12, auth rule 10.4)
	}
	setup := []*Event{
		rec(f.hs1.send(t, f.room, alice, pdu.TypeMember, str(string(alice)), map[string]any{"membership": "join"})),
		rec(f.hs1.send(t, f.room, alice, pdu.TypePowerLevels, str(""), map[string]any{"users": users, "state_default": 50, "events": map[string]any{"m.room.topic": 0}})),
		rec(f.hs1.send(t, f.room, alice, pdu.TypeJoinRules, str(""), map[string]any{"join_rule": "public"})),
	}
	for _, s := range []*testServer{f.hs2, f.hs3} {
		if _, err := s.svc.Begin(ctx, f.create.JSON()); err != nil {
			t.Fatalf("%s: begin: %v", s.name, err)
		}
		s.admitAll(t, f.room, setup...)
	}
	bj := rec(f.hs2.send(t, f.room, bob, pdu.TypeMember, str(string(bob)), map[string]any{"membership": "join"}))
	f.hs1.admitAll(t, f.room, bj)
	f.hs3.admitAll(t, f.room, bj)
	cj := rec(f.hs3.send(t, f.room, charlie, pdu.TypeMember, str(string(charlie)), map[string]any{"membership": "join"}))
	f.hs1.admitAll(t, f.room, cj)
	f.hs2.admitAll(t, f.room, cj)
	q := rec(f.hs1.send(t, f.room, alice, "m.room.message", nil, map[string]any{"body": "Who is there?", "msgtype": "m.text"}))
	tp := rec(f.hs1.send(t, f.room, alice, "m.room.topic", str(""), map[string]any{"topic": "Questions"}))
	f.hs2.admitAll(t, f.room, q, tp)
	f.hs3.admitAll(t, f.room, q, tp)

	// The fork: neither hs2 nor hs3 sees the other's events.
	f.bobBr = []*Event{
		rec(f.hs2.send(t, f.room, bob, "m.room.message", nil, map[string]any{"body": "Bob here", "msgtype": "m.text"})),
		rec(f.hs2.send(t, f.room, bob, "m.room.topic", str(""), map[string]any{"topic": "Bob's answers"})),
		rec(f.hs2.send(t, f.room, bob, pdu.TypeMember, str(string(bob)), map[string]any{"membership": "join", "displayname": "Bob"})),
	}
	f.charBr = []*Event{
		rec(f.hs3.send(t, f.room, charlie, "m.room.message", nil, map[string]any{"body": "Charlie here", "msgtype": "m.text"})),
		rec(f.hs3.send(t, f.room, charlie, "m.room.topic", str(""), map[string]any{"topic": "Charlie's answers"})),
	}
	if f.bobBr[0].PrevEvents()[0] != tp.ID() || f.charBr[0].PrevEvents()[0] != tp.ID() {
		t.Fatalf("both answers must follow Alice's last event")
	}
	f.hs1.admitAll(t, f.room, f.bobBr...)
	f.hs1.admitAll(t, f.room, f.charBr...)
	if ex := f.hs1.extremities(t, f.room); len(ex) != 2 {
		t.Fatalf("hs1 sees %d extremities after the fork, want 2: %v", len(ex), ex)
	}
	f.merge = rec(f.hs1.send(t, f.room, alice, "m.room.message", nil, map[string]any{"body": "Thanks both", "msgtype": "m.text"}))
	if len(f.merge.PrevEvents()) != 2 {
		t.Fatalf("merge event has prev_events %v, want both branch tips", f.merge.PrevEvents())
	}
	f.hs2.admitAll(t, f.room, append(append([]*Event{}, f.charBr...), f.merge)...)
	f.hs3.admitAll(t, f.room, append(append([]*Event{}, f.bobBr...), f.merge)...)
	return f
}

// deliver admits events in the given order the way federation would: an
// event whose auth events are still unknown is retried after the others
// (federation would fetch them); events with missing prev events are held
// by the worker and placed when their ancestors arrive.
func deliver(t *testing.T, s *testServer, room RoomID, order []*Event) {
	t.Helper()
	ctx := context.Background()
	queue := append([]*Event{}, order...)
	for stalled := 0; len(queue) > 0; {
		e := queue[0]
		queue = queue[1:]
		a, err := s.svc.Admit(ctx, room, e.JSON())
		if testing.Verbose() && err == nil {
			t.Logf("admit %s %s: rejected=%q soft=%v outlier=%v missing=%v", e.ID(), e.Type(), a.Rejected, a.SoftFailed, a.Outlier, a.MissingPrevs)
		}
		var mae *MissingAuthError
		switch {
		case err == nil:
			stalled = 0
		case errors.As(err, &mae):
			queue = append(queue, e)
			stalled++
			if stalled > len(queue) {
				t.Fatalf("no progress: %d events wait for auth events", len(queue))
			}
		default:
			t.Fatalf("admit %s: %v", e.ID(), err)
		}
	}
}

func TestForkConvergesInAnyOrder(t *testing.T) {
	onBackends(t, testForkConverges)
}

func testForkConverges(t *testing.T, newNet func() *testNet) {
	for _, version := range SupportedVersions() {
		t.Run("v"+version, func(t *testing.T) {
			f := buildFork(t, newNet(), version)
			want := f.hs1.current(t, f.room)
			for _, s := range []*testServer{f.hs2, f.hs3} {
				if got := s.current(t, f.room); !reflect.DeepEqual(got, want) {
					t.Fatalf("%s current state differs from hs1:\n got %v\nwant %v", s.name, got, want)
				}
				if ex := s.extremities(t, f.room); len(ex) != 1 || ex[0] != string(f.merge.ID()) {
					t.Fatalf("%s extremities %v, want the merge %s", s.name, ex, f.merge.ID())
				}
			}
			topic := want[stateKey("m.room.topic", "")]
			if topic != string(f.bobBr[1].ID()) && topic != string(f.charBr[1].ID()) {
				t.Fatalf("resolved topic %s is neither branch's topic", topic)
			}
			if want[stateKey(pdu.TypeMember, "@bob:hs2")] != string(f.bobBr[2].ID()) {
				t.Fatalf("Bob's unconflicted membership change lost in the merge")
			}

			rng := rand.New(rand.NewPCG(42, uint64(len(version))))
			perms := 30
			if f.net.backend != storagetest.SQLite {
				perms = 8 // each copy is a new PostgreSQL database
			}
			if testing.Short() {
				perms = 3
			}
			for i := 0; i < perms; i++ {
				order := append([]*Event{}, f.events...)
				rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
				obs := f.net.server(t, fmt.Sprintf("observer%d", i))
				if _, err := obs.svc.Begin(context.Background(), f.create.JSON()); err != nil {
					t.Fatal(err)
				}
				deliver(t, obs, f.room, order)
				if got := obs.current(t, f.room); !reflect.DeepEqual(got, want) {
					t.Fatalf("permutation %d: current state differs:\n got %v\nwant %v", i, got, want)
				}
				if ex := obs.extremities(t, f.room); len(ex) != 1 || ex[0] != string(f.merge.ID()) {
					t.Fatalf("permutation %d: extremities %v, want the merge %s", i, ex, f.merge.ID())
				}
			}
		})
	}
}
