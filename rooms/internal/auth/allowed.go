package auth

import (
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// StateGetter returns the state event for a tuple, or nil.
type StateGetter func(t pdu.StateTuple) *pdu.Event

// Allowed applies the authorisation rules of e.Version() to e, given the
// room state to check against: the state before the event, the event's own
// auth events, or the current state; the caller decides (server-server
// API, "Checks performed on receipt of a PDU", steps 4 to 6). It returns
// nil or a *NotAllowedError.
//
// It does not apply the rules about the auth_events list itself (v10/v11
// rule 2, v12 rule 3); see CheckAuthEvents. Signatures, including the one
// rule 4.2.1 (v12: 5.2.1) asks for, are verified by pdu.VerifySignatures;
// here only their presence is checked.
//
// For room version 12 the state getter must return the m.room.create event
// for {m.room.create, ""} even though events do not list it in auth_events.
func Allowed(e *pdu.Event, state StateGetter) error {
	v := e.Version()
	// Rule 1: m.room.create. The rule is on the type alone.
	if e.Type() == pdu.TypeCreate {
		return allowedCreate(e)
	}

	create := state(createTuple)
	if v.RoomIDIsCreateHash {
		// v12 rule 2: the room ID is the create event's ID with sigil '!'.
		// Whether that create event was accepted is for CheckAuthEvents,
		// which is told about rejections.
		if create == nil || !create.StateKeyIs("") || create.Type() != pdu.TypeCreate {
			return deny(e, ruleRoomIDNotCreate, "no m.room.create event in the state")
		}
		if !isRoomOf(e.RoomID(), create) {
			return deny(e, ruleRoomIDNotCreate, "room_id %s is not the ID of create event %s", e.RoomID(), create.ID())
		}
	} else if create == nil {
		// v10/v11 rule 2.4 says this of auth_events; checked against any
		// other state the verdict must be the same, since nothing can be
		// authorised without the create event.
		return deny(e, ruleAuthNoCreate, "no m.room.create event in the state")
	} else if create.RoomID() != e.RoomID() {
		// Rule 2.5 for the one state event every check reads; a caller
		// mixing rooms' state is a bug that must not pass silently.
		return deny(e, ruleAuthWrongRoom, "create event %s is in room %s, not %s", create.ID(), create.RoomID(), e.RoomID())
	}

	// Rule 3 (v12: 4): m.federate.
	if fed, ok := create.Content().Get("m.federate"); ok {
		if b, isBool := fed.Bool(); isBool && !b && e.Sender().Domain() != create.Sender().Domain() {
			return deny(e, ruleFederate, "room is not federated and sender %s is not on the creator's server %s", e.Sender(), create.Sender().Domain())
		}
	}

	pl := newLevels(state(powerLevelsTuple), create)

	// Rule 4 (v12: 5): m.room.member.
	if e.Type() == pdu.TypeMember {
		return allowedMember(e, state, create, pl)
	}

	// Rule 5 (v12: 6): the sender must be joined.
	if membershipOf(state, e.Sender()) != "join" {
		return deny(e, ruleSenderNotJoined, "sender %s is not joined to the room", e.Sender())
	}
	senderLevel := pl.user(e.Sender())

	// Rule 6 (v12: 7): m.room.third_party_invite needs the invite level.
	if e.Type() == pdu.TypeThirdPartyInvite {
		if need := pl.named("invite", defaultInviteLevel); senderLevel < need {
			return deny(e, ruleThirdPartyInviteLevel, "sender level %d is below the invite level %d", senderLevel, need)
		}
		return nil
	}

	// Rule 7 (v12: 8): the event type's required power level.
	if need := pl.event(e.Type(), e.IsState()); need > senderLevel {
		return deny(e, ruleRequiredLevel, "sender level %d is below the level %d required for %s", senderLevel, need, e.Type())
	}

	// Rule 8 (v12: 9): state keys starting with '@' are owned by that user.
	if sk := e.StateKey(); sk != nil && len(*sk) > 0 && (*sk)[0] == '@' && *sk != string(e.Sender()) {
		return deny(e, ruleStateKeyUser, "state_key %q starts with '@' and is not the sender", *sk)
	}

	// Rule 9 (v12: 10): m.room.power_levels.
	if e.Type() == pdu.TypePowerLevels {
		return allowedPowerLevels(e, state, create, senderLevel)
	}

	// Rule 10 (v12: 11): otherwise, allow.
	return nil
}

// allowedCreate is rule 1, m.room.create.
func allowedCreate(e *pdu.Event) error {
	v := e.Version()
	// 1.1: the create event is the root of the room graph.
	if len(e.PrevEvents()) > 0 {
		return deny(e, ruleCreatePrevEvents, "create event has prev_events")
	}
	if v.RoomIDIsCreateHash {
		// v12 1.2: the room ID is derived from the event; pdu keeps a
		// create event with a room_id so that this rule can reject it.
		if e.Object().Has("room_id") {
			return deny(e, ruleCreateHasRoomID, "create event has a room_id")
		}
	} else if e.RoomID().Domain() != e.Sender().Domain() {
		// v10/v11 1.2.
		return deny(e, ruleCreateRoomIDDomain, "room_id domain %s does not match sender domain %s", e.RoomID().Domain(), e.Sender().Domain())
	}
	// 1.3: a room version we recognise. We cannot process events of a
	// version we do not implement, so "recognised" means supported here.
	if rv, ok := e.Content().Get("room_version"); ok {
		s, isStr := rv.Str()
		if _, known := pdu.LookupVersion(s); !isStr || !known {
			return deny(e, ruleCreateRoomVersion, "room_version %s is not a recognised version", rv)
		}
	}
	// v10 1.4: content.creator is required until v11 made the sender the
	// creator.
	if !v.CreatorIsSender && !e.Content().Has("creator") {
		return deny(e, ruleCreateNoCreator, "content has no creator")
	}
	// v12 1.4: additional_creators must be user IDs, validated as sender is.
	if v.PrivilegedCreators {
		if ac, ok := e.Content().Get("additional_creators"); ok {
			if ac.Kind() != cjson.Array {
				return deny(e, ruleCreateAdditionalCreators, "additional_creators is not an array")
			}
			for _, el := range ac.Array() {
				s, isStr := el.Str()
				if !isStr {
					return deny(e, ruleCreateAdditionalCreators, "additional_creators has a non-string entry")
				}
				if _, err := pdu.ParseUserID(s); err != nil {
					return deny(e, ruleCreateAdditionalCreators, "additional_creators: %v", err)
				}
			}
		}
	}
	// 1.5 (v11: 1.4): otherwise, allow.
	return nil
}

// isRoomOf reports whether id is the v12 room ID create defines: its
// event ID with sigil '!' instead of '$' (rooms v12, rule 1.2 note).
// Compared in place, as building the ID would allocate on every check.
func isRoomOf(id pdu.RoomID, create *pdu.Event) bool {
	cid := string(create.ID())
	return len(id) == len(cid) && len(id) > 0 && id[0] == '!' && string(id[1:]) == cid[1:]
}

// membershipOf is u's current membership, "" if none.
func membershipOf(state StateGetter, u pdu.UserID) string {
	if ev := state(memberTuple(u)); ev != nil {
		return ev.Membership()
	}
	return ""
}
