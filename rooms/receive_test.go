package rooms

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
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

// TestTransactionOutOfOrder: a federation transaction may carry a child
// before its parent; both are stored once and the child is placed.
func TestTransactionOutOfOrder(t *testing.T) {
	ctx := context.Background()
	hs1, hs2, room, _ := twoServerRoom(t, newTestNet(), "12")
	m1 := hs2.send(t, room, "@bob:hs2", "m.room.message", nil, map[string]any{"body": "one"}).Event
	m2 := hs2.send(t, room, "@bob:hs2", "m.room.message", nil, map[string]any{"body": "two"}).Event
	rs, err := hs1.svc.AdmitMany(ctx, room, [][]byte{m2.JSON(), m1.JSON()})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Err != nil || r.Rejected != "" {
			t.Fatalf("event %d: %+v", i, r)
		}
	}
	if rs[0].Outlier {
		t.Fatalf("the child is still reported held after its parent arrived in the same transaction")
	}
	if ex := hs1.extremities(t, room); len(ex) != 1 || ex[0] != string(m2.ID()) {
		t.Fatalf("extremities %v, want [%s]", ex, m2.ID())
	}
	recs, err := hs1.store.Events(ctx, []string{string(m2.ID())})
	if err != nil || recs[string(m2.ID())] == nil || recs[string(m2.ID())].Outlier {
		t.Fatalf("child stored as %+v (%v), want placed", recs[string(m2.ID())], err)
	}
}

// TestHeldEventDeliveredTwice: an event held for a missing prev may be
// sent again (a retried transaction) before the prev arrives; it stays held
// and is placed once the prev comes.
func TestHeldEventDeliveredTwice(t *testing.T) {
	ctx := context.Background()
	hs1, hs2, room, _ := twoServerRoom(t, newTestNet(), "11")
	m1 := hs2.send(t, room, "@bob:hs2", "m.room.message", nil, map[string]any{"body": "one"}).Event
	m2 := hs2.send(t, room, "@bob:hs2", "m.room.message", nil, map[string]any{"body": "two"}).Event
	for i := 0; i < 2; i++ {
		a, err := hs1.svc.Admit(ctx, room, m2.JSON())
		if err != nil || !a.Outlier || len(a.MissingPrevs) != 1 {
			t.Fatalf("delivery %d of the child: %+v, %v; want held for its parent", i+1, a, err)
		}
	}
	hs1.admitAll(t, room, m1)
	if ex := hs1.extremities(t, room); len(ex) != 1 || ex[0] != string(m2.ID()) {
		t.Fatalf("extremities %v, want [%s]", ex, m2.ID())
	}
}

// TestLongTransactionWithFork: a transaction longer than the worker's
// event cache, whose last events fork from its middle, forcing a flush
// mid-request; every event is placed.
func TestLongTransactionWithFork(t *testing.T) {
	ctx := context.Background()
	hs1, hs2, room, _ := twoServerRoom(t, newTestNet(), "12")
	var chain []*Event
	for i := 0; i < maxCachedEvents+100; i++ {
		chain = append(chain, hs2.send(t, room, "@bob:hs2", "m.room.message", nil, map[string]any{"body": "chain"}).Event)
	}
	mid := chain[len(chain)/2]
	v := pdu.MustVersion("12")
	f := forge(t, "hs2", v, pdu.Proto{Type: "m.room.message", Sender: "@bob:hs2", RoomID: room,
		Content: cjson.MustFromGo(map[string]any{"body": "fork"}), PrevEvents: []EventID{mid.ID()},
		AuthEvents: mid.AuthEvents(), Depth: mid.Depth() + 1, OriginServerTS: mid.OriginServerTS() + 1})
	g := forge(t, "hs2", v, pdu.Proto{Type: "m.room.message", Sender: "@bob:hs2", RoomID: room,
		Content: cjson.MustFromGo(map[string]any{"body": "after the fork"}), PrevEvents: []EventID{f.ID()},
		AuthEvents: mid.AuthEvents(), Depth: f.Depth() + 1, OriginServerTS: f.OriginServerTS() + 1})
	pdus := make([][]byte, 0, len(chain)+2)
	for _, e := range chain {
		pdus = append(pdus, e.JSON())
	}
	pdus = append(pdus, f.JSON(), g.JSON())
	rs, err := hs1.svc.AdmitMany(ctx, room, pdus)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Err != nil || r.Rejected != "" || r.Outlier {
			t.Fatalf("event %d of %d: %+v", i, len(rs), r)
		}
	}
	ex := hs1.extremities(t, room)
	last := chain[len(chain)-1].ID()
	if len(ex) != 2 || !(ex[0] == string(g.ID()) && ex[1] == string(last) || ex[1] == string(g.ID()) && ex[0] == string(last)) {
		t.Fatalf("extremities %v, want the chain's end and the fork's end", ex)
	}
}

