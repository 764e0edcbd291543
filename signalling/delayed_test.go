//go:build goolm

package signalling_test

// Delayed events (MSC4140) driven with mautrix-go, as Element Call's
// MatrixRTC session uses them: a delayed "leave" of the call membership,
// restarted as a heartbeat.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling"
)

const callMember = "org.matrix.msc3401.call.member"

// wantMautrixError checks err is a Matrix error with code and returns it.
func wantMautrixError(t *testing.T, err error, status int, code string) *mautrix.RespError {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil || he.RespError.ErrCode != code || he.Response.StatusCode != status {
		t.Fatalf("got %v, want %d %s", err, status, code)
	}
	return he.RespError
}

// delayedRoom makes a room of alice's in which bob may set any state.
func delayedRoom(t *testing.T, alice, bob *mautrix.Client) id.RoomID {
	t.Helper()
	ctx := context.Background()
	var resp mautrix.RespCreateRoom
	_, err := alice.MakeRequest(ctx, "POST", alice.BuildClientURL("v3", "createRoom"), map[string]any{
		"preset": "public_chat",
		"power_level_content_override": map[string]any{
			// alice, the creator, has the highest level (room version 12).
			"users": map[string]int{bob.UserID.String(): 100},
		},
	}, &resp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, resp.RoomID); err != nil {
		t.Fatal(err)
	}
	return resp.RoomID
}

// scheduled lists c's delayed events by ID.
func scheduled(t *testing.T, c *mautrix.Client) map[id.DelayID]*event.ScheduledDelayedEvent {
	t.Helper()
	resp, err := c.DelayedEvents(context.Background(), &mautrix.ReqDelayedEvents{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[id.DelayID]*event.ScheduledDelayedEvent{}
	for _, ev := range resp.Scheduled {
		out[ev.DelayID] = ev
	}
	return out
}

// waitMessage syncs until a message with body arrives in room and
// returns it; it fails if a message with one of never arrives first.
func waitMessage(t *testing.T, c *mautrix.Client, since *string, room id.RoomID, body string, never ...string) *event.Event {
	t.Helper()
	var found *event.Event
	syncUntil(t, c, since, "message "+body, func(r *mautrix.RespSync) bool {
		for _, ev := range r.Rooms.Join[room].Timeline.Events {
			if ev.Type != event.EventMessage {
				continue
			}
			_ = ev.Content.ParseRaw(ev.Type)
			b := ev.Content.AsMessage().Body
			for _, n := range never {
				if b == n {
					t.Fatalf("message %q was sent", n)
				}
			}
			if b == body && found == nil {
				found = ev
			}
		}
		return found != nil
	})
	return found
}

func text(body string) *event.MessageEventContent {
	return &event.MessageEventContent{MsgType: event.MsgText, Body: body}
}

func TestDelayedEvents(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) { testDelayedEvents(t, backend) })
	}
}

