package rooms

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// recorder is a Listener that keeps what it heard.
type recorder struct {
	mu     sync.Mutex // guards stored
	stored []*Stored
}

func (r *recorder) EventsStored(_ RoomID, evs []*Stored) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stored = append(r.stored, evs...)
}

func (r *recorder) heard(id EventID) *Stored {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.stored {
		if s.Event.ID() == id {
			return s
		}
	}
	return nil
}

// residentRoom: Alice on hs1 made a room with a name, a topic and the
// given join rule.
func residentRoom(t *testing.T, hs1 *testServer, version, joinRule string) RoomID {
	t.Helper()
	alice := UserID("@alice:hs1")
	c, err := hs1.svc.Create(context.Background(), version, alice, mustContent(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	room := c.Event.RoomID()
	users := map[string]any{string(alice): 100}
	if version == "12" {
		users = map[string]any{}
	}
	hs1.send(t, room, alice, pdu.TypeMember, str(string(alice)), map[string]any{"membership": "join"})
	hs1.send(t, room, alice, pdu.TypePowerLevels, str(""), map[string]any{"users": users})
	hs1.send(t, room, alice, pdu.TypeJoinRules, str(""), map[string]any{"join_rule": joinRule})
	hs1.send(t, room, alice, "m.room.name", str(""), map[string]any{"name": "first"})
	hs1.send(t, room, alice, "m.room.name", str(""), map[string]any{"name": "second"})
	hs1.send(t, room, alice, "m.room.message", nil, map[string]any{"body": "before the join"})
	return room
}

// eventsJSON reads events' bytes from a server's storage.
func eventsJSON(t *testing.T, s *testServer, ids []EventID) [][]byte {
	t.Helper()
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = string(id)
	}
	recs, err := s.store.Events(context.Background(), strs)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, 0, len(ids))
	for _, id := range ids {
		rec := recs[string(id)]
		if rec == nil {
			t.Fatalf("%s: event %s not stored", s.name, id)
		}
		out = append(out, rec.JSON)
	}
	return out
}

// sendJoinAnswer is what the resident's send_join returns: the state
// before the join and its auth chain.
func sendJoinAnswer(t *testing.T, resident *testServer, room RoomID, join EventID) (state, chain [][]byte) {
	t.Helper()
	st, ch, err := resident.svc.StateBefore(context.Background(), room, join)
	if err != nil {
		t.Fatalf("StateBefore(join): %v", err)
	}
	return eventsJSON(t, resident, st), eventsJSON(t, resident, ch)
}

// federatedJoin runs make_join, send_join and the join on hs2 for user.
func federatedJoin(t *testing.T, hs1, hs2 *testServer, room RoomID, user UserID) *Event {
	t.Helper()
	ctx := context.Background()
	proto, version, err := hs1.svc.Template(ctx, room, LocalEvent{Type: pdu.TypeMember, StateKey: str(string(user)), Sender: user, Content: mustContent(t, map[string]any{"membership": "join"})})
	if err != nil {
		t.Fatalf("Template: %v", err)
	}
	join, err := hs2.svc.Complete(version, proto)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	a, err := hs1.svc.Admit(ctx, room, join.JSON())
	if err != nil || a.Rejected != "" || a.Outlier || a.SoftFailed {
		t.Fatalf("resident admits the join: %+v, %v", a, err)
	}
	state, chain := sendJoinAnswer(t, hs1, room, join.ID())
	j, err := hs2.svc.Join(ctx, room, join.JSON(), state, chain)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if j.Outlier || j.Rejected != "" || j.StreamPos == 0 || j.Event.ID() != join.ID() {
		t.Fatalf("Join = %+v", j)
	}
	// The state before the join reads back as given, the user's earlier
	// membership (an invite, say) included.
	wantState, _, _ := hs1.svc.StateBefore(ctx, room, join.ID())
	gotState, gotChain, err := hs2.svc.StateBefore(ctx, room, join.ID())
	if err != nil || !slices.Equal(gotState, wantState) || len(gotChain) == 0 {
		t.Fatalf("hs2 StateBefore(join) = %v, %v, %v; want %v", gotState, gotChain, err, wantState)
	}
	return join
}

func TestJoinOverFederation(t *testing.T) {
	onBackends(t, testJoinOverFederation)
}

