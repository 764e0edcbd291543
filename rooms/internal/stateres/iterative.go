package stateres

import (
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// checker runs the iterative auth checks (v2 state resolution, "Iterative
// auth checks") over one growing state: base (the unconflicted state map
// in v2, nothing in v2.1) with the events applied so far layered on top.
type checker struct {
	r     *resolver
	base  StateMap
	state map[pdu.StateTuple]int32
	// cur is the event being checked; get reads it, so that one method
	// value serves every check without a closure per event.
	cur int32
	get auth.StateGetter
}

func newChecker(r *resolver, base StateMap, sizeHint int) *checker {
	c := &checker{r: r, base: base, state: make(map[pdu.StateTuple]int32, sizeHint)}
	c.get = c.lookup
	return c
}

// at returns the node in the current state under t, or -1. A rejected
// event in the base state is treated as absent: rejected events are never
// used to authorise others.
func (c *checker) at(t pdu.StateTuple) int32 {
	if i, ok := c.state[t]; ok {
		return i // only events that passed the checks, never rejected ones
	}
	if c.base == nil {
		return -1
	}
	id, ok := c.base[t]
	if !ok {
		return -1
	}
	g := c.r.g
	i, ok := g.index[id]
	if !ok || g.rejected(i) {
		return -1
	}
	return i
}

// lookup is the state the auth rules see for event cur. "If a
// (event_type, state_key) key that is required for checking the
// authorisation rules is not present in the state, then the appropriate
// state event from the event's auth_events is used if the auth event is
// not rejected." The auth rules ask for exactly the keys they need, so a
// key the state lacks is answered from cur's auth events.
//
// Room version 12 never cites the create event in auth_events, and v2.1
// starts step 2 from an empty state, so the create event is supplied last
// (rooms v12: the room ID is the create event's hash, and the auth rules
// take the create event from it).
func (c *checker) lookup(t pdu.StateTuple) *pdu.Event {
	g := c.r.g
	if i := c.at(t); i >= 0 {
		return g.nodes[i].ev
	}
	if a := g.authByTuple(c.cur, t); a >= 0 && !g.rejected(a) {
		return g.nodes[a].ev
	}
	if c.r.create != nil && t == createTuple {
		return c.r.create
	}
	return nil
}

// apply checks events in order, adding each that the auth rules allow to
// the state. An event that Input.Rejected reports is skipped: it was
// rejected against its own auth chain, so it must not enter state (v2
// state resolution, "Rejected events"); such events should not reach
// resolution at all.
func (c *checker) apply(events []int32) {
	g := c.r.g
	for _, i := range events {
		ev := g.nodes[i].ev
		if !ev.IsState() || g.rejected(i) {
			continue
		}
		c.cur = i
		if auth.Allowed(ev, c.get) == nil {
			c.state[ev.Tuple()] = i
		}
	}
}
