package stateres

import (
	"errors"
	"fmt"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// StateMap is a room state: the event under each (type, state_key).
type StateMap map[pdu.StateTuple]pdu.EventID

// Input is everything resolution needs; Resolve does no I/O.
type Input struct {
	Version *pdu.Version
	// States are the states to resolve: the state after each prev event.
	States []StateMap
	// Events returns an event by ID, or nil. Every event in States and in
	// their auth chains must be found (room version 12: the create event
	// too, though nothing cites it); a missing one fails resolution with
	// a *MissingEventError.
	Events func(pdu.EventID) *pdu.Event
	// Rejected reports events rejected against their own auth chain;
	// they are never used to authorise another event. nil means none.
	Rejected func(pdu.EventID) bool
}

var (
	plTuple     = pdu.StateTuple{Type: pdu.TypePowerLevels}
	createTuple = pdu.StateTuple{Type: pdu.TypeCreate}
)

// resolver is the state of one Resolve call.
type resolver struct {
	in *Input
	g  *graph
	// v21 selects the room version 12 revision.
	v21 bool
	// create is the room's create event in room version 12, where no
	// event cites it; nil before.
	create *pdu.Event
	levels map[int32]int64 // memoised sender power levels (powersort.go)
}

// Resolve returns the resolution of in.States (v2 state resolution,
// "Algorithm"; rooms v12 for the v2.1 changes, selected by
// in.Version.StateRes).
func Resolve(in Input) (StateMap, error) {
	if in.Version == nil {
		return nil, errors.New("state resolution: no room version")
	}
	var v21 bool
	switch in.Version.StateRes {
	case pdu.StateResV2:
	case pdu.StateResV2_1:
		v21 = true
	default:
		return nil, fmt.Errorf("state resolution: room version %s uses unsupported algorithm %d", in.Version.ID, in.Version.StateRes)
	}
	unconflicted, conflicted := separate(in.States)
	if !hasConflicts(conflicted) {
		// Every state agrees: the union is the answer, and nothing needs
		// looking up.
		return unconflicted, nil
	}
	if in.Events == nil {
		return nil, errors.New("state resolution: no event lookup")
	}
	size := len(unconflicted)
	for _, es := range conflicted {
		size += len(es)
	}
	// Nearly every event involved is a state value; auth chains add few.
	r := newResolver(&in, v21, size+size/8+16)
	return r.resolve(unconflicted, conflicted)
}

func newResolver(in *Input, v21 bool, sizeHint int) *resolver {
	return &resolver{
		in:     in,
		g:      newGraph(in, sizeHint),
		v21:    v21,
		levels: make(map[int32]int64),
	}
}

// fullConflictedSet indexes the states' events and returns the full
// conflicted set: the conflicted state set, the auth difference and (v2.1)
// the conflicted state subgraph, each event once.
func (r *resolver) fullConflictedSet(unconflicted StateMap, perState [][]entry) ([]int32, error) {
	g := r.g
	var conflicted []int32
	own := make([][]int32, len(perState))
	for s, es := range perState {
		own[s] = make([]int32, 0, len(es))
		for _, e := range es {
			i, err := r.stateEvent(e.t, e.id)
			if err != nil {
				return nil, err
			}
			own[s] = append(own[s], i)
			if !g.nodes[i].conflicted {
				g.nodes[i].conflicted = true
				conflicted = append(conflicted, i)
			}
		}
	}
	roots := make([]int32, 0, len(unconflicted))
	for t, id := range unconflicted {
		i, err := r.stateEvent(t, id)
		if err != nil {
			return nil, err
		}
		roots = append(roots, i)
	}
	if r.in.Version.RoomIDIsCreateHash {
		// Rooms v12: the room ID is "!" + the create event's hash, which is
		// its event ID without the "$".
		i, err := g.lookup(pdu.EventID("$"+string(g.room)[1:]), "")
		if err != nil {
			return nil, err
		}
		r.create = g.nodes[i].ev
	}

	diff, err := g.authDifference(roots, own)
	if err != nil {
		return nil, err
	}
	full := make([]int32, 0, len(conflicted)+len(diff))
	add := func(is []int32) {
		for _, i := range is {
			if !g.nodes[i].full {
				g.nodes[i].full = true
				full = append(full, i)
			}
		}
	}
	add(conflicted)
	add(diff)
	if r.v21 {
		sub, err := g.conflictedSubgraph(conflicted)
		if err != nil {
			return nil, err
		}
		add(sub)
	}
	return full, nil
}

func (r *resolver) resolve(unconflicted StateMap, conflicted [][]entry) (StateMap, error) {
	g := r.g
	full, err := r.fullConflictedSet(unconflicted, conflicted)
	if err != nil {
		return nil, err
	}

	// Step 1: the power events and their auth chains within the full
	// conflicted set, in reverse topological power ordering.
	power, err := r.powerSort(full)
	if err != nil {
		return nil, err
	}
	// Step 2: iterative auth checks from the unconflicted state map (v2) or
	// from an empty state map (v2.1, rooms v12 "State resolution").
	base := unconflicted
	if r.v21 {
		base = nil
	}
	c := newChecker(r, base, len(full))
	c.apply(power)

	// Step 3: the rest of the full conflicted set in mainline ordering
	// based on the power levels of the partially resolved state.
	rest := make([]int32, 0, len(full)-len(power))
	for _, i := range full {
		if !g.nodes[i].power {
			rest = append(rest, i)
		}
	}
	rest = r.mainlineSort(rest, c.at(plTuple))

	// Step 4: iterative auth checks on top of the partial state.
	c.apply(rest)

	// Step 5: the unconflicted state map wins wherever it has a key. It is
	// no longer read, so it becomes the result, saving a copy of what is
	// usually most of the room's state.
	out := unconflicted
	for t, i := range c.state {
		if _, ok := out[t]; !ok {
			out[t] = g.nodes[i].ev.ID()
		}
	}
	return out, nil
}

// stateEvent looks up the event a state holds under key t. A state map is
// keyed by its events' own (type, state_key), and resolution keys its
// result the same way, so an event under another key is refused.
func (r *resolver) stateEvent(t pdu.StateTuple, id pdu.EventID) (int32, error) {
	i, err := r.g.lookup(id, "")
	if err != nil {
		return -1, err
	}
	if ev := r.g.nodes[i].ev; !ev.IsState() || ev.Tuple() != t {
		return -1, fmt.Errorf("state resolution: event %s is not the state event for %q/%q", id, t.Type, t.StateKey)
	}
	return i, nil
}
