package syncer

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/url"
	"slices"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// MSC4222 (Client-Server API v1.16, "GET /sync": use_state_after) lets a
// client ask for each room's state at the END of its timeline instead of
// at its start. The classic "state" section is the state before the
// timeline and relies on the client replaying the timeline's state
// events on top of it, which goes wrong whenever state resolution keeps
// an older event rather than the one the timeline shows. "state_after"
// is the server's own answer and the client applies it as it is, never
// the timeline's state events. Element Call depends on it: a call member
// event overruled by state resolution must not leave a ghost in the call.
//
// The builder computes state_after in the same places as state, into the
// same JoinedRoom.State and LeftRoom.State fields, so that every later
// step (lazy members, full_state, the shared sections) works unchanged;
// moveStateAfter then moves each list under the key the request asked
// for, leaving state zero and so omitted.

// StateAfterMode says which state section a sync returns.
type StateAfterMode uint8

const (
	// StateBefore is the default: "state", the state at the start of the
	// timeline.
	StateBefore StateAfterMode = iota
	// StateAfterStable is use_state_after=true: "state_after".
	StateAfterStable
	// StateAfterUnstable is org.matrix.msc4222.use_state_after=true:
	// "org.matrix.msc4222.state_after", the names matrix-js-sdk (and so
	// Element and Element Call) sends and reads; Synapse answers an
	// unstable request under the unstable key only.
	StateAfterUnstable
)

// ParseStateAfter reads /sync's use_state_after query parameter and its
// unstable twin. The stable name wins when both are true.
func ParseStateAfter(q url.Values) (StateAfterMode, error) {
	for _, p := range []struct {
		name string
		mode StateAfterMode
	}{{"use_state_after", StateAfterStable}, {"org.matrix.msc4222.use_state_after", StateAfterUnstable}} {
		switch q.Get(p.name) {
		case "", "false":
		case "true":
			return p.mode, nil
		default:
			return StateBefore, mxerr.InvalidParam(p.name + " must be true or false")
		}
	}
	return StateBefore, nil
}

// stateAfter reports whether this request wants state_after.
func (b *builder) stateAfter() bool { return b.req.StateAfter != StateBefore }

// moveStateAfter moves every room's state list under the key the request
// asked for. A room with no state change still gets an empty list: the
// spec makes state_after required for such a request "even if it is
// empty", as it tells the client the server honoured the parameter.
func (b *builder) moveStateAfter(rp *RoomsPart) {
	if !b.stateAfter() {
		return
	}
	move := func(state *EventList, stable, unstable **EventList) {
		evs := state.Events
		if evs == nil {
			evs = []json.RawMessage{}
		}
		l := &EventList{Events: evs}
		if b.req.StateAfter == StateAfterStable {
			*stable = l
		} else {
			*unstable = l
		}
		*state = EventList{}
	}
	for _, jr := range rp.Join {
		move(&jr.State, &jr.StateAfter, &jr.UnstableStateAfter)
	}
	for _, lr := range rp.Leave {
		move(&lr.State, &lr.StateAfter, &lr.UnstableStateAfter)
	}
}

// windowStateAfter is the state_after delta of an incremental section:
// for every state key that events in evs (the room's visible events in
// (since, upto], whatever the timeline filter and limit keep) touched,
// the state the room holds for it now. That is the latest such event
// unless state resolution decided otherwise: when the room's resolved
// current state names another event, stored at or before upto, that
// event is the answer, even if it is older than since. A current event
// after upto is left for the next sync, whose window holds it.
// truth is the resolved state to compare with (nil: read the room's
// current state).
func (b *builder) windowStateAfter(room string, evs []entry, truth storage.StateMap) ([]entry, error) {
	latest := map[rooms.StateTuple]entry{}
	for _, e := range evs {
		if e.ev.IsState() {
			latest[e.ev.Tuple()] = e
		}
	}
	if len(latest) == 0 {
		return nil, nil
	}
	if truth == nil {
		info, err := b.e.deps.DB.Room(b.ctx, room)
		if err != nil {
			return nil, err
		}
		truth = info.Current
	}
	var other []string
	for k, e := range latest {
		if id, ok := truth[storage.StateKey{Type: k.Type, StateKey: k.StateKey}]; ok && id != string(e.ev.ID()) {
			other = append(other, id)
		}
	}
	resolved, err := b.loadEvents(room, other)
	if err != nil {
		return nil, err
	}
	for _, e := range resolved {
		if e.pos <= b.upto.Events && e.ev.IsState() {
			latest[e.ev.Tuple()] = e
		}
	}
	out := make([]entry, 0, len(latest))
	for _, e := range latest {
		out = append(out, e)
	}
	slices.SortFunc(out, func(x, y entry) int { return cmp.Compare(x.pos, y.pos) })
	return out, nil
}

