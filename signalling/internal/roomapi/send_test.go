package roomapi

import (
	"strings"
	"sync"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
)

func TestSendIdempotent(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"preset": "public_chat"})
		path := v3 + "/rooms/" + esc(id) + "/send/m.room.message/txn1"
		body := map[string]any{"msgtype": "m.text", "body": "hello"}
		first := e.ok(alice, "PUT", path, body)["event_id"]
		if again := e.ok(alice, "PUT", path, body)["event_id"]; again != first {
			t.Fatalf("replay gave %v, want %v", again, first)
		}
		other := e.call("alice-token2", "PUT", path, body)
		if other.status != 200 || other.json(t)["event_id"] == first {
			t.Fatalf("another device with the same txnId: %d %s", other.status, other.body)
		}
		// The redact endpoint is a separate transaction scope.
		red := e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+"/redact/"+esc(first.(string))+"/txn1", map[string]any{})
		if red["event_id"] == first {
			t.Fatal("redact with the same txnId reused the send transaction")
		}

		// Racing identical requests: one event.
		const n = 8
		ids := make([]any, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.as(bob, "PUT", v3+"/rooms/"+esc(id)+"/send/m.room.message/race", body)
				if r.status == 200 {
					ids[i] = r.json(t)["event_id"]
				}
			}()
		}
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/join", nil)
		wg.Wait()
		var distinct = map[any]bool{}
		for _, v := range ids {
			if v != nil {
				distinct[v] = true
			}
		}
		if len(distinct) > 1 {
			t.Fatalf("racing replays produced %d events", len(distinct))
		}
		msgs := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/messages?dir=b&limit=100&filter="+esc(`{"senders":["`+bob+`"],"types":["m.room.message"]}`), nil)
		if got := len(msgs["chunk"].([]any)); got != len(distinct) {
			t.Fatalf("%d messages from bob, want %d", got, len(distinct))
		}
	})
}

func TestSendErrors(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{})
		send := v3 + "/rooms/" + esc(id) + "/send/m.room.message/"
		cases := []struct {
			name, user, path string
			body             any
			status           int
			code             string
		}{
			{"not json", alice, send + "a", `{"body":`, 400, "M_NOT_JSON"},
			{"not an object", alice, send + "b", `[1,2]`, 400, "M_BAD_JSON"},
			{"float", alice, send + "c", `{"n":1.5}`, 400, "M_BAD_JSON"},
			{"oversized body", alice, send + "d", `{"body":"` + strings.Repeat("x", 70000) + `"}`, 413, "M_TOO_LARGE"},
			{"oversized event", alice, send + "e", `{"body":"` + strings.Repeat("x", 65400) + `"}`, 413, "M_TOO_LARGE"},
			{"not in room", bob, send + "f", map[string]any{"body": "hi"}, 403, "M_FORBIDDEN"},
			{"unknown room", alice, v3 + "/rooms/" + esc("!nope:hs1") + "/send/m.room.message/g", map[string]any{}, 403, "M_FORBIDDEN"},
			{"bad room id", alice, v3 + "/rooms/nope/send/m.room.message/h", map[string]any{}, 400, "M_INVALID_PARAM"},
			{"state not in room", bob, v3 + "/rooms/" + esc(id) + "/state/m.room.name", map[string]any{"name": "x"}, 403, "M_FORBIDDEN"},
			{"redaction without target", alice, v3 + "/rooms/" + esc(id) + "/send/m.room.redaction/i", map[string]any{}, 400, "M_BAD_JSON"},
			{"bad canonical alias", alice, v3 + "/rooms/" + esc(id) + "/state/m.room.canonical_alias/", map[string]any{"alias": "nope"}, 400, "M_INVALID_PARAM"},
			{"alias of another room", alice, v3 + "/rooms/" + esc(id) + "/state/m.room.canonical_alias", map[string]any{"alias": "#unmapped:hs1"}, 400, "M_BAD_ALIAS"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { e.fails(c.user, "PUT", c.path, c.body, c.status, c.code) })
		}
	})
}

func TestSendRateLimit(t *testing.T) {
	forBackendsWith(t, envOpts{sendRate: ratelimit.Config{Rate: 0.001, Burst: 2}}, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{})
		e.sendMsg(alice, id, "1", "one")
		e.sendMsg(alice, id, "2", "two")
		r := e.as(alice, "PUT", v3+"/rooms/"+esc(id)+"/send/m.room.message/3", map[string]any{"body": "three"})
		if r.status != 429 || r.errcode(t) != "M_LIMIT_EXCEEDED" {
			t.Fatalf("third send: %d %s", r.status, r.body)
		}
		// A replay of an earlier transaction is not a new send.
		e.sendMsg(alice, id, "1", "one")
	})
}

