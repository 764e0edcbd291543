package stateres

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// referenceResolve is the algorithm written as literally as the spec
// reads, with none of Resolve's shortcuts: auth chains materialised per
// event, the conflicted state subgraph by pairwise reachability, the
// topological ordering by repeated minimum search, mainline positions
// walked afresh for every event. It is slow and only for comparison.
func referenceResolve(in Input) StateMap {
	ev := in.Events
	rejected := func(id pdu.EventID) bool { return in.Rejected != nil && in.Rejected(id) }
	var create *pdu.Event

	// Unconflicted state map and conflicted state set.
	keys := map[pdu.StateTuple]bool{}
	for _, s := range in.States {
		for k := range s {
			keys[k] = true
		}
	}
	unconflicted := StateMap{}
	conflicted := map[pdu.EventID]bool{}
	for k := range keys {
		id, same := in.States[0][k]
		for _, s := range in.States {
			if other, ok := s[k]; !ok || other != id {
				same = false
			}
		}
		if same {
			unconflicted[k] = id
			continue
		}
		for _, s := range in.States {
			if id, ok := s[k]; ok {
				conflicted[id] = true
			}
		}
	}
	if len(conflicted) == 0 {
		return unconflicted
	}
	for _, s := range in.States {
		for _, id := range s {
			if e := ev(id); e.Version().RoomIDIsCreateHash {
				create = ev(pdu.EventID("$" + string(e.RoomID())[1:]))
			}
			break
		}
	}

	// Auth chains.
	chains := map[pdu.EventID]map[pdu.EventID]bool{}
	var chain func(id pdu.EventID) map[pdu.EventID]bool
	chain = func(id pdu.EventID) map[pdu.EventID]bool {
		if c, ok := chains[id]; ok {
			return c
		}
		c := map[pdu.EventID]bool{}
		for _, a := range ev(id).AuthEvents() {
			c[a] = true
			maps.Copy(c, chain(a))
		}
		chains[id] = c
		return c
	}
	// Auth difference, each state's events included in its chain.
	full := maps.Clone(conflicted)
	var sets []map[pdu.EventID]bool
	union := map[pdu.EventID]bool{}
	for _, s := range in.States {
		c := map[pdu.EventID]bool{}
		for _, id := range s {
			c[id] = true
			maps.Copy(c, chain(id))
		}
		sets = append(sets, c)
		maps.Copy(union, c)
	}
	for id := range union {
		for _, c := range sets {
			if !c[id] {
				full[id] = true
			}
		}
	}
	// Conflicted state subgraph: n with c1 ->* n ->* c2.
	if in.Version.StateRes == pdu.StateResV2_1 {
		for n := range union {
			from, to := false, false
			for c := range conflicted {
				if c == n || chain(c)[n] {
					from = true
				}
				if c == n || chain(n)[c] {
					to = true
				}
			}
			if from && to {
				full[n] = true
			}
		}
	}

	// Step 1.
	x := map[pdu.EventID]bool{}
	for id := range full {
		if isPowerEvent(ev(id)) {
			x[id] = true
			for a := range chain(id) {
				if full[a] {
					x[a] = true
				}
			}
		}
	}
	level := func(id pdu.EventID) int64 {
		e := ev(id)
		return auth.SenderPowerLevel(e, func(t pdu.StateTuple) *pdu.Event {
			for _, a := range e.AuthEvents() {
				if ae := ev(a); ae.Tuple() == t {
					return ae
				}
			}
			if create != nil && t == createTuple {
				return create
			}
			return nil
		})
	}
	var sorted []pdu.EventID
	for len(x) > 0 {
		var best pdu.EventID
		for id := range x {
			free := true
			for other := range x {
				if chain(id)[other] {
					free = false
				}
			}
			if !free {
				continue
			}
			if best == "" {
				best = id
				continue
			}
			a, b := ev(id), ev(best)
			if c := cmp.Or(cmp.Compare(level(best), level(id)), cmp.Compare(a.OriginServerTS(), b.OriginServerTS()), cmp.Compare(id, best)); c < 0 {
				best = id
			}
		}
		sorted = append(sorted, best)
		delete(x, best)
	}

	// Iterative auth checks.
	state := StateMap{}
	if in.Version.StateRes == pdu.StateResV2 {
		state = maps.Clone(unconflicted)
	}
	check := func(ids []pdu.EventID) {
		for _, id := range ids {
			e := ev(id)
			if rejected(id) {
				continue
			}
			err := auth.Allowed(e, func(t pdu.StateTuple) *pdu.Event {
				if sid, ok := state[t]; ok && !rejected(sid) {
					return ev(sid)
				}
				for _, a := range e.AuthEvents() {
					if ae := ev(a); ae.Tuple() == t && !rejected(a) {
						return ae
					}
				}
				if create != nil && t == createTuple {
					return create
				}
				return nil
			})
			if err == nil {
				state[e.Tuple()] = id
			}
		}
	}
	check(sorted)

	// Steps 3 and 4.
	inSorted := map[pdu.EventID]bool{}
	for _, id := range sorted {
		inSorted[id] = true
	}
	var rest []pdu.EventID
	for id := range full {
		if !inSorted[id] {
			rest = append(rest, id)
		}
	}
	plOf := func(id pdu.EventID) pdu.EventID {
		for _, a := range ev(id).AuthEvents() {
			if ev(a).Tuple() == plTuple {
				return a
			}
		}
		return ""
	}
	var mainline []pdu.EventID
	for p := state[plTuple]; p != ""; p = plOf(p) {
		mainline = append(mainline, p)
	}
	position := func(id pdu.EventID) int {
		for p := plOf(id); p != ""; p = plOf(p) {
			if i := slices.Index(mainline, p); i >= 0 {
				return i
			}
		}
		return int(^uint(0) >> 1)
	}
	slices.SortFunc(rest, func(a, b pdu.EventID) int {
		return cmp.Or(cmp.Compare(position(b), position(a)), cmp.Compare(ev(a).OriginServerTS(), ev(b).OriginServerTS()), cmp.Compare(a, b))
	})
	check(rest)

	// Step 5.
	maps.Copy(state, unconflicted)
	return state
}

