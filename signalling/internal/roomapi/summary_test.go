package roomapi

import (
	"net/http"
	"testing"
)

func TestRoomSummary(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		pub := e.createRoom(alice, map[string]any{
			"preset": "public_chat", "name": "Standup", "topic": "Daily call", "room_alias_name": "standup",
			"initial_state": []map[string]any{{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}},
		})
		priv := e.createRoom(alice, map[string]any{"preset": "private_chat", "name": "Secret"})
		summary := func(path, token string) resp {
			t.Helper()
			return e.call(token, "GET", path, nil)
		}
		v1 := func(room string) string { return "/_matrix/client/v1/room_summary/" + esc(room) }

		t.Run("public room, unauthenticated", func(t *testing.T) {
			r := summary(v1(pub), "")
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			got := r.json(t)
			for k, want := range map[string]any{
				"room_id": pub, "name": "Standup", "topic": "Daily call", "canonical_alias": "#standup:hs1",
				"num_joined_members": 1.0, "join_rule": "public", "world_readable": false, "guest_can_join": false,
				"encryption": "m.megolm.v1.aes-sha2", "im.nheko.summary.encryption": "m.megolm.v1.aes-sha2",
			} {
				if got[k] != want {
					t.Errorf("%s = %v, want %v", k, got[k], want)
				}
			}
			if v, _ := got["room_version"].(string); v == "" || got["im.nheko.summary.room_version"] != v {
				t.Errorf("room_version %v, im.nheko.summary.room_version %v", got["room_version"], got["im.nheko.summary.room_version"])
			}
			if _, ok := got["membership"]; ok {
				t.Errorf("membership %v in an unauthenticated answer", got["membership"])
			}
		})

		t.Run("unstable paths and aliases", func(t *testing.T) {
			for _, path := range []string{
				"/_matrix/client/unstable/im.nheko.summary/summary/" + esc("#standup:hs1"),
				"/_matrix/client/unstable/im.nheko.summary/rooms/" + esc("#standup:hs1") + "/summary",
				v1("#standup:hs1") + "?via=hs1",
			} {
				r := summary(path, tokenOf(bob))
				if r.status != http.StatusOK {
					t.Fatalf("%s: %d %s", path, r.status, r.body)
				}
				if m := r.json(t); m["room_id"] != pub || m["membership"] != "leave" {
					t.Errorf("%s: room_id %v membership %v, want %s and leave", path, m["room_id"], m["membership"], pub)
				}
			}
		})

		t.Run("private room", func(t *testing.T) {
			for _, who := range []string{"", tokenOf(bob)} {
				if r := summary(v1(priv), who); r.status != http.StatusNotFound || r.errcode(t) != "M_NOT_FOUND" {
					t.Errorf("as %q: %d %s, want 404 M_NOT_FOUND", who, r.status, r.body)
				}
			}
			if m := e.ok(alice, "GET", v1(priv), nil); m["membership"] != "join" || m["join_rule"] != "invite" {
				t.Errorf("alice: membership %v join_rule %v", m["membership"], m["join_rule"])
			}
			e.ok(alice, "POST", v3+"/rooms/"+esc(priv)+"/invite", map[string]any{"user_id": bob})
			if m := e.ok(bob, "GET", v1(priv), nil); m["membership"] != "invite" || m["name"] != "Secret" {
				t.Errorf("invited bob: membership %v name %v", m["membership"], m["name"])
			}
		})

		t.Run("knockable and world-readable rooms", func(t *testing.T) {
			knock := e.createRoom(alice, map[string]any{"preset": "private_chat"})
			e.ok(alice, "PUT", v3+"/rooms/"+esc(knock)+"/state/m.room.join_rules/", map[string]any{"join_rule": "knock"})
			readable := e.createRoom(alice, map[string]any{"preset": "private_chat"})
			e.ok(alice, "PUT", v3+"/rooms/"+esc(readable)+"/state/m.room.history_visibility/", map[string]any{"history_visibility": "world_readable"})
			for room, check := range map[string]func(map[string]any) bool{
				knock:    func(m map[string]any) bool { return m["join_rule"] == "knock" },
				readable: func(m map[string]any) bool { return m["world_readable"] == true },
			} {
				r := summary(v1(room), "")
				if r.status != http.StatusOK || !check(r.json(t)) {
					t.Errorf("%s unauthenticated: %d %s", room, r.status, r.body)
				}
			}
		})

		t.Run("restricted room", func(t *testing.T) {
			restricted := e.createRoom(alice, map[string]any{"preset": "private_chat"})
			e.ok(alice, "PUT", v3+"/rooms/"+esc(restricted)+"/state/m.room.join_rules/", map[string]any{
				"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": pub}},
			})
			e.fails(carol, "GET", v1(restricted), nil, http.StatusNotFound, "M_NOT_FOUND")
			if r := summary(v1(restricted), ""); r.status != http.StatusNotFound {
				t.Errorf("unauthenticated: %d %s, want 404", r.status, r.body)
			}
			e.ok(carol, "POST", v3+"/rooms/"+esc(pub)+"/join", map[string]any{})
			m := e.ok(carol, "GET", v1(restricted), nil)
			if ids, _ := m["allowed_room_ids"].([]any); len(ids) != 1 || ids[0] != pub || m["join_rule"] != "restricted" {
				t.Errorf("allowed_room_ids %v join_rule %v, want [%s] restricted", m["allowed_room_ids"], m["join_rule"], pub)
			}
		})

		t.Run("errors", func(t *testing.T) {
			for _, tc := range []struct {
				name, path, token string
				status            int
				code              string
			}{
				{"unknown room", v1("!nowhere:hs1"), "", http.StatusNotFound, "M_NOT_FOUND"},
				{"remote room", v1("!elsewhere:remote.example") + "?via=remote.example", tokenOf(bob), http.StatusNotFound, "M_NOT_FOUND"},
				{"unknown alias", v1("#nothing:hs1"), "", http.StatusNotFound, "M_NOT_FOUND"},
				{"not a room", v1("standup"), "", http.StatusBadRequest, "M_INVALID_PARAM"},
				{"bad token", v1(pub), "not-a-token", http.StatusUnauthorized, "M_UNKNOWN_TOKEN"},
			} {
				if r := summary(tc.path, tc.token); r.status != tc.status || r.errcode(t) != tc.code {
					t.Errorf("%s: %d %s, want %d %s", tc.name, r.status, r.body, tc.status, tc.code)
				}
			}
		})
	})
}
