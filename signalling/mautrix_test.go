//go:build goolm

package signalling_test

// These tests drive Plexus with mautrix-go, the client library behind
// mautrix bridges and bots, exactly as those programs use it. Its
// end-to-end encryption is the pure-Go goolm implementation, so the tests
// build with -tags goolm (the Makefile sets it).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// syncUntil long-polls /sync from *since until cond holds for a response,
// or fails after a deadline.
func syncUntil(t *testing.T, c *mautrix.Client, since *string, what string, cond func(*mautrix.RespSync) bool) *mautrix.RespSync {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		resp, err := c.SyncRequest(ctx, 5000, *since, "", false, event.PresenceOnline)
		if err != nil {
			t.Fatalf("%s: waiting for %s: %v", c.UserID, what, err)
		}
		*since = resp.NextBatch
		if cond(resp) {
			return resp
		}
	}
}

func messageBodies(evs []*event.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type == event.EventMessage {
			_ = ev.Content.ParseRaw(ev.Type)
			out = append(out, ev.Content.AsMessage().Body)
		}
	}
	return out
}

func TestMautrixClientJourney(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) { testMautrixJourney(t, backend) })
	}
}

func testMautrixJourney(t *testing.T, backend string) {
	ctx := context.Background()
	srv := startServer(t, backend)
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")

	who, err := alice.Whoami(ctx)
	if err != nil || who.UserID != alice.UserID || who.DeviceID != alice.DeviceID {
		t.Fatalf("whoami: %+v %v", who, err)
	}

	var bobSince string
	syncUntil(t, bob, &bobSince, "an initial sync", func(*mautrix.RespSync) bool { return true })

	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Name: "Journey", Topic: "testing", Invite: []id.UserID{bob.UserID}, IsDirect: true,
	})
	if err != nil {
		t.Fatalf("createRoom: %v", err)
	}
	room := created.RoomID
	syncUntil(t, bob, &bobSince, "the invite", func(r *mautrix.RespSync) bool { return r.Rooms.Invite[room] != nil })
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatalf("join: %v", err)
	}
	sent, err := alice.SendText(ctx, room, "hello bob")
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	syncUntil(t, bob, &bobSince, "alice's message", func(r *mautrix.RespSync) bool {
		jr := r.Rooms.Join[room]
		return jr != nil && strings.Contains(strings.Join(messageBodies(jr.Timeline.Events), "|"), "hello bob")
	})

	// Replaying the transaction returns the same event, not a new one.
	again, err := alice.SendMessageEvent(ctx, room, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "once"}, mautrix.ReqSendEvent{TransactionID: "txn-1"})
	if err != nil {
		t.Fatal(err)
	}
	replay, err := alice.SendMessageEvent(ctx, room, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "once"}, mautrix.ReqSendEvent{TransactionID: "txn-1"})
	if err != nil || replay.EventID != again.EventID {
		t.Fatalf("replayed txnId gave %v (%v), want %s", replay, err, again.EventID)
	}

	// Scrollback.
	msgs, err := bob.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 50)
	if err != nil {
		t.Fatalf("messages: %v", err)
	}
	if b := messageBodies(msgs.Chunk); len(b) != 2 || b[0] != "once" || b[1] != "hello bob" {
		t.Fatalf("messages bodies %v", b)
	}

	// Typing and receipts reach the other side as ephemeral events.
	if _, err := alice.UserTyping(ctx, room, true, 10*time.Second); err != nil {
		t.Fatalf("typing: %v", err)
	}
	syncUntil(t, bob, &bobSince, "alice typing", func(r *mautrix.RespSync) bool {
		jr := r.Rooms.Join[room]
		if jr == nil {
			return false
		}
		for _, ev := range jr.Ephemeral.Events {
			if ev.Type == event.EphemeralEventTyping && strings.Contains(string(ev.Content.VeryRaw), string(alice.UserID)) {
				return true
			}
		}
		return false
	})
	if err := alice.MarkRead(ctx, room, sent.EventID); err != nil {
		t.Fatalf("receipt: %v", err)
	}
	syncUntil(t, bob, &bobSince, "alice's receipt", func(r *mautrix.RespSync) bool {
		jr := r.Rooms.Join[room]
		if jr == nil {
			return false
		}
		for _, ev := range jr.Ephemeral.Events {
			if ev.Type == event.EphemeralEventReceipt && strings.Contains(string(ev.Content.VeryRaw), string(sent.EventID)) {
				return true
			}
		}
		return false
	})

	// To-device messages are delivered once.
	if _, err := alice.SendToDevice(ctx, event.NewEventType("org.plexus.test"), &mautrix.ReqSendToDevice{
		Messages: map[id.UserID]map[id.DeviceID]*event.Content{bob.UserID: {bob.DeviceID: {Raw: map[string]any{"n": 1}}}},
	}); err != nil {
		t.Fatalf("sendToDevice: %v", err)
	}
	syncUntil(t, bob, &bobSince, "the to-device message", func(r *mautrix.RespSync) bool {
		for _, ev := range r.ToDevice.Events {
			if ev.Type.Type == "org.plexus.test" && ev.Sender == alice.UserID {
				return true
			}
		}
		return false
	})
	after, err := bob.SyncRequest(ctx, 0, bobSince, "", false, event.PresenceOnline)
	if err != nil || len(after.ToDevice.Events) != 0 {
		t.Fatalf("to-device delivered twice: %+v %v", after.ToDevice, err)
	}
	bobSince = after.NextBatch

	// Logout revokes the token.
	if _, err := bob.Logout(ctx); err != nil {
		t.Fatalf("logout: %v", err)
	}
	_, err = bob.Whoami(ctx)
	if !errors.Is(err, mautrix.MUnknownToken) {
		t.Fatalf("whoami after logout: %v, want M_UNKNOWN_TOKEN", err)
	}
}

