package roomapi

import "testing"

func TestMembershipFlow(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		priv := e.createRoom(alice, map[string]any{"preset": "private_chat"})
		pub := e.createRoom(alice, map[string]any{"preset": "public_chat", "room_alias_name": "lobby"})
		room := func(id, action string) string { return v3 + "/rooms/" + esc(id) + "/" + action }
		member := func(id, u string) any { return e.state(alice, id, "m.room.member", u)["membership"] }

		steps := []struct {
			name   string
			user   string
			method string
			path   string
			body   any
			status int
			code   string
			check  func(t *testing.T)
		}{
			{"join invite-only uninvited", bob, "POST", room(priv, "join"), nil, 403, "M_FORBIDDEN", nil},
			{"invite by non-member", bob, "POST", room(priv, "invite"), map[string]any{"user_id": carol}, 403, "M_FORBIDDEN", nil},
			{"invite missing user_id", alice, "POST", room(priv, "invite"), map[string]any{}, 400, "M_MISSING_PARAM", nil},
			{"invite bad user_id", alice, "POST", room(priv, "invite"), map[string]any{"user_id": "bob"}, 400, "M_INVALID_PARAM", nil},
			{"invite", alice, "POST", room(priv, "invite"), map[string]any{"user_id": bob, "reason": "welcome"}, 200, "", func(t *testing.T) {
				if m := e.state(alice, priv, "m.room.member", bob); m["membership"] != "invite" || m["reason"] != "welcome" {
					t.Errorf("invite event %v", m)
				}
			}},
			{"invite again is fine", alice, "POST", room(priv, "invite"), map[string]any{"user_id": bob}, 200, "", nil},
			{"join when invited", bob, "POST", room(priv, "join"), map[string]any{"reason": "hi"}, 200, "", func(t *testing.T) {
				if member(priv, bob) != "join" {
					t.Error("bob not joined")
				}
			}},
			{"invite joined user", alice, "POST", room(priv, "invite"), map[string]any{"user_id": bob}, 403, "M_FORBIDDEN", nil},
			{"kick by underpowered", bob, "POST", room(priv, "kick"), map[string]any{"user_id": alice}, 403, "M_FORBIDDEN", nil},
			{"kick non-member", alice, "POST", room(priv, "kick"), map[string]any{"user_id": carol}, 403, "M_FORBIDDEN", nil},
			{"kick", alice, "POST", room(priv, "kick"), map[string]any{"user_id": bob, "reason": "bye"}, 200, "", func(t *testing.T) {
				m := e.state(alice, priv, "m.room.member", bob)
				if m["membership"] != "leave" || m["reason"] != "bye" {
					t.Errorf("kick event %v", m)
				}
			}},
			{"join after kick from invite-only", bob, "POST", room(priv, "join"), nil, 403, "M_FORBIDDEN", nil},
			{"forget while joined", alice, "POST", room(priv, "forget"), nil, 400, "M_UNKNOWN", nil},
			{"forget after leaving", bob, "POST", room(priv, "forget"), nil, 200, "", func(t *testing.T) {
				if f, err := e.api.isForgotten(t.Context(), bob, priv); err != nil || !f {
					t.Errorf("Forgotten = %v, %v", f, err)
				}
			}},
			{"forgotten history is closed", bob, "GET", room(priv, "messages") + "?dir=b", nil, 403, "M_FORBIDDEN", nil},
			{"join public by alias", carol, "POST", v3 + "/join/" + esc("#lobby:hs1"), nil, 200, "", func(t *testing.T) {
				if member(pub, carol) != "join" {
					t.Error("carol not joined")
				}
			}},
			{"join by id via /join", bob, "POST", v3 + "/join/" + esc(pub), nil, 200, "", nil},
			{"join unknown alias", bob, "POST", v3 + "/join/" + esc("#nope:hs1"), nil, 404, "M_NOT_FOUND", nil},
			{"join unknown room", bob, "POST", v3 + "/join/" + esc("!unknown:elsewhere.example"), nil, 404, "M_NOT_FOUND", nil},
			{"join garbage", bob, "POST", v3 + "/join/garbage", nil, 400, "M_INVALID_PARAM", nil},
			{"ban", alice, "POST", room(pub, "ban"), map[string]any{"user_id": carol, "reason": "spam"}, 200, "", func(t *testing.T) {
				if m := e.state(alice, pub, "m.room.member", carol); m["membership"] != "ban" || m["reason"] != "spam" {
					t.Errorf("ban event %v", m)
				}
			}},
			{"banned cannot join", carol, "POST", room(pub, "join"), nil, 403, "M_FORBIDDEN", nil},
			{"unban non-banned", alice, "POST", room(pub, "unban"), map[string]any{"user_id": bob}, 403, "M_FORBIDDEN", nil},
			{"unban by underpowered", bob, "POST", room(pub, "unban"), map[string]any{"user_id": carol}, 403, "M_FORBIDDEN", nil},
			{"unban", alice, "POST", room(pub, "unban"), map[string]any{"user_id": carol, "reason": "ok"}, 200, "", func(t *testing.T) {
				if member(pub, carol) != "leave" {
					t.Error("carol still banned")
				}
			}},
			{"rejoin after unban", carol, "POST", room(pub, "join"), nil, 200, "", nil},
			{"leave", carol, "POST", room(pub, "leave"), map[string]any{"reason": "later"}, 200, "", func(t *testing.T) {
				if member(pub, carol) != "leave" {
					t.Error("carol did not leave")
				}
			}},
			{"leave room never joined", carol, "POST", room(priv, "leave"), nil, 403, "M_FORBIDDEN", nil},
			{"leave unknown room", carol, "POST", room("!nope:hs1", "leave"), nil, 404, "M_NOT_FOUND", nil},
			{"bad body", alice, "POST", room(pub, "kick"), `{"user_id":`, 400, "M_NOT_JSON", nil},
		}
		for _, s := range steps {
			t.Run(s.name, func(t *testing.T) {
				r := e.as(s.user, s.method, s.path, s.body)
				if r.status != s.status || (s.code != "" && r.errcode(t) != s.code) {
					t.Fatalf("got %d %s, want %d %s", r.status, r.body, s.status, s.code)
				}
				if s.check != nil {
					s.check(t)
				}
			})
		}

		got := e.ok(bob, "GET", v3+"/joined_rooms", nil)["joined_rooms"].([]any)
		if len(got) != 1 || got[0] != pub {
			t.Fatalf("bob's joined_rooms %v, want [%s]", got, pub)
		}
		// Rejoining brings a forgotten room back.
		e.ok(alice, "POST", room(priv, "invite"), map[string]any{"user_id": bob})
		if f, _ := e.api.isForgotten(t.Context(), bob, priv); f {
			t.Fatal("re-invite must clear forgotten")
		}
	})
}

func TestUpdateProfile(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		r1 := e.createRoom(alice, map[string]any{})
		r2 := e.createRoom(alice, map[string]any{})
		if err := e.api.UpdateProfile(t.Context(), alice, "Alice B", ""); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{r1, r2} {
			m := e.state(alice, id, "m.room.member", alice)
			if m["displayname"] != "Alice B" || m["avatar_url"] != nil || m["membership"] != "join" {
				t.Errorf("%s: member after profile change %v", id, m)
			}
		}
		// No change: no new event.
		before := e.stateList(alice, r1)
		if err := e.api.UpdateProfile(t.Context(), alice, "Alice B", ""); err != nil {
			t.Fatal(err)
		}
		after := e.stateList(alice, r1)
		for i := range before {
			if before[i]["event_id"] != after[i]["event_id"] {
				t.Fatal("unchanged profile appended an event")
			}
		}
	})
}
