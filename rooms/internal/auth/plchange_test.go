package auth

import (
	"testing"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// plBase is the power_levels content the power level change cases start
// from; bob (50) is the sender unless a case says otherwise.
func plBase(r *room) map[string]any {
	return map[string]any{
		"users":         r.users(map[string]any{string(bob): 50, string(carol): 10, string(erin): 50}),
		"events":        map[string]any{pdu.TypePowerLevels: 50, "m.high": 100, "m.low": 10},
		"notifications": map[string]any{"room": 20, "high": 100},
		"ban":           100,
		"kick":          50,
		"state_default": 40,
	}
}

// newPL is sender's power_levels event: plBase changed by mod.
func newPL(sender pdu.UserID, mod func(c map[string]any)) func(r *room) *pdu.Event {
	return func(r *room) *pdu.Event {
		c := plBase(r)
		if mod != nil {
			mod(c)
		}
		return r.build(pdu.TypePowerLevels, sender, sk(""), c)
	}
}

func sub(c map[string]any, key string) map[string]any { return c[key].(map[string]any) }

func TestAllowedPowerLevels(t *testing.T) {
	setBase := func(r *room) { r.setPL(plBase(r)) }
	noPL := func(r *room) { delete(r.state, powerLevelsTuple) }
	set := func(key string, v any) func(c map[string]any) {
		return func(c map[string]any) { c[key] = v }
	}
	del := func(key string) func(c map[string]any) {
		return func(c map[string]any) { delete(c, key) }
	}
	setIn := func(m, key string, v any) func(c map[string]any) {
		return func(c map[string]any) { sub(c, m)[key] = v }
	}
	delIn := func(m, key string) func(c map[string]any) {
		return func(c map[string]any) { delete(sub(c, m), key) }
	}
	cases := []authCase{
		{name: "9.10 ok unchanged", event: newPL(bob, nil)},
		// 9.1 to 9.3: well-formedness, integers only from v10 on.
		{name: "9.1 ban as a string", event: newPL(bob, set("ban", "100")), rule: "9.1", rule12: "10.1"},
		{name: "9.1 kick as a boolean", event: newPL(bob, set("kick", true)), rule: "9.1", rule12: "10.1"},
		{name: "9.1 users_default null", event: newPL(bob, set("users_default", nil)), rule: "9.1", rule12: "10.1"},
		{name: "9.2 events value a string", event: newPL(bob, setIn("events", "m.x", "1")), rule: "9.2", rule12: "10.2"},
		{name: "9.2 events an array", event: newPL(bob, set("events", []any{})), rule: "9.2", rule12: "10.2"},
		{name: "9.2 notifications value a string", event: newPL(bob, setIn("notifications", "room", "20")), rule: "9.2", rule12: "10.2"},
		{name: "9.2 notifications a string", event: newPL(bob, set("notifications", "x")), rule: "9.2", rule12: "10.2"},
		{name: "9.3 users key not a user ID", event: newPL(bob, setIn("users", "carol", 1)), rule: "9.3", rule12: "10.3"},
		{name: "9.3 users value a string", event: newPL(bob, setIn("users", string(carol), "10")), rule: "9.3", rule12: "10.3"},
		{name: "9.3 users an array", event: newPL(bob, set("users", []any{})), rule: "9.3", rule12: "10.3"},
		// v12 10.4: creators are never listed.
		{name: "v12 10.4 creator listed", versions: only("12"), event: newPL(bob, setIn("users", string(alice), 100)), rule12: "10.4"},
		{name: "v12 10.4 additional creator listed", versions: only("12"),
			room: func(t testing.TB, v *pdu.Version) *room {
				return newRoomWith(t, v, map[string]any{"additional_creators": []any{string(dave)}})
			},
			event: newPL(bob, setIn("users", string(dave), 0)), rule12: "10.4"},
		{name: "v12 10.4 first power_levels listing the creator", versions: only("12"), setup: noPL,
			event: func(r *room) *pdu.Event {
				return r.build(pdu.TypePowerLevels, alice, sk(""), map[string]any{"users": map[string]any{string(alice): 100}})
			}, rule12: "10.4"},
		{name: "v10/v11 9.4 ok first power_levels listing the creator", versions: only("10", "11"), setup: noPL,
			event: func(r *room) *pdu.Event {
				return r.build(pdu.TypePowerLevels, alice, sk(""), map[string]any{"users": map[string]any{string(alice): 100}})
			}},
		// 9.4: the first power_levels event is free; later ones are not.
		{name: "9.4 ok first power_levels may say anything", setup: noPL,
			event: func(r *room) *pdu.Event {
				return r.build(pdu.TypePowerLevels, alice, sk(""), map[string]any{"users": map[string]any{string(carol): 1000}})
			}},
		{name: "9.4 v10/v11 not first: creator at 100 cannot grant 1000", versions: only("10", "11"),
			event: func(r *room) *pdu.Event {
				return r.build(pdu.TypePowerLevels, alice, sk(""), map[string]any{"users": map[string]any{string(carol): 1000}})
			}, rule: "9.9.1"},
		{name: "v12 10.5 ok not first: creator's infinite power grants 1000", versions: only("12"),
			event: func(r *room) *pdu.Event {
				return r.build(pdu.TypePowerLevels, alice, sk(""), map[string]any{"users": map[string]any{string(carol): 1000}})
			}},
		// 9.5: scalar levels.
		{name: "9.5 ok kick lowered", event: newPL(bob, set("kick", 40))},
		{name: "9.5 ok state_default removed", event: newPL(bob, del("state_default"))},
		{name: "9.5.1 ban above sender lowered", event: newPL(bob, set("ban", 50)), rule: "9.5.1", rule12: "10.6.1"},
		{name: "9.5.1 ban above sender removed", event: newPL(bob, del("ban")), rule: "9.5.1", rule12: "10.6.1"},
		{name: "9.5 ok invite added at sender level", event: newPL(bob, set("invite", 50))},
		{name: "9.5.2 kick raised above sender", event: newPL(bob, set("kick", 60)), rule: "9.5.2", rule12: "10.6.2"},
		{name: "9.5.2 redact added above sender", event: newPL(bob, set("redact", 51)), rule: "9.5.2", rule12: "10.6.2"},
		// 9.6, 9.7: events and notifications.
		{name: "9.6 ok events entry below sender removed", event: newPL(bob, delIn("events", "m.low"))},
		{name: "9.6.1 events entry above sender removed", event: newPL(bob, delIn("events", "m.high")), rule: "9.6.1", rule12: "10.7.1"},
		{name: "9.6.1 events entry above sender lowered", event: newPL(bob, setIn("events", "m.high", 10)), rule: "9.6.1", rule12: "10.7.1"},
		{name: "9.6.1 events removed wholesale", event: newPL(bob, del("events")), rule: "9.6.1", rule12: "10.7.1"},
		{name: "9.6.1 notifications entry above sender lowered", event: newPL(bob, setIn("notifications", "high", 0)), rule: "9.6.1", rule12: "10.7.1"},
		{name: "9.7 ok events entry added at sender level", event: newPL(bob, setIn("events", "m.x", 50))},
		{name: "9.7.1 events entry added above sender", event: newPL(bob, setIn("events", "m.x", 60)), rule: "9.7.1", rule12: "10.8.1"},
		{name: "9.7.1 events entry raised above sender", event: newPL(bob, setIn("events", "m.low", 51)), rule: "9.7.1", rule12: "10.8.1"},
		{name: "9.7 ok notifications entry raised within reach", event: newPL(bob, setIn("notifications", "room", 30))},
		{name: "9.7.1 notifications entry raised above sender", event: newPL(bob, setIn("notifications", "room", 60)), rule: "9.7.1", rule12: "10.8.1"},
		// 9.8, 9.9: users.
		{name: "9.8 ok lower user demoted", event: newPL(bob, setIn("users", string(carol), 0))},
		{name: "9.8 ok lower user removed", event: newPL(bob, delIn("users", string(carol)))},
		{name: "9.8 ok sender demotes self", event: newPL(bob, setIn("users", string(bob), 0))},
		{name: "9.8.1 equal user removed", event: newPL(bob, delIn("users", string(erin))), rule: "9.8.1", rule12: "10.9.1"},
		{name: "9.8.1 equal user demoted", event: newPL(bob, setIn("users", string(erin), 0)), rule: "9.8.1", rule12: "10.9.1"},
		{name: "9.8.1 v10/v11 creator at 100 demoted by 50", versions: only("10", "11"),
			event: newPL(bob, setIn("users", string(alice), 0)), rule: "9.8.1"},
		{name: "9.9 ok user raised to sender level", event: newPL(bob, setIn("users", string(carol), 50))},
		{name: "9.9 ok user added at sender level", event: newPL(bob, setIn("users", string(dave), 50))},
		{name: "9.9.1 user raised above sender", event: newPL(bob, setIn("users", string(carol), 60)), rule: "9.9.1", rule12: "10.10.1"},
		{name: "9.9.1 user added above sender", event: newPL(bob, setIn("users", string(dave), 51)), rule: "9.9.1", rule12: "10.10.1"},
		{name: "9.9.1 sender promotes self", event: newPL(bob, setIn("users", string(bob), 51)), rule: "9.9.1", rule12: "10.10.1"},
	}
	for i := range cases {
		if cases[i].setup == nil {
			cases[i].setup = setBase
		}
	}
	runAuthCases(t, cases)
}
