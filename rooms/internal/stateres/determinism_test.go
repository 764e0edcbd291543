package stateres

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// tangle builds four forks that conflict in every way the algorithm
// distinguishes: power levels changed by several admins, a ban, a kick, a
// self-leave, join rules, topics, custom state, and a fork of a fork.
func tangle(t *testing.T, vid string) (*room, []*fork) {
	status := "org.example.status"
	extra := map[string]any{"events": map[string]any{status: 0}}
	r, f := start(t, vid, map[pdu.UserID]int{bob: 100, carol: 50}, extra, bob, carol, charlie, dave)
	a, b, c := f, f.branch(), f.branch()

	a.member(bob, dave, "ban")
	a.topic(carol, "from a", 0)
	a.send(ev{sender: carol, typ: status, stateKey: string(carol), content: map[string]any{"s": "a"}})

	b.powerLevels(alice, map[pdu.UserID]int{bob: 100, carol: 75}, extra)
	d := b.branch()
	b.topic(carol, "from b", 0)
	b.member(dave, dave, "leave")
	b.send(ev{sender: charlie, typ: status, stateKey: string(charlie), content: map[string]any{"s": "b"}})

	c.powerLevels(bob, map[pdu.UserID]int{bob: 100, carol: 50, charlie: 50}, extra)
	c.topic(charlie, "from c", 0)
	c.joinRules(bob, "invite")
	c.send(ev{sender: carol, typ: status, stateKey: string(carol), content: map[string]any{"s": "c"}})

	d.member(bob, charlie, "leave") // a kick
	d.topic(carol, "from d", 0)
	d.send(ev{sender: dave, typ: status, stateKey: string(dave), content: map[string]any{"s": "d"}})
	return r, []*fork{a, b, c, d}
}

// permutations returns every ordering of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := slices.Insert(slices.Clone(p), i, n-1)
			out = append(out, q)
		}
	}
	return out
}

// rebuilt copies s inserting its keys in a shuffled order, so that map
// iteration differs from the original's beyond Go's own randomisation.
func rebuilt(s StateMap, rng *rand.Rand) StateMap {
	keys := slices.Collect(maps.Keys(s))
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	out := make(StateMap)
	for _, k := range keys {
		out[k] = s[k]
	}
	return out
}

// TestResolveDeterministic: the result does not depend on the order of
// the states, on map iteration order, or on the order in which events are
// looked up.
func TestResolveDeterministic(t *testing.T) {
	for _, vid := range versions {
		t.Run("v"+vid, func(t *testing.T) {
			r, forks := tangle(t, vid)
			rng := rand.New(rand.NewPCG(1, 2))
			var want StateMap
			for n, perm := range permutations(len(forks)) {
				for round := range 3 {
					states := make([]StateMap, len(perm))
					for i, p := range perm {
						states[i] = rebuilt(forks[p].state, rng)
					}
					// The lookup copies events into a fresh map each round,
					// so nothing is shared between runs but the events.
					events := maps.Clone(r.events)
					got, err := Resolve(Input{Version: r.v, States: states, Events: func(id pdu.EventID) *pdu.Event { return events[id] }})
					if err != nil {
						t.Fatalf("Resolve: %v", err)
					}
					if want == nil {
						want = got
						continue
					}
					if !maps.Equal(got, want) {
						t.Fatalf("permutation %d %v round %d: result differs:\ngot  %v\nwant %v", n, perm, round, got, want)
					}
				}
			}
			// A sanity check that the tangle really conflicts: the result
			// is none of the input states.
			for i, f := range forks {
				if maps.Equal(want, f.state) {
					t.Errorf("result equals fork %d's state; the fixture does not conflict", i)
				}
			}
		})
	}
}