// try builds e on the fork and applies it only if the auth rules allow it
// against the fork's state, as a server would.
func (f *fork) try(e ev) bool {
	f.r.tb.Helper()
	saved, last, depth := maps.Clone(f.state), f.last, f.depth
	built := f.send(e)
	err := auth.Allowed(built, func(t pdu.StateTuple) *pdu.Event {
		if id, ok := saved[t]; ok {
			return f.r.events[id]
		}
		return nil
	})
	if err != nil {
		f.state, f.last, f.depth = saved, last, depth
		delete(f.r.events, built.ID())
		return false
	}
	return true
}

// randomRoom grows a room of random forks of allowed events, and returns
// the states to resolve: each fork's, and some stale copies with a key
// set back to an older event, as a faulty /state answer would give.
func randomRoom(t *testing.T, vid string, rng *rand.Rand) (*room, []StateMap) {
	const custom = "org.example.custom"
	people := []pdu.UserID{alice, bob, carol, dave, charlie}
	extra := map[string]any{"events": map[string]any{custom: 0}}
	r, f := start(t, vid, map[pdu.UserID]int{bob: 100, carol: 50}, extra, bob, carol)
	forks := []*fork{f}
	history := map[pdu.StateTuple][]pdu.EventID{}
	steps := 5 + rng.IntN(35)
	for range steps {
		f := forks[rng.IntN(len(forks))]
		if rng.IntN(5) == 0 {
			f = f.branch()
			forks = append(forks, f)
		}
		sender := people[rng.IntN(len(people))]
		target := people[rng.IntN(len(people))]
		var e ev
		switch rng.IntN(9) {
		case 0:
			users := map[string]any{}
			for _, u := range people[1:] {
				if rng.IntN(2) == 0 {
					users[string(u)] = []int{0, 10, 50, 100}[rng.IntN(4)]
				}
			}
			if !r.v.PrivilegedCreators {
				users[string(alice)] = 100
			}
			e = ev{sender: sender, typ: pdu.TypePowerLevels, content: map[string]any{"users": users, "events": extra["events"]}}
		case 1:
			e = ev{sender: sender, typ: pdu.TypeJoinRules, content: map[string]any{"join_rule": []string{"public", "invite"}[rng.IntN(2)]}}
		case 2:
			e = ev{sender: target, typ: pdu.TypeMember, stateKey: string(target), content: map[string]any{"membership": "join"}}
		case 3:
			e = ev{sender: sender, typ: pdu.TypeMember, stateKey: string(target), content: map[string]any{"membership": []string{"leave", "ban", "invite"}[rng.IntN(3)]}}
		case 4, 5:
			e = ev{sender: sender, typ: "m.room.topic", content: map[string]any{"topic": fmt.Sprint(rng.IntN(100))}}
		default:
			e = ev{sender: sender, typ: custom, stateKey: fmt.Sprint(rng.IntN(3)), content: map[string]any{"n": rng.IntN(100)}}
		}
		if rng.IntN(4) == 0 {
			e.ts = f.r.ts - int64(rng.IntN(3000)) // clock skew, and ties
		}
		if f.try(e) {
			t := pdu.StateTuple{Type: e.typ, StateKey: e.stateKey}
			history[t] = append(history[t], f.state[t])
		}
	}
	var states []StateMap
	for _, f := range forks {
		states = append(states, f.state)
	}
	for range rng.IntN(2) {
		s := maps.Clone(states[rng.IntN(len(states))])
		for k, ids := range history {
			if len(ids) > 1 && rng.IntN(3) == 0 {
				s[k] = ids[rng.IntN(len(ids)-1)]
			}
		}
		states = append(states, s)
	}
	if len(states) > 4 {
		states = states[:4]
	}
	return r, states
}

