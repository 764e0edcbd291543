package rooms

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// forge builds an event signed by server name's test key, bypassing that
// server's own checks, the way a faulty or malicious server could.
func forge(t *testing.T, name string, v *pdu.Version, p pdu.Proto) *Event {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	ev, err := p.Build(v, Signer{Server: ServerName(name), KeyID: "ed25519:test", Key: ed25519.NewKeyFromSeed(seed[:])})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// twoServerRoom: Alice on hs1 made a public room that hs2 has joined a copy
// of; Bob on hs2 is a member.
func twoServerRoom(t *testing.T, net *testNet, version string) (hs1, hs2 *testServer, room RoomID, tip *Event) {
	t.Helper()
	ctx := context.Background()
	hs1, hs2 = net.server(t, "hs1"), net.server(t, "hs2")
	alice, bob := UserID("@alice:hs1"), UserID("@bob:hs2")
	c, err := hs1.svc.Create(ctx, version, alice, mustContent(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	room = c.Event.RoomID()
	users := map[string]any{string(alice): 100}
	if version == "12" {
		users = map[string]any{}
	}
	evs := []*Event{
		hs1.send(t, room, alice, pdu.TypeMember, str(string(alice)), map[string]any{"membership": "join"}).Event,
		hs1.send(t, room, alice, pdu.TypePowerLevels, str(""), map[string]any{"users": users}).Event,
		hs1.send(t, room, alice, pdu.TypeJoinRules, str(""), map[string]any{"join_rule": "public"}).Event,
	}
	if _, err := hs2.svc.Begin(ctx, c.Event.JSON()); err != nil {
		t.Fatal(err)
	}
	hs2.admitAll(t, room, evs...)
	bj := hs2.send(t, room, bob, pdu.TypeMember, str(string(bob)), map[string]any{"membership": "join"}).Event
	hs1.admitAll(t, room, bj)
	return hs1, hs2, room, bj
}

func TestReceivePipeline(t *testing.T) {
	onBackends(t, testReceivePipeline)
}

func testReceivePipeline(t *testing.T, newNet func() *testNet) {
	for _, version := range SupportedVersions() {
		t.Run("v"+version, func(t *testing.T) {
			ctx := context.Background()
			hs1, hs2, room, tip := twoServerRoom(t, newNet(), version)
			v := pdu.MustVersion(version)
			bobMsg := hs2.send(t, room, "@bob:hs2", "m.room.message", nil, map[string]any{"body": "hi"}).Event

			// Idempotent: the same event twice is a duplicate, stored once.
			hs1.admitAll(t, room, bobMsg)
			pos, _ := hs1.store.MaxStreamPos(ctx)
			a, err := hs1.svc.Admit(ctx, room, bobMsg.JSON())
			if err != nil || !a.Duplicate {
				t.Fatalf("second admit: %+v, %v; want duplicate", a, err)
			}
			if p, _ := hs1.store.MaxStreamPos(ctx); p != pos {
				t.Fatalf("duplicate admit moved the stream %d -> %d", pos, p)
			}

			base := pdu.Proto{
				Type: "m.room.message", Sender: "@bob:hs2", RoomID: room,
				Content:    cjson.MustFromGo(map[string]any{"body": "x"}),
				PrevEvents: []EventID{bobMsg.ID()}, AuthEvents: bobMsg.AuthEvents(),
				Depth: bobMsg.Depth() + 1, OriginServerTS: bobMsg.OriginServerTS() + 1,
			}

			// Bad format: dropped, nothing stored.
			if _, err := hs1.svc.Admit(ctx, room, []byte(`{"type":"m.room.message"}`)); !errors.As(err, new(*FormatError)) {
				t.Fatalf("malformed event: %v, want FormatError", err)
			}
			if _, err := hs1.svc.Admit(ctx, room, []byte(`{"a":1.5}`)); !errors.As(err, new(*FormatError)) {
				t.Fatalf("float in event: %v, want FormatError", err)
			}
			// No prev events on an event that is not the create: dropped.
			p := base
			p.PrevEvents = []EventID{}
			if _, err := hs1.svc.Admit(ctx, room, forge(t, "hs2", v, p).JSON()); !errors.As(err, new(*FormatError)) {
				t.Fatalf("no prev events: %v, want FormatError", err)
			}
			// Signed by the wrong server: dropped.
			p = base
			p.Sender = "@mallory:hs3"
			if _, err := hs1.svc.Admit(ctx, room, forge(t, "hs2", v, p).JSON()); !errors.As(err, new(*SignatureError)) {
				t.Fatalf("wrong signer: %v, want SignatureError", err)
			}
			// Wrong room: dropped.
			p = base
			p.RoomID = "!other:hs1"
			if v.RoomIDIsCreateHash {
				p.RoomID = "!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			}
			if _, err := hs1.svc.Admit(ctx, room, forge(t, "hs2", v, p).JSON()); !errors.As(err, new(*FormatError)) {
				t.Fatalf("wrong room: %v, want FormatError", err)
			}
			if p, _ := hs1.store.MaxStreamPos(ctx); p != pos {
				t.Fatalf("dropped events moved the stream %d -> %d", pos, p)
			}

			// Content hash mismatch: the event is redacted, then accepted.
			good := forge(t, "hs2", v, base)
			tampered := good.Object().With("content", cjson.MustFromGo(map[string]any{"body": "tampered"}))
			a, err = hs1.svc.Admit(ctx, room, cjson.Marshal(tampered))
			if err != nil || a.Rejected != "" {
				t.Fatalf("tampered event: %+v %v; want accepted after redaction", a, err)
			}
			if a.Event.Content().Len() != 0 {
				t.Fatalf("tampered event kept content %s", a.Event.Content())
			}

			// Unknown auth event: not stored; the caller must fetch it.
			p = base
			p.PrevEvents = []EventID{a.Event.ID()}
			p.AuthEvents = append([]EventID{"$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, base.AuthEvents[1:]...)
			var mae *MissingAuthError
			if _, err := hs1.svc.Admit(ctx, room, forge(t, "hs2", v, p).JSON()); !errors.As(err, &mae) || len(mae.Missing) != 1 {
				t.Fatalf("unknown auth event: %v, want MissingAuthError", err)
			}

			// Rejected against its auth events: a non-member's message.
			p = base
			p.PrevEvents = []EventID{a.Event.ID()}
			p.Sender = "@carol:hs2"
			a, err = hs1.svc.Admit(ctx, room, forge(t, "hs2", v, p).JSON())
			if err != nil || a.Rejected == "" {
				t.Fatalf("non-member message: %+v %v; want rejected", a, err)
			}
			if ex := hs1.extremities(t, room); len(ex) != 1 || ex[0] == string(a.Event.ID()) {
				t.Fatalf("a rejected event became an extremity: %v", ex)
			}
			_ = tip
		})
	}
}

// TestSoftFailBanEvasion: Bob is banned on hs1; hs2 then sends an event
// from Bob that cites the graph from before the ban. It passes auth at
// its own position, so it is not rejected, but it fails against the
// current state: soft-failed, stored, never an extremity (server-server
// API, "Soft failure").
func TestSoftFailBanEvasion(t *testing.T) {
	ctx := context.Background()
	hs1, _, room, bobJoin := twoServerRoom(t, newTestNet(), "11")
	v := pdu.MustVersion("11")
	ban := hs1.send(t, room, "@alice:hs1", pdu.TypeMember, str("@bob:hs2"), map[string]any{"membership": "ban"}).Event
	cur := hs1.current(t, room)
	evasion := forge(t, "hs2", v, pdu.Proto{
		Type: "m.room.message", Sender: "@bob:hs2", RoomID: room,
		Content:    cjson.MustFromGo(map[string]any{"body": "still here"}),
		PrevEvents: []EventID{bobJoin.ID()},
		AuthEvents: []EventID{EventID(cur[stateKey(pdu.TypeCreate, "")]), EventID(cur[stateKey(pdu.TypePowerLevels, "")]), bobJoin.ID()},
		Depth:      bobJoin.Depth() + 1, OriginServerTS: ban.OriginServerTS() + 1,
	})
	a, err := hs1.svc.Admit(ctx, room, evasion.JSON())
	if err != nil {
		t.Fatal(err)
	}
	if a.Rejected != "" || !a.SoftFailed {
		t.Fatalf("ban evasion: rejected=%q softFailed=%v; want soft-failed only", a.Rejected, a.SoftFailed)
	}
	if ex := hs1.extremities(t, room); len(ex) != 1 || ex[0] != string(ban.ID()) {
		t.Fatalf("extremities %v, want only the ban %s", ex, ban.ID())
	}
	recs, err := hs1.store.Events(ctx, []string{string(evasion.ID())})
	if err != nil || recs[string(evasion.ID())] == nil || !recs[string(evasion.ID())].SoftFailed {
		t.Fatalf("soft-failed event not stored as such: %v %v", recs, err)
	}
}

// TestForkFromBeyondTheCache: after more events than the worker caches, a
// remote event that forks from an old point must be placed from storage
// (its prev event and the state after it are re-read), not held forever.
func TestForkFromBeyondTheCache(t *testing.T) {
	ctx := context.Background()
	hs1, hs2, room, bobJoin := twoServerRoom(t, newTestNet(), "12")
	var last *Stored
	for i := 0; i < maxCachedEvents+200; i++ {
		last = hs1.send(t, room, "@alice:hs1", "m.room.message", nil, map[string]any{"body": "busy"})
	}
	// hs2 has seen none of that; Bob answers from where it stands.
	bob := hs2.send(t, room, "@bob:hs2", pdu.TypeMember, str("@bob:hs2"), map[string]any{"membership": "join", "displayname": "Bob from the past"}).Event
	if p := bob.PrevEvents(); len(p) != 1 || p[0] != bobJoin.ID() {
		t.Fatalf("Bob's event follows %v, want his join", p)
	}
	a, err := hs1.svc.Admit(ctx, room, bob.JSON())
	if err != nil || a.Rejected != "" || a.Outlier {
		t.Fatalf("fork from an old event: %+v, %v; want accepted", a, err)
	}
	ex := hs1.extremities(t, room)
	if len(ex) != 2 || !(ex[0] == string(bob.ID()) && ex[1] == string(last.Event.ID()) || ex[1] == string(bob.ID()) && ex[0] == string(last.Event.ID())) {
		t.Fatalf("extremities %v, want the last message and Bob's new name", ex)
	}
	if got := hs1.current(t, room)[stateKey(pdu.TypeMember, "@bob:hs2")]; got != string(bob.ID()) {
		t.Fatalf("current membership of Bob %q, want %s", got, bob.ID())
	}
}