func testDelayedEvents(t *testing.T, backend string) {
	srv := startServer(t, backend, func(c *signalling.Config) { c.MaxEventDelay = time.Hour })
	ctx := context.Background()
	alice, bob := register(t, srv, "alice"), register(t, srv, "bob")
	room := delayedRoom(t, alice, bob)
	since := ""
	syncUntil(t, alice, &since, "the room", func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Join[room]; return ok })

	t.Run("message fires after its delay", func(t *testing.T) {
		before := time.Now().UnixMilli()
		resp, err := alice.SendMessageEvent(ctx, room, event.EventMessage, text("delayed"), mautrix.ReqSendEvent{UnstableDelay: 300 * time.Millisecond})
		if err != nil || resp.UnstableDelayID == "" || resp.EventID != "" {
			t.Fatalf("delayed send: %+v %v", resp, err)
		}
		ev := waitMessage(t, alice, &since, room, "delayed")
		if ev.Timestamp < before+300 {
			t.Fatalf("sent at %d, %d ms after the request started; the delay was 300 ms", ev.Timestamp, ev.Timestamp-before)
		}
		if ev.Sender != alice.UserID {
			t.Fatalf("sent by %s", ev.Sender)
		}
		eventually(t, "the sent event leaves the listing", func() error {
			if _, ok := scheduled(t, alice)[resp.UnstableDelayID]; ok {
				return errors.New("still listed")
			}
			return nil
		})
	})

	t.Run("transaction IDs make a delayed send idempotent", func(t *testing.T) {
		req := mautrix.ReqSendEvent{UnstableDelay: time.Hour, TransactionID: "delayed-txn"}
		first, err := alice.SendMessageEvent(ctx, room, event.EventMessage, text("once"), req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := alice.SendMessageEvent(ctx, room, event.EventMessage, text("once"), req)
		if err != nil || again.UnstableDelayID != first.UnstableDelayID {
			t.Fatalf("retransmission: %+v %v, first %s", again, err, first.UnstableDelayID)
		}
		if _, err := alice.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: first.UnstableDelayID, Action: event.DelayActionCancel}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("listing", func(t *testing.T) {
		sk := "k"
		resp, err := alice.SendStateEvent(ctx, room, event.Type{Type: "com.example.listed", Class: event.StateEventType}, sk,
			map[string]any{"n": 1}, mautrix.ReqSendEvent{UnstableDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		got := scheduled(t, alice)[resp.UnstableDelayID]
		if got == nil || got.RoomID != room || got.Type.Type != "com.example.listed" || got.StateKey == nil || *got.StateKey != sk ||
			got.Delay != time.Hour.Milliseconds() || time.Since(got.RunningSince.Time) > time.Minute || got.Content.Raw["n"] != float64(1) {
			t.Fatalf("listed %+v", got)
		}
		if len(scheduled(t, bob)) != 0 {
			t.Fatal("bob lists alice's delayed events")
		}
		if _, err := alice.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: resp.UnstableDelayID, Action: event.DelayActionCancel}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("restart postpones", func(t *testing.T) {
		resp, err := alice.SendMessageEvent(ctx, room, event.EventMessage, text("restarted"), mautrix.ReqSendEvent{UnstableDelay: 800 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		first := scheduled(t, alice)[resp.UnstableDelayID].RunningSince.UnixMilli()
		last := first
		for last <= first { // until the server's clock has moved on
			if _, err := alice.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: resp.UnstableDelayID, Action: event.DelayActionRestart}); err != nil {
				t.Fatal(err)
			}
			ev := scheduled(t, alice)[resp.UnstableDelayID]
			if ev == nil {
				t.Fatal("the event fired while being restarted")
			}
			last = ev.RunningSince.UnixMilli()
		}
		ev := waitMessage(t, alice, &since, room, "restarted")
		if ev.Timestamp < last+800 {
			t.Fatalf("sent at %d, before the restarted deadline %d", ev.Timestamp, last+800)
		}
	})

	t.Run("cancel prevents", func(t *testing.T) {
		resp, err := alice.SendMessageEvent(ctx, room, event.EventMessage, text("cancelled"), mautrix.ReqSendEvent{UnstableDelay: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: resp.UnstableDelayID, Action: event.DelayActionCancel}); err != nil {
			t.Fatal(err)
		}
		// A marker scheduled later with the same delay is sent after the
		// cancelled one would have been.
		if _, err := alice.SendMessageEvent(ctx, room, event.EventMessage, text("marker"), mautrix.ReqSendEvent{UnstableDelay: 200 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		waitMessage(t, alice, &since, room, "marker", "cancelled")
		_, err = alice.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: resp.UnstableDelayID, Action: event.DelayActionRestart})
		wantMautrixError(t, err, 404, "M_NOT_FOUND")
	})

	t.Run("send fires now", func(t *testing.T) {
		resp, err := alice.SendMessageEvent(ctx, room, event.EventMessage, text("now"), mautrix.ReqSendEvent{UnstableDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: resp.UnstableDelayID, Action: event.DelayActionSend}); err != nil {
			t.Fatal(err)
		}
		waitMessage(t, alice, &since, room, "now")
		if _, ok := scheduled(t, alice)[resp.UnstableDelayID]; ok {
			t.Fatal("a sent event is still listed")
		}
	})

	t.Run("another user's delay ID is not found", func(t *testing.T) {
		resp, err := alice.SendMessageEvent(ctx, room, event.EventMessage, text("mine"), mautrix.ReqSendEvent{UnstableDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []event.DelayAction{event.DelayActionRestart, event.DelayActionCancel, event.DelayActionSend} {
			_, err := bob.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: resp.UnstableDelayID, Action: a})
			wantMautrixError(t, err, 404, "M_NOT_FOUND")
		}
		if _, ok := scheduled(t, alice)[resp.UnstableDelayID]; !ok {
			t.Fatal("bob's requests changed alice's event")
		}
	})

	t.Run("over the maximum delay", func(t *testing.T) {
		_, err := alice.SendMessageEvent(ctx, room, event.EventMessage, text("too late"), mautrix.ReqSendEvent{UnstableDelay: time.Hour + time.Second})
		re := wantMautrixError(t, err, 400, "M_MAX_DELAY_EXCEEDED")
		if re.ExtraData["max_delay"] != float64(time.Hour.Milliseconds()) {
			t.Fatalf("max_delay %v", re.ExtraData["max_delay"])
		}
		_, err = alice.SendStateEvent(ctx, room, event.Type{Type: "com.example.s", Class: event.StateEventType}, "",
			map[string]any{}, mautrix.ReqSendEvent{UnstableDelay: 2 * time.Hour})
		wantMautrixError(t, err, 400, "M_MAX_DELAY_EXCEEDED")
	})

	t.Run("newer state of another user cancels delayed state", func(t *testing.T) {
		typ := event.Type{Type: "com.example.state", Class: event.StateEventType}
		other, err := alice.SendStateEvent(ctx, room, typ, "theirs", map[string]any{"v": "delayed"}, mautrix.ReqSendEvent{UnstableDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		own, err := alice.SendStateEvent(ctx, room, typ, "own", map[string]any{"v": "delayed"}, mautrix.ReqSendEvent{UnstableDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.SendStateEvent(ctx, room, typ, "theirs", map[string]any{"v": "bob"}); err != nil {
			t.Fatal(err)
		}
		// Her own newer state leaves her delayed event alone: Element Call
		// schedules its leave before the membership it overwrites.
		if _, err := alice.SendStateEvent(ctx, room, typ, "own", map[string]any{"v": "now"}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "bob's state cancels alice's delayed state", func() error {
			if _, ok := scheduled(t, alice)[other.UnstableDelayID]; ok {
				return errors.New("still scheduled")
			}
			return nil
		})
		if _, ok := scheduled(t, alice)[own.UnstableDelayID]; !ok {
			t.Fatal("alice's own state cancelled her delayed state")
		}
		if _, err := alice.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: own.UnstableDelayID, Action: event.DelayActionSend}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "alice's own delayed state is sent", func() error {
			var c map[string]any
			if err := alice.StateEvent(ctx, room, typ, "own", &c); err != nil {
				return err
			}
			if c["v"] != "delayed" {
				return fmt.Errorf("state is %v", c)
			}
			return nil
		})
		var c map[string]any
		if err := alice.StateEvent(ctx, room, typ, "theirs", &c); err != nil || c["v"] != "bob" {
			t.Fatalf("state %v %v: the cancelled delayed state overwrote bob's", c, err)
		}
	})
}

// TestCallMembershipRemovedWithoutHeartbeat is MatrixRTC's use: each
// device schedules a delayed leave of its call membership, joins, and
// restarts the leave every few hundred ms; the device that stops
// (crashes) is removed from the call, the one that keeps beating stays.
func TestCallMembershipRemovedWithoutHeartbeat(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) { testCallMembership(t, backend) })
	}
}

func testCallMembership(t *testing.T, backend string) {
	srv := startServer(t, backend)
	ctx := context.Background()
	alice, bob := register(t, srv, "alice"), register(t, srv, "bob")
	room := delayedRoom(t, alice, bob)
	typ := event.Type{Type: callMember, Class: event.StateEventType}
	// Element Call's leave delay is longer; 3 s keeps the test short
	// and leaves 15 heartbeats of slack for a loaded machine.
	const delay = 3 * time.Second

	join := func(c *mautrix.Client) (stateKey string, leave id.DelayID) {
		stateKey = "_" + c.UserID.String() + "_" + c.DeviceID.String()
		resp, err := c.SendStateEvent(ctx, room, typ, stateKey, map[string]any{}, mautrix.ReqSendEvent{UnstableDelay: delay})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.SendStateEvent(ctx, room, typ, stateKey, map[string]any{
			"application": "m.call", "call_id": "", "scope": "m.room", "device_id": c.DeviceID.String(),
			"focus_active":   map[string]any{"type": "livekit", "focus_selection": "oldest_membership"},
			"foci_preferred": []any{map[string]any{"type": "livekit", "livekit_service_url": srv.URL, "livekit_alias": room.String()}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return stateKey, resp.UnstableDelayID
	}
	aliceKey, aliceLeave := join(alice)
	bobKey, _ := join(bob)

	// Alice's client beats until stopped; bob's has "crashed".
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var beatErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond) // the heartbeat's period, not synchronisation
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := alice.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: aliceLeave, Action: event.DelayActionRestart}); err != nil {
				beatErr = err
				return
			}
		}
	}()
	stopBeat := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopBeat)

	membership := func(key string) (map[string]any, error) {
		var c map[string]any
		err := bob.StateEvent(ctx, room, typ, key, &c)
		return c, err
	}
	within := func(what string, cond func() error) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := cond()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	}
	within("bob's membership removed by his delayed leave", func() error {
		if c, err := membership(bobKey); err != nil || len(c) != 0 {
			return fmt.Errorf("membership %v %v", c, err)
		}
		return nil
	})
	if c, err := membership(aliceKey); err != nil || c["application"] != "m.call" {
		t.Fatalf("alice's membership, still beating, is %v %v", c, err)
	}
	stopBeat()
	if beatErr != nil {
		t.Fatalf("heartbeat: %v", beatErr)
	}
	within("alice's membership removed once she stops beating", func() error {
		if c, err := membership(aliceKey); err != nil || len(c) != 0 {
			return fmt.Errorf("membership %v %v", c, err)
		}
		return nil
	})
}