func testJoinOverFederation(t *testing.T, newNet func() *testNet) {
	for _, version := range SupportedVersions() {
		t.Run("v"+version, func(t *testing.T) {
			ctx := context.Background()
			net := newNet()
			rec := &recorder{}
			hs1, hs2 := net.server(t, "hs1"), net.serverWith(t, "hs2", rec)
			room := residentRoom(t, hs1, version, "public")
			bob := UserID("@bob:hs2")
			join := federatedJoin(t, hs1, hs2, room, bob)

			// The copies agree on the state; the join is the only extremity.
			if got, want := hs2.current(t, room), hs1.current(t, room); !maps.Equal(got, want) {
				t.Fatalf("hs2 current state\n %v\nwant hs1's\n %v", got, want)
			}
			if got := hs2.extremities(t, room); !slices.Equal(got, []string{string(join.ID())}) {
				t.Fatalf("hs2 extremities %v, want the join", got)
			}
			wantState, _, _ := hs1.svc.StateBefore(ctx, room, join.ID())
			// Only the join is in the client-visible stream: the rest are
			// outliers.
			recs, err := hs2.store.EventsSince(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			placed := 0
			for _, r := range recs {
				if !r.Outlier {
					placed++
					if r.EventID != string(join.ID()) {
						t.Errorf("event %s (%s) placed; only the join should be", r.EventID, r.Type)
					}
				}
			}
			if placed != 1 || len(recs) < len(wantState) {
				t.Fatalf("stream: %d events, %d placed; want the %d state events as outliers and the join", len(recs), placed, len(wantState))
			}
			if s := rec.heard(join.ID()); s == nil || s.Outlier || s.StreamPos == 0 {
				t.Fatalf("listener heard of the join as %+v", s)
			}
			// The same join again is a duplicate.
			state, chain := sendJoinAnswer(t, hs1, room, join.ID())
			if a, err := hs2.svc.Join(ctx, room, join.JSON(), state, chain); err != nil || !a.Duplicate {
				t.Fatalf("second Join = %+v, %v; want a duplicate", a, err)
			}

			// The room goes on: events citing the join are placed on hs2,
			// and hs2's events on hs1.
			msg := hs1.send(t, room, "@alice:hs1", "m.room.message", nil, map[string]any{"body": "welcome"}).Event
			a, err := hs2.svc.Admit(ctx, room, msg.JSON())
			if err != nil || a.Outlier || a.Rejected != "" || a.SoftFailed {
				t.Fatalf("hs2 admits a message citing the join: %+v, %v", a, err)
			}
			thanks := hs2.send(t, room, bob, "m.room.message", nil, map[string]any{"body": "thanks"}).Event
			hs1.admitAll(t, room, thanks)
			if got := hs1.extremities(t, room); !slices.Equal(got, []string{string(thanks.ID())}) {
				t.Fatalf("hs1 extremities %v, want hs2's message", got)
			}
			// A restart reloads the joined room from storage.
			if err := hs2.svc.Close(); err != nil {
				t.Fatal(err)
			}
			svc, err := New(hs2.svc.cfg, Deps{Store: hs2.store, Keys: net.finder})
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			if _, err := svc.Append(ctx, room, LocalEvent{Type: "m.room.message", Sender: bob, Content: mustContent(t, map[string]any{"body": "after restart"})}); err != nil {
				t.Fatalf("append after restart: %v", err)
			}
		})
	}
}

func TestJoinRefusals(t *testing.T) {
	onBackends(t, testJoinRefusals)
}

func testJoinRefusals(t *testing.T, newNet func() *testNet) {
	ctx := context.Background()
	net := newNet()
	hs1, hs2 := net.server(t, "hs1"), net.server(t, "hs2")
	net.server(t, "hs3")
	version := DefaultVersion
	v := pdu.MustVersion(version)
	room := residentRoom(t, hs1, version, "public")
	bob := UserID("@bob:hs2")
	oldRules := EventID(hs1.current(t, room)[stateKey(pdu.TypeJoinRules, "")])
	hs1.send(t, room, "@alice:hs1", pdu.TypeJoinRules, str(""), map[string]any{"join_rule": "invite"})

	// make_join is refused by the invite-only room.
	_, _, err := hs1.svc.Template(ctx, room, LocalEvent{Type: pdu.TypeMember, StateKey: str(string(bob)), Sender: bob, Content: mustContent(t, map[string]any{"membership": "join"})})
	var na *NotAllowedError
	if !errors.As(err, &na) {
		t.Fatalf("Template in an invite-only room: %v, want a *NotAllowedError", err)
	}
	// Build joins by hand, as a faulty resident would.
	info, err := hs1.store.Room(ctx, string(room))
	if err != nil {
		t.Fatal(err)
	}
	cur := info.Current
	var createID EventID
	if version != "12" {
		createID = EventID(cur[stateKey(pdu.TypeCreate, "")])
	}
	joinProto := func(user UserID, content map[string]any) pdu.Proto {
		auths := []EventID{EventID(cur[stateKey(pdu.TypePowerLevels, "")]), EventID(cur[stateKey(pdu.TypeJoinRules, "")])}
		if createID != "" {
			auths = append(auths, createID)
		}
		return pdu.Proto{Type: pdu.TypeMember, StateKey: str(string(user)), Sender: user, RoomID: room,
			Content: mustContent(t, content), PrevEvents: toIDs(info.Extremities), AuthEvents: auths,
			Depth: info.MaxDepth + 1, OriginServerTS: 1_700_000_100_000}
	}
	refused := forge(t, "hs2", v, joinProto(bob, map[string]any{"membership": "join"}))
	// Citing the join rules of before, when the room was public, the join
	// passes its own auth events; only the state before it refuses it.
	stale := joinProto(bob, map[string]any{"membership": "join"})
	stale.AuthEvents = slices.Clone(stale.AuthEvents)
	stale.AuthEvents[1] = oldRules
	staleJoin := forge(t, "hs2", v, stale)
	remote := forge(t, "hs3", v, joinProto("@carol:hs3", map[string]any{"membership": "join"}))
	leave := forge(t, "hs2", v, joinProto(bob, map[string]any{"membership": "leave"}))
	tampered := mustParse(t, refused.JSON())
	tampered = tampered.With("origin_server_ts", cjson.Integer(1))

	// The answer a resident would give: the current state and the auth
	// chain of it and of the join.
	var curIDs []string
	for _, id := range cur {
		curIDs = append(curIDs, id)
	}
	curIDs = append(curIDs, string(oldRules))
	chainIDs, err := hs1.store.AuthChain(ctx, curIDs)
	if err != nil {
		t.Fatal(err)
	}
	stIDs, chIDs := toIDs(curIDs[:len(curIDs)-1]), toIDs(append(chainIDs, string(oldRules)))
	state, chain := eventsJSON(t, hs1, stIDs), eventsJSON(t, hs1, chIDs)
	var noCreate [][]byte
	for i, id := range stIDs {
		if id != EventID(cur[stateKey(pdu.TypeCreate, "")]) {
			noCreate = append(noCreate, state[i])
		}
	}
	for _, tc := range []struct {
		name  string
		join  []byte
		state [][]byte
		is    error
	}{
		{"refused by its auth events", refused.JSON(), state, nil},
		{"refused by the state", staleJoin.JSON(), state, nil},
		{"sender not local", remote.JSON(), state, ErrNotLocal},
		{"not a join", leave.JSON(), state, nil},
		{"bad signature", cjson.Marshal(tampered), state, nil},
		{"no create event", refused.JSON(), noCreate, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hs2.svc.Join(ctx, room, tc.join, tc.state, chain)
			if err == nil || tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("Join: %v, want an error (%v)", err, tc.is)
			}
			// Nothing was stored: the room is unknown on hs2.
			if _, err := hs2.store.Room(ctx, string(room)); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("room after a refused join: %v, want not found", err)
			}
			if pos, _ := hs2.store.MaxStreamPos(ctx); pos != 0 {
				t.Fatalf("stream at %d after a refused join, want 0", pos)
			}
		})
	}
	// Once invited, the join goes through: the refusals left nothing that
	// gets in its way.
	hs1.send(t, room, "@alice:hs1", pdu.TypeMember, str(string(bob)), map[string]any{"membership": "invite"})
	federatedJoin(t, hs1, hs2, room, bob)
}

