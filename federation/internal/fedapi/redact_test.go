package fedapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
)

const carol = "@carol:" + hs1 // a local user without power

// redactRoom is a room of alice's (its creator) that carol and hs2's bob
// joined, with bob's events admitted from hs2's copy.
type redactRoom struct {
	e    *env
	id   string
	v    *rooms.Version
	peer *roomServer
	ev   map[string]*rooms.Event
}

func newRedactRoom(t *testing.T, e *env, version string) *redactRoom {
	t.Helper()
	ctx := context.Background()
	create, err := e.us.svc.Create(ctx, version, alice, cjson.NullValue())
	if err != nil {
		t.Fatal(err)
	}
	r := &redactRoom{e: e, id: string(create.Event.RoomID()), v: create.Event.Version(), ev: map[string]*rooms.Event{}}
	r.ev["create"] = create.Event
	aliceKey, carolKey, empty := alice, carol, ""
	r.send(t, "alice", rooms.LocalEvent{Type: "m.room.member", StateKey: &aliceKey, Sender: alice, Content: obj(t, `{"membership":"join"}`)})
	// Before room version 12 the creator has no power of her own once
	// power levels exist; from 12 on she may not be listed.
	levels := `{"users":{"` + alice + `":100}}`
	if r.v.PrivilegedCreators {
		levels = `{"users":{}}`
	}
	r.send(t, "pl", rooms.LocalEvent{Type: "m.room.power_levels", StateKey: &empty, Sender: alice, Content: obj(t, levels)})
	r.send(t, "jr", rooms.LocalEvent{Type: "m.room.join_rules", StateKey: &empty, Sender: alice, Content: obj(t, `{"join_rule":"public"}`)})
	r.send(t, "hv", rooms.LocalEvent{Type: "m.room.history_visibility", StateKey: &empty, Sender: alice,
		Content: obj(t, `{"history_visibility":"shared"}`)})
	r.send(t, "carol", rooms.LocalEvent{Type: "m.room.member", StateKey: &carolKey, Sender: carol, Content: obj(t, `{"membership":"join"}`)})

	// hs2 copies the room, bob joins with a display name and speaks.
	r.peer = newRoomServer(t, storagetest.SQLite, hs2)
	if _, err := r.peer.svc.Begin(ctx, create.Event.JSON()); err != nil {
		t.Fatal(err)
	}
	var pdus [][]byte
	for _, k := range []string{"alice", "pl", "jr", "hv", "carol"} {
		pdus = append(pdus, r.ev[k].JSON())
	}
	if _, err := r.peer.svc.AdmitMany(ctx, rooms.RoomID(r.id), pdus); err != nil {
		t.Fatal(err)
	}
	bobKey := bob
	r.remote(t, "bob", rooms.LocalEvent{Type: "m.room.member", StateKey: &bobKey, Sender: bob,
		Content: obj(t, `{"membership":"join","displayname":"Bob Secret"}`)})
	r.remote(t, "b1", rooms.LocalEvent{Type: "m.room.message", Sender: bob, Content: obj(t, `{"msgtype":"m.text","body":"bob secret"}`)})
	return r
}