// TestDelayedEventSurvivesRestart schedules an event, stops the server
// and opens a new one on the same database: the new one sends it.
func TestDelayedEventSurvivesRestart(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			dsn, dir := storagetest.Fresh(t, backend)
			if dir == "" {
				dir = t.TempDir()
			}
			ctx := context.Background()
			_, key, _ := ed25519.GenerateKey(nil)
			srv, stop := openServer(t, dsn, dir, key)
			alice := register(t, srv, "alice")
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, text("after restart"), mautrix.ReqSendEvent{UnstableDelay: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			stop()
			reopened := time.Now().UnixMilli()
			srv, _ = openServer(t, dsn, dir, key)
			alice.HomeserverURL, _ = url.Parse(srv.URL)
			since := ""
			ev := waitMessage(t, alice, &since, room.RoomID, "after restart")
			if ev.Timestamp < reopened {
				t.Fatalf("sent at %d, before the server restarted at %d", ev.Timestamp, reopened)
			}
			eventually(t, "the sent event leaves the listing", func() error {
				if _, ok := scheduled(t, alice)[resp.UnstableDelayID]; ok {
					return errors.New("still listed")
				}
				return nil
			})
		})
	}
}

// openServer is startServer on a given database; stop shuts it down
// (also done at cleanup).
func openServer(t *testing.T, dsn, dir string, key ed25519.PrivateKey) (*testServer, func()) {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, dsn, dir)
	if err != nil {
		t.Fatal(err)
	}
	var closers []func()
	stop := sync.OnceFunc(func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	})
	t.Cleanup(stop)
	closers = append(closers, func() { db.Close() })
	const name = "hs1.test"
	feed, err := signalling.NewFeed(ctx, signalling.FeedConfig{ServerName: name}, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	closers = append(closers, func() { feed.Close() })
	roomSvc, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: name, KeyID: "ed25519:t", Key: key}},
		rooms.Deps{Store: db, Listener: feed})
	if err != nil {
		t.Fatal(err)
	}
	closers = append(closers, func() { roomSvc.Close() })
	sig, err := signalling.New(signalling.Config{ServerName: name, Registration: signalling.RegistrationOpen, DataDir: dir, CookieKey: make([]byte, 32)},
		signalling.Deps{DB: db, Rooms: roomSvc, Feed: feed})
	if err != nil {
		t.Fatal(err)
	}
	closers = append(closers, func() { sig.Close() })
	if err := sig.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0"}, server.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	server.RegisterVersions(srv)
	sig.Register(srv)
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	closers = append(closers, func() { srv.Close() })
	return &testServer{URL: "http://" + srv.Addr().String(), Name: name, Sig: sig, DB: db}, stop
}