func TestAdmitWithState(t *testing.T) {
	onBackends(t, testAdmitWithState)
}

func testAdmitWithState(t *testing.T, newNet func() *testNet) {
	for _, version := range SupportedVersions() {
		t.Run("v"+version, func(t *testing.T) {
			ctx := context.Background()
			net := newNet()
			hs1, hs2 := net.server(t, "hs1"), net.server(t, "hs2")
			room := residentRoom(t, hs1, version, "public")
			alice, bob := UserID("@alice:hs1"), UserID("@bob:hs2")
			federatedJoin(t, hs1, hs2, room, bob)

			// hs2 misses e1 (a state change) and e2; e3 and e4 arrive.
			hs1.send(t, room, alice, "m.room.topic", str(""), map[string]any{"topic": "missed"})
			hs1.send(t, room, alice, "m.room.message", nil, map[string]any{"body": "missed too"})
			e3 := hs1.send(t, room, alice, "m.room.message", nil, map[string]any{"body": "e3"}).Event
			e4 := hs1.send(t, room, alice, "m.room.message", nil, map[string]any{"body": "e4"}).Event
			// Meanwhile bob talks on hs2: a fork.
			b1 := hs2.send(t, room, bob, "m.room.message", nil, map[string]any{"body": "b1"}).Event
			for _, e := range []*Event{e3, e4} {
				a, err := hs2.svc.Admit(ctx, room, e.JSON())
				if err != nil || !a.Outlier {
					t.Fatalf("admit %s with a gap: %+v, %v; want held", e.ID(), a, err)
				}
			}
			if mp, _ := hs2.store.MissingPrevs(ctx, string(room)); len(mp) != 1 {
				t.Fatalf("missing prevs %v, want e2", mp)
			}

			// get_missing_events failed: place e3 on the state hs1 reports.
			st, ch := sendJoinAnswer(t, hs1, room, e3.ID())
			a, err := hs2.svc.AdmitWithState(ctx, room, e3.JSON(), st, ch)
			if err != nil || a.Outlier || a.Rejected != "" || a.SoftFailed {
				t.Fatalf("AdmitWithState(e3) = %+v, %v", a, err)
			}
			// e4, held for e3, is placed with it; the fork stays.
			ext := hs2.extremities(t, room)
			want := []string{string(b1.ID()), string(e4.ID())}
			slices.Sort(want)
			if !slices.Equal(ext, want) {
				t.Fatalf("extremities %v, want %v", ext, want)
			}
			cur := hs2.current(t, room)
			if got, want := cur[stateKey("m.room.topic", "")], hs1.current(t, room)[stateKey("m.room.topic", "")]; got != want || got == "" {
				t.Fatalf("topic %q, want the missed one %q", got, want)
			}
			if mp, _ := hs2.store.MissingPrevs(ctx, string(room)); len(mp) != 0 {
				t.Fatalf("missing prevs %v after the gap was filled", mp)
			}
			recs, _ := hs2.store.Events(ctx, []string{string(e4.ID())})
			if r := recs[string(e4.ID())]; r == nil || r.Outlier {
				t.Fatalf("e4 = %+v, want placed", r)
			}
			// bob's next event merges the fork; hs1 accepts it.
			b2 := hs2.send(t, room, bob, "m.room.message", nil, map[string]any{"body": "b2"}).Event
			if len(b2.PrevEvents()) != 2 {
				t.Fatalf("b2 prev events %v, want both extremities", b2.PrevEvents())
			}
			hs1.admitAll(t, room, b1, b2)
			if !maps.Equal(hs1.current(t, room), hs2.current(t, room)) {
				t.Fatalf("states differ:\n hs1 %v\n hs2 %v", hs1.current(t, room), hs2.current(t, room))
			}
			// Placed once: a second call is a duplicate.
			if a, err := hs2.svc.AdmitWithState(ctx, room, e3.JSON(), st, ch); err != nil || !a.Duplicate {
				t.Fatalf("second AdmitWithState = %+v, %v; want a duplicate", a, err)
			}
		})
	}
}