func obj(t *testing.T, s string) cjson.Value {
	t.Helper()
	v, err := cjson.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// send appends a local event.
func (r *redactRoom) send(t *testing.T, name string, le rooms.LocalEvent) *rooms.Event {
	t.Helper()
	st, err := r.e.us.svc.Append(context.Background(), rooms.RoomID(r.id), le)
	if err != nil {
		t.Fatalf("append %s: %v", name, err)
	}
	r.ev[name] = st.Event
	return st.Event
}

// remote has hs2 send an event and us admit it.
func (r *redactRoom) remote(t *testing.T, name string, le rooms.LocalEvent) {
	t.Helper()
	ctx := context.Background()
	st, err := r.peer.svc.Append(ctx, rooms.RoomID(r.id), le)
	if err != nil {
		t.Fatalf("hs2 append %s: %v", name, err)
	}
	adm, err := r.e.us.svc.Admit(ctx, rooms.RoomID(r.id), st.Event.JSON())
	if err != nil || adm.Rejected != "" || adm.SoftFailed || len(adm.MissingPrevs) > 0 {
		t.Fatalf("admitting %s: %v %+v", name, err, adm)
	}
	r.ev[name] = st.Event
}

// redact has sender redact target, and notes it as the client side's
// index does for every accepted redaction.
func (r *redactRoom) redact(t *testing.T, name, sender, target string) {
	t.Helper()
	red := r.send(t, name, rooms.LocalEvent{Type: "m.room.redaction", Sender: rooms.UserID(sender), Content: cjson.Obj(),
		Redacts: r.ev[target].ID()})
	r.note(t, target, string(red.ID()))
}

// note inserts a row of the redactions table.
func (r *redactRoom) note(t *testing.T, target, redactionID string) {
	t.Helper()
	if err := r.e.us.db.Exec(context.Background(), `INSERT INTO redactions (redacts, redaction_id, room_id) VALUES (?, ?, ?)`,
		string(r.ev[target].ID()), redactionID, r.id); err != nil {
		t.Fatal(err)
	}
}

// checkServed checks a served PDU against the named event: redacted
// (exactly the room version's redaction of it) or as stored, and in
// either case with the event's ID and a signature of its sender's server
// that verifies.
func (r *redactRoom) checkServed(t *testing.T, name string, pdu []byte, wantRedacted bool) {
	t.Helper()
	ev := r.ev[name]
	want := ev.JSON()
	if wantRedacted {
		want = ev.Redacted().JSON()
		if bytes.Equal(want, ev.JSON()) {
			t.Fatalf("test bug: redacting %s changes nothing", name)
		}
	}
	if !bytes.Equal(pdu, want) {
		t.Fatalf("%s served as\n%s\nwant\n%s", name, pdu, want)
	}
	got, err := rooms.ParseEvent(pdu, r.v)
	if err != nil || got.ID() != ev.ID() {
		t.Fatalf("%s: served PDU has ID %v (%v), want %s", name, got, err, ev.ID())
	}
	// Server-Server API, "Validating hashes and signatures on received
	// events": the signature is checked on the redacted copy, and the
	// content hash tells a receiver whether it got the full event.
	server := string(ev.Sender().Domain())
	if err := signing.VerifyJSON(got.Redacted().JSON(), server, "ed25519:t", keyOf(server).Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("%s: signature of %s does not verify on the served PDU: %v", name, server, err)
	}
	if got.CheckContentHash() == wantRedacted {
		t.Fatalf("%s: content hash check %v on the served PDU", name, !wantRedacted)
	}
}

// pduOf finds the served PDU of the named event among pdus.
func (r *redactRoom) pduOf(t *testing.T, name string, pdus [][]byte) []byte {
	t.Helper()
	for _, p := range pdus {
		if ev, err := rooms.ParseEvent(p, r.v); err == nil && ev.ID() == r.ev[name].ID() {
			return p
		}
	}
	t.Fatalf("%s not served", name)
	return nil
}

func rawPDUs(in []json.RawMessage) [][]byte {
	out := make([][]byte, len(in))
	for i, p := range in {
		out[i] = p
	}
	return out
}

func TestRedactedEventsServedRedacted(t *testing.T) {
	for _, version := range []string{"10", "11", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			onBackends(t, func(t *testing.T, backend string) { testRedactedServing(t, backend, version) })
		})
	}
}

