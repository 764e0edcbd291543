package auth

import (
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// TestAllowedEvents covers the rules after membership: sender joined (5,
// v12: 6), m.room.third_party_invite (6.1, v12: 7.1), required power level
// (7, v12: 8) and '@' state keys (8, v12: 9).
func TestAllowedEvents(t *testing.T) {
	msg := func(sender pdu.UserID) func(r *room) *pdu.Event {
		return func(r *room) *pdu.Event { return r.message(sender) }
	}
	state := func(sender pdu.UserID, typ, stateKey string) func(r *room) *pdu.Event {
		return func(r *room) *pdu.Event { return r.build(typ, sender, sk(stateKey), map[string]any{"x": 1}) }
	}
	tpInvite := func(sender pdu.UserID) func(r *room) *pdu.Event {
		return func(r *room) *pdu.Event {
			return r.build(pdu.TypeThirdPartyInvite, sender, sk("tok"), map[string]any{
				"display_name": "d", "key_validity_url": "https://id.test/isvalid", "public_key": publicKeyB64(identityKey),
			})
		}
	}
	noPL := func(r *room) { delete(r.state, powerLevelsTuple) }
	const maxLevel = cjson.MaxSafeInt
	runAuthCases(t, []authCase{
		{name: "5 ok joined sender", event: msg(carol)},
		{name: "5 sender not in room", event: msg(dave), rule: "5", rule12: "6"},
		{name: "5 sender only invited", setup: setMember(bob, dave, "invite"), event: msg(dave), rule: "5", rule12: "6"},
		{name: "5 sender left", setup: setMember(carol, carol, "leave"), event: msg(carol), rule: "5", rule12: "6"},
		{name: "5 sender banned state event", setup: setMember(bob, carol, "ban"),
			event: state(carol, "m.room.topic", ""), rule: "5", rule12: "6"},

		{name: "6.1 ok third-party invite at invite level", event: tpInvite(carol)},
		{name: "6.1 third-party invite below invite level", setup: setPLWith(map[string]any{"invite": 10}),
			event: tpInvite(carol), rule: "6.1", rule12: "7.1"},
		{name: "6.1 ok third-party invite ignores its state_default", setup: setPLWith(map[string]any{"state_default": 100}),
			event: tpInvite(carol)},

		{name: "7 ok state at state_default", event: state(bob, "m.room.name", "")},
		{name: "7 state below state_default", event: state(carol, "m.room.name", ""), rule: "7", rule12: "8"},
		{name: "7 ok state_default lowered", setup: setPLWith(map[string]any{"state_default": 0}),
			event: state(carol, "m.room.name", "")},
		{name: "7 message below events_default", setup: setPLWith(map[string]any{"events_default": 10}),
			event: msg(carol), rule: "7", rule12: "8"},
		{name: "7 ok events entry lowers a type", setup: setPLWith(map[string]any{"events_default": 10, "events": map[string]any{"m.room.message": 0}}),
			event: msg(carol)},
		{name: "7 events entry raises a type", setup: setPLWith(map[string]any{"events": map[string]any{"m.room.message": 60}}),
			event: msg(bob), rule: "7", rule12: "8"},
		{name: "7 events entry raises a state type", setup: setPLWith(map[string]any{"events": map[string]any{"m.room.name": 60}}),
			event: state(bob, "m.room.name", ""), rule: "7", rule12: "8"},
		{name: "7 ok redaction needs its event level, not redact",
			setup: setPLWith(map[string]any{"redact": 100}),
			event: func(r *room) *pdu.Event {
				return r.build(pdu.TypeRedaction, carol, nil, map[string]any{}, func(p *pdu.Proto) { p.Redacts = r.last })
			}},
		{name: "7 ok no power_levels event: message at 0", setup: noPL, event: msg(carol)},
		{name: "7 no power_levels event: state needs 50", setup: noPL, event: state(carol, "m.room.name", ""),
			rule: "7", rule12: "8"},
		{name: "7 ok no power_levels event: creator sends state", setup: noPL, event: state(alice, "m.room.name", "")},
		{name: "7 v10/v11 creator at 100 below a higher level", versions: only("10", "11"),
			setup: setPLWith(map[string]any{"events": map[string]any{"m.room.tombstone": maxLevel}}),
			event: state(alice, "m.room.tombstone", ""), rule: "7"},
		{name: "v12 8 ok creator's infinite power above any level", versions: only("12"),
			setup: setPLWith(map[string]any{"events": map[string]any{"m.room.tombstone": maxLevel}}),
			event: state(alice, "m.room.tombstone", "")},

		{name: "8 ok own user ID as state_key", event: state(bob, "m.custom", string(bob))},
		{name: "8 another user's ID as state_key", event: state(bob, "m.custom", string(carol)), rule: "8", rule12: "9"},
		{name: "8 '@' state_key that is no user ID", event: state(bob, "m.custom", "@"), rule: "8", rule12: "9"},
		{name: "8 ok '@' not first", event: state(bob, "m.custom", "x"+string(carol))},
	})
}
