package roomapi

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// remoteMembers adds remote members to the stored state's: joined maps
// room -> remote user.
type remoteMembers struct {
	stateMembers
	mu     sync.Mutex // guards joined
	joined map[string]string
}

func (m *remoteMembers) Membership(ctx context.Context, roomID, userID string) (string, error) {
	m.mu.Lock()
	j := m.joined[roomID] == userID
	m.mu.Unlock()
	if j {
		return "join", nil
	}
	return m.stateMembers.Membership(ctx, roomID, userID)
}

// hookLog records what roomapi told federation.
type hookLog struct {
	mu  sync.Mutex // guards log
	log []string
}

func (h *hookLog) add(s string) {
	h.mu.Lock()
	h.log = append(h.log, s)
	h.mu.Unlock()
}

func (h *hookLog) take() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := fmt.Sprint(h.log)
	h.log = nil
	return s
}

func TestTypingAndReceiptsAcrossServers(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		members := &remoteMembers{stateMembers: stateMembers{e.db}, joined: map[string]string{}}
		e.api.deps.Members = members
		hooks := &hookLog{}
		e.api.typing.onChange = func(room, user string, typing bool) { hooks.add(fmt.Sprintf("typing %s %v", user, typing)) }
		e.api.deps.OnReceipt = func(_ context.Context, room, user, typ, thread, event string, ts int64) {
			hooks.add(fmt.Sprintf("receipt %s %s %q %s %v", user, typ, thread, event, ts == e.clock.now().UnixMilli()))
		}
		id := e.createRoom(alice, map[string]any{"preset": "public_chat"})
		other := e.createRoom(alice, map[string]any{"preset": "public_chat"})
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/join", nil)
		typing := func(user string, body any) {
			t.Helper()
			if r := e.as(user, "PUT", v3+"/rooms/"+esc(id)+"/typing/"+esc(user), body); r.status != 200 {
				t.Fatalf("typing: %d %s", r.status, r.body)
			}
		}

		// Local changes, refreshes included, reach the hook; a stop
		// without a start does not; an expiry does.
		typing(alice, map[string]any{"typing": true, "timeout": 10000})
		typing(alice, map[string]any{"typing": true, "timeout": 10000})
		typing(bob, map[string]any{"typing": false})
		e.clock.advance(11 * time.Second)
		if got := e.api.Typing(id); len(got) != 0 {
			t.Fatalf("after expiry: %v", got)
		}
		if got := hooks.take(); got != "[typing @alice:hs1 true typing @alice:hs1 true typing @alice:hs1 false]" {
			t.Fatalf("typing hooks: %s", got)
		}

		// A remote user types only where joined, lasts 60 s, and is never
		// sent back to federation.
		if err := e.api.RemoteTyping(ctx, id, dave, true); err == nil {
			t.Fatal("typing accepted from a remote user not in the room")
		}
		if err := e.api.RemoteTyping(ctx, id, bob, true); err == nil {
			t.Fatal("a local user accepted as remote")
		}
		members.mu.Lock()
		members.joined[id] = dave
		members.mu.Unlock()
		p := e.api.TypingPos()
		if err := e.api.RemoteTyping(ctx, id, dave, true); err != nil {
			t.Fatal(err)
		}
		if got := e.api.Typing(id); !equal(got, []string{dave}) || e.api.TypingPos() <= p {
			t.Fatalf("typing %v, position %d -> %d", got, p, e.api.TypingPos())
		}
		if got := e.api.TypingSince(p); !equal(got[id], []string{dave}) {
			t.Fatalf("TypingSince: %v", got)
		}
		e.clock.advance(59 * time.Second)
		if got := e.api.Typing(id); !equal(got, []string{dave}) {
			t.Fatalf("remote typing expired early: %v", got)
		}
		e.clock.advance(2 * time.Second)
		if got := e.api.Typing(id); len(got) != 0 {
			t.Fatalf("remote typing did not expire: %v", got)
		}
		if err := e.api.RemoteTyping(ctx, id, dave, true); err != nil {
			t.Fatal(err)
		}
		if err := e.api.RemoteTyping(ctx, id, dave, false); err != nil {
			t.Fatal(err)
		}
		if got := e.api.Typing(id); len(got) != 0 {
			t.Fatalf("remote stop: %v", got)
		}
		if got := hooks.take(); got != "[]" {
			t.Fatalf("remote typing reached the hook: %s", got)
		}

		// Local public receipts reach the hook; private ones do not.
		m1 := e.sendMsg(alice, id, "1", "one")
		m2 := e.sendMsg(alice, id, "2", "two")
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/receipt/m.read/"+esc(m1), map[string]any{"thread_id": "main"})
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/receipt/m.read.private/"+esc(m2), nil)
		if got := hooks.take(); got != fmt.Sprintf(`[receipt @bob:hs1 m.read "main" %s true]`, m1) {
			t.Fatalf("receipt hooks: %s", got)
		}

		// Remote receipts: stored as local ones, never going back.
		sub := e.hub.Subscribe(alice)
		defer sub.Close()
		e.hub.SetMember(id, alice, true)
		since := e.db.AuxPos()
		if err := e.api.RemoteReceipt(ctx, id, dave, "", m2, 1234); err != nil {
			t.Fatal(err)
		}
		select {
		case <-sub.C():
		case <-time.After(5 * time.Second):
			t.Fatal("a remote receipt must wake the room")
		}
		if err := e.api.RemoteReceipt(ctx, id, dave, "", m1, 5678); err != nil {
			t.Fatal(err)
		}
		got, err := e.api.ReceiptsSince(ctx, alice, []string{id}, since, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := receiptContent(t, got[id])
		if r := c[m2]["m.read"][dave]; r == nil || r["ts"] != float64(1234) || c[m1] != nil {
			t.Fatalf("remote receipts: %v", c)
		}
		// An event we have not received yet is stored as named.
		if err := e.api.RemoteReceipt(ctx, id, dave, "", "$notyet", 9999); err != nil {
			t.Fatal(err)
		}
		got, _ = e.api.ReceiptsSince(ctx, alice, []string{id}, since, 0)
		if c := receiptContent(t, got[id]); c["$notyet"]["m.read"][dave] == nil {
			t.Fatalf("receipt for an unknown event: %v", c)
		}
		pos := e.db.AuxPos()
		for _, bad := range []struct{ name, room, user, event string }{
			{"not joined", other, dave, m1},
			{"event of another room", id, dave, e.sendMsg(alice, other, "3", "x")},
			{"local user", id, bob, m2},
		} {
			if err := e.api.RemoteReceipt(ctx, bad.room, bad.user, "", bad.event, 1); err == nil {
				t.Errorf("%s: accepted", bad.name)
			}
		}
		if e.db.AuxPos() != pos {
			t.Errorf("refused receipts stored something")
		}
		if got := hooks.take(); got != "[]" {
			t.Fatalf("remote receipts reached the hook: %s", got)
		}
	})
}