func TestAdmitWithStateRefusals(t *testing.T) {
	onBackends(t, testAdmitWithStateRefusals)
}

func testAdmitWithStateRefusals(t *testing.T, newNet func() *testNet) {
	ctx := context.Background()
	net := newNet()
	hs1, hs2 := net.server(t, "hs1"), net.server(t, "hs2")
	room := residentRoom(t, hs1, DefaultVersion, "public")
	alice, bob := UserID("@alice:hs1"), UserID("@bob:hs2")
	federatedJoin(t, hs1, hs2, room, bob)
	hs1.send(t, room, alice, "m.room.message", nil, map[string]any{"body": "missed"})
	e2 := hs1.send(t, room, alice, "m.room.message", nil, map[string]any{"body": "e2"}).Event
	st, ch := sendJoinAnswer(t, hs1, room, e2.ID())

	// The state of a room whose create event is not this room's.
	other := residentRoom(t, hs1, DefaultVersion, "public")
	otherExt := hs1.extremities(t, other)
	ost, och := sendJoinAnswer(t, hs1, other, EventID(otherExt[0]))
	before := hs2.extremities(t, room)
	if _, err := hs2.svc.AdmitWithState(ctx, room, e2.JSON(), ost, och); err == nil {
		t.Fatal("AdmitWithState with another room's state: no error")
	}
	// No state at all: no create event.
	if _, err := hs2.svc.AdmitWithState(ctx, room, e2.JSON(), nil, nil); err == nil {
		t.Fatal("AdmitWithState with no state: no error")
	}
	if got := hs2.extremities(t, room); !slices.Equal(got, before) {
		t.Fatalf("extremities moved to %v after refused calls", got)
	}
	// An unknown room.
	if _, err := hs2.svc.AdmitWithState(ctx, other, e2.JSON(), st, ch); !errors.Is(err, ErrUnknownRoom) {
		t.Fatalf("AdmitWithState in an unknown room: %v, want ErrUnknownRoom", err)
	}
}