// joinedStateAfter is the state_after delta of a joined room's
// incremental section: windowStateAfter's answer for the state keys that
// events in evs touched, corrected and completed by the room's recorded
// changes of current state in (since, upto]. Those are exact: each key's
// last change in the window is its state at upto. They also carry what
// no event in the window shows: state resolution bringing back an
// older event for a key when branches of the room meet. A key that left
// the state cannot be said in state_after and is left out.
func (b *builder) joinedStateAfter(room string, evs []entry) ([]entry, error) {
	state, err := b.windowStateAfter(room, evs, nil)
	if err != nil {
		return nil, err
	}
	deltas, err := b.e.deps.DB.StateDeltas(b.ctx, room, b.since.Events, b.upto.Events)
	if err != nil {
		return nil, err
	}
	if len(deltas) == 0 {
		return state, nil
	}
	at := map[rooms.StateTuple]string{}
	for _, d := range deltas {
		at[rooms.StateTuple{Type: d.Key.Type, StateKey: d.Key.StateKey}] = d.EventID
	}
	byKey := make(map[rooms.StateTuple]entry, len(state))
	for _, e := range state {
		byKey[e.ev.Tuple()] = e
	}
	var load []string
	for k, id := range at {
		if e, ok := byKey[k]; ok && string(e.ev.ID()) == id {
			continue
		}
		delete(byKey, k)
		if id != "" {
			load = append(load, id)
		}
	}
	loaded, err := b.loadEvents(room, load)
	if err != nil {
		return nil, err
	}
	for _, e := range loaded {
		if e.ev.IsState() {
			byKey[e.ev.Tuple()] = e
		}
	}
	out := make([]entry, 0, len(byKey))
	for _, e := range byKey {
		out = append(out, e)
	}
	slices.SortFunc(out, func(x, y entry) int { return cmp.Compare(x.pos, y.pos) })
	return out, nil
}

// leftStateAfter is the state_after of a room left within the window:
// the state keys the events the user saw up to its leave touched, as the
// room held them right after the leave. The room's current state may
// have moved on since, but the user no longer sees it.
func (b *builder) leftStateAfter(room string, seen []entry, leaveID string) ([]json.RawMessage, error) {
	truth, err := b.e.deps.DB.StateAfter(b.ctx, leaveID)
	if errors.Is(err, storage.ErrNotFound) {
		truth = storage.StateMap{} // an out-of-band leave: nothing to compare with
	} else if err != nil {
		return nil, err
	}
	state, err := b.windowStateAfter(room, seen, truth)
	if err != nil {
		return nil, err
	}
	return b.formatEntries(state, false)
}

// leftFullStateAfter is the state_after of a left room the window cannot
// answer (an initial sync with include_leave, or an old since token):
// the whole state right after the leave, through the filter's state
// rules as fullJoined applies them. leave is the leave event, the
// section's only timeline event.
func (b *builder) leftFullStateAfter(room string, leave []entry) ([]json.RawMessage, error) {
	if len(leave) == 0 {
		return []json.RawMessage{}, nil
	}
	l := leave[0]
	st, err := b.e.deps.DB.StateAfter(b.ctx, string(l.ev.ID()))
	if errors.Is(err, storage.ErrNotFound) {
		// An out-of-band leave (a rejected invite to a room this server
		// is not in) has no state: the leave is all there is.
		return b.formatEntries(leave, false)
	}
	if err != nil {
		return nil, err
	}
	f := b.req.Filter
	lazy := f != nil && f.Room.State.LazyLoadMembers
	var ids []string
	for k, id := range st {
		if lazy && k.Type == "m.room.member" && k.StateKey != b.req.UserID && k.StateKey != string(l.ev.Sender()) {
			continue
		}
		if f != nil && !f.Room.State.matches(k.Type, "") {
			continue
		}
		ids = append(ids, id)
	}
	evs, err := b.loadEvents(room, ids)
	if err != nil {
		return nil, err
	}
	return b.formatEntries(evs, false)
}
