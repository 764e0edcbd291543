package roomapi

import (
	"encoding/json"
	"testing"
	"time"
)

func TestTyping(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"preset": "public_chat"})
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/join", nil)
		e.hub.SetMember(id, bob, true)
		sub := e.hub.Subscribe(bob)
		defer sub.Close()
		woken := func() bool {
			select {
			case <-sub.C():
				return true
			default:
				return false
			}
		}
		typing := func(user string, body any) resp {
			return e.as(user, "PUT", v3+"/rooms/"+esc(id)+"/typing/"+esc(user), body)
		}

		p0 := e.api.TypingPos()
		if r := typing(alice, map[string]any{"typing": true, "timeout": 10000}); r.status != 200 {
			t.Fatalf("typing: %d %s", r.status, r.body)
		}
		if !woken() {
			t.Fatal("a typing change must wake the room")
		}
		if got := e.api.Typing(id); !equal(got, []string{alice}) {
			t.Fatalf("typing %v", got)
		}
		p1 := e.api.TypingPos()
		if p1 <= p0 || e.api.TypingRoomPos(id) != p1 {
			t.Fatalf("positions %d -> %d, room %d", p0, p1, e.api.TypingRoomPos(id))
		}
		typing(bob, map[string]any{"typing": true})
		if got := e.api.Typing(id); !equal(got, []string{alice, bob}) {
			t.Fatalf("typing %v", got)
		}
		typing(bob, map[string]any{"typing": false})
		woken()

		// Alice's 10 s expire with the injected clock.
		e.clock.advance(9 * time.Second)
		if got := e.api.Typing(id); !equal(got, []string{alice}) {
			t.Fatalf("before expiry: %v", got)
		}
		p2 := e.api.TypingPos()
		e.clock.advance(2 * time.Second)
		if got := e.api.Typing(id); len(got) != 0 {
			t.Fatalf("after expiry: %v", got)
		}
		if p3 := e.api.TypingPos(); p3 <= p2 {
			t.Fatalf("expiry must move the typing position: %d -> %d", p2, p3)
		}
		if !woken() {
			t.Fatal("expiry must wake the room")
		}

		cases := []struct {
			name, user, path string
			body             any
			status           int
			code             string
		}{
			{"someone else", alice, "/typing/" + esc(bob), map[string]any{"typing": true}, 403, "M_FORBIDDEN"},
			{"not joined", carol, "/typing/" + esc(carol), map[string]any{"typing": true}, 403, "M_FORBIDDEN"},
			{"missing typing", alice, "/typing/" + esc(alice), map[string]any{}, 400, "M_MISSING_PARAM"},
			{"wrong type", alice, "/typing/" + esc(alice), map[string]any{"typing": "yes"}, 400, "M_BAD_JSON"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { e.fails(c.user, "PUT", v3+"/rooms/"+esc(id)+c.path, c.body, c.status, c.code) })
		}
	})
}

