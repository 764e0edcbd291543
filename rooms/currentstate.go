package rooms

// StateChange is one key of a change to a room's current state: the
// state event now current for (Type, StateKey).
type StateChange struct {
	Type     string
	StateKey string
	// EventID is the event now current; "" when the key left the state.
	EventID EventID
	// Event is that event, nil when the key left the state (or, which
	// the worker's cache rules out, when it was not in memory).
	Event *Event
}

// CurrentStateListener, when the Service's Listener implements it, hears
// every committed change to a room's current state, right after the
// EventsStored call of the same commit. A change is what the room's
// current state became, whatever caused it: a local or remote state
// event that extends the graph, or state resolution choosing another
// event when branches meet. An accepted event that loses resolution
// changes nothing and is not reported; neither is a rejected or
// soft-failed one. This is what Synapse calls the current state deltas.
// It is called from the room's commit loop and must not block.
//
// Completing a partial-state room (CompleteState) adds the members it
// lacked without a change here; StateListener tells of it.
type CurrentStateListener interface {
	CurrentStateChanged(roomID RoomID, changes []StateChange)
}
