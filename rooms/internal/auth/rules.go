package auth

import (
	"fmt"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// NotAllowedError is the typed verdict of a failed authorisation rule.
type NotAllowedError struct {
	EventID pdu.EventID
	// Rule is the spec's rule number in the event's room version, e.g.
	// "4.3.3" (v10, v11) or "5.3.3" (v12) for "sender is banned".
	Rule string
	// Reason is human readable, e.g. "sender is banned".
	Reason string
}

func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("event %s not allowed by auth rule %s: %s", e.EventID, e.Rule, e.Reason)
}

// rule names one rule of the authorisation rules independently of how a
// room version numbers it.
type rule uint8

const (
	ruleCreatePrevEvents rule = iota
	ruleCreateRoomIDDomain
	ruleCreateHasRoomID
	ruleCreateRoomVersion
	ruleCreateNoCreator
	ruleCreateAdditionalCreators
	ruleRoomIDNotCreate
	ruleAuthDuplicate
	ruleAuthUnexpected
	ruleAuthRejected
	ruleAuthNoCreate
	ruleAuthWrongRoom
	ruleFederate
	ruleMemberMalformed
	ruleMemberAuthorisedViaSig
	ruleJoinNotSelf
	ruleJoinBanned
	ruleJoinAuthorisedVia
	ruleJoinOtherwise
	ruleInvite3PBanned
	ruleInvite3PNoSigned
	ruleInvite3PNoMXIDToken
	ruleInvite3PMXIDMismatch
	ruleInvite3PNoEvent
	ruleInvite3PSenderMismatch
	ruleInvite3PBadSignature
	ruleInviteSenderNotJoined
	ruleInviteTargetJoinedOrBanned
	ruleInviteLevel
	ruleLeaveSelf
	ruleLeaveSenderNotJoined
	ruleLeaveUnbanLevel
	ruleLeaveKickLevel
	ruleBanSenderNotJoined
	ruleBanLevel
	ruleKnockJoinRule
	ruleKnockNotSelf
	ruleKnockMembership
	ruleMemberUnknown
	ruleSenderNotJoined
	ruleThirdPartyInviteLevel
	ruleRequiredLevel
	ruleStateKeyUser
	rulePLScalarNotInt
	rulePLMapNotInt
	rulePLUsers
	rulePLCreatorInUsers
	rulePLScalarOld
	rulePLScalarNew
	rulePLMapOld
	rulePLMapNew
	rulePLUsersOld
	rulePLUsersNew
	numRules
)

// Numberings of the rules: which column a room version uses.
const (
	numberingV10 = iota // rooms v10 and v11
	numberingV12        // rooms v12
)

