package auth

import (
	"errors"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// FuzzAllowed feeds arbitrary content to the rules as a member, power
// levels, create or other event from a remote sender: content is what a
// remote server controls. The verdict must be nil or a *NotAllowedError,
// never a panic.
func FuzzAllowed(f *testing.F) {
	f.Add("12", pdu.TypeMember, string(dave), []byte(`{"membership":"join","join_authorised_via_users_server":"@bob:b.test"}`))
	f.Add("10", pdu.TypeMember, string(dave), []byte(`{"membership":"invite","third_party_invite":{"signed":{"mxid":"@dave:a.test","token":"t","signatures":{"x":{"ed25519:0":"AAAA"}}}}}`))
	f.Add("11", pdu.TypePowerLevels, "", []byte(`{"users":{"@bob:b.test":100},"events":{"a":1},"notifications":{"room":"x"}}`))
	f.Add("12", pdu.TypeCreate, "", []byte(`{"additional_creators":["@a:b",1]}`))
	f.Add("10", "m.room.message", "", []byte(`{}`))
	f.Fuzz(func(t *testing.T, ver, typ, stateKey string, content []byte) {
		v, ok := pdu.LookupVersion(ver)
		if !ok {
			return
		}
		c, err := cjson.Parse(content)
		if err != nil || c.Kind() != cjson.Object {
			return
		}
		r := newRoomWith(t, v, nil)
		r.setMember(bob, erin, "ban", nil)
		r.setState(pdu.TypeThirdPartyInvite, "t", bob, map[string]any{"public_key": publicKeyB64(identityKey)})
		p := pdu.Proto{Type: typ, StateKey: &stateKey, Sender: dave, RoomID: r.id, Content: c,
			PrevEvents: []pdu.EventID{r.last}, Depth: 10}
		if typ == "m.room.message" {
			p.StateKey = nil
		}
		e, err := p.Build(v, signerFor(dave.Domain()))
		if err != nil {
			return // not a valid event; pdu drops it before the rules
		}
		var na *NotAllowedError
		if err := Allowed(e, r.get); err != nil && !errors.As(err, &na) {
			t.Fatalf("Allowed: %v", err)
		}
		SelectAuthTuples(v, e.Type(), e.StateKey(), e.Sender(), e.Content())
		if e.Type() == pdu.TypePowerLevels && e.StateKeyIs("") {
			// Read leniently as accepted state, and used for a check.
			if _, err := ParsePowerLevels(e, r.create); err != nil {
				t.Fatal(err)
			}
			r.put(e)
			SenderPowerLevel(r.message(carol), r.get)
			_ = Allowed(r.member(bob, carol, "ban", nil), r.get)
		}
	})
}
