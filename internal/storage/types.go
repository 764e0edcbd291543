package storage

import "errors"

// ErrNotFound is returned (possibly wrapped) when a room, event or state
// group the caller asked for is not stored.
var ErrNotFound = errors.New("storage: not found")

// ErrDuplicateEvent is returned (wrapped, with the event ID) by Commit when a
// batch inserts an event that is already stored and is not an outlier being
// de-outliered. Callers branch on it because a duplicate usually means a race
// between two fetches, not corruption.
var ErrDuplicateEvent = errors.New("storage: event already stored")

// StateKey identifies one piece of room state.
type StateKey struct{ Type, StateKey string }

// StateMap maps (type, state_key) to the ID of the event holding that state.
type StateMap map[StateKey]string

// EventRecord is one stored event with the metadata storage keeps beside it.
type EventRecord struct {
	EventID        string
	RoomID         string
	Type           string
	StateKey       *string // nil for non-state events
	Depth          int64
	OriginServerTS int64
	JSON           []byte // full PDU bytes as stored; opaque to storage
	PrevEvents     []string
	AuthEvents     []string
	Rejected       string // non-empty: rejection reason; the event is kept but never part of state
	SoftFailed     bool
	Outlier        bool  // stored without state (e.g. a fetched auth event); has no StateGroup
	StreamPos      int64 // assigned by Commit, strictly increasing per server; 0 before commit
	// StateGroup holds the state after this event: 0 for outliers, and for
	// rejected events stored without a StateSpec.
	StateGroup int64
	// ReplacesState, for a placed and accepted state event, is the event
	// that held its (type, state_key) in the state before it ("" if none),
	// so the state before the event is its state after with that entry
	// put back. nil for other events, and for rows stored without it.
	ReplacesState *string
}

// RoomInfo is a room's row plus its forward extremities and current state.
type RoomInfo struct {
	RoomID      string
	Version     string
	Extremities []string // forward extremities, sorted
	Current     StateMap // current resolved state
	MaxDepth    int64
}

// StateSpec says what the state after an event is, as a delta on the state
// after another event.
type StateSpec struct {
	BaseEvent string   // "" = empty base; else the state after this event, which may be earlier in the same Batch
	Delta     StateMap // entries set on top of the base; value "" removes the key
}

// PersistEvent is one event to write in a Batch.
//
// State must be nil for an outlier and is required for an accepted event.
// For a rejected event it is optional: a rejected event never changes state,
// but giving it the state before it (as its own state after) lets events
// that name it as a prev event be placed; without it the event has no
// state group and StateAfter reports ErrNotFound. A rejected event's Delta
// must not name the event itself.
type PersistEvent struct {
	Record EventRecord
	State  *StateSpec
}

// MissingPrev records that ReferencedBy names EventID as a prev event and
// EventID is not stored.
type MissingPrev struct{ RoomID, EventID, ReferencedBy string }

// Batch is everything one Commit writes for one room.
type Batch struct {
	RoomID        string
	CreateVersion string         // non-empty: create the room row with this room version
	Events        []PersistEvent // inserted in order; see Commit for duplicates
	Extremities   []string       // if non-nil, replaces the room's forward extremities
	CurrentDelta  StateMap       // applied to the room's current state; value "" deletes the key
	MaxDepth      int64          // if greater than the stored value, replaces it
	MissingPrevs  []MissingPrev  // prev events we do not have
	// FilledGaps are events placed with a state obtained elsewhere (the
	// state a remote server reported before them): the missing_prevs rows
	// they are the ReferencedBy of are deleted, as no longer needed.
	FilledGaps []string

	// Backfill marks a batch of history older than anything stored,
	// fetched with /backfill (server-server API, "Backfilling and
	// retrieving missing events"). Its events take stream positions below
	// every stored one, ascending in batch order, so the stream still runs
	// oldest to newest while the readers that tail it upwards from a
	// positive position (/sync, the federation sender) never see them. It
	// must not change the extremities or the current state.
	Backfill bool
	// BackwardExtremities are added to the room's backward extremities:
	// prev events of the batch's placed events that are not placed here,
	// where backfilling goes on from. The rows of events the batch places,
	// and those named in DropBackward (history that cannot be fetched or
	// checked), are deleted.
	BackwardExtremities []string
	DropBackward        []string

	// PartialState, if set, records the room as joined with a partial
	// state (see PartialStateRoom; RoomID is taken from the batch).
	PartialState *PartialStateRoom
	// CompleteState, if set, adds the entries a partial-state join lacked
	// to the room's states and current state, and clears the record.
	CompleteState *StateCompletion
}
