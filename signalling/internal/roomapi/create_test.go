package roomapi

import (
	"net/http"
	"testing"
)

func TestCreateRoomPresets(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		cases := []struct {
			name                   string
			body                   map[string]any
			joinRule, guest        string
			invite                 float64
			public                 bool
			inviteeLevel, creators bool
		}{
			{name: "default private", body: map[string]any{}, joinRule: "invite", guest: "can_join", invite: 0},
			{name: "public visibility", body: map[string]any{"visibility": "public"}, joinRule: "public", guest: "forbidden", invite: 50, public: true},
			{name: "public_chat", body: map[string]any{"preset": "public_chat"}, joinRule: "public", guest: "forbidden", invite: 50},
			{name: "trusted v11", body: map[string]any{"preset": "trusted_private_chat", "room_version": "11", "invite": []string{bob}}, joinRule: "invite", guest: "can_join", inviteeLevel: true},
			{name: "trusted v12", body: map[string]any{"preset": "trusted_private_chat", "invite": []string{bob}}, joinRule: "invite", guest: "can_join", creators: true},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				id := e.createRoom(alice, c.body)
				if got := e.state(alice, id, "m.room.join_rules", "")["join_rule"]; got != c.joinRule {
					t.Errorf("join_rule %v, want %s", got, c.joinRule)
				}
				if got := e.state(alice, id, "m.room.history_visibility", "")["history_visibility"]; got != "shared" {
					t.Errorf("history_visibility %v", got)
				}
				if got := e.state(alice, id, "m.room.guest_access", "")["guest_access"]; got != c.guest {
					t.Errorf("guest_access %v, want %s", got, c.guest)
				}
				pl := e.state(alice, id, "m.room.power_levels", "")
				users, _ := pl["users"].(map[string]any)
				if c.inviteeLevel {
					if users[bob] != float64(100) || users[alice] != float64(100) {
						t.Errorf("trusted v11 users = %v, want alice and bob at 100", users)
					}
				} else if c.body["room_version"] == nil {
					// Version 12: creators are never listed.
					if _, listed := users[alice]; listed {
						t.Errorf("v12 creator listed in users: %v", users)
					}
					if ev := pl["events"].(map[string]any)["m.room.tombstone"]; ev != float64(150) {
						t.Errorf("v12 tombstone level %v, want 150", ev)
					}
				}
				if !c.inviteeLevel && !c.creators && pl["invite"] != c.invite {
					t.Errorf("invite level %v, want %v", pl["invite"], c.invite)
				}
				create := e.state(alice, id, "m.room.create", "")
				if c.creators {
					ac, _ := create["additional_creators"].([]any)
					if len(ac) != 1 || ac[0] != bob {
						t.Errorf("additional_creators = %v, want [bob]", create["additional_creators"])
					}
				}
				vis := e.ok(alice, "GET", v3+"/directory/list/room/"+esc(id), nil)["visibility"]
				if want := map[bool]string{true: "public", false: "private"}[c.public]; vis != want {
					t.Errorf("directory visibility %v, want %s", vis, want)
				}
				if inv, ok := c.body["invite"].([]string); ok {
					if m := e.state(alice, id, "m.room.member", inv[0])["membership"]; m != "invite" {
						t.Errorf("invitee membership %v", m)
					}
				}
			})
		}
	})
}