// receiptContent decodes the m.receipt event of a room.
func receiptContent(t *testing.T, raw json.RawMessage) map[string]map[string]map[string]map[string]any {
	t.Helper()
	var ev struct {
		Type    string                                          `json:"type"`
		Content map[string]map[string]map[string]map[string]any `json:"content"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil || ev.Type != "m.receipt" {
		t.Fatalf("receipt event %s: %v", raw, err)
	}
	return ev.Content
}

func TestReceipts(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"preset": "public_chat"})
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/join", nil)
		m1 := e.sendMsg(alice, id, "1", "one")
		m2 := e.sendMsg(alice, id, "2", "two")
		receipt := func(user, typ, event string, body any) resp {
			return e.as(user, "POST", v3+"/rooms/"+esc(id)+"/receipt/"+typ+"/"+esc(event), body)
		}
		start := e.db.AuxPos()
		for _, r := range []resp{
			receipt(bob, "m.read", m2, nil),
			receipt(bob, "m.read", m1, map[string]any{"thread_id": "main"}),
			receipt(bob, "m.read.private", m2, nil),
		} {
			if r.status != 200 {
				t.Fatalf("receipt: %d %s", r.status, r.body)
			}
		}
		// Going back is ignored.
		receipt(bob, "m.read", m1, nil)

		for _, c := range []struct {
			viewer  string
			private bool
		}{{alice, false}, {bob, true}} {
			got, err := e.api.ReceiptsSince(t.Context(), c.viewer, []string{id}, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			content := receiptContent(t, got[id])
			if r := content[m2]["m.read"][bob]; r == nil || r["ts"] == nil || r["thread_id"] != nil {
				t.Fatalf("%s sees m.read %v", c.viewer, content)
			}
			if r := content[m1]["m.read"][bob]; r == nil || r["thread_id"] != "main" {
				t.Fatalf("%s sees threaded receipt %v", c.viewer, content)
			}
			if _, has := content[m2]["m.read.private"]; has != c.private {
				t.Fatalf("%s sees private receipt: %v, want %v", c.viewer, has, c.private)
			}
		}
		// Incremental: nothing new since the current position.
		now := e.db.AuxPos()
		if now <= start {
			t.Fatalf("receipts did not move the aux stream: %d -> %d", start, now)
		}
		if got, _ := e.api.ReceiptsSince(t.Context(), alice, []string{id}, now, 0); len(got) != 0 {
			t.Fatalf("receipts since now: %s", got[id])
		}
		receipt(alice, "m.read", m2, nil)
		got, _ := e.api.ReceiptsSince(t.Context(), alice, []string{id}, now, e.db.AuxPos())
		if c := receiptContent(t, got[id]); len(c) != 1 || c[m2]["m.read"][alice] == nil || c[m2]["m.read"][bob] != nil {
			t.Fatalf("delta %v, want only alice's new receipt", c)
		}

		// Read markers: fully read goes to room account data.
		if r := e.as(bob, "POST", v3+"/rooms/"+esc(id)+"/read_markers", map[string]any{"m.fully_read": m1, "m.read": m2}); r.status != 200 {
			t.Fatalf("read_markers: %d %s", r.status, r.body)
		}
		if got := e.data.get(bob + " " + id + " m.fully_read"); got != `{"event_id":"`+m1+`"}` {
			t.Fatalf("m.fully_read account data %q", got)
		}
		if r := receipt(bob, "m.fully_read", m2, nil); r.status != 200 {
			t.Fatalf("receipt m.fully_read: %d %s", r.status, r.body)
		}
		if got := e.data.get(bob + " " + id + " m.fully_read"); got != `{"event_id":"`+m2+`"}` {
			t.Fatalf("m.fully_read via /receipt %q", got)
		}

		cases := []struct {
			name, user, typ, event string
			body                   any
			status                 int
			code                   string
		}{
			{"bad type", bob, "m.seen", m1, nil, 400, "M_INVALID_PARAM"},
			{"empty thread", bob, "m.read", m1, map[string]any{"thread_id": ""}, 400, "M_INVALID_PARAM"},
			{"thread not a string", bob, "m.read", m1, map[string]any{"thread_id": 5}, 400, "M_INVALID_PARAM"},
			{"thread on fully_read", bob, "m.fully_read", m1, map[string]any{"thread_id": "main"}, 400, "M_INVALID_PARAM"},
			{"unknown event", bob, "m.read", "$nope", nil, 404, "M_NOT_FOUND"},
			{"not joined", carol, "m.read", m1, nil, 403, "M_FORBIDDEN"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e.fails(c.user, "POST", v3+"/rooms/"+esc(id)+"/receipt/"+c.typ+"/"+esc(c.event), c.body, c.status, c.code)
			})
		}
		e.fails(bob, "POST", v3+"/rooms/"+esc(id)+"/read_markers", map[string]any{"m.fully_read": "$nope"}, 404, "M_NOT_FOUND")
		e.fails(bob, "POST", v3+"/rooms/"+esc(id)+"/read_markers", map[string]any{"m.read": 5}, 400, "M_BAD_JSON")
	})
}

// TestTypingTimer checks that an expiry wakes waiting /sync requests by
// itself, with nobody reading the typing state.
func TestTypingTimer(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{})
		e.hub.SetMember(id, alice, true)
		e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+"/typing/"+esc(alice), map[string]any{"typing": true, "timeout": 5})
		sub := e.hub.Subscribe(alice)
		defer sub.Close()
		e.clock.advance(10 * time.Millisecond)
		select {
		case <-sub.C():
		case <-time.After(5 * time.Second):
			t.Fatal("expiry did not wake the room")
		}
		e.api.typing.mu.Lock()
		n := len(e.api.typing.rooms)
		e.api.typing.mu.Unlock()
		if n != 0 {
			t.Fatal("the timer woke the room without expiring the entry")
		}
		if err := e.api.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
