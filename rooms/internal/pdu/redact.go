package pdu

import "github.com/plexus-chat/plexus/internal/cjson"

// Top-level keys kept by redaction. Rooms fragment "v9-redactions" (room
// version 10) and "v11-redactions" (room versions 11 and 12); v11 dropped
// origin, membership and prev_state.
var (
	keptTopV9 = []string{
		"event_id", "type", "room_id", "sender", "state_key", "content",
		"hashes", "signatures", "depth", "prev_events", "prev_state",
		"auth_events", "origin", "origin_server_ts", "membership",
	}
	keptTopV11 = []string{
		"event_id", "type", "room_id", "sender", "state_key", "content",
		"hashes", "signatures", "depth", "prev_events", "auth_events",
		"origin_server_ts",
	}
)

// Content keys kept per event type.
var (
	keptContentV9 = map[string][]string{
		TypeMember:            {"membership", "join_authorised_via_users_server"},
		TypeCreate:            {"creator"},
		TypeJoinRules:         {"join_rule", "allow"},
		TypePowerLevels:       {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"},
		TypeHistoryVisibility: {"history_visibility"},
	}
	keptContentV11 = map[string][]string{
		TypeMember:            {"membership", "join_authorised_via_users_server"},
		TypeJoinRules:         {"join_rule", "allow"},
		TypePowerLevels:       {"ban", "events", "events_default", "invite", "kick", "redact", "state_default", "users", "users_default"},
		TypeHistoryVisibility: {"history_visibility"},
		TypeRedaction:         {"redacts"},
	}
)

// Redact returns obj stripped as redaction algorithm of room version v
// prescribes. Unknown shapes are handled leniently: redaction must work on
// any object, since it is also used to compute hashes of events that may be
// invalid.
func Redact(v *Version, obj cjson.Value) cjson.Value {
	keptTop, keptContent := keptTopV9, keptContentV9
	if v.Redaction == RedactV11 {
		keptTop, keptContent = keptTopV11, keptContentV11
	}
	out := obj.Only(keptTop...)
	typ, _ := obj.GetStr("type")
	content, _ := obj.Get("content")
	var newContent cjson.Value
	switch {
	case content.Kind() != cjson.Object:
		newContent = cjson.Obj()
	case v.Redaction == RedactV11 && typ == TypeCreate:
		// v11: m.room.create keeps all of its content.
		newContent = content
	default:
		newContent = content.Only(keptContent[typ]...)
		if v.Redaction == RedactV11 && typ == TypeMember {
			// v11: m.room.member also keeps the "signed" key of
			// "third_party_invite".
			if signed, ok := content.Path("third_party_invite", "signed"); ok {
				newContent = newContent.With("third_party_invite", cjson.Obj(cjson.M("signed", signed)))
			}
		}
	}
	if out.Has("content") || content.Kind() == cjson.Object {
		out = out.With("content", newContent)
	}
	return out
}

// Redacted returns the event as it is after redaction, keeping
// unsigned.redacted_because when the caller sets it later. The result is
// parsed again so it carries the same derived fields, and its event ID is
// unchanged (redaction keeps everything the reference hash covers).
func (e *Event) Redacted() *Event {
	obj := Redact(e.v, e.obj)
	r, err := NewEvent(obj, e.v)
	if err != nil {
		// A redacted valid event is always valid: every required key is
		// kept. Return a shallow copy rather than failing.
		cp := *e
		cp.obj = obj
		cp.json = cjson.Marshal(obj)
		return &cp
	}
	return r
}