// failingStore fails the next Commit when armed.
type failingStore struct {
	Store
	armed atomic.Bool
}

func (f *failingStore) Commit(ctx context.Context, b *storage.Batch) error {
	if f.armed.CompareAndSwap(true, false) {
		return errors.New("injected commit failure")
	}
	return f.Store.Commit(ctx, b)
}

// TestFailedCommitFailsEveryAnswer: when a batch's commit fails, no answer
// built on it may claim success, not even "duplicate" for an event first
// seen in that batch; a retry then stores everything.
func TestFailedCommitFailsEveryAnswer(t *testing.T) {
	ctx := context.Background()
	hs1, hs2, room, _ := twoServerRoom(t, newTestNet(), "12")
	fs := &failingStore{Store: hs1.store}
	svc, err := New(hs1.svc.cfg, Deps{Store: fs, Keys: hs1.svc.deps.Keys, Now: hs1.svc.deps.Now})
	if err != nil {
		t.Fatal(err)
	}
	hs1.svc.Close()
	defer svc.Close()
	m1 := hs2.send(t, room, "@bob:hs2", "m.room.message", nil, map[string]any{"body": "one"}).Event
	m2 := hs2.send(t, room, "@bob:hs2", "m.room.message", nil, map[string]any{"body": "two"}).Event
	batch := [][]byte{m2.JSON(), m1.JSON(), m1.JSON()}
	fs.armed.Store(true)
	rs, err := svc.AdmitMany(ctx, room, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Err == nil {
			t.Errorf("answer %d claims success (%+v) though the commit failed", i, r.Admitted)
		}
	}
	rs, err = svc.AdmitMany(ctx, room, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs[:2] {
		if r.Err != nil || r.Duplicate {
			t.Fatalf("retry, answer %d: %+v %v; want stored", i, r.Admitted, r.Err)
		}
	}
	if have, _ := hs1.store.HaveEvents(ctx, []string{string(m1.ID()), string(m2.ID())}); !have[string(m1.ID())] || !have[string(m2.ID())] {
		t.Fatalf("after the retry the events are not stored: %v", have)
	}
}

// TestCloseAnswersEveryCaller: requests racing Close are answered (done or
// ErrClosed), never left waiting.
func TestCloseAnswersEveryCaller(t *testing.T) {
	hs := newTestNet().server(t, "hs1")
	c, err := hs.svc.Create(context.Background(), "", "@alice:hs1", mustContent(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	room := c.Event.RoomID()
	hs.send(t, room, "@alice:hs1", pdu.TypeMember, str("@alice:hs1"), map[string]any{"membership": "join"})
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := hs.svc.Append(context.Background(), room, LocalEvent{Type: "m.room.message", Sender: "@alice:hs1", Content: mustContent(t, map[string]any{"body": "x"})})
			if err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("append during close: %v", err)
			}
		}()
	}
	hs.svc.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("callers still waiting 30s after Close")
	}
}
