package roomapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// graphPath is the graph endpoint of a room.
func graphPath(roomID, query string) string {
	return "/_plexus/client/v1/rooms/" + esc(roomID) + "/graph" + query
}

// graphOf reads a graph page as user.
func (e *env) graphOf(user, roomID, query string) graphResponse {
	e.t.Helper()
	r := e.as(user, "GET", graphPath(roomID, query), nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("graph %s%s as %s: %d %s", roomID, query, user, r.status, r.body)
	}
	var raw struct {
		Events []map[string]json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range raw.Events {
		if _, ok := ev["content"]; ok {
			e.t.Fatalf("graph event carries content: %s", r.body)
		}
	}
	var g graphResponse
	if err := json.Unmarshal(r.body, &g); err != nil {
		e.t.Fatal(err)
	}
	return g
}

// forge has the room service sign a membership event of a local user
// with the prev and auth events the test chooses, as the joining side of
// make_join does (rooms.Service.Complete), and admits it as if it had
// come over federation: the way to put a fork, or an event the auth
// rules refuse, into the graph of a one-server test.
//
// The auth events are those of alice's join (the template's: room
// versions differ in which they list, v12 never the create event),
// without alice's membership if another user sends it and without the
// join rules unless it is a join, and with with.
func (e *env) forge(roomID, sender, membership string, prev []string, with string) *rooms.Admitted {
	e.t.Helper()
	ctx := context.Background()
	self := alice
	proto, version, err := e.svc.Template(ctx, rooms.RoomID(roomID), rooms.LocalEvent{
		Type: "m.room.member", StateKey: &self, Sender: alice,
		Content: cjson.Obj(cjson.Member{Key: "membership", Value: cjson.Str("join")}),
	})
	if err != nil {
		e.t.Fatalf("template: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(proto, &m); err != nil {
		e.t.Fatal(err)
	}
	m["sender"], m["state_key"] = sender, sender
	m["content"] = map[string]any{"membership": membership}
	cur := e.current(roomID)
	var without []any
	if sender != alice {
		without = append(without, cur[storage.StateKey{Type: "m.room.member", StateKey: alice}])
	}
	if membership != "join" { // auth events selection: join_rules only for joins and invites
		without = append(without, cur[storage.StateKey{Type: "m.room.join_rules"}])
	}
	var authEvents []string
	for _, id := range m["auth_events"].([]any) {
		if !slices.Contains(without, id) {
			authEvents = append(authEvents, id.(string))
		}
	}
	if with != "" {
		authEvents = append(authEvents, with)
	}
	m["prev_events"], m["auth_events"] = prev, authEvents
	b, _ := json.Marshal(m)
	ev, err := e.svc.Complete(version, b)
	if err != nil {
		e.t.Fatalf("complete: %v", err)
	}
	adm, err := e.svc.Admit(ctx, rooms.RoomID(roomID), ev.JSON())
	if err != nil {
		e.t.Fatalf("admit: %v", err)
	}
	return adm
}

// current is the room's current state.
func (e *env) current(roomID string) storage.StateMap {
	e.t.Helper()
	info, err := e.db.Room(context.Background(), roomID)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.Current
}

func TestGraph(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		roomID := e.createRoom(alice, map[string]any{"preset": "private_chat"})
		e.ok(alice, "POST", v3+"/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": bob})
		e.ok(bob, "POST", v3+"/rooms/"+esc(roomID)+"/join", nil)
		x := e.sendMsg(alice, roomID, "x", "before the fork")
		m1 := e.sendMsg(alice, roomID, "m1", "one side")
		cur := e.current(roomID)
		bobJoin := cur[storage.StateKey{Type: "m.room.member", StateKey: bob}]

		// A fork: alice's profile "join" cites x, as m1 does.
		fork := e.forge(roomID, alice, "join", []string{x}, "")
		if fork.Rejected != "" || fork.SoftFailed || len(fork.MissingPrevs) > 0 {
			t.Fatalf("fork not accepted: rejected %q soft-failed %v", fork.Rejected, fork.SoftFailed)
		}
		forkID := string(fork.Event.ID())
		// The next event merges the two branches.
		merge := e.sendMsg(alice, roomID, "m2", "merged")
		// Rejected: carol joins an invite-only room uninvited (auth rules,
		// m.room.member, join: "join_rule is invite ... reject").
		rej := e.forge(roomID, carol, "join", []string{merge}, "")
		if rej.Rejected == "" {
			t.Fatalf("uninvited join not rejected: soft-failed %v", rej.SoftFailed)
		}
		// Soft-failed: bob is banned, then "leaves" from before the ban:
		// allowed where it sits, not by the current state (server-server
		// API, "Soft failure").
		e.ok(alice, "POST", v3+"/rooms/"+esc(roomID)+"/ban", map[string]any{"user_id": bob})
		banID := e.current(roomID)[storage.StateKey{Type: "m.room.member", StateKey: bob}]
		soft := e.forge(roomID, bob, "leave", []string{merge}, bobJoin)
		if soft.Rejected != "" || !soft.SoftFailed {
			t.Fatalf("evading leave not soft-failed: rejected %q", soft.Rejected)
		}

		g := e.graphOf(alice, roomID, "")
		byID := map[string]graphEvent{}
		for _, ev := range g.Events {
			byID[ev.EventID] = ev
		}
		if len(g.Events) < 12 || g.Next != "" {
			t.Fatalf("graph has %d events, next %q; want the whole room", len(g.Events), g.Next)
		}
		if !slices.Equal(byID[m1].PrevEvents, []string{x}) || !slices.Equal(byID[forkID].PrevEvents, []string{x}) {
			t.Errorf("fork: m1 %v, fork %v; want both on %s", byID[m1].PrevEvents, byID[forkID].PrevEvents, x)
		}
		if p := byID[merge].PrevEvents; len(p) != 2 || !slices.Contains(p, m1) || !slices.Contains(p, forkID) {
			t.Errorf("merge prev_events %v, want %s and %s", p, m1, forkID)
		}
		if ev := byID[string(rej.Event.ID())]; ev.Status != graphRejected || ev.RejectedReason == "" || ev.Sender != carol {
			t.Errorf("rejected event shown as %+v", ev)
		}
		if ev := byID[string(soft.Event.ID())]; ev.Status != graphSoftFailed || ev.RejectedReason != "" {
			t.Errorf("soft-failed event shown as %+v", ev)
		}
		if ev := byID[merge]; ev.Status != graphAccepted || ev.Type != "m.room.message" || ev.StateKey != nil || ev.Depth <= byID[m1].Depth || len(ev.AuthEvents) == 0 {
			t.Errorf("message shown as %+v", ev)
		}
		if ev := byID[forkID]; ev.StateKey == nil || *ev.StateKey != alice {
			t.Errorf("state event shown as %+v", ev)
		}
		if !slices.Equal(g.ForwardExtremities, []string{banID}) {
			t.Errorf("forward extremities %v, want the ban %s", g.ForwardExtremities, banID)
		}
		for i := 1; i < len(g.Events); i++ {
			if g.Events[i].EventID == g.Events[i-1].EventID {
				t.Fatalf("event %s twice", g.Events[i].EventID)
			}
		}

		// Pages: newest first, then older ones, until the token runs out.
		var paged []string
		query := "?limit=5"
		for range 10 {
			p := e.graphOf(alice, roomID, query)
			if len(p.Events) > 5 {
				t.Fatalf("page of %d events, limit 5", len(p.Events))
			}
			for _, ev := range p.Events {
				paged = append(paged, ev.EventID)
			}
			if p.Next == "" {
				break
			}
			query = "?limit=5&from=" + p.Next
		}
		var all []string
		for _, ev := range g.Events {
			all = append(all, ev.EventID)
		}
		if !slices.Equal(paged, all) {
			t.Errorf("pages %v, want %v", paged, all)
		}

		// The banned bob sees the room up to his ban (history visibility
		// "shared": he was a member): not what came after it.
		gb := e.graphOf(bob, roomID, "")
		for _, ev := range gb.Events {
			if ev.EventID == string(soft.Event.ID()) {
				t.Errorf("bob sees the event after his ban")
			}
		}
		if !slices.ContainsFunc(gb.Events, func(ev graphEvent) bool { return ev.EventID == merge }) {
			t.Errorf("bob does not see the history he was there for")
		}

		// Someone who was never in the room is refused, as by /messages.
		e.fails(carol, "GET", graphPath(roomID, ""), nil, http.StatusForbidden, "M_FORBIDDEN")
		e.fails(carol, "GET", graphPath("!nowhere:hs1", ""), nil, http.StatusForbidden, "M_FORBIDDEN")
		e.fails(alice, "GET", graphPath(roomID, "?from=nonsense"), nil, http.StatusBadRequest, "M_INVALID_PARAM")
		e.fails(alice, "GET", graphPath(roomID, "?limit=0"), nil, http.StatusBadRequest, "M_INVALID_PARAM")
		if r := e.call("", "GET", graphPath(roomID, ""), nil); r.status != http.StatusUnauthorized {
			t.Errorf("no token: %d %s", r.status, r.body)
		}
	})
}

