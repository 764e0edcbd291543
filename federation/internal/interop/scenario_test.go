package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// Outcomes the scenario expects Plexus to record for an event.
const (
	accepted   = "accepted"
	rejected   = "rejected"
	softFailed = "soft-failed"
	// redactedOnReceipt: accepted, but stored redacted because its
	// content hash did not match (server-server API, "Checks performed
	// on receipt of a PDU", step 3).
	redactedOnReceipt = "redacted-on-receipt"
)

// scenario is one room grown on hs1 (Plexus) with a second Plexus server,
// hs2, and a foreign server driven by gomatrixserverlib.
type scenario struct {
	w       *world
	version string
	gv      gmsl.IRoomVersion
	room    rooms.RoomID
	hs1     *plexusServer
	hs2     *plexusServer
	foreign *foreignServer
	// want is the outcome the scenario expects on hs1 for each event it
	// made, by event ID; redacted names the events a redaction targets.
	want     map[string]string
	redacted []string
	// refused counts local events Append refused (never stored).
	refused int
}

const (
	alice   = rooms.UserID("@alice:hs1")
	bob     = rooms.UserID("@bob:hs1")
	carol   = rooms.UserID("@carol:hs1")
	dave    = rooms.UserID("@dave:hs2")
	eve     = rooms.UserID("@eve:gmsl.example")
	mallory = rooms.UserID("@mallory:gmsl.example")
)

func str(s string) *string { return &s }