// e2eeClient is a client with mautrix's crypto helper: it uploads device
// and one-time keys, tracks devices, and encrypts and decrypts.
type e2eeClient struct {
	*mautrix.Client
	helper   *cryptohelper.CryptoHelper
	mu       sync.Mutex
	received []string
	got      chan struct{}
}

func newE2EEClient(t *testing.T, srv *testServer, name string) *e2eeClient {
	t.Helper()
	c := register(t, srv, name)
	c.StateStore = mautrix.NewMemoryStateStore()
	syncer := c.Syncer.(mautrix.ExtensibleSyncer)
	// With its own crypto store the helper leaves the state store to us;
	// it needs membership and encryption state to encrypt for the room.
	syncer.OnEvent(c.StateStoreSyncHandler)
	helper, err := cryptohelper.NewCryptoHelper(c, []byte("pickle-"+name), crypto.NewMemoryStore(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Init(context.Background()); err != nil {
		t.Fatalf("%s: crypto init (keys/upload): %v", name, err)
	}
	c.Crypto = helper
	e := &e2eeClient{Client: c, helper: helper, got: make(chan struct{}, 16)}
	syncer.OnEventType(event.EventMessage, func(_ context.Context, ev *event.Event) {
		e.mu.Lock()
		e.received = append(e.received, fmt.Sprintf("%s:%s", ev.Sender, ev.Content.AsMessage().Body))
		e.mu.Unlock()
		e.got <- struct{}{}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.SyncWithContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		helper.Close()
	})
	return e
}

func (e *e2eeClient) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		e.mu.Lock()
		for _, r := range e.received {
			if r == want {
				e.mu.Unlock()
				return
			}
		}
		e.mu.Unlock()
		select {
		case <-e.got:
		case <-deadline:
			t.Fatalf("%s never decrypted %q; got %v", e.UserID, want, e.received)
		}
	}
}

func TestMautrixEncryptedMessage(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			srv := startServer(t, backend)
			alice := newE2EEClient(t, srv, "alice")
			bob := newE2EEClient(t, srv, "bob")

			// The servers sees the keys the clients uploaded.
			q, err := alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bob.UserID: {}}})
			if _, ok := q.DeviceKeys[bob.UserID][bob.DeviceID]; err != nil || !ok {
				t.Fatalf("keys/query for bob: %+v %v", q, err)
			}
			claim, err := alice.ClaimKeys(ctx, &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{bob.UserID: {bob.DeviceID: id.KeyAlgorithmSignedCurve25519}}})
			if err != nil || len(claim.OneTimeKeys[bob.UserID][bob.DeviceID]) != 1 {
				t.Fatalf("keys/claim for bob: %+v %v", claim, err)
			}

			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
				Preset: "private_chat", Invite: []id.UserID{bob.UserID},
				InitialState: []*event.Event{{
					Type:    event.StateEncryption,
					Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
				}},
			})
			if err != nil {
				t.Fatal(err)
			}
			room := created.RoomID
			deadline := time.Now().Add(20 * time.Second)
			for {
				_, err := bob.JoinRoomByID(ctx, room)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("bob join: %v", err)
				}
				time.Sleep(50 * time.Millisecond) // polling for the invite to reach bob's sync loop
			}
			// Alice must have seen bob join before she encrypts, or her
			// session would not be shared with him.
			deadline = time.Now().Add(20 * time.Second)
			for !alice.StateStore.IsInRoom(ctx, room, bob.UserID) {
				if time.Now().After(deadline) {
					t.Fatal("alice's sync never showed bob in the room")
				}
				time.Sleep(20 * time.Millisecond) // polling alice's sync loop's state
			}
			resp, err := alice.SendText(ctx, room, "top secret")
			if err != nil {
				t.Fatalf("encrypted send: %v", err)
			}
			// What the server stored is ciphertext.
			ev, err := bob.GetEvent(ctx, room, resp.EventID)
			if err != nil || ev.Type != event.EventEncrypted || strings.Contains(string(ev.Content.VeryRaw), "top secret") {
				t.Fatalf("stored event %s %s (%v), want m.room.encrypted ciphertext", ev.Type.Type, ev.Content.VeryRaw, err)
			}
			bob.waitFor(t, string(alice.UserID)+":top secret")

			back, err := bob.SendText(ctx, room, "received")
			if err != nil || back.EventID == "" {
				t.Fatalf("bob's encrypted reply: %v", err)
			}
			alice.waitFor(t, string(bob.UserID)+":received")
		})
	}
}
