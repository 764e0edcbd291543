package auth

import (
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// Content keys of m.room.member the rules read.
const (
	keyAuthorisedVia    = "join_authorised_via_users_server"
	keyThirdPartyInvite = "third_party_invite"
)

// Join rules (event schema m.room.join_rules).
const (
	joinRulePublic          = "public"
	joinRuleInvite          = "invite"
	joinRuleKnock           = "knock"
	joinRuleRestricted      = "restricted"
	joinRuleKnockRestricted = "knock_restricted"
)

// allowedMember is rule 4 (v12: 5), m.room.member. Numbers in comments are
// v10/v11's; v12's are one higher at the top level (4.3.2 is v12 5.3.2).
func allowedMember(e *pdu.Event, state StateGetter, create *pdu.Event, pl levels) error {
	// 4.1: a target and a membership.
	sk := e.StateKey()
	if sk == nil || !e.Content().Has("membership") {
		return deny(e, ruleMemberMalformed, "member event without state_key or content.membership")
	}
	target := pdu.UserID(*sk)

	// 4.2.1: a join_authorised_via_users_server must come with that user's
	// server's signature. The spec states this for any membership, so it
	// is checked for any; pdu.VerifySignatures verifies the signature.
	if via, ok := e.Content().Get(keyAuthorisedVia); ok {
		s, _ := via.Str()
		u, err := pdu.ParseUserID(s)
		if err != nil {
			return deny(e, ruleMemberAuthorisedViaSig, "%s is not a user ID", keyAuthorisedVia)
		}
		if len(signing.KeyIDs(e.Object(), string(u.Domain()))) == 0 {
			return deny(e, ruleMemberAuthorisedViaSig, "not signed by %s, the server of %s %s", u.Domain(), keyAuthorisedVia, u)
		}
	}

	// A membership that is not a string is no known membership (4.8).
	membership, _ := e.Content().GetStr("membership")
	switch membership {
	case "join":
		return allowedJoin(e, state, create, pl, target)
	case "invite":
		return allowedInvite(e, state, pl, target)
	case "leave":
		return allowedLeave(e, state, pl, target)
	case "ban":
		return allowedBan(e, state, pl, target)
	case "knock":
		return allowedKnock(e, state, target)
	}
	// 4.8: unknown membership.
	raw, _ := e.Content().Get("membership")
	return deny(e, ruleMemberUnknown, "unknown membership %s", raw)
}

// allowedJoin is rule 4.3.
func allowedJoin(e *pdu.Event, state StateGetter, create *pdu.Event, pl levels, target pdu.UserID) error {
	// 4.3.1: the creator's own first join, right after the create event.
	// The creator here is v10's content.creator or, from v11, the create
	// event's sender; not v12's additional creators.
	if prevs := e.PrevEvents(); len(prevs) == 1 && prevs[0] == create.ID() && string(target) == firstCreator(create) {
		return nil
	}
	// 4.3.2: nobody joins on another's behalf.
	if e.Sender() != target {
		return deny(e, ruleJoinNotSelf, "sender %s is not the state_key %s", e.Sender(), target)
	}
	current := membershipOf(state, target)
	// 4.3.3
	if current == "ban" {
		return deny(e, ruleJoinBanned, "sender is banned")
	}
	v := e.Version()
	switch jr := joinRule(state); {
	case jr == joinRuleInvite || jr == joinRuleKnock:
		// 4.3.4: allow if invited or already joined; otherwise fall
		// through to 4.3.7.
		if current == "invite" || current == "join" {
			return nil
		}
	case jr == joinRuleRestricted || jr == joinRuleKnockRestricted && v.KnockRestricted:
		// 4.3.5.1
		if current == "invite" || current == "join" {
			return nil
		}
		// 4.3.5.2: a joined member able to invite vouched for the join.
		// 4.2.1 has already checked that the key, if present, is a user
		// ID whose server signed the event.
		via, ok := e.Content().GetStr(keyAuthorisedVia)
		if !ok {
			return deny(e, ruleJoinAuthorisedVia, "restricted join without %s", keyAuthorisedVia)
		}
		viaUser := pdu.UserID(via)
		if membershipOf(state, viaUser) != "join" {
			return deny(e, ruleJoinAuthorisedVia, "authorising user %s is not joined", viaUser)
		}
		if lvl, need := pl.user(viaUser), pl.named("invite", defaultInviteLevel); lvl < need {
			return deny(e, ruleJoinAuthorisedVia, "authorising user %s has level %d, below the invite level %d", viaUser, lvl, need)
		}
		// 4.3.5.3
		return nil
	case jr == joinRulePublic:
		// 4.3.6
		return nil
	}
	// 4.3.7
	return deny(e, ruleJoinOtherwise, "join rule %q does not let %s (membership %q) join", joinRule(state), target, current)
}

// allowedInvite is rule 4.4.
func allowedInvite(e *pdu.Event, state StateGetter, pl levels, target pdu.UserID) error {
	// 4.4.1: third-party invites.
	if tpi, ok := e.Content().Get(keyThirdPartyInvite); ok {
		return allowedThirdPartyInviteMember(e, state, tpi, target)
	}
	// 4.4.2
	if membershipOf(state, e.Sender()) != "join" {
		return deny(e, ruleInviteSenderNotJoined, "sender %s is not joined", e.Sender())
	}
	// 4.4.3
	if m := membershipOf(state, target); m == "join" || m == "ban" {
		return deny(e, ruleInviteTargetJoinedOrBanned, "target %s has membership %q", target, m)
	}
	// 4.4.4, 4.4.5
	if lvl, need := pl.user(e.Sender()), pl.named("invite", defaultInviteLevel); lvl < need {
		return deny(e, ruleInviteLevel, "sender level %d is below the invite level %d", lvl, need)
	}
	return nil
}

// allowedLeave is rule 4.5: leaving, rejecting an invite or a knock,
// kicking and unbanning.
func allowedLeave(e *pdu.Event, state StateGetter, pl levels, target pdu.UserID) error {
	senderMembership := membershipOf(state, e.Sender())
	// 4.5.1: one's own leave.
	if e.Sender() == target {
		switch senderMembership {
		case "invite", "join", "knock":
			return nil
		}
		return deny(e, ruleLeaveSelf, "sender's membership %q cannot become leave", senderMembership)
	}
	// 4.5.2
	if senderMembership != "join" {
		return deny(e, ruleLeaveSenderNotJoined, "sender %s is not joined", e.Sender())
	}
	senderLevel, targetLevel := pl.user(e.Sender()), pl.user(target)
	// 4.5.3: unbanning needs the ban level.
	if need := pl.named("ban", defaultBanLevel); membershipOf(state, target) == "ban" && senderLevel < need {
		return deny(e, ruleLeaveUnbanLevel, "sender level %d is below the ban level %d needed to unban", senderLevel, need)
	}
	// 4.5.4, 4.5.5
	if need := pl.named("kick", defaultKickLevel); senderLevel < need || targetLevel >= senderLevel {
		return deny(e, ruleLeaveKickLevel, "sender level %d cannot kick: kick level %d, target level %d", senderLevel, need, targetLevel)
	}
	return nil
}

// allowedBan is rule 4.6.
func allowedBan(e *pdu.Event, state StateGetter, pl levels, target pdu.UserID) error {
	// 4.6.1
	if membershipOf(state, e.Sender()) != "join" {
		return deny(e, ruleBanSenderNotJoined, "sender %s is not joined", e.Sender())
	}
	// 4.6.2, 4.6.3
	senderLevel, targetLevel := pl.user(e.Sender()), pl.user(target)
	if need := pl.named("ban", defaultBanLevel); senderLevel < need || targetLevel >= senderLevel {
		return deny(e, ruleBanLevel, "sender level %d cannot ban: ban level %d, target level %d", senderLevel, need, targetLevel)
	}
	return nil
}

// allowedKnock is rule 4.7.
func allowedKnock(e *pdu.Event, state StateGetter, target pdu.UserID) error {
	// 4.7.1: knock_restricted only exists where the version has it.
	jr := joinRule(state)
	if jr != joinRuleKnock && !(jr == joinRuleKnockRestricted && e.Version().KnockRestricted) {
		return deny(e, ruleKnockJoinRule, "join rule %q does not allow knocking", jr)
	}
	// 4.7.2
	if e.Sender() != target {
		return deny(e, ruleKnockNotSelf, "sender %s is not the state_key %s", e.Sender(), target)
	}
	// 4.7.3, 4.7.4
	switch m := membershipOf(state, e.Sender()); m {
	case "ban", "invite", "join":
		return deny(e, ruleKnockMembership, "sender's membership %q cannot become knock", m)
	}
	return nil
}

// joinRule is content.join_rule of the current m.room.join_rules event.
// The rules do not say what applies when there is none; like Synapse and
// gomatrixserverlib we take "invite", which keeps such a room closed while
// letting invited users in.
func joinRule(state StateGetter) string {
	ev := state(joinRulesTuple)
	if ev == nil {
		return joinRuleInvite
	}
	jr, _ := ev.Content().GetStr("join_rule")
	return jr
}

// firstCreator is the user whose join may directly follow the create
// event (rule 4.3.1): content.creator in v10, the sender from v11.
func firstCreator(create *pdu.Event) string {
	if create.Version().CreatorIsSender {
		return string(create.Sender())
	}
	s, _ := create.Content().GetStr("creator")
	return s
}