func content(t testing.TB, x any) cjson.Value {
	t.Helper()
	v, err := cjson.FromGo(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func text(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }

func member(m string) map[string]any { return map[string]any{"membership": m} }

// send appends a local event that must be allowed.
func (s *scenario) send(t testing.TB, p *plexusServer, sender rooms.UserID, typ string, sk *string, c any) *rooms.Event {
	t.Helper()
	st, err := p.svc.Append(context.Background(), s.room, rooms.LocalEvent{Type: typ, StateKey: sk, Sender: sender, Content: content(t, c)})
	if err != nil {
		t.Fatalf("%s: append %s as %s: %v", p.name, typ, sender, err)
	}
	if p == s.hs1 {
		s.want[string(st.Event.ID())] = accepted
	}
	return st.Event
}

// redact appends a local redaction of target.
func (s *scenario) redact(t testing.TB, p *plexusServer, sender rooms.UserID, target rooms.EventID) *rooms.Event {
	t.Helper()
	c := map[string]any{"reason": "interop"}
	if s.version != "10" {
		c["redacts"] = string(target) // rooms v11: redacts moved into content
	}
	st, err := p.svc.Append(context.Background(), s.room, rooms.LocalEvent{Type: "m.room.redaction", Sender: sender, Content: content(t, c), Redacts: target})
	if err != nil {
		t.Fatalf("%s: redact %s as %s: %v", p.name, target, sender, err)
	}
	s.want[string(st.Event.ID())] = accepted
	s.redacted = append(s.redacted, string(target))
	return st.Event
}

// refuse appends a local event the auth rules must refuse; nothing is
// stored.
func (s *scenario) refuse(t testing.TB, p *plexusServer, sender rooms.UserID, typ string, sk *string, c any) {
	t.Helper()
	_, err := p.svc.Append(context.Background(), s.room, rooms.LocalEvent{Type: typ, StateKey: sk, Sender: sender, Content: content(t, c)})
	var na *rooms.NotAllowedError
	if !errors.As(err, &na) {
		t.Fatalf("%s: append %s as %s: got %v, want a NotAllowedError", p.name, typ, sender, err)
	}
	s.refused++
}

// admit delivers a remote event to p, recording the current state just
// before (for the soft-fail check) and, on hs1, the expected outcome.
func (s *scenario) admit(t testing.TB, p *plexusServer, data []byte, want string) *rooms.Admitted {
	t.Helper()
	a, err := s.admitErr(p, data, want)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	return a
}

// admitErr is admit for callers that cannot fail the test, such as HTTP
// handlers.
func (s *scenario) admitErr(p *plexusServer, data []byte, want string) (*rooms.Admitted, error) {
	ctx := context.Background()
	// mu also serialises admissions, so that the snapshot is the state
	// the event meets.
	p.mu.Lock()
	defer p.mu.Unlock()
	info, err := p.store.Room(ctx, string(s.room))
	if err != nil {
		return nil, fmt.Errorf("room: %w", err)
	}
	a, err := p.svc.Admit(ctx, s.room, data)
	if err != nil {
		return nil, fmt.Errorf("admit %s: %w", data, err)
	}
	p.currentAtAdmit[string(a.Event.ID())] = info.Current
	if p == s.hs1 && want != "" {
		s.want[string(a.Event.ID())] = want
	}
	return a, nil
}

// extremities returns p's forward extremities of the room.
func (s *scenario) extremities(t testing.TB, p *plexusServer) []string {
	t.Helper()
	info, err := p.store.Room(context.Background(), string(s.room))
	if err != nil {
		t.Fatal(err)
	}
	return info.Extremities
}

// foreignEvent describes an event the foreign server builds.
type foreignEvent struct {
	sender   rooms.UserID
	typ      string
	stateKey *string
	content  any
	// prev defaults to hs1's forward extremities.
	prev []string
	// auth, if set, replaces the auth events gomatrixserverlib selects
	// from the state at prev.
	auth []string
	// redacts is the target of a redaction.
	redacts string
}

// build has gomatrixserverlib build and sign an event as a foreign server
// would: prev events and depth from what hs1 stored, auth events selected
// by gomatrixserverlib from the state at those prev events.
func (s *scenario) build(t testing.TB, fe foreignEvent) gmsl.PDU {
	t.Helper()
	ctx := context.Background()
	prev := fe.prev
	if prev == nil {
		prev = s.extremities(t, s.hs1)
	}
	recs, err := s.hs1.store.Events(ctx, prev)
	if err != nil {
		t.Fatal(err)
	}
	var depth int64
	for _, id := range prev {
		r, ok := recs[id]
		if !ok {
			t.Fatalf("prev event %s not stored on hs1", id)
		}
		depth = max(depth, r.Depth+1)
	}
	c, err := json.Marshal(fe.content)
	if err != nil {
		t.Fatal(err)
	}
	pe := gmsl.ProtoEvent{
		SenderID:   string(fe.sender),
		RoomID:     string(s.room),
		Type:       fe.typ,
		StateKey:   fe.stateKey,
		PrevEvents: prev,
		Depth:      depth,
		Content:    c,
		Redacts:    fe.redacts,
	}
	if fe.auth != nil {
		pe.AuthEvents = fe.auth
	} else {
		var state storage.StateMap
		if len(prev) == 1 {
			state, err = s.hs1.store.StateAfter(ctx, prev[0])
		} else {
			var info *storage.RoomInfo
			info, err = s.hs1.store.Room(ctx, string(s.room))
			if info != nil {
				state = info.Current
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		ae := s.gmslState(t, s.hs1.store, state)
		needed, err := gmsl.StateNeededForProtoEvent(&pe)
		if err != nil {
			t.Fatal(err)
		}
		refs, err := needed.AuthEventReferences(ae)
		if err != nil {
			t.Fatal(err)
		}
		pe.AuthEvents = refs
	}
	ev, err := s.gv.NewEventBuilderFromProtoEvent(&pe).Build(s.w.clock.now(), s.foreign.name, s.foreign.keyID, s.foreign.priv)
	if err != nil {
		t.Fatalf("gomatrixserverlib build %s: %v", fe.typ, err)
	}
	return ev
}

// gmslState is gomatrixserverlib's view of a state map stored by Plexus.
func (s *scenario) gmslState(t testing.TB, store *storage.DB, state storage.StateMap) *gmsl.AuthEvents {
	t.Helper()
	ids := make([]string, 0, len(state))
	for _, id := range state {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	recs, err := store.Events(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	ae := gmsl.NewAuthEvents(nil)
	for _, id := range ids {
		r, ok := recs[id]
		if !ok {
			t.Fatalf("state event %s not stored", id)
		}
		p, err := s.gv.NewEventFromUntrustedJSON(r.JSON)
		if err != nil {
			t.Fatalf("gomatrixserverlib cannot parse state event %s: %v", id, err)
		}
		if err := ae.AddEvent(p); err != nil {
			t.Fatal(err)
		}
	}
	return &ae
}

// buildScenario grows the room: create, power levels, join rules, members
// of three servers joining, messages, state changes, redactions, two
// forks and their merges, bans, a soft-failed event, rejected events and
// an event with a bad content hash.
func buildScenario(t *testing.T, w *world, version string) *scenario {
	t.Helper()
	ctx := context.Background()
	s := &scenario{
		w: w, version: version, gv: gmsl.MustGetRoomVersion(gmsl.RoomVersion(version)),
		hs1: w.plexus(t, "hs1"), hs2: w.plexus(t, "hs2"), foreign: w.foreign("gmsl.example"),
		want: map[string]string{},
	}
	create, err := s.hs1.svc.Create(ctx, version, alice, content(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	s.room = create.Event.RoomID()
	s.want[string(create.Event.ID())] = accepted

	setup := []*rooms.Event{
		create.Event,
		s.send(t, s.hs1, alice, "m.room.member", str(string(alice)), member("join")),
		s.send(t, s.hs1, alice, "m.room.power_levels", str(""), map[string]any{
			"users": map[string]any{string(alice): 100}, "users_default": 0,
			"events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
			"events": map[string]any{"m.room.name": 50, "m.room.power_levels": 100},
		}),
		s.send(t, s.hs1, alice, "m.room.join_rules", str(""), map[string]any{"join_rule": "public"}),
		s.send(t, s.hs1, alice, "m.room.history_visibility", str(""), map[string]any{"history_visibility": "shared"}),
		s.send(t, s.hs1, bob, "m.room.member", str(string(bob)), member("join")),
		s.send(t, s.hs1, carol, "m.room.member", str(string(carol)), member("join")),
	}

	// hs2 learns the room and Dave joins from there.
	if _, err := s.hs2.svc.Begin(ctx, create.Event.JSON()); err != nil {
		t.Fatalf("hs2: begin: %v", err)
	}
	for _, e := range setup[1:] {
		s.admit(t, s.hs2, e.JSON(), "")
	}
	daveJoin := s.send(t, s.hs2, dave, "m.room.member", str(string(dave)), member("join"))
	s.admit(t, s.hs1, daveJoin.JSON(), accepted)

	// Eve joins from the foreign server.
	eveJoin := s.build(t, foreignEvent{sender: eve, typ: "m.room.member", stateKey: str(string(eve)), content: member("join")})
	s.admit(t, s.hs1, eveJoin.JSON(), accepted)

	// Messages, and state changes.
	s.send(t, s.hs1, alice, "m.room.message", nil, text("hello"))
	secret := s.send(t, s.hs1, bob, "m.room.message", nil, text("a secret"))
	eveMsg := s.build(t, foreignEvent{sender: eve, typ: "m.room.message", content: text("hi from gomatrixserverlib")})
	s.admit(t, s.hs1, eveMsg.JSON(), accepted)
	s.send(t, s.hs1, alice, "m.room.topic", str(""), map[string]any{"topic": "interop"})
	s.send(t, s.hs1, alice, "m.room.name", str(""), map[string]any{"name": "Interop"})
	s.send(t, s.hs1, alice, "m.room.power_levels", str(""), map[string]any{
		"users": map[string]any{string(alice): 100, string(bob): 50}, "users_default": 0,
		"events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
		"events": map[string]any{"m.room.name": 50, "m.room.power_levels": 100},
	})
	s.send(t, s.hs1, bob, "m.room.member", str(string(bob)), map[string]any{"membership": "join", "displayname": "Bob"})

	// Redactions: a moderator's of someone else's message, and the
	// foreign user's of her own.
	s.redact(t, s.hs1, alice, secret.ID())
	eveRedact := foreignEvent{sender: eve, typ: "m.room.redaction", content: map[string]any{}}
	if version == "10" {
		eveRedact.redacts = eveMsg.EventID()
	} else {
		eveRedact.content = map[string]any{"redacts": eveMsg.EventID()}
	}
	s.admit(t, s.hs1, s.build(t, eveRedact).JSON(), accepted)
	s.redacted = append(s.redacted, eveMsg.EventID())

	// Fork 1: the foreign server and hs1 both extend the same event; the
	// foreign branch changes state (Eve's display name).
	fork := s.extremities(t, s.hs1)
	eveName := s.build(t, foreignEvent{sender: eve, typ: "m.room.member", stateKey: str(string(eve)),
		content: map[string]any{"membership": "join", "displayname": "Eve"}, prev: fork})
	bobMsg := s.send(t, s.hs1, bob, "m.room.message", nil, text("racing Eve"))
	if !slices.Equal(idStrings(bobMsg.PrevEvents()), fork) {
		t.Fatalf("fork: Bob's message cites %v, want %v", bobMsg.PrevEvents(), fork)
	}
	s.admit(t, s.hs1, eveName.JSON(), accepted)
	if ex := s.extremities(t, s.hs1); len(ex) != 2 {
		t.Fatalf("fork: hs1 has extremities %v, want 2", ex)
	}
	merge := s.send(t, s.hs1, alice, "m.room.message", nil, text("merging"))
	if len(merge.PrevEvents()) != 2 {
		t.Fatalf("merge cites %v, want both branches", merge.PrevEvents())
	}

	// Fork 2: hs2, which has seen nothing since Dave joined, sends a
	// message citing Dave's join.
	daveMsg := s.send(t, s.hs2, dave, "m.room.message", nil, text("from hs2"))
	s.admit(t, s.hs1, daveMsg.JSON(), accepted)
	if ex := s.extremities(t, s.hs1); len(ex) != 2 {
		t.Fatalf("fork 2: hs1 has extremities %v, want 2", ex)
	}
	s.send(t, s.hs1, alice, "m.room.message", nil, text("welcome, hs2"))

	// A message whose content was altered after signing: stored redacted.
	tampered := tamperContent(t, s.build(t, foreignEvent{sender: eve, typ: "m.room.message", content: text("original")}).JSON())
	a := s.admit(t, s.hs1, tampered, redactedOnReceipt)
	if a.Event.Content().Has("body") {
		t.Fatalf("event with a bad content hash stored unredacted: %s", a.Event.JSON())
	}

	// Bans. Carol, banned, can no longer speak; Dave's server has not
	// heard of his ban, so his next message is soft-failed on hs1.
	s.send(t, s.hs1, alice, "m.room.member", str(string(carol)), map[string]any{"membership": "ban", "reason": "interop"})
	s.refuse(t, s.hs1, carol, "m.room.message", nil, text("let me in"))
	s.send(t, s.hs1, bob, "m.room.member", str(string(dave)), map[string]any{"membership": "ban"})
	daveLate := s.send(t, s.hs2, dave, "m.room.message", nil, text("still here?"))
	s.admit(t, s.hs1, daveLate.JSON(), softFailed)

	// Rejected remote events, built and signed by gomatrixserverlib:
	// Eve (power 0) raises herself to 100; a user who never joined
	// speaks; Eve, banned, speaks citing her old join as auth event.
	s.admit(t, s.hs1, s.build(t, foreignEvent{sender: eve, typ: "m.room.power_levels", stateKey: str(""), content: map[string]any{
		"users": map[string]any{string(alice): 100, string(bob): 50, string(eve): 100}, "users_default": 0,
		"events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
		"events": map[string]any{"m.room.name": 50, "m.room.power_levels": 100},
	}}).JSON(), rejected)
	s.admit(t, s.hs1, s.build(t, foreignEvent{sender: mallory, typ: "m.room.message", content: text("not a member")}).JSON(), rejected)
	eveJoinedState, err := s.hs1.store.Room(ctx, string(s.room))
	if err != nil {
		t.Fatal(err)
	}
	eveMember := eveJoinedState.Current[storage.StateKey{Type: "m.room.member", StateKey: string(eve)}]
	s.send(t, s.hs1, alice, "m.room.member", str(string(eve)), map[string]any{"membership": "ban"})
	staleAuth := []string{
		eveJoinedState.Current[storage.StateKey{Type: "m.room.create"}],
		eveJoinedState.Current[storage.StateKey{Type: "m.room.power_levels"}],
		eveMember,
	}
	s.admit(t, s.hs1, s.build(t, foreignEvent{sender: eve, typ: "m.room.message", content: text("banned?"), auth: staleAuth}).JSON(), rejected)
	s.send(t, s.hs1, alice, "m.room.message", nil, text("goodbye"))
	return s
}

func idStrings(ids []rooms.EventID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

// tamperContent changes an event's message body without re-signing or
// rehashing it: the signature (over the redacted event) still holds, the
// content hash does not.
func tamperContent(t testing.TB, data []byte) []byte {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatal(err)
	}
	obj["content"] = json.RawMessage(`{"body":"rewritten history","msgtype":"m.text"}`)
	out, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	canon, err := gmsl.CanonicalJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	return canon
}
