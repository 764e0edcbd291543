package stateres

import (
	"maps"
	"slices"
	"testing"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// staleJoinRules builds MSC4297's "problem A" in room version vid. Alice
// (creator) sets the join rules to public (JR1), Bob joins under JR1, Alice
// sets them to invite (JR2) and then leaves. One state is right; the other
// (as a faulty /state answer might give it) still has JR1. Both agree that
// Alice has left, so her leave is unconflicted.
//
// v2 replays JR1 and JR2 on top of the unconflicted state, where Alice is
// not a member: both fail, and the room is left with no join rules at all.
// v2.1 starts step 2 from an empty state, so each join rules event is
// checked against its own auth events, where Alice is joined: both pass
// and JR2, the later, wins.
func staleJoinRules(t *testing.T, vid string) (r *room, states []StateMap, jr1, jr2 *pdu.Event) {
	r, f := newRoom(t, vid)
	f.join(alice)
	f.powerLevels(alice, map[pdu.UserID]int{bob: 100}, nil)
	jr1 = f.joinRules(alice, "public")
	f.join(bob)
	jr2 = f.joinRules(alice, "invite")
	f.member(alice, alice, "leave")
	stale := maps.Clone(f.state)
	stale[jrKey] = jr1.ID()
	return r, []StateMap{f.state, stale}, jr1, jr2
}

// stalePowerLevels builds MSC4297's "problem B" in room version vid. Alice
// (creator) lets anyone at 50 change power levels (PL1), makes Bob 50
// (PL2), Bob sets the topic (citing PL2) and then makes Charlie 50 (PL3).
// One state is right; the other has the stale PL1 though its topic cites
// PL2. The conflicted events are PL1 and PL3; PL2 is in both states' auth
// chains (through PL3 and through the topic), so it is not in the auth
// difference.
//
// v2 replays PL1 then PL3 only: under PL1 Bob has 0 and PL3 fails, which
// resets the power levels to PL1. In v2.1 PL2 lies on the auth path PL3 ->
// PL2 -> PL1 between two conflicted events, so the conflicted state
// subgraph brings it into the full conflicted set; replayed in order
// PL1, PL2, PL3 all pass and PL3 wins.
func stalePowerLevels(t *testing.T, vid string) (r *room, states []StateMap, pl1, pl2, pl3 *pdu.Event) {
	extra := map[string]any{"events": map[string]any{pdu.TypePowerLevels: 50}}
	r, f := newRoom(t, vid)
	f.join(alice)
	pl1 = f.powerLevels(alice, nil, extra)
	f.joinRules(alice, "public")
	f.join(bob)
	f.join(charlie)
	pl2 = f.powerLevels(alice, map[pdu.UserID]int{bob: 50}, extra)
	f.topic(bob, "from Bob", 0)
	pl3 = f.powerLevels(bob, map[pdu.UserID]int{bob: 50, charlie: 50}, extra)
	stale := maps.Clone(f.state)
	stale[plKey] = pl1.ID()
	return r, []StateMap{f.state, stale}, pl1, pl2, pl3
}

// TestResolveV21Differences asserts, for both algorithms, the outcome of
// the two state resets that v2.1 was made to prevent.
func TestResolveV21Differences(t *testing.T) {
	t.Run("empty initial state", func(t *testing.T) {
		for _, vid := range versions {
			t.Run("v"+vid, func(t *testing.T) {
				r, states, _, jr2 := staleJoinRules(t, vid)
				got, err := Resolve(Input{Version: r.v, States: states, Events: r.lookup})
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				id, ok := got[jrKey]
				switch r.v.StateRes {
				case pdu.StateResV2:
					if ok {
						t.Errorf("v2: join rules = %s, want none (both replays fail without Alice)", id)
					}
				case pdu.StateResV2_1:
					if id != jr2.ID() {
						t.Errorf("v2.1: join rules = %q, want JR2 %s", id, jr2.ID())
					}
				}
				if got[memberKey(alice)] != states[0][memberKey(alice)] {
					t.Errorf("Alice's leave (unconflicted) was replaced")
				}
			})
		}
	})
	t.Run("conflicted subgraph", func(t *testing.T) {
		for _, vid := range versions {
			t.Run("v"+vid, func(t *testing.T) {
				r, states, pl1, _, pl3 := stalePowerLevels(t, vid)
				got, err := Resolve(Input{Version: r.v, States: states, Events: r.lookup})
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				want := pl3
				if r.v.StateRes == pdu.StateResV2 {
					want = pl1
				}
				if got[plKey] != want.ID() {
					t.Errorf("power levels = %s, want %s", got[plKey], want.ID())
				}
				if got[topicKey] != states[0][topicKey] {
					t.Errorf("topic (unconflicted) was replaced")
				}
			})
		}
	})
}

// indexOf looks ids up in a fresh resolver's graph for tests of the
// internal steps.
func indexOf(t *testing.T, r *resolver, evs ...*pdu.Event) []int32 {
	t.Helper()
	out := make([]int32, len(evs))
	for n, e := range evs {
		i, err := r.g.lookup(e.ID(), "")
		if err != nil {
			t.Fatal(err)
		}
		out[n] = i
	}
	return out
}

func idsOf(r *resolver, is []int32) []pdu.EventID {
	out := make([]pdu.EventID, len(is))
	for n, i := range is {
		out[n] = r.g.nodes[i].ev.ID()
	}
	return out
}

func sortedIDs(evs ...*pdu.Event) []pdu.EventID {
	out := make([]pdu.EventID, len(evs))
	for n, e := range evs {
		out[n] = e.ID()
	}
	slices.Sort(out)
	return out
}

// TestConflictedSubgraph checks the subgraph computation directly, the
// same in every room version (only v2.1 uses it).
func TestConflictedSubgraph(t *testing.T) {
	for _, vid := range versions {
		t.Run("v"+vid, func(t *testing.T) {
			r, f := newRoom(t, vid)
			aj := f.join(alice)
			extra := map[string]any{"events": map[string]any{pdu.TypePowerLevels: 50}}
			pl1 := f.powerLevels(alice, nil, extra)
			jr := f.joinRules(alice, "public")
			bj := f.join(bob)
			pl2 := f.powerLevels(alice, map[pdu.UserID]int{bob: 50}, extra)
			pl3 := f.powerLevels(bob, map[pdu.UserID]int{bob: 50, carol: 50}, extra)
			topic := f.topic(bob, "t", 0)

			// The auth graph, newest first (create omitted: every event
			// cites it before v12 and none after, which only ever makes
			// it an endpoint of nothing):
			//   topic -> PL3, Bob's join
			//   PL3 -> PL2, Bob's join
			//   Bob's join -> PL1, join rules
			//   PL2 -> PL1, Alice's join
			//   join rules -> PL1, Alice's join
			//   PL1 -> Alice's join
			cases := []struct {
				name       string
				conflicted []*pdu.Event
				want       []*pdu.Event
			}{
				// PL3 reaches PL1 through PL2, through Bob's join, and
				// through Bob's join and the join rules.
				{"paths", []*pdu.Event{pl1, pl3}, []*pdu.Event{pl3, pl2, bj, jr, pl1}},
				// Everything but the create event lies between the topic
				// and Alice's join.
				{"all", []*pdu.Event{topic, aj}, []*pdu.Event{topic, pl3, pl2, bj, jr, pl1, aj}},
				// Alice's join is on a path from neither: only the
				// endpoints, which have no path between them.
				{"unrelated", []*pdu.Event{jr, pl2}, []*pdu.Event{jr, pl2}},
				// A direct edge: no events between.
				{"adjacent", []*pdu.Event{pl2, pl3}, []*pdu.Event{pl2, pl3}},
				{"single", []*pdu.Event{pl3}, []*pdu.Event{pl3}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					res := newResolver(&Input{Version: r.v, Events: r.lookup}, true, 0)
					roots := indexOf(t, res, c.conflicted...)
					for _, i := range roots {
						res.g.nodes[i].conflicted = true
					}
					sub, err := res.g.conflictedSubgraph(roots)
					if err != nil {
						t.Fatal(err)
					}
					got := idsOf(res, sub)
					slices.Sort(got)
					if want := sortedIDs(c.want...); !slices.Equal(got, want) {
						t.Errorf("subgraph = %v, want %v", got, want)
					}
				})
			}
		})
	}
}

// TestAuthDifference checks the auth difference of problem B's states:
// only PL3 is in one state's full auth chain and not the other's.
func TestAuthDifference(t *testing.T) {
	for _, vid := range versions {
		t.Run("v"+vid, func(t *testing.T) {
			r, states, _, _, pl3 := stalePowerLevels(t, vid)
			in := &Input{Version: r.v, States: states, Events: r.lookup}
			res := newResolver(in, false, 0)
			unconflicted, conflicted := separate(states)
			var roots []int32
			for _, id := range unconflicted {
				i, err := res.g.lookup(id, "")
				if err != nil {
					t.Fatal(err)
				}
				roots = append(roots, i)
			}
			own := make([][]int32, len(conflicted))
			for s, es := range conflicted {
				for _, e := range es {
					i, err := res.g.lookup(e.id, "")
					if err != nil {
						t.Fatal(err)
					}
					own[s] = append(own[s], i)
				}
			}
			diff, err := res.g.authDifference(roots, own)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := idsOf(res, diff), sortedIDs(pl3); !slices.Equal(got, want) {
				t.Errorf("auth difference = %v, want %v", got, want)
			}
		})
	}
}
