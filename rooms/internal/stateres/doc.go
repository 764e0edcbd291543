// Package stateres implements Matrix state resolution: algorithm v2 of
// room versions 2 to 11 (rooms fragment "v2-state-res") and its room
// version 12 revision, v2.1 (rooms v12, "State resolution", MSC4297).
//
// Resolve is a pure function: the states to merge and a way to look up
// events go in, the resolved state comes out. It does no I/O, starts no
// goroutines and reads no clock; the caller loads the events (the states'
// events and their auth chains) before calling it. The authorisation
// rules themselves live in package auth and are only called from here.
//
// The work is split along the spec's definitions, one file each:
//
//   - resolve.go: Input, Resolve and the five steps of the algorithm.
//   - graph.go: the events involved, indexed by small integers, with their
//     auth_events edges resolved once.
//   - conflict.go: unconflicted state map and conflicted state set, auth
//     difference (by counting, per state, which events its auth chains
//     reach) and the v2.1 conflicted state subgraph.
//   - powersort.go: power events and the reverse topological power
//     ordering (Kahn's algorithm with a heap).
//   - mainline.go: the mainline ordering, with memoised positions.
//   - iterative.go: the iterative auth checks.
//
// Where the spec's words leave room, the code follows the deployed
// servers and says so at the spot: a state's full auth chain includes the
// state's own events (conflict.go); only the empty-state-key power levels
// and join rules are power events, and m.room.create is not one
// (powersort.go); the sender's power level for the ordering is read from
// the event's auth events whether or not they were rejected
// (powersort.go); an event reported rejected is never applied and never
// used as an auth event (iterative.go).
//
// Cost: every event reachable from the states is visited a constant number
// of times; the auth rules run once per event of the full conflicted set;
// sorting is O(n log n) in the events sorted. Walking the unconflicted
// state's auth chains makes a resolution proportional to the room's state
// size, not only to the conflict.
package stateres
