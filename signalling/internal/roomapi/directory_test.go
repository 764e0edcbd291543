package roomapi

import (
	"testing"
)

func TestAliases(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"preset": "public_chat"})
		other := e.createRoom(bob, map[string]any{})
		dir := func(alias string) string { return v3 + "/directory/room/" + esc(alias) }

		steps := []struct {
			name, user, method, path string
			body                     any
			status                   int
			code                     string
		}{
			{"create", alice, "PUT", dir("#one:hs1"), map[string]any{"room_id": id}, 200, ""},
			{"create second", alice, "PUT", dir("#two:hs1"), map[string]any{"room_id": id}, 200, ""},
			{"taken", bob, "PUT", dir("#one:hs1"), map[string]any{"room_id": other}, 409, "M_UNKNOWN"},
			{"bad alias", alice, "PUT", dir("one"), map[string]any{"room_id": id}, 400, "M_INVALID_PARAM"},
			{"remote alias", alice, "PUT", dir("#one:elsewhere.example"), map[string]any{"room_id": id}, 400, "M_INVALID_PARAM"},
			{"missing room_id", alice, "PUT", dir("#three:hs1"), map[string]any{}, 400, "M_MISSING_PARAM"},
			{"unknown room", alice, "PUT", dir("#three:hs1"), map[string]any{"room_id": "!nope:hs1"}, 404, "M_NOT_FOUND"},
			{"not in room", carol, "PUT", dir("#three:hs1"), map[string]any{"room_id": id}, 403, "M_FORBIDDEN"},
			{"resolve", carol, "GET", dir("#one:hs1"), nil, 200, ""},
			{"resolve unknown", carol, "GET", dir("#nope:hs1"), nil, 404, "M_NOT_FOUND"},
			{"resolve bad", carol, "GET", dir("nope"), nil, 400, "M_INVALID_PARAM"},
			{"delete by other", bob, "DELETE", dir("#two:hs1"), nil, 403, "M_FORBIDDEN"},
			{"delete unknown", alice, "DELETE", dir("#nope:hs1"), nil, 404, "M_NOT_FOUND"},
			{"delete", alice, "DELETE", dir("#two:hs1"), nil, 200, ""},
			{"deleted", alice, "GET", dir("#two:hs1"), nil, 404, "M_NOT_FOUND"},
			{"aliases of room, stranger", carol, "GET", v3 + "/rooms/" + esc(id) + "/aliases", nil, 403, "M_FORBIDDEN"},
		}
		for _, s := range steps {
			t.Run(s.name, func(t *testing.T) {
				r := e.as(s.user, s.method, s.path, s.body)
				if r.status != s.status || (s.code != "" && r.errcode(t) != s.code) {
					t.Fatalf("got %d %s, want %d %s", r.status, r.body, s.status, s.code)
				}
			})
		}
		res := e.call("", "GET", dir("#one:hs1"), nil) // no token needed
		if res.status != 200 || res.json(t)["room_id"] != id || res.json(t)["servers"].([]any)[0] != server {
			t.Fatalf("resolve without a token: %d %s", res.status, res.body)
		}
		al := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/aliases", nil)["aliases"].([]any)
		if len(al) != 1 || al[0] != "#one:hs1" {
			t.Fatalf("room aliases %v", al)
		}
		// An admin may delete any alias.
		if r := e.call("admin-token", "DELETE", dir("#one:hs1"), nil); r.status != 200 {
			t.Fatalf("admin delete: %d %s", r.status, r.body)
		}
	})
}