func TestStateAndCalls(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"room_alias_name": "st"})
		for _, path := range []string{"/state/m.room.name", "/state/m.room.name/"} {
			r := e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+path, map[string]any{"name": "N" + path})
			if r["event_id"] == nil {
				t.Fatalf("PUT %s: %v", path, r)
			}
			if got := e.state(alice, id, "m.room.name", "")["name"]; got != "N"+path {
				t.Fatalf("after PUT %s: name %v", path, got)
			}
		}
		e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+"/state/org.example/"+esc("a:b/c"), map[string]any{"k": "slash key"})
		if got := e.state(alice, id, "org.example", "a:b/c")["k"]; got != "slash key" {
			t.Fatalf("state key with a slash: %v", got)
		}
		// Valid canonical alias pointing at the room.
		e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+"/state/m.room.canonical_alias", map[string]any{"alias": "#st:hs1", "alt_aliases": []string{}})

		// m.call.* events pass through unchanged.
		content := map[string]any{"call_id": "c1", "version": "1", "party_id": "p", "offer": map[string]any{"type": "offer", "sdp": "v=0\r\n"}, "lifetime": 60000}
		ev := e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+"/send/m.call.invite/call1", content)["event_id"].(string)
		got := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/event/"+esc(ev), nil)
		c := got["content"].(map[string]any)
		if c["call_id"] != "c1" || c["offer"].(map[string]any)["sdp"] != "v=0\r\n" || got["type"] != "m.call.invite" {
			t.Fatalf("m.call.invite came back as %v", got)
		}
	})
}

func TestRedaction(t *testing.T) {
	for _, version := range []string{"10", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			forBackends(t, func(t *testing.T, e *env) {
				id := e.createRoom(alice, map[string]any{"preset": "public_chat", "room_version": version})
				e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/join", nil)
				mine := e.sendMsg(bob, id, "m1", "secret")
				alices := e.sendMsg(alice, id, "m2", "alice's")

				// Bob (level 0) may not redact alice's event.
				e.fails(bob, "PUT", v3+"/rooms/"+esc(id)+"/redact/"+esc(alices)+"/r0", map[string]any{}, 403, "M_FORBIDDEN")
				red := e.ok(bob, "PUT", v3+"/rooms/"+esc(id)+"/redact/"+esc(mine)+"/r1", map[string]any{"reason": "oops"})["event_id"]
				// Alice redacts her own via /send, the redacts key in content.
				red2 := e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+"/send/m.room.redaction/r2", map[string]any{"redacts": alices})["event_id"]

				for target, by := range map[string]any{mine: red, alices: red2} {
					got := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/event/"+esc(target), nil)
					if len(got["content"].(map[string]any)) != 0 {
						t.Errorf("%s served unredacted: %v", target, got)
					}
					rb, _ := got["unsigned"].(map[string]any)["redacted_because"].(map[string]any)
					if rb == nil || rb["event_id"] != by || rb["redacts"] != target {
						t.Errorf("redacted_because of %s = %v", target, rb)
					}
				}
				// The redactions themselves carry redacts at the top level.
				ev := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/event/"+esc(red.(string)), nil)
				if ev["redacts"] != mine || ev["content"].(map[string]any)["reason"] != "oops" {
					t.Errorf("redaction event %v", ev)
				}
			})
		})
	}
}

func TestNoteRedaction(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{})
		target := e.sendMsg(alice, id, "a", "x")
		// A redaction stored without this API (as federation would) is
		// applied once noted.
		red := e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+"/send/org.example.not_a_redaction/b", map[string]any{})["event_id"].(string)
		if err := e.api.NoteRedaction(t.Context(), id, red, target); err != nil {
			t.Fatal(err)
		}
		// An event that is not a redaction of the target redacts nothing.
		if got := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/event/"+esc(target), nil); got["content"].(map[string]any)["body"] != "x" {
			t.Fatalf("a non-redaction redacted the event: %v", got)
		}
		st, err := e.svc.Append(t.Context(), rooms.RoomID(id), rooms.LocalEvent{
			Type: "m.room.redaction", Sender: alice, Content: cjson.Obj(), Redacts: rooms.EventID(target),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.api.NoteRedaction(t.Context(), id, string(st.Event.ID()), target); err != nil {
			t.Fatal(err)
		}
		if err := e.api.NoteRedaction(t.Context(), id, string(st.Event.ID()), target); err != nil {
			t.Fatalf("noting twice: %v", err)
		}
		got := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/event/"+esc(target), nil)
		if rb := got["unsigned"].(map[string]any)["redacted_because"]; rb == nil {
			t.Fatalf("noted redaction not applied: %v", got)
		}
	})
}