func TestCreateRoomOptions(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{
			"name":            "The Room",
			"topic":           "All about tests",
			"room_alias_name": "thepub",
			"invite":          []string{bob, dave},
			"is_direct":       true,
			"creation_content": map[string]any{
				"m.federate": false, "type": "m.space", "additional_creators": []string{carol},
			},
			"initial_state": []map[string]any{
				{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "joined"}},
				{"type": "m.room.name", "content": map[string]any{"name": "overridden by name"}},
				{"type": "org.example.custom", "state_key": "k", "content": map[string]any{"v": 1}},
			},
			"power_level_content_override": map[string]any{"events_default": 10, "users": map[string]any{bob: 60}},
		})
		if got := e.state(alice, id, "m.room.name", "")["name"]; got != "The Room" {
			t.Errorf("name %v", got)
		}
		topic := e.state(alice, id, "m.room.topic", "")
		if topic["topic"] != "All about tests" || topic["m.topic"] == nil {
			t.Errorf("topic %v", topic)
		}
		if got := e.state(alice, id, "m.room.canonical_alias", "")["alias"]; got != "#thepub:hs1" {
			t.Errorf("canonical alias %v", got)
		}
		if got := e.ok(bob, "GET", v3+"/directory/room/"+esc("#thepub:hs1"), nil)["room_id"]; got != id {
			t.Errorf("alias resolves to %v, want %s", got, id)
		}
		if got := e.state(alice, id, "m.room.history_visibility", "")["history_visibility"]; got != "joined" {
			t.Errorf("initial_state must win over the preset: %v", got)
		}
		if got := e.state(alice, id, "org.example.custom", "k")["v"]; got != float64(1) {
			t.Errorf("custom state %v", got)
		}
		create := e.state(alice, id, "m.room.create", "")
		if create["m.federate"] != false || create["type"] != "m.space" || create["room_version"] != "12" {
			t.Errorf("create content %v", create)
		}
		pl := e.state(alice, id, "m.room.power_levels", "")
		if pl["events_default"] != float64(10) || pl["users"].(map[string]any)[bob] != float64(60) {
			t.Errorf("override not applied: %v", pl)
		}
		for _, u := range []string{bob, dave} {
			m := e.state(alice, id, "m.room.member", u)
			if m["membership"] != "invite" || m["is_direct"] != true {
				t.Errorf("invite of %s: %v", u, m)
			}
		}
		if len(e.invites) != 1 || e.invites[0] != dave {
			t.Errorf("remote invite hook calls: %v", e.invites)
		}
		if m := e.state(alice, id, "m.room.member", alice); m["displayname"] != "Alice" || m["avatar_url"] != "mxc://hs1/alice" {
			t.Errorf("creator join lacks profile: %v", m)
		}

		// Event order of "Creation": create, join, power levels, alias,
		// preset, initial_state, name, topic, invites.
		r := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/messages?dir=f&limit=50", nil)
		var types []string
		for _, ev := range r["chunk"].([]any) {
			types = append(types, ev.(map[string]any)["type"].(string))
		}
		want := []string{"m.room.create", "m.room.member", "m.room.power_levels", "m.room.canonical_alias",
			"m.room.join_rules", "m.room.guest_access", "m.room.history_visibility", "m.room.name", "org.example.custom",
			"m.room.name", "m.room.topic", "m.room.member", "m.room.member"}
		if len(types) != len(want) {
			t.Fatalf("event order %v, want %v", types, want)
		}
		for i := range want {
			if types[i] != want[i] {
				t.Fatalf("event order %v, want %v", types, want)
			}
		}

		// The alias is taken now.
		e.fails(bob, "POST", v3+"/createRoom", map[string]any{"room_alias_name": "thepub"}, http.StatusBadRequest, "M_ROOM_IN_USE")
	})
}

func TestCreateRoomErrors(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		cases := []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"not json", `{"name":`, 400, "M_NOT_JSON"},
			{"wrong type", map[string]any{"name": 5}, 400, "M_BAD_JSON"},
			{"unsupported version", map[string]any{"room_version": "1"}, 400, "M_UNSUPPORTED_ROOM_VERSION"},
			{"bad preset", map[string]any{"preset": "party"}, 400, "M_INVALID_PARAM"},
			{"bad visibility", map[string]any{"visibility": "secret"}, 400, "M_INVALID_PARAM"},
			{"bad invitee", map[string]any{"invite": []string{"bob"}}, 400, "M_INVALID_PARAM"},
			{"bad alias", map[string]any{"room_alias_name": "a:b"}, 400, "M_INVALID_PARAM"},
			{"creation_content not object", map[string]any{"creation_content": []int{1}}, 400, "M_BAD_JSON"},
			{"v12 creator in users", map[string]any{"power_level_content_override": map[string]any{"users": map[string]any{alice: 100}}}, 400, "M_INVALID_ROOM_STATE"},
			{"creator too weak", map[string]any{"room_version": "11", "name": "x", "power_level_content_override": map[string]any{"users": map[string]any{alice: 10}}}, 400, "M_INVALID_ROOM_STATE"},
			{"oversized", `{"name":"` + string(make([]byte, 2<<20)) + `"}`, 413, "M_TOO_LARGE"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e.fails(alice, "POST", v3+"/createRoom", c.body, c.status, c.code)
			})
		}
		// None of the refused requests left a room behind.
		if ids, err := e.db.RoomIDs(t.Context()); err != nil || len(ids) != 0 {
			t.Fatalf("rooms after refused requests: %v %v", ids, err)
		}
		if r := e.call("", "POST", v3+"/createRoom", map[string]any{}); r.status != 401 || r.errcode(t) != "M_MISSING_TOKEN" {
			t.Fatalf("no token: %d %s", r.status, r.body)
		}
	})
}

func TestCreateRoomV10(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"room_version": "10", "name": "old"})
		create := e.state(alice, id, "m.room.create", "")
		if create["creator"] != alice || create["room_version"] != "10" {
			t.Fatalf("v10 create content %v", create)
		}
		if e.state(alice, id, "m.room.power_levels", "")["users"].(map[string]any)[alice] != float64(100) {
			t.Fatal("v10 creator must be at 100")
		}
	})
}
