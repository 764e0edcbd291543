package difftest

import (
	"slices"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// Known, deliberate or long-standing departures of gomatrixserverlib
// (v0.0.0-20240910190622-2c764912ce93) from the spec. Each is a named case
// that applies only when its precondition holds and Plexus's answer is
// the spec's; the comparison is never loosened beyond that. The counts of
// each are logged by TestDifferential.

// Exception names.
const (
	// exceptionV11RedactionTPISigned: rooms v11, "Redactions": the
	// m.room.member content "additionally ... allows the signed key of
	// the third_party_invite key". gomatrixserverlib's v11 algorithm
	// (redactEventJSONV5) keeps only membership and
	// join_authorised_via_users_server.
	exceptionV11RedactionTPISigned = "gmsl/v11-redaction-drops-third_party_invite.signed"

	// exceptionInviteTargetSignature: server-server API, "Validating
	// hashes and signatures on received events": "For room versions 3
	// and later, unless the event is a 3rd party invite, only the
	// signature(s) from the originating server (the server the sender
	// belongs to) are required for verification." gomatrixserverlib's
	// VerifyEventSignatures also requires the invited user's server to
	// have signed an m.room.member invite (it always has, after the
	// /invite handshake, but the spec does not make that a validity
	// condition).
	exceptionInviteTargetSignature = "gmsl/invite-needs-invitee-server-signature"

	// exceptionMembershipNotString: the signature check (server-server
	// API, "Validating hashes and signatures on received events") depends
	// only on the sender (and, for restricted joins, the authorising
	// server); an m.room.member event whose membership is not a string is
	// validly signed and is then rejected by the auth rules (rule 4.8,
	// unknown membership). gomatrixserverlib's VerifyEventSignatures
	// fails on it because it reads the membership first, so such an
	// event is dropped instead of rejected.
	exceptionMembershipNotString = "gmsl/non-string-membership-fails-signature-check"
)

// redactionException explains a redaction difference: v11 member events
// whose content.third_party_invite.signed gomatrixserverlib drops. It
// applies only if adding that one key back to gomatrixserverlib's output
// gives exactly Plexus's output.
func redactionException(v *pdu.Version, obj cjson.Value, mine string, theirs []byte) (string, bool) {
	if v.Redaction != pdu.RedactV11 {
		return "", false
	}
	if typ, _ := obj.GetStr("type"); typ != pdu.TypeMember {
		return "", false
	}
	signed, ok := obj.Path("content", "third_party_invite", "signed")
	if !ok {
		return "", false
	}
	spec, err := cjson.Parse(theirs)
	if err != nil {
		return "", false
	}
	content, _ := spec.Get("content")
	spec = spec.With("content", content.With("third_party_invite", cjson.Obj(cjson.M("signed", signed))))
	if string(cjson.Marshal(spec)) != mine {
		return "", false
	}
	return exceptionV11RedactionTPISigned, true
}

// signatureException explains a signature verdict difference: an invite
// to another server's user that the sender's server signed but the
// invitee's server did not (or not validly). Plexus must accept it and
// gomatrixserverlib reject it.
func signatureException(e *pdu.Event, plexusErr, gmslErr error) (string, bool) {
	if plexusErr != nil || gmslErr == nil {
		return "", false
	}
	if m, ok := e.Content().Get("membership"); e.Type() == pdu.TypeMember && ok && m.Kind() != cjson.String {
		return exceptionMembershipNotString, true
	}
	if e.Type() != pdu.TypeMember || e.Membership() != "invite" || e.StateKey() == nil {
		return "", false
	}
	target := pdu.UserID(*e.StateKey())
	if target.Domain() == "" || target.Domain() == e.Sender().Domain() {
		return "", false
	}
	return exceptionInviteTargetSignature, true
}

// More exception names; the functions below say when each applies.
const (
	// exceptionAuthEventsRule2: rooms v10/v11, authorisation rule 2: an
	// event is rejected if its auth_events have duplicate (type,
	// state_key) entries (2.1), entries the auth events selection would
	// not pick (2.2) or entries that were themselves rejected (2.3).
	// gomatrixserverlib's Allowed only looks up the tuples it needs from
	// the auth events it is given (AuthEvents.AddEvent keeps the last
	// event per tuple), so it applies none of these.
	exceptionAuthEventsRule2 = "gmsl/auth-events-rules-2.1-2.3-unchecked"

	// exceptionSelfLeaveFromLeave: rule 4.5.1: "If the sender matches
	// state_key, allow if and only if that user's current membership
	// state is invite, join, or knock." gomatrixserverlib allows leave
	// to leave ("NOTSPEC: Leave -> Leave is benign but not allowed
	// according to the Matrix spec", membershipAllowedSelf).
	exceptionSelfLeaveFromLeave = "gmsl/self-leave-from-leave"

	// exceptionUnbanKickLevel: rules 4.5.3 and 4.5.4 (and the note after
	// the rules: "To unban somebody, you must have power level greater
	// than or equal to both the kick and ban levels, and greater than
	// the target user's power level"). gomatrixserverlib allows an unban
	// with the ban level alone (membershipAllowedOther).
	exceptionUnbanKickLevel = "gmsl/unban-ignores-kick-level-and-target-level"

	// exceptionJoinUnknownRule: rule 4.3: a join is allowed under the
	// public rule (4.3.6), and for an invited or joined user under the
	// invite and knock rules (4.3.4) and the restricted ones (4.3.5.1);
	// under any other join rule (e.g. "private") it falls through to
	// 4.3.7 "Otherwise, reject".
	// gomatrixserverlib allows invite->join and join->join under every
	// join rule (membershipAllowedSelf).
	exceptionJoinUnknownRule = "gmsl/join-under-unknown-join-rule"

	// exceptionPowerLevels: rule 9 compares the properties and entries
	// present in the old and new content: alterations of users_default,
	// events_default, state_default, ban, redact, kick and invite (9.5);
	// events and notifications entries changed, removed (9.6) or added
	// (9.7); users entries changed or removed, other than the sender's
	// own (9.8), added or changed (9.9). gomatrixserverlib compares the
	// effective levels with defaults filled in instead (so added and
	// removed entries compare against a default, and an entry equal to
	// the default is no change), does not check users_default at all,
	// applies 9.8's "greater than or equal" to notifications, and
	// always reads the m.room.third_party_invite events entry as the
	// invite level (checkEventLevels, checkUserLevels,
	// checkNotificationLevels). The spec verdict is computed by
	// specPowerLevels below, which reads the rule text literally, as
	// Synapse's _check_power_levels does.
	exceptionPowerLevels = "gmsl/power-levels-compares-defaults-not-entries"

	// exceptionStateresAuth: state resolution's iterative auth checks
	// apply "the authorization rules" (rooms v2 state resolution,
	// "Iterative auth checks"), so every auth departure above can change
	// which conflicted event wins. The exception applies only when the
	// spec's algorithm (specResolve) yields Plexus's result with the
	// spec's verdicts and gomatrixserverlib's result with
	// gomatrixserverlib's verdicts.
	exceptionStateresAuth = "gmsl/stateres-inherits-auth-departures"

	// exceptionStateresPrefix names departures of gomatrixserverlib's
	// state resolution algorithm itself (ResolveStateConflictsV2). The
	// name ends with the smallest set of them that, emulated in the
	// spec's algorithm together with gomatrixserverlib's auth verdicts
	// (resolveVariant, specres_test.go), reproduces its result exactly,
	// while the spec's algorithm with the spec's verdicts reproduces
	// Plexus's. Rooms v2 state resolution:
	//
	// "order": "Reverse topological power ordering" is "the
	// lexicographically smallest topological ordering based on the DAG
	// formed by auth events", x < y if x's sender has the greater power
	// level, then the smaller origin_server_ts, then the smaller
	// event_id. gomatrixserverlib builds its order from the latest events
	// backwards taking the highest power level first, so of two events
	// the DAG leaves unordered the more powerful sender's comes last, not
	// first; it reads a sender with no power levels among the auth
	// events as level 0 (the spec: 100 for the creator); and it lists
	// every conflicted event that is also an auth event twice, which
	// makes its Kahn's algorithm count two citations but release one, so
	// the auth ancestors of such an event are never released and are put
	// first, lowest power level first.
	//
	// "mainline": in "Mainline ordering" an event whose power levels
	// chain never meets the mainline has position infinity and sorts
	// first; ties go to origin_server_ts, then event_id.
	// gomatrixserverlib gives it the position of the oldest mainline
	// event and breaks ties on the number of steps to the mainline first.
	//
	// "fallback": "Iterative auth checks": "If a (event_type, state_key)
	// key that is required for checking the authorisation rules is not
	// present in the state, then the appropriate state event from the
	// event's auth_events is used". gomatrixserverlib falls back to the
	// event's auth events only for m.room.member keys, so before any
	// power levels event is applied it checks against default levels.
	//
	// "joinrule-cache": the iterative auth checks apply the authorisation
	// rules to the partial state. gomatrixserverlib keeps the join rule
	// it parsed between checks while the join rules event is the same
	// object, and its restricted join check overwrites the kept rule with
	// "invite" or "public"; later joins and knocks in the same resolution
	// are then judged under that rule, not the room's (e.g. a join
	// without join_authorised_via_users_server under knock_restricted is
	// allowed).
	//
	// "control-set": step 1 adds to X "the events in the auth chain of P
	// which also belong to the full conflicted set". gomatrixserverlib
	// (like Synapse) follows auth events only through events of the full
	// conflicted set, missing those reached only through an event
	// outside it. This is a reading of the text, not a plain error;
	// Plexus takes it literally. No generated graph has needed it so far.
	exceptionStateresPrefix = "gmsl/stateres-algorithm:"
)

// authException explains an auth verdict difference. It returns a name
// only if the case is one of the documented departures and Plexus gave
// the spec's verdict.
func authException(g *graph, e *pdu.Event, before stateMap, plexusOK, gmslOK bool) (string, bool) {
	st := specState{g: g, s: before}
	if !st.federationAllowed(e.Sender()) || (e.Type() != pdu.TypeMember && st.membership(e.Sender()) != "join") {
		return "", false
	}
	if e.Type() == pdu.TypePowerLevels && e.StateKeyIs("") {
		if _, hasOld := st.content(pdu.TypePowerLevels, ""); hasOld && plexusOK == specPowerLevels(st, e) {
			return exceptionPowerLevels, true
		}
		return "", false
	}
	if e.Type() != pdu.TypeMember || e.StateKey() == nil || !gmslOK || plexusOK {
		return "", false
	}
	// From here on: gomatrixserverlib allowed a membership change that
	// Plexus rejected.
	target := pdu.UserID(*e.StateKey())
	old := st.membership(target)
	self := target == e.Sender()
	switch e.Membership() {
	case "leave":
		if self && old == "leave" {
			return exceptionSelfLeaveFromLeave, true
		}
		if !self && old == "ban" && st.membership(e.Sender()) == "join" {
			sl := st.level(e.Sender())
			if sl >= st.named("ban", 50) && (sl < st.named("kick", 50) || st.level(target) >= sl) {
				return exceptionUnbanKickLevel, true
			}
		}
	case "join":
		rule, _ := st.content(pdu.TypeJoinRules, "")
		jr, _ := rule.GetStr("join_rule")
		known := []string{"public", "invite", "knock", "restricted", "knock_restricted"}
		if self && (old == "invite" || old == "join") && !slices.Contains(known, jr) {
			return exceptionJoinUnknownRule, true
		}
	}
	return "", false
}

// specState reads the spec's notions (membership, power levels with
// their defaults) from a state map, for the exception checks.
type specState struct {
	g *graph
	s stateMap
}

func (st specState) content(typ, key string) (cjson.Value, bool) {
	id, ok := st.s[pdu.StateTuple{Type: typ, StateKey: key}]
	if !ok {
		return cjson.Value{}, false
	}
	return st.g.events[id].Content(), true
}

func (st specState) membership(u pdu.UserID) string {
	c, ok := st.content(pdu.TypeMember, string(u))
	if !ok {
		return "leave"
	}
	m, _ := c.GetStr("membership")
	return m
}

// federationAllowed is rule 3 (m.federate).
func (st specState) federationAllowed(u pdu.UserID) bool {
	id, ok := st.s[createTuple]
	if !ok {
		return false
	}
	create := st.g.events[id]
	f, ok := create.Content().Get("m.federate")
	if b, isBool := f.Bool(); ok && isBool && !b {
		return u.Domain() == create.Sender().Domain()
	}
	return true
}

// level is a user's power level ("Power levels are inferred from
// defaults when not explicitly supplied"; with no m.room.power_levels
// event the creator has 100).
func (st specState) level(u pdu.UserID) int64 {
	pl, ok := st.content(pdu.TypePowerLevels, "")
	if !ok {
		if u == st.g.creator {
			return 100
		}
		return 0
	}
	if n, ok := pl.Path("users", string(u)); ok {
		l, _ := n.Int()
		return l
	}
	d, _ := pl.GetInt("users_default")
	return d
}

// named is a top-level level such as "ban", with its default.
func (st specState) named(key string, def int64) int64 {
	pl, _ := st.content(pdu.TypePowerLevels, "")
	if n, ok := pl.GetInt(key); ok {
		return n
	}
	return def
}

// required is the level needed to send a state event of type typ.
func (st specState) requiredState(typ string) int64 {
	pl, ok := st.content(pdu.TypePowerLevels, "")
	if !ok {
		return 0
	}
	if n, ok := pl.Path("events", typ); ok {
		l, _ := n.Int()
		return l
	}
	return st.named("state_default", 50)
}

// specPowerLevels is the verdict of rules 5, 7, 8 and 9 of rooms v10/v11
// on an m.room.power_levels event, read literally: what is compared is
// what the old and new contents contain. It is used only to adjudicate
// disagreements.
func specPowerLevels(st specState, e *pdu.Event) bool {
	sl := st.level(e.Sender())
	if st.membership(e.Sender()) != "join" || sl < st.requiredState(pdu.TypePowerLevels) {
		return false
	}
	nc := e.Content()
	// 9.1 - 9.3: shape.
	named := []string{"users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"}
	for _, k := range named {
		if v, ok := nc.Get(k); ok && v.Kind() != cjson.Int {
			return false
		}
	}
	for _, k := range []string{"events", "notifications", "users"} {
		v, ok := nc.Get(k)
		if !ok {
			continue
		}
		if v.Kind() != cjson.Object {
			return false
		}
		for _, m := range v.Members() {
			if m.Value.Kind() != cjson.Int {
				return false
			}
			if k == "users" && (!strings.HasPrefix(m.Key, "@") || !strings.Contains(m.Key, ":")) {
				return false
			}
		}
	}
	oc, ok := st.content(pdu.TypePowerLevels, "")
	if !ok {
		return true // 9.4
	}
	// 9.5
	for _, k := range named {
		ov, oOK := oc.GetInt(k)
		nv, nOK := nc.GetInt(k)
		if oOK == nOK && ov == nv {
			continue
		}
		if (oOK && ov > sl) || (nOK && nv > sl) {
			return false
		}
	}
	// 9.6 - 9.9
	for _, k := range []string{"events", "notifications", "users"} {
		om, nm := objOf(oc, k), objOf(nc, k)
		keys := map[string]bool{}
		for _, m := range om.Members() {
			keys[m.Key] = true
		}
		for _, m := range nm.Members() {
			keys[m.Key] = true
		}
		for key := range keys {
			ov, oOK := om.GetInt(key)
			nv, nOK := nm.GetInt(key)
			if oOK == nOK && ov == nv {
				continue
			}
			if k == "users" {
				if oOK && key != string(e.Sender()) && ov >= sl {
					return false
				}
			} else if oOK && ov > sl {
				return false
			}
			if nOK && nv > sl {
				return false
			}
		}
	}
	return true
}