// TestGraphHistoryVisibility: with history_visibility "joined", a user
// who joins later sees the graph from their join on, not what was said
// before.
func TestGraphHistoryVisibility(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		roomID := e.createRoom(alice, map[string]any{"preset": "public_chat",
			"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}}}})
		early := e.sendMsg(alice, roomID, "a", "before carol")
		e.ok(carol, "POST", v3+"/rooms/"+esc(roomID)+"/join", nil)
		late := e.sendMsg(alice, roomID, "b", "after carol")
		ids := func(g graphResponse) []string {
			var out []string
			for _, ev := range g.Events {
				out = append(out, ev.EventID)
			}
			return out
		}
		got := ids(e.graphOf(carol, roomID, ""))
		if slices.Contains(got, early) || !slices.Contains(got, late) {
			t.Errorf("carol sees %v: want %s and not %s", got, late, early)
		}
		if all := ids(e.graphOf(alice, roomID, "")); !slices.Contains(all, early) || len(all) <= len(got) {
			t.Errorf("alice sees %v", all)
		}
		// Once carol leaves, the room's newest events are not hers to
		// see: not as nodes, nor as forward extremities.
		e.ok(carol, "POST", v3+"/rooms/"+esc(roomID)+"/leave", nil)
		leave := e.current(roomID)[storage.StateKey{Type: "m.room.member", StateKey: carol}]
		if g := e.graphOf(carol, roomID, ""); !slices.Equal(g.ForwardExtremities, []string{leave}) {
			t.Errorf("carol's extremities after her leave: %v, want her leave %s", g.ForwardExtremities, leave)
		}
		after := e.sendMsg(alice, roomID, "c", "after carol left")
		g := e.graphOf(carol, roomID, "")
		if slices.Contains(ids(g), after) || len(g.ForwardExtremities) != 0 {
			t.Errorf("carol, gone, sees events %v and extremities %v; want neither to hold %s", ids(g), g.ForwardExtremities, after)
		}
		if g := e.graphOf(alice, roomID, ""); !slices.Equal(g.ForwardExtremities, []string{after}) {
			t.Errorf("alice's extremities %v, want %s", g.ForwardExtremities, after)
		}
	})
}