func TestTemplateCompleteCountersign(t *testing.T) {
	onBackends(t, testTemplateCompleteCountersign)
}

func testTemplateCompleteCountersign(t *testing.T, newNet func() *testNet) {
	ctx := context.Background()
	net := newNet()
	hs1, hs2 := net.server(t, "hs1"), net.server(t, "hs2")
	version := DefaultVersion
	v := pdu.MustVersion(version)
	room := residentRoom(t, hs1, version, "invite")
	alice, bob := UserID("@alice:hs1"), UserID("@bob:hs2")

	// The resident's proto for alice inviting bob: unsigned, on the
	// extremities, with the auth events selection wants.
	proto, gotVersion, err := hs1.svc.Template(ctx, room, LocalEvent{Type: pdu.TypeMember, StateKey: str(string(bob)), Sender: alice, Content: mustContent(t, map[string]any{"membership": "invite"})})
	if err != nil || gotVersion != version {
		t.Fatalf("Template = %s, %q, %v", proto, gotVersion, err)
	}
	obj := mustParse(t, proto)
	for _, k := range []string{"hashes", "signatures"} {
		if _, ok := obj.Get(k); ok {
			t.Errorf("proto has %q", k)
		}
	}
	if prevs, _ := idList(obj, "prev_events"); !slices.Equal(prevs, toIDs(hs1.extremities(t, room))) {
		t.Errorf("proto prev_events %v, want the extremities", prevs)
	}
	auths, _ := idList(obj, "auth_events")
	if len(auths) != 3 { // power levels, alice's membership, join rules
		t.Errorf("proto auth_events %v", auths)
	}
	if pos, _ := hs1.store.MaxStreamPos(ctx); pos != 7 {
		t.Errorf("Template stored something: stream at %d", pos)
	}
	depth, _ := obj.GetInt("depth")
	ts, _ := obj.GetInt("origin_server_ts")
	invite := forge(t, "hs1", v, pdu.Proto{Type: pdu.TypeMember, StateKey: str(string(bob)), Sender: alice, RoomID: room,
		Content: mustContent(t, map[string]any{"membership": "invite", "displayname": "Bob"}), PrevEvents: toIDs(hs1.extremities(t, room)),
		AuthEvents: auths, Depth: depth, OriginServerTS: ts})

	// Invite v2: bob's server countersigns.
	signed, err := hs2.svc.Countersign(version, invite.JSON())
	if err != nil {
		t.Fatalf("Countersign: %v", err)
	}
	if signed.ID() != invite.ID() {
		t.Fatalf("countersigning changed the ID %s -> %s", invite.ID(), signed.ID())
	}
	for _, server := range []ServerName{"hs1", "hs2"} {
		if err := pdu.VerifyServerSignature(signed, server, net.finder); err != nil {
			t.Errorf("signature of %s: %v", server, err)
		}
	}
	if _, err := hs1.svc.Admit(ctx, room, signed.JSON()); err != nil {
		t.Fatalf("resident admits the countersigned invite: %v", err)
	}
	// A changed displayname keeps the signature (redaction drops it) but
	// breaks the content hash; a changed timestamp breaks the signature.
	badHash := mustParse(t, invite.JSON())
	badHash = badHash.With("content", mustContent(t, map[string]any{"membership": "invite", "displayname": "Mallory"}))
	badSig := mustParse(t, invite.JSON()).With("origin_server_ts", cjson.Integer(ts+1))
	var fe *FormatError
	if _, err := hs2.svc.Countersign(version, cjson.Marshal(badHash)); !errors.As(err, &fe) {
		t.Errorf("Countersign with a bad hash: %v, want a *FormatError", err)
	}
	var se *SignatureError
	if _, err := hs2.svc.Countersign(version, cjson.Marshal(badSig)); !errors.As(err, &se) {
		t.Errorf("Countersign with a bad signature: %v, want a *SignatureError", err)
	}

	// Complete: bob's server turns make_join's proto into its join.
	jproto, _, err := hs1.svc.Template(ctx, room, LocalEvent{Type: pdu.TypeMember, StateKey: str(string(bob)), Sender: bob, Content: mustContent(t, map[string]any{"membership": "join"})})
	if err != nil {
		t.Fatalf("Template(join) after the invite: %v", err)
	}
	join, err := hs2.svc.Complete(version, jproto)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if err := pdu.VerifySignatures(join, net.finder); err != nil || !join.CheckContentHash() {
		t.Fatalf("completed join: signature %v, hash ok %v", err, join.CheckContentHash())
	}
	for _, tc := range []struct {
		name  string
		proto []byte
		is    error
	}{
		{"another server's user", proto, ErrNotLocal},
		{"not an object", []byte(`[]`), nil},
		{"not a member event", cjson.Marshal(mustParse(t, jproto).With("type", cjson.Str("m.room.message"))), nil},
		{"state key not the sender", cjson.Marshal(mustParse(t, jproto).With("state_key", cjson.Str("@eve:hs2"))), nil},
		{"membership ban", cjson.Marshal(mustParse(t, jproto).With("content", mustContent(t, map[string]any{"membership": "ban"}))), nil},
		{"no prev events", cjson.Marshal(mustParse(t, jproto).With("prev_events", mustContent(t, []any{}))), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hs2.svc.Complete(version, tc.proto)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("Complete: %v, want %v", err, tc.is)
			}
			if tc.is == nil && !errors.As(err, &fe) {
				t.Fatalf("Complete: %v, want a *FormatError", err)
			}
		})
	}
}

