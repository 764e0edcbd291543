package auth

import (
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// TestAllowedCreate covers rule 1, the create event, in every version.
func TestAllowedCreate(t *testing.T) {
	const otherID pdu.EventID = "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	type createCase struct {
		name     string
		versions []string
		content  map[string]any // merged over {"room_version", "creator" (v10)}; nil values delete
		mod      func(p *pdu.Proto)
		rule     string
		rule12   string
	}
	cases := []createCase{
		{name: "1.1 ok no prev_events"},
		{name: "1.1 prev_events", mod: func(p *pdu.Proto) { p.PrevEvents = []pdu.EventID{otherID} }, rule: "1.1", rule12: "1.1"},
		{name: "1.2 ok room_id on sender's server", versions: []string{"10", "11"}},
		{name: "1.2 room_id on another server", versions: []string{"10", "11"},
			mod: func(p *pdu.Proto) { p.RoomID = "!room:b.test" }, rule: "1.2"},
		{name: "v12 1.2 room_id present", versions: []string{"12"},
			mod: func(p *pdu.Proto) { p.RoomID = "!room:a.test" }, rule12: "1.2"},
		{name: "1.3 ok room_version absent", content: map[string]any{"room_version": nil}},
		{name: "1.3 unknown room_version", content: map[string]any{"room_version": "99"}, rule: "1.3", rule12: "1.3"},
		{name: "1.3 room_version not a string", content: map[string]any{"room_version": 11}, rule: "1.3", rule12: "1.3"},
		{name: "v10 1.4 no creator", versions: []string{"10"}, content: map[string]any{"creator": nil}, rule: "1.4"},
		{name: "v11+ ok no creator", versions: []string{"11", "12"}, content: map[string]any{"creator": nil}},
		{name: "v12 1.4 ok additional_creators", versions: []string{"12"},
			content: map[string]any{"additional_creators": []any{string(bob), string(carol)}}},
		{name: "v12 1.4 additional_creators not an array", versions: []string{"12"},
			content: map[string]any{"additional_creators": string(bob)}, rule12: "1.4"},
		{name: "v12 1.4 additional_creators entry not a string", versions: []string{"12"},
			content: map[string]any{"additional_creators": []any{1}}, rule12: "1.4"},
		{name: "v12 1.4 additional_creators entry not a user ID", versions: []string{"12"},
			content: map[string]any{"additional_creators": []any{"bob"}}, rule12: "1.4"},
		{name: "v10/v11 ok additional_creators not validated", versions: []string{"10", "11"},
			content: map[string]any{"additional_creators": "junk"}},
	}
	for _, tc := range cases {
		vers := tc.versions
		if vers == nil {
			vers = allVersions
		}
		for _, ver := range vers {
			t.Run(tc.name+"/v"+ver, func(t *testing.T) {
				v := pdu.MustVersion(ver)
				content := map[string]any{"room_version": ver}
				if !v.CreatorIsSender {
					content["creator"] = string(alice)
				}
				for k, val := range tc.content {
					if val == nil {
						delete(content, k)
					} else {
						content[k] = val
					}
				}
				p := pdu.Proto{Type: pdu.TypeCreate, StateKey: sk(""), Sender: alice, Content: cjson.MustFromGo(content), Depth: 1}
				if !v.RoomIDIsCreateHash {
					p.RoomID = "!room:a.test"
				}
				if tc.mod != nil {
					tc.mod(&p)
				}
				e, err := p.Build(v, signerFor(alice.Domain()))
				if err != nil {
					t.Fatal(err)
				}
				want := tc.rule
				if ver == "12" {
					want = tc.rule12
				}
				// Rule 1 needs no state at all.
				checkVerdict(t, e, Allowed(e, func(pdu.StateTuple) *pdu.Event { return nil }), want)
			})
		}
	}
}

// TestAllowedRoomAndFederate covers the create event's role for other
// events: v12 rule 2 (the room ID is the create event's ID), the missing
// or foreign create event in v10/v11, and m.federate (rule 3, v12: 4).
func TestAllowedRoomAndFederate(t *testing.T) {
	noFederate := func(t testing.TB, v *pdu.Version) *room {
		return newRoomWith(t, v, map[string]any{"m.federate": false})
	}
	runAuthCases(t, []authCase{
		{name: "v12 2 ok room_id is the create event's", versions: []string{"12"},
			event: func(r *room) *pdu.Event { return r.message(carol) }},
		{name: "v12 2 room_id of another create event", versions: []string{"12"},
			setup: func(r *room) { r.state[createTuple] = newBareRoom(r.t, r.v, map[string]any{"x": 1}).create },
			event: func(r *room) *pdu.Event { return r.message(carol) }, rule12: "2"},
		{name: "no create event in state",
			setup: func(r *room) { delete(r.state, createTuple) },
			event: func(r *room) *pdu.Event { return r.message(carol) }, rule: "2.4", rule12: "2"},
		{name: "2.5 create event of another room", versions: []string{"10", "11"},
			setup: func(r *room) {
				p := pdu.Proto{Type: pdu.TypeCreate, StateKey: sk(""), Sender: alice, RoomID: "!other:a.test",
					Content: r.create.Content(), Depth: 1}
				c, err := p.Build(r.v, signerFor("a.test"))
				if err != nil {
					r.t.Fatal(err)
				}
				r.state[createTuple] = c
			},
			event: func(r *room) *pdu.Event { return r.message(carol) }, rule: "2.5"},
		{name: "3 ok federated room, remote sender",
			event: func(r *room) *pdu.Event { return r.message(carol) }},
		{name: "3 ok m.federate true, remote sender",
			room:  func(t testing.TB, v *pdu.Version) *room { return newRoomWith(t, v, map[string]any{"m.federate": true}) },
			event: func(r *room) *pdu.Event { return r.message(carol) }},
		{name: "3 ok m.federate false, creator's server",
			room:  noFederate,
			setup: func(r *room) { r.setMember(dave, dave, "join", nil) },
			event: func(r *room) *pdu.Event { return r.message(dave) }},
		{name: "3 m.federate false, remote sender", room: noFederate,
			event: func(r *room) *pdu.Event { return r.message(carol) }, rule: "3", rule12: "4"},
		{name: "3 m.federate false, remote join", room: noFederate,
			event: func(r *room) *pdu.Event { return r.member(erin, erin, "join", nil) }, rule: "3", rule12: "4"},
	})
}