func TestPublicRooms(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		big := e.createRoom(alice, map[string]any{"visibility": "public", "name": "Big room", "topic": "Lots of people", "room_alias_name": "big"})
		e.ok(bob, "POST", v3+"/rooms/"+esc(big)+"/join", nil)
		small := e.createRoom(alice, map[string]any{"visibility": "public", "name": "Small", "creation_content": map[string]any{"type": "m.space"},
			"initial_state": []map[string]any{
				{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "world_readable"}},
				{"type": "m.room.avatar", "content": map[string]any{"url": "mxc://hs1/av"}},
			}})
		hidden := e.createRoom(alice, map[string]any{"name": "Hidden"})

		r := e.call("", "GET", v3+"/publicRooms", nil)
		if r.status != 200 {
			t.Fatalf("publicRooms: %d %s", r.status, r.body)
		}
		chunk := r.json(t)["chunk"].([]any)
		if len(chunk) != 2 {
			t.Fatalf("published rooms %v", chunk)
		}
		first, second := chunk[0].(map[string]any), chunk[1].(map[string]any)
		if first["room_id"] != big || first["num_joined_members"] != float64(2) || first["name"] != "Big room" ||
			first["topic"] != "Lots of people" || first["canonical_alias"] != "#big:hs1" || first["join_rule"] != "public" ||
			first["world_readable"] != false || first["guest_can_join"] != false {
			t.Fatalf("first entry %v", first)
		}
		if second["room_id"] != small || second["room_type"] != "m.space" || second["world_readable"] != true || second["avatar_url"] != "mxc://hs1/av" {
			t.Fatalf("second entry %v", second)
		}

		// Pagination.
		p1 := e.ok(carol, "GET", v3+"/publicRooms?limit=1", nil)
		next, _ := p1["next_batch"].(string)
		if len(p1["chunk"].([]any)) != 1 || next == "" || p1["prev_batch"] != nil || p1["total_room_count_estimate"] != float64(2) {
			t.Fatalf("page 1 %v", p1)
		}
		p2 := e.ok(carol, "GET", v3+"/publicRooms?limit=1&since="+next, nil)
		if c := p2["chunk"].([]any); len(c) != 1 || c[0].(map[string]any)["room_id"] != small || p2["next_batch"] != nil || p2["prev_batch"] == nil {
			t.Fatalf("page 2 %v", p2)
		}

		cases := []struct {
			name string
			body map[string]any
			want []string
		}{
			{"search term", map[string]any{"filter": map[string]any{"generic_search_term": "PEOPLE"}}, []string{big}},
			{"room types", map[string]any{"filter": map[string]any{"room_types": []any{"m.space"}}}, []string{small}},
			{"null room type", map[string]any{"filter": map[string]any{"room_types": []any{nil}}}, []string{big}},
			{"limit", map[string]any{"limit": 1}, []string{big}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				got := e.ok(carol, "POST", v3+"/publicRooms", c.body)["chunk"].([]any)
				if len(got) != len(c.want) {
					t.Fatalf("got %v, want %v", got, c.want)
				}
				for i, w := range c.want {
					if got[i].(map[string]any)["room_id"] != w {
						t.Fatalf("got %v, want %v", got, c.want)
					}
				}
			})
		}
		e.fails(carol, "GET", v3+"/publicRooms?since=zzz", nil, 400, "M_INVALID_PARAM")
		if r := e.call("", "POST", v3+"/publicRooms", map[string]any{}); r.status != 401 {
			t.Fatalf("POST /publicRooms without a token: %d", r.status)
		}

		// Visibility changes.
		vis := v3 + "/directory/list/room/" + esc(hidden)
		e.fails(bob, "PUT", vis, map[string]any{"visibility": "public"}, 403, "M_FORBIDDEN")
		e.fails(alice, "PUT", vis, map[string]any{"visibility": "loud"}, 400, "M_INVALID_PARAM")
		e.fails(alice, "PUT", v3+"/directory/list/room/"+esc("!nope:hs1"), map[string]any{}, 404, "M_NOT_FOUND")
		e.fails(alice, "GET", v3+"/directory/list/room/"+esc("!nope:hs1"), nil, 404, "M_NOT_FOUND")
		e.ok(alice, "PUT", vis, map[string]any{}) // defaults to public
		if got := e.ok(carol, "GET", vis, nil)["visibility"]; got != "public" {
			t.Fatalf("visibility %v", got)
		}
		e.ok(alice, "PUT", v3+"/directory/list/room/"+esc(big), map[string]any{"visibility": "private"})
		got := e.ok(carol, "GET", v3+"/publicRooms", nil)["chunk"].([]any)
		if len(got) != 2 || got[0].(map[string]any)["room_id"] == big || got[1].(map[string]any)["room_id"] == big {
			t.Fatalf("after unpublishing: %v", got)
		}
	})
}