// TestResolveMatchesReference resolves random rooms with Resolve and with
// referenceResolve and requires the same answer.
func TestResolveMatchesReference(t *testing.T) {
	rounds := 150
	if testing.Short() {
		rounds = 30
	}
	for _, vid := range versions {
		t.Run("v"+vid, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(len(vid)), 7))
			conflicts := 0
			for round := range rounds {
				r, states := randomRoom(t, vid, rng)
				in := Input{Version: r.v, States: states, Events: r.lookup}
				if round%3 == 0 {
					// Reject a few random events of the room.
					bad := map[pdu.EventID]bool{}
					for id := range r.events {
						if rng.IntN(15) == 0 {
							bad[id] = true
						}
					}
					in.Rejected = func(id pdu.EventID) bool { return bad[id] }
				}
				want := referenceResolve(in)
				got, err := Resolve(in)
				if err != nil {
					t.Fatalf("round %d: Resolve: %v", round, err)
				}
				if _, c := separate(states); hasConflicts(c) {
					conflicts++
				}
				if !maps.Equal(got, want) {
					for k := range keysOf(got, want) {
						if got[k] != want[k] {
							t.Errorf("round %d: %v: got %s, reference %s", round, k, got[k], want[k])
						}
					}
					t.FailNow()
				}
			}
			if conflicts < rounds/2 {
				t.Errorf("only %d of %d rounds had conflicts", conflicts, rounds)
			}
		})
	}
}

func keysOf(ms ...StateMap) map[pdu.StateTuple]bool {
	out := map[pdu.StateTuple]bool{}
	for _, m := range ms {
		for k := range m {
			out[k] = true
		}
	}
	return out
}
