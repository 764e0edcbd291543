package roomapi

import (
	"sort"
	"testing"
)

func TestReadState(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"preset": "public_chat", "name": "First"})
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/join", nil)
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/leave", nil)
		e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+"/state/m.room.name", map[string]any{"name": "Second"})

		// Joined: current state.
		if got := e.state(alice, id, "m.room.name", "")["name"]; got != "Second" {
			t.Fatalf("alice sees name %v", got)
		}
		// Left: the state when they left.
		if got := e.state(bob, id, "m.room.name", "")["name"]; got != "First" {
			t.Fatalf("bob (left) sees name %v, want the name when he left", got)
		}
		ev := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/state/m.room.name/?format=event", nil)
		if ev["type"] != "m.room.name" || ev["event_id"] == nil || ev["sender"] != alice || ev["content"].(map[string]any)["name"] != "Second" {
			t.Fatalf("format=event gave %v", ev)
		}
		list := e.stateList(alice, id)
		types := map[string]bool{}
		for _, ev := range list {
			types[ev["type"].(string)] = true
		}
		for _, want := range []string{"m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.name", "m.room.member"} {
			if !types[want] {
				t.Errorf("GET /state lacks %s", want)
			}
		}

		cases := []struct {
			name, user, path string
			status           int
			code             string
		}{
			{"never a member", carol, "/state", 403, "M_FORBIDDEN"},
			{"never a member, one event", carol, "/state/m.room.name", 403, "M_FORBIDDEN"},
			{"no such state", alice, "/state/m.room.topic", 404, "M_NOT_FOUND"},
			{"bad format", alice, "/state/m.room.name?format=xml", 400, "M_INVALID_PARAM"},
			{"joined_members when left", bob, "/joined_members", 403, "M_FORBIDDEN"},
			{"unknown event", alice, "/event/" + esc("$nope"), 404, "M_NOT_FOUND"},
			{"event for non-member", carol, "/event/" + esc(list[0]["event_id"].(string)), 404, "M_NOT_FOUND"},
			{"members for non-member", carol, "/members", 403, "M_FORBIDDEN"},
			{"bad membership filter", alice, "/members?membership=joined", 400, "M_INVALID_PARAM"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { e.fails(c.user, "GET", v3+"/rooms/"+esc(id)+c.path, nil, c.status, c.code) })
		}
		e.fails(alice, "GET", v3+"/rooms/"+esc("!nope:hs1")+"/state", nil, 403, "M_FORBIDDEN")
	})
}

func TestMembers(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"preset": "public_chat", "invite": []string{carol}})
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/join", nil)
		cur, err := e.api.currentToken(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/leave", nil)

		members := func(user, query string) []string {
			t.Helper()
			m := e.ok(user, "GET", v3+"/rooms/"+esc(id)+"/members"+query, nil)
			var out []string
			for _, ev := range m["chunk"].([]any) {
				ev := ev.(map[string]any)
				out = append(out, ev["state_key"].(string)+"="+ev["content"].(map[string]any)["membership"].(string))
			}
			sort.Strings(out)
			return out
		}
		cases := []struct {
			query string
			want  []string
		}{
			{"", []string{alice + "=join", bob + "=leave", carol + "=invite"}},
			{"?membership=join", []string{alice + "=join"}},
			{"?not_membership=join", []string{bob + "=leave", carol + "=invite"}},
			{"?membership=invite&not_membership=leave", []string{alice + "=join", carol + "=invite"}},
			{"?at=" + cur.String(), []string{alice + "=join", bob + "=join", carol + "=invite"}},
		}
		for _, c := range cases {
			t.Run(c.query, func(t *testing.T) {
				got := members(alice, c.query)
				if len(got) != len(c.want) {
					t.Fatalf("members%s = %v, want %v", c.query, got, c.want)
				}
				for i := range got {
					if got[i] != c.want[i] {
						t.Fatalf("members%s = %v, want %v", c.query, got, c.want)
					}
				}
			})
		}
		// Bob left: he sees the members as they were when he left.
		if got := members(bob, ""); len(got) != 3 || got[1] != bob+"=leave" {
			t.Fatalf("bob's view %v", got)
		}

		jm := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/joined_members", nil)["joined"].(map[string]any)
		a, _ := jm[alice].(map[string]any)
		if len(jm) != 1 || a["display_name"] != "Alice" || a["avatar_url"] != "mxc://hs1/alice" {
			t.Fatalf("joined_members %v", jm)
		}
	})
}

func TestHistoryVisibility(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"preset": "public_chat",
			"initial_state": []map[string]any{{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "joined"}}}})
		before := e.sendMsg(alice, id, "1", "before bob")
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/join", nil)
		during := e.sendMsg(alice, id, "2", "with bob")
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/leave", nil)
		after := e.sendMsg(alice, id, "3", "after bob")

		for _, c := range []struct {
			event string
			want  int
		}{{before, 404}, {during, 200}, {after, 404}} {
			if r := e.as(bob, "GET", v3+"/rooms/"+esc(id)+"/event/"+esc(c.event), nil); r.status != c.want {
				t.Errorf("bob GET event: %d, want %d (%s)", r.status, c.want, r.body)
			}
		}
		m := e.ok(bob, "GET", v3+"/rooms/"+esc(id)+"/messages?dir=b&limit=50", nil)
		var bodies []string
		for _, ev := range m["chunk"].([]any) {
			if b, ok := ev.(map[string]any)["content"].(map[string]any)["body"].(string); ok {
				bodies = append(bodies, b)
			}
		}
		if len(bodies) != 1 || bodies[0] != "with bob" {
			t.Fatalf("bob's history %v, want only the message sent while he was joined", bodies)
		}

		// World readable: anyone may read.
		e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+"/state/m.room.history_visibility", map[string]any{"history_visibility": "world_readable"})
		open := e.sendMsg(alice, id, "4", "open")
		if r := e.as(carol, "GET", v3+"/rooms/"+esc(id)+"/event/"+esc(open), nil); r.status != 200 {
			t.Fatalf("world_readable event for a stranger: %d %s", r.status, r.body)
		}
		if r := e.as(carol, "GET", v3+"/rooms/"+esc(id)+"/event/"+esc(during), nil); r.status != 404 {
			t.Fatalf("joined-only event for a stranger: %d", r.status)
		}
		aliases := e.as(carol, "GET", v3+"/rooms/"+esc(id)+"/aliases", nil)
		if aliases.status != 200 {
			t.Fatalf("aliases of a world_readable room: %d %s", aliases.status, aliases.body)
		}
	})
}