// ruleNumbers maps each rule to its number in each numbering; "" means the
// rule does not exist there. Rooms v12 inserted rule 2, shifting the
// top-level rules after it by one, removed rule 2.4 ("no m.room.create
// among auth_events": the create event is no longer listed), and inserted
// rule 10.4, shifting the power level rules after it.
//
// v12's auth_events rule on room_id mismatch is written "5." in the spec's
// source after the removal of item 4, but the list renders (and is read on
// spec.matrix.org) as 3.4, which is the number used here.
var ruleNumbers = [numRules][2]string{
	ruleCreatePrevEvents:           {"1.1", "1.1"},
	ruleCreateRoomIDDomain:         {"1.2", ""},
	ruleCreateHasRoomID:            {"", "1.2"},
	ruleCreateRoomVersion:          {"1.3", "1.3"},
	ruleCreateNoCreator:            {"1.4", ""}, // v10 only: v11 made it "otherwise, allow"
	ruleCreateAdditionalCreators:   {"", "1.4"},
	ruleRoomIDNotCreate:            {"", "2"},
	ruleAuthDuplicate:              {"2.1", "3.1"},
	ruleAuthUnexpected:             {"2.2", "3.2"},
	ruleAuthRejected:               {"2.3", "3.3"},
	ruleAuthNoCreate:               {"2.4", ""},
	ruleAuthWrongRoom:              {"2.5", "3.4"},
	ruleFederate:                   {"3", "4"},
	ruleMemberMalformed:            {"4.1", "5.1"},
	ruleMemberAuthorisedViaSig:     {"4.2.1", "5.2.1"},
	ruleJoinNotSelf:                {"4.3.2", "5.3.2"},
	ruleJoinBanned:                 {"4.3.3", "5.3.3"},
	ruleJoinAuthorisedVia:          {"4.3.5.2", "5.3.5.2"},
	ruleJoinOtherwise:              {"4.3.7", "5.3.7"},
	ruleInvite3PBanned:             {"4.4.1.1", "5.4.1.1"},
	ruleInvite3PNoSigned:           {"4.4.1.2", "5.4.1.2"},
	ruleInvite3PNoMXIDToken:        {"4.4.1.3", "5.4.1.3"},
	ruleInvite3PMXIDMismatch:       {"4.4.1.4", "5.4.1.4"},
	ruleInvite3PNoEvent:            {"4.4.1.5", "5.4.1.5"},
	ruleInvite3PSenderMismatch:     {"4.4.1.6", "5.4.1.6"},
	ruleInvite3PBadSignature:       {"4.4.1.8", "5.4.1.8"},
	ruleInviteSenderNotJoined:      {"4.4.2", "5.4.2"},
	ruleInviteTargetJoinedOrBanned: {"4.4.3", "5.4.3"},
	ruleInviteLevel:                {"4.4.5", "5.4.5"},
	ruleLeaveSelf:                  {"4.5.1", "5.5.1"},
	ruleLeaveSenderNotJoined:       {"4.5.2", "5.5.2"},
	ruleLeaveUnbanLevel:            {"4.5.3", "5.5.3"},
	ruleLeaveKickLevel:             {"4.5.5", "5.5.5"},
	ruleBanSenderNotJoined:         {"4.6.1", "5.6.1"},
	ruleBanLevel:                   {"4.6.3", "5.6.3"},
	ruleKnockJoinRule:              {"4.7.1", "5.7.1"},
	ruleKnockNotSelf:               {"4.7.2", "5.7.2"},
	ruleKnockMembership:            {"4.7.4", "5.7.4"},
	ruleMemberUnknown:              {"4.8", "5.8"},
	ruleSenderNotJoined:            {"5", "6"},
	ruleThirdPartyInviteLevel:      {"6.1", "7.1"},
	ruleRequiredLevel:              {"7", "8"},
	ruleStateKeyUser:               {"8", "9"},
	rulePLScalarNotInt:             {"9.1", "10.1"},
	rulePLMapNotInt:                {"9.2", "10.2"},
	rulePLUsers:                    {"9.3", "10.3"},
	rulePLCreatorInUsers:           {"", "10.4"},
	rulePLScalarOld:                {"9.5.1", "10.6.1"},
	rulePLScalarNew:                {"9.5.2", "10.6.2"},
	rulePLMapOld:                   {"9.6.1", "10.7.1"},
	rulePLMapNew:                   {"9.7.1", "10.8.1"},
	rulePLUsersOld:                 {"9.8.1", "10.9.1"},
	rulePLUsersNew:                 {"9.9.1", "10.10.1"},
}

// numbering picks the column of ruleNumbers for a room version. The v12
// numbering exists because of the rules that room ID hashing and
// privileged creators added, so it follows those properties.
func numbering(v *pdu.Version) int {
	if v.RoomIDIsCreateHash {
		return numberingV12
	}
	return numberingV10
}

// ruleNumber is r's number in room version v.
func ruleNumber(v *pdu.Version, r rule) string {
	return ruleNumbers[r][numbering(v)]
}

// deny builds the verdict for e failing rule r. int64 arguments are power
// levels, printed as "infinite" for InfinitePowerLevel.
func deny(e *pdu.Event, r rule, format string, args ...any) error {
	for i, a := range args {
		if n, ok := a.(int64); ok {
			args[i] = level(n)
		}
	}
	return &NotAllowedError{
		EventID: e.ID(),
		Rule:    ruleNumber(e.Version(), r),
		Reason:  fmt.Sprintf(format, args...),
	}
}

// level prints a power level in a verdict's reason.
type level int64

func (l level) Format(f fmt.State, verb rune) {
	if int64(l) == InfinitePowerLevel {
		fmt.Fprint(f, "infinite")
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), int64(l))
}
