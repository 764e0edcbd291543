package stateres

import (
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// entry is one (key, event) pair of a state.
type entry struct {
	t  pdu.StateTuple
	id pdu.EventID
}

// separate splits the states into the unconflicted state map and the
// conflicted state set (v2 state resolution, "Unconflicted state map and
// conflicted state set"): a key present in every state with the same
// event is unconflicted; every event under any other key is conflicted.
// A key missing from some state is therefore conflicted even when the
// states that have it agree.
//
// The conflicted state set comes back split by state: conflicted[i] holds
// state i's entries under conflicted keys, which is what the auth
// difference walks from. An event may appear in several of them.
func separate(states []StateMap) (unconflicted StateMap, conflicted [][]entry) {
	if len(states) == 0 {
		return StateMap{}, nil
	}
	first := states[0]
	unconflicted = make(StateMap, len(first))
	conflicted = make([][]entry, len(states))
	addConflicted := func(t pdu.StateTuple) {
		for i, s := range states {
			if id, ok := s[t]; ok {
				conflicted[i] = append(conflicted[i], entry{t, id})
			}
		}
	}
	for t, id := range first {
		same := true
		for _, s := range states[1:] {
			if other, ok := s[t]; !ok || other != id {
				same = false
				break
			}
		}
		if same {
			unconflicted[t] = id
		} else {
			addConflicted(t)
		}
	}
	// Keys absent from the first state are conflicted by definition; each
	// is handled once, by the first state that has it.
	for i, s := range states[1:] {
		for t := range s {
			if _, ok := first[t]; ok {
				continue
			}
			earlier := false
			for _, prev := range states[1 : i+1] {
				if _, ok := prev[t]; ok {
					earlier = true
					break
				}
			}
			if !earlier {
				addConflicted(t)
			}
		}
	}
	return unconflicted, conflicted
}

// hasConflicts reports whether separate found any conflicted key.
func hasConflicts(conflicted [][]entry) bool {
	for _, es := range conflicted {
		if len(es) > 0 {
			return true
		}
	}
	return false
}

// authDifference returns the auth difference of the states (v2 state
// resolution, "Auth difference"): the events in some but not all of the
// states' full auth chains.
//
// It does not build one chain set per state. It first marks as common
// everything the unconflicted state's events (common) reach, since that is
// in every state's full auth chain. Then it walks from each state's
// remaining, conflicted, events (own[i] for state i), stopping at common
// events, and counts per event how
// many states reached it. An event reached by some but not all states is
// in the difference. The cost is one pass over the union of the auth
// chains plus one pass per state over its non-common part.
//
// A state's full auth chain is taken to include the state's own events as
// well as their auth chains, as Synapse computes it (both its chain cover
// index and its older breadth-first walk count a state's events as
// reached by that state). Read literally, "the union of the auth chains
// for each event in S_i" leaves an event of S_i out of C_i unless another
// event of S_i cites it. The readings differ only for unconflicted events
// that are in the auth chains of some states but not all: the literal one
// would replay them, the inclusive one does not. Agreeing with the
// deployed servers is what keeps a room's state from splitting.
func (g *graph) authDifference(common []int32, own [][]int32) ([]int32, error) {
	if err := g.walk(common, func(i int32) bool {
		g.nodes[i].common = true
		return true
	}); err != nil {
		return nil, err
	}
	var touched []int32
	for _, roots := range own {
		if err := g.walk(roots, func(i int32) bool {
			n := &g.nodes[i]
			if n.common {
				return false
			}
			if n.count == 0 {
				touched = append(touched, i)
			}
			n.count++
			return true
		}); err != nil {
			return nil, err
		}
	}
	k := int32(len(own))
	diff := touched[:0]
	for _, i := range touched {
		if g.nodes[i].count < k {
			diff = append(diff, i)
		}
	}
	return diff, nil
}

// conflictedSubgraph returns the conflicted state subgraph (rooms v12,
// "Conflicted state subgraph"): every event on an auth_events path from
// one conflicted event to another, endpoints included. Those are the
// events that a conflicted event reaches and that themselves reach a
// conflicted event. One depth-first search from the conflicted events
// finds both: it visits exactly what they reach, and on the way back up
// records for each node whether one of its auth events (or the node
// itself) is conflicted. The nodes must have their conflicted flag set.
func (g *graph) conflictedSubgraph(conflicted []int32) ([]int32, error) {
	type frame struct {
		i    int32
		next int
	}
	g.stamp++
	var (
		stack []frame
		sub   []int32
	)
	for _, root := range conflicted {
		if g.nodes[root].seen == g.stamp {
			continue
		}
		g.nodes[root].seen = g.stamp
		stack = append(stack[:0], frame{i: root})
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if err := g.load(top.i); err != nil {
				return nil, err
			}
			auth := g.nodes[top.i].auth
			if top.next < len(auth) {
				c := auth[top.next]
				top.next++
				if g.nodes[c].seen != g.stamp {
					g.nodes[c].seen = g.stamp
					stack = append(stack, frame{i: c})
				}
				continue
			}
			// Every auth event is finished (the graph is acyclic, since
			// event IDs hash the auth_events that point down from them).
			n := &g.nodes[top.i]
			reaches := n.conflicted
			for _, c := range auth {
				if g.nodes[c].reaches {
					reaches = true
					break
				}
			}
			n.reaches = reaches
			if reaches {
				sub = append(sub, top.i)
			}
			stack = stack[:len(stack)-1]
		}
	}
	return sub, nil
}