func TestStateBefore(t *testing.T) {
	onBackends(t, testStateBefore)
}

func testStateBefore(t *testing.T, newNet func() *testNet) {
	ctx := context.Background()
	net := newNet()
	hs1 := net.server(t, "hs1")
	room := residentRoom(t, hs1, DefaultVersion, "public")
	info, err := hs1.store.Room(ctx, string(room))
	if err != nil {
		t.Fatal(err)
	}
	name2 := EventID(info.Current[stateKey("m.room.name", "")])
	tip := EventID(info.Extremities[0])
	after := func(id EventID) []EventID {
		m, err := hs1.store.StateAfter(ctx, string(id))
		if err != nil {
			t.Fatal(err)
		}
		var out []EventID
		for _, v := range m {
			out = append(out, EventID(v))
		}
		slices.Sort(out)
		return out
	}
	recs, _ := hs1.store.Events(ctx, []string{string(name2)})
	name1 := recs[string(name2)].PrevEvents[0]
	for _, tc := range []struct {
		name  string
		event EventID
		want  []EventID
	}{
		// A message changes nothing: before is after.
		{"message", tip, after(tip)},
		// The second name event: before it, the first name held the entry.
		{"state event", name2, after(EventID(name1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, chain, err := hs1.svc.StateBefore(ctx, room, tc.event)
			if err != nil || !slices.Equal(st, tc.want) {
				t.Fatalf("StateBefore = %v, %v; want %v", st, err, tc.want)
			}
			// The auth chain holds what the state's events cite.
			if len(chain) == 0 || !slices.IsSorted(chain) {
				t.Fatalf("auth chain %v", chain)
			}
		})
	}
	if _, _, err := hs1.svc.StateBefore(ctx, room, "$notstoredxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"); !errors.Is(err, ErrUnknownEvent) {
		t.Fatalf("StateBefore(unknown) = %v, want ErrUnknownEvent", err)
	}
	ext, err := hs1.svc.Extremities(ctx, room)
	if err != nil || !slices.Equal(ext, []EventID{tip}) {
		t.Fatalf("Extremities = %v, %v; want [%s]", ext, err, tip)
	}
	if _, err := hs1.svc.Extremities(ctx, "!nope:hs1"); !errors.Is(err, ErrUnknownRoom) {
		t.Fatalf("Extremities(unknown) = %v, want ErrUnknownRoom", err)
	}
}

func mustParse(t testing.TB, data []byte) cjson.Value {
	t.Helper()
	v, err := cjson.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