func testRedactedServing(t *testing.T, backend, version string) {
	e := newEnv(t, backend)
	r := newRedactRoom(t, e, version)
	aliceKey, empty := alice, ""
	r.send(t, "topic", rooms.LocalEvent{Type: "m.room.topic", StateKey: &empty, Sender: alice, Content: obj(t, `{"topic":"secret topic"}`)})
	r.send(t, "alice2", rooms.LocalEvent{Type: "m.room.member", StateKey: &aliceKey, Sender: alice,
		Content: obj(t, `{"membership":"join","displayname":"Alice Secret"}`)})
	r.send(t, "m1", rooms.LocalEvent{Type: "m.room.message", Sender: alice, Content: obj(t, `{"msgtype":"m.text","body":"m1 secret"}`)})
	r.send(t, "m2", rooms.LocalEvent{Type: "m.room.message", Sender: alice, Content: obj(t, `{"msgtype":"m.text","body":"m2 kept"}`)})
	r.send(t, "m3", rooms.LocalEvent{Type: "m.room.message", Sender: carol, Content: obj(t, `{"msgtype":"m.text","body":"m3 kept"}`)})

	r.redact(t, "r-m1", alice, "m1")           // same server
	r.redact(t, "r-b1", alice, "b1")           // another server's event, by a user with the redact level
	r.redact(t, "r-bob", carol, "bob")         // another server's event, by a user without it: not applied
	r.redact(t, "r-topic", alice, "topic")     // a state event
	r.redact(t, "r-alice2", alice, "alice2")   // a member event in later events' auth chains
	r.note(t, "m2", string(r.ev["r-m1"].ID())) // a row whose redaction names another event: ignored
	r.send(t, "last", rooms.LocalEvent{Type: "m.room.message", Sender: alice, Content: obj(t, `{"msgtype":"m.text","body":"last"}`)})

	room := url.PathEscape(r.id)
	const fed = "/_matrix/federation/v1"

	t.Run("event", func(t *testing.T) {
		for name, redacted := range map[string]bool{
			"m1": true, "b1": true, "topic": true, "alice2": true, "bob": false, "m2": false, "m3": false, "r-m1": false,
		} {
			var body transactionBody
			st, b := e.do("GET", hs2, fed+"/event/"+url.PathEscape(string(r.ev[name].ID())), "")
			decode(t, st, b, &body)
			if len(body.PDUs) != 1 {
				t.Fatalf("%s: %d PDUs", name, len(body.PDUs))
			}
			r.checkServed(t, name, body.PDUs[0], redacted)
		}
	})
	t.Run("state", func(t *testing.T) {
		var body struct {
			AuthChain []json.RawMessage `json:"auth_chain"`
			PDUs      []json.RawMessage `json:"pdus"`
		}
		st, b := e.do("GET", hs2, fed+"/state/"+room+"?event_id="+url.QueryEscape(string(r.ev["last"].ID())), "")
		decode(t, st, b, &body)
		pdus := rawPDUs(body.PDUs)
		r.checkServed(t, "topic", r.pduOf(t, "topic", pdus), true)
		r.checkServed(t, "alice2", r.pduOf(t, "alice2", pdus), true)
		r.checkServed(t, "bob", r.pduOf(t, "bob", pdus), false)
		r.checkServed(t, "jr", r.pduOf(t, "jr", pdus), false)
	})
	t.Run("event_auth", func(t *testing.T) {
		var body struct {
			AuthChain []json.RawMessage `json:"auth_chain"`
		}
		st, b := e.do("GET", hs2, fed+"/event_auth/"+room+"/"+url.PathEscape(string(r.ev["last"].ID())), "")
		decode(t, st, b, &body)
		pdus := rawPDUs(body.AuthChain)
		r.checkServed(t, "alice2", r.pduOf(t, "alice2", pdus), true)
		r.checkServed(t, "pl", r.pduOf(t, "pl", pdus), false)
	})
	t.Run("backfill", func(t *testing.T) {
		var body transactionBody
		st, b := e.do("GET", hs2, fed+"/backfill/"+room+"?limit=100&v="+url.QueryEscape(string(r.ev["last"].ID())), "")
		decode(t, st, b, &body)
		pdus := rawPDUs(body.PDUs)
		for name, redacted := range map[string]bool{"m1": true, "b1": true, "bob": false, "m2": false, "last": false} {
			r.checkServed(t, name, r.pduOf(t, name, pdus), redacted)
		}
	})
	t.Run("get_missing_events", func(t *testing.T) {
		var body struct {
			Events []json.RawMessage `json:"events"`
		}
		req := `{"limit":100,"min_depth":0,"earliest_events":[],"latest_events":["` + string(r.ev["last"].ID()) + `"]}`
		st, b := e.do("POST", hs2, fed+"/get_missing_events/"+room, req)
		decode(t, st, b, &body)
		pdus := rawPDUs(body.Events)
		for name, redacted := range map[string]bool{"m1": true, "b1": true, "topic": true, "m3": false} {
			r.checkServed(t, name, r.pduOf(t, name, pdus), redacted)
		}
	})
}
