package stateres

import (
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// isPowerEvent reports whether e is a power event (v2 state resolution,
// "Power events"): m.room.power_levels, m.room.join_rules, or a leave or
// ban of someone other than the sender.
//
// The definition names only the types; like Synapse, Ruma and
// gomatrixserverlib we also require the empty state key for the first
// two. Only those are the room's power levels and join rules: they are
// what auth events selection cites and what the auth rules read, and an
// implementation that sorted an odd-keyed m.room.power_levels differently
// from the others would split the room's state.
func isPowerEvent(e *pdu.Event) bool {
	switch e.Type() {
	case pdu.TypePowerLevels, pdu.TypeJoinRules:
		return e.StateKeyIs("")
	case pdu.TypeMember:
		sk := e.StateKey()
		if sk == nil || *sk == string(e.Sender()) {
			return false
		}
		m := e.Membership()
		return m == "leave" || m == "ban"
	}
	return false
}

// powerSort performs step 1 of the algorithm: it selects the power events
// of the full conflicted set, adds the events of their auth chains that
// are also in the full conflicted set, marks the result (the set X) with
// node.power and returns it in reverse topological power ordering.
//
// The ordering must respect the auth DAG itself, not only its edges
// between members of X: an event of X can reach another through events
// outside X. Kahn's algorithm therefore runs on everything the power
// events reach, and a node outside X is released the moment it becomes
// free, before the next pick: it takes no place in the output, so only
// the nodes of X compete under the comparison relation.
func (r *resolver) powerSort(full []int32) ([]int32, error) {
	g := r.g
	var roots []int32
	for _, i := range full {
		if isPowerEvent(g.nodes[i].ev) {
			roots = append(roots, i)
		}
	}
	if len(roots) == 0 {
		return nil, nil
	}
	// Everything the power events reach, each node numbered in local.
	var reach []int32
	if err := g.walk(roots, func(i int32) bool {
		g.nodes[i].local = int32(len(reach))
		reach = append(reach, i)
		return true
	}); err != nil {
		return nil, err
	}
	// Out-degree (number of distinct auth events) and the reverse edges in
	// compressed form: parents[first[l]:first[l+1]] cite node l.
	out := make([]int32, len(reach))
	first := make([]int32, len(reach)+1)
	for l, i := range reach {
		out[l] = int32(len(g.nodes[i].auth))
		for _, a := range g.nodes[i].auth {
			first[g.nodes[a].local+1]++
		}
	}
	for l := range reach {
		first[l+1] += first[l]
	}
	parents := make([]int32, first[len(reach)])
	fill := make([]int32, len(reach))
	copy(fill, first)
	for l, i := range reach {
		for _, a := range g.nodes[i].auth {
			la := g.nodes[a].local
			parents[fill[la]] = int32(l)
			fill[la]++
		}
	}

	// X is what the power events reach within the full conflicted set,
	// the power events (members of the set themselves) included.
	var x []int32
	for _, i := range reach {
		if g.nodes[i].full {
			g.nodes[i].power = true
			x = append(x, i)
		}
	}
	h := &powerHeap{keys: make([]powerKey, 0, len(x))}
	for _, i := range x {
		r.senderLevel(i) // computed up front so that the heap only compares
	}

	sorted := make([]int32, 0, len(x))
	free := make([]int32, 0, len(reach)) // released nodes outside X
	release := func(l int32) {
		i := reach[l]
		if g.nodes[i].power {
			h.push(powerKey{level: r.levels[i], ts: g.nodes[i].ev.OriginServerTS(), id: g.nodes[i].ev.ID(), i: i})
		} else {
			free = append(free, l)
		}
	}
	done := func(l int32) {
		for _, p := range parents[first[l]:first[l+1]] {
			out[p]--
			if out[p] == 0 {
				release(p)
			}
		}
	}
	for l := range reach {
		if out[l] == 0 {
			release(int32(l))
		}
	}
	for {
		for len(free) > 0 {
			l := free[len(free)-1]
			free = free[:len(free)-1]
			done(l)
		}
		if len(h.keys) == 0 {
			break
		}
		k := h.pop()
		sorted = append(sorted, k.i)
		done(g.nodes[k.i].local)
	}
	return sorted, nil
}

// senderLevel memoises the power level of node i's sender "when looking
// at their respective auth_events" (v2 state resolution, "Reverse
// topological power ordering"): the state consulted is exactly the
// event's own auth events, rejected or not, so that every server computes
// the same level whatever it decided about those events. In room version
// 12 the create event is never cited and is supplied as well.
func (r *resolver) senderLevel(i int32) int64 {
	if lv, ok := r.levels[i]; ok {
		return lv
	}
	g := r.g
	lv := auth.SenderPowerLevel(g.nodes[i].ev, func(t pdu.StateTuple) *pdu.Event {
		if a := g.authByTuple(i, t); a >= 0 {
			return g.nodes[a].ev
		}
		if r.create != nil && t == createTuple {
			return r.create
		}
		return nil
	})
	r.levels[i] = lv
	return lv
}

// powerKey orders X by the comparison relation of the reverse topological
// power ordering: greater sender power level first, then smaller
// origin_server_ts, then smaller event ID.
type powerKey struct {
	level int64
	ts    int64
	id    pdu.EventID
	i     int32
}

func (a *powerKey) less(b *powerKey) bool {
	if a.level != b.level {
		return a.level > b.level
	}
	if a.ts != b.ts {
		return a.ts < b.ts
	}
	return a.id < b.id
}

// powerHeap is a binary min-heap of powerKey; written out rather than
// through container/heap to keep the keys unboxed.
type powerHeap struct{ keys []powerKey }

func (h *powerHeap) push(k powerKey) {
	h.keys = append(h.keys, k)
	j := len(h.keys) - 1
	for j > 0 {
		p := (j - 1) / 2
		if !h.keys[j].less(&h.keys[p]) {
			break
		}
		h.keys[j], h.keys[p] = h.keys[p], h.keys[j]
		j = p
	}
}

func (h *powerHeap) pop() powerKey {
	top := h.keys[0]
	last := len(h.keys) - 1
	h.keys[0] = h.keys[last]
	h.keys = h.keys[:last]
	j := 0
	for {
		l := 2*j + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && h.keys[r].less(&h.keys[l]) {
			m = r
		}
		if !h.keys[m].less(&h.keys[j]) {
			break
		}
		h.keys[j], h.keys[m] = h.keys[m], h.keys[j]
		j = m
	}
	return top
}
