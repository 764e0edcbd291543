package stateres

import (
	"fmt"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// MissingEventError says that an event needed for resolution (one of the
// states' events or an event in their auth chains) was not found by
// Input.Events. The caller can fetch it and resolve again.
type MissingEventError struct {
	ID pdu.EventID
	// By is the event that cites ID in its auth_events, or "" when ID is
	// one of the states' values (or the room's create event).
	By pdu.EventID
}

func (e *MissingEventError) Error() string {
	if e.By == "" {
		return fmt.Sprintf("state resolution: event %s not found", e.ID)
	}
	return fmt.Sprintf("state resolution: auth event %s of %s not found", e.ID, e.By)
}

// node is one event taking part in resolution. Nodes live in graph.nodes
// and refer to each other by index, so a traversal costs a slice access
// per edge instead of a map lookup.
type node struct {
	ev *pdu.Event
	// auth are the indices of the event's auth_events, without duplicates;
	// valid once loaded is set.
	auth   []int32
	loaded bool

	// seen is the stamp of the last traversal that reached the node.
	seen int32
	// count is how many states' full auth chains reach the node without
	// passing through a common node (see authDifference).
	count int32
	// common: the node is in the full auth chain of the unconflicted
	// state map, hence of every state.
	common bool
	// conflicted: the event is in the conflicted state set.
	conflicted bool
	// full: the event is in the full conflicted set.
	full bool
	// power: the event is in the set X of step 1 (a power event of the
	// full conflicted set or in the auth chain of one).
	power bool
	// reaches: some path of auth_events edges leads from the node to an
	// event of the conflicted state set (conflicted state subgraph).
	reaches bool
	// rejected caches Input.Rejected: 0 unknown, 1 no, 2 yes.
	rejected int8
	// local is scratch space for the current algorithm step.
	local int32
}

// graph indexes the events reachable from the states over auth_events
// edges. Events are fetched from the caller's lookup function once each
// and only when a traversal first reaches them.
type graph struct {
	events     func(pdu.EventID) *pdu.Event
	isRejected func(pdu.EventID) bool
	version    *pdu.Version
	room       pdu.RoomID

	index map[pdu.EventID]int32
	nodes []node
	// edges backs every node's auth slice, so that loading an event costs
	// no allocation of its own.
	edges []int32

	stamp int32
	stack []int32 // reused by walk
}

func newGraph(in *Input, sizeHint int) *graph {
	return &graph{
		events:     in.Events,
		isRejected: in.Rejected,
		version:    in.Version,
		index:      make(map[pdu.EventID]int32, sizeHint),
		nodes:      make([]node, 0, sizeHint),
		edges:      make([]int32, 0, 3*sizeHint),
	}
}

// lookup returns the index of the event with the given ID, fetching it on
// first use. by names the event citing id, for the error.
func (g *graph) lookup(id, by pdu.EventID) (int32, error) {
	if i, ok := g.index[id]; ok {
		return i, nil
	}
	ev := g.events(id)
	if ev == nil {
		return -1, &MissingEventError{ID: id, By: by}
	}
	if ev.ID() != id {
		return -1, fmt.Errorf("state resolution: looking up %s returned event %s", id, ev.ID())
	}
	if ev.Version() == nil || ev.Version().ID != g.version.ID {
		return -1, fmt.Errorf("state resolution: event %s is not of room version %s", id, g.version.ID)
	}
	if g.room == "" {
		g.room = ev.RoomID()
	} else if ev.RoomID() != g.room {
		return -1, fmt.Errorf("state resolution: event %s is in room %s, not %s", id, ev.RoomID(), g.room)
	}
	i := int32(len(g.nodes))
	g.nodes = append(g.nodes, node{ev: ev})
	g.index[id] = i
	return i, nil
}

// load resolves the auth_events of node i to indices.
func (g *graph) load(i int32) error {
	if g.nodes[i].loaded {
		return nil
	}
	ev := g.nodes[i].ev
	start := len(g.edges)
outer:
	for _, id := range ev.AuthEvents() {
		j, err := g.lookup(id, ev.ID())
		if err != nil {
			return err
		}
		for _, k := range g.edges[start:] {
			if k == j {
				continue outer // a duplicate entry adds no edge
			}
		}
		g.edges = append(g.edges, j)
	}
	end := len(g.edges)
	g.nodes[i].auth = g.edges[start:end:end]
	g.nodes[i].loaded = true
	return nil
}

// walk visits every node reachable from roots over auth_events edges,
// roots included, once each. visit is called when a node is first
// reached; when it returns false the walk does not go below that node
// (though the node may still be reached, and skipped, by another path).
func (g *graph) walk(roots []int32, visit func(i int32) bool) error {
	g.stamp++
	stack := g.stack[:0]
	for _, r := range roots {
		if g.nodes[r].seen == g.stamp {
			continue
		}
		g.nodes[r].seen = g.stamp
		if visit(r) {
			stack = append(stack, r)
		}
	}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if err := g.load(i); err != nil {
			g.stack = stack
			return err
		}
		for _, a := range g.nodes[i].auth {
			if g.nodes[a].seen == g.stamp {
				continue
			}
			g.nodes[a].seen = g.stamp
			if visit(a) {
				stack = append(stack, a)
			}
		}
	}
	g.stack = stack
	return nil
}

// rejected reports Input.Rejected for node i, asking once.
func (g *graph) rejected(i int32) bool {
	n := &g.nodes[i]
	if n.rejected == 0 {
		n.rejected = 1
		if g.isRejected != nil && g.isRejected(n.ev.ID()) {
			n.rejected = 2
		}
	}
	return n.rejected == 2
}

// authByTuple returns the auth event of node i with the given state tuple,
// or -1. An event cites at most pdu.MaxAuthEvents auth events, so a scan
// is cheaper than any index.
func (g *graph) authByTuple(i int32, t pdu.StateTuple) int32 {
	for _, a := range g.nodes[i].auth {
		ev := g.nodes[a].ev
		if ev.Type() == t.Type && ev.StateKeyIs(t.StateKey) {
			return a
		}
	}
	return -1
}
