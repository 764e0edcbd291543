package auth

import (
	"errors"
	"fmt"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// ErrMissingAuthEvent is wrapped by CheckAuthEvents when an event listed in
// auth_events was not provided: the caller has to fetch it, it is not a
// verdict on the event.
var ErrMissingAuthEvent = errors.New("auth: auth event not provided")

// SelectAuthTuples implements "Auth events selection" (server-server API):
// the state tuples whose current events a new event's auth_events must
// reference, when the room state has them. It is empty for m.room.create;
// from v12 it never includes m.room.create, whose ID the room ID implies.
// Tuples are unique, in the order the spec lists them.
func SelectAuthTuples(v *pdu.Version, typ string, stateKey *string, sender pdu.UserID, content cjson.Value) []pdu.StateTuple {
	if typ == pdu.TypeCreate {
		return nil
	}
	out := make([]pdu.StateTuple, 0, 6)
	add := func(t pdu.StateTuple) {
		for _, have := range out {
			if have == t {
				return
			}
		}
		out = append(out, t)
	}
	if !v.RoomIDIsCreateHash {
		add(createTuple)
	}
	add(powerLevelsTuple)
	add(memberTuple(sender))
	if typ != pdu.TypeMember {
		return out
	}
	if stateKey != nil {
		add(pdu.StateTuple{Type: pdu.TypeMember, StateKey: *stateKey})
	}
	membership, _ := content.GetStr("membership")
	switch membership {
	case "join", "invite", "knock":
		add(joinRulesTuple)
	}
	if membership == "invite" {
		if token, ok := content.Path(keyThirdPartyInvite, "signed", "token"); ok {
			if s, isStr := token.Str(); isStr {
				add(pdu.StateTuple{Type: pdu.TypeThirdPartyInvite, StateKey: s})
			}
		}
	}
	// Restricted joins exist in every supported version (v8+): the
	// authorising user's membership is needed for rule 4.3.5.2.
	if membership == "join" {
		if via, ok := content.GetStr(keyAuthorisedVia); ok {
			add(pdu.StateTuple{Type: pdu.TypeMember, StateKey: via})
		}
	}
	return out
}

// CheckAuthEvents applies the rules on e's own auth_events list: v10/v11
// rule 2, v12 rules 2 and 3. authEvents must hold every event e lists
// (others are ignored); a missing one is an error wrapping
// ErrMissingAuthEvent. create is the room's create event: in v12 it is
// the event the room ID must name (rule 2), and it must not be listed; in
// v10/v11 it is not needed (the listed one is checked) and may be nil.
// isRejected reports auth events that were rejected under the receipt
// checks; nil means none were.
//
// A create event passes: rule 1 allows or rejects it before rule 2.
func CheckAuthEvents(e *pdu.Event, authEvents []*pdu.Event, create *pdu.Event, isRejected func(pdu.EventID) bool) error {
	if e.Type() == pdu.TypeCreate {
		return nil
	}
	if isRejected == nil {
		isRejected = func(pdu.EventID) bool { return false }
	}
	v := e.Version()
	if v.RoomIDIsCreateHash {
		// v12 rule 2: the room ID names an accepted create event.
		if create == nil || create.Type() != pdu.TypeCreate || !create.StateKeyIs("") || !isRoomOf(e.RoomID(), create) {
			return deny(e, ruleRoomIDNotCreate, "room_id %s is not the ID of the room's create event", e.RoomID())
		}
		if isRejected(create.ID()) {
			return deny(e, ruleRoomIDNotCreate, "create event %s was rejected", create.ID())
		}
	}

	byID := make(map[pdu.EventID]*pdu.Event, len(authEvents))
	for _, a := range authEvents {
		if a != nil {
			byID[a.ID()] = a
		}
	}
	listed := make([]*pdu.Event, 0, len(e.AuthEvents()))
	for _, id := range e.AuthEvents() {
		a, ok := byID[id]
		if !ok {
			return fmt.Errorf("%w: %s (listed by %s)", ErrMissingAuthEvent, id, e.ID())
		}
		listed = append(listed, a)
	}

	// 2.1 (v12: 3.1): one entry per state tuple; an event listed twice is
	// a duplicate too.
	for i, a := range listed {
		for _, b := range listed[:i] {
			if a.IsState() && b.IsState() && a.Tuple() == b.Tuple() {
				return deny(e, ruleAuthDuplicate, "auth_events lists %s and %s for (%s, %q)", b.ID(), a.ID(), a.Type(), *a.StateKey())
			}
		}
	}
	// 2.2 (v12: 3.2): only tuples the selection algorithm names.
	want := SelectAuthTuples(v, e.Type(), e.StateKey(), e.Sender(), e.Content())
	for _, a := range listed {
		if !a.IsState() || !containsTuple(want, a.Tuple()) {
			if a.Type() == pdu.TypeCreate && v.RoomIDIsCreateHash {
				return deny(e, ruleAuthUnexpected, "auth_events lists the create event %s, which this room version forbids", a.ID())
			}
			return deny(e, ruleAuthUnexpected, "auth_events lists %s (%s, %s), which auth events selection does not select", a.ID(), a.Type(), stateKeyString(a))
		}
	}
	// 2.3 (v12: 3.3)
	for _, a := range listed {
		if isRejected(a.ID()) {
			return deny(e, ruleAuthRejected, "auth event %s was rejected", a.ID())
		}
	}
	// 2.4 (v10/v11 only)
	if !v.RoomIDIsCreateHash {
		found := false
		for _, a := range listed {
			found = found || a.Type() == pdu.TypeCreate && a.StateKeyIs("")
		}
		if !found {
			return deny(e, ruleAuthNoCreate, "auth_events lists no m.room.create event")
		}
	}
	// 2.5 (v12: 3.4)
	for _, a := range listed {
		if a.RoomID() != e.RoomID() {
			return deny(e, ruleAuthWrongRoom, "auth event %s is in room %s, not %s", a.ID(), a.RoomID(), e.RoomID())
		}
	}
	return nil
}

func containsTuple(ts []pdu.StateTuple, t pdu.StateTuple) bool {
	for _, have := range ts {
		if have == t {
			return true
		}
	}
	return false
}

func stateKeyString(e *pdu.Event) string {
	if sk := e.StateKey(); sk != nil {
		return fmt.Sprintf("%q", *sk)
	}
	return "no state_key"
}
