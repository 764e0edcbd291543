//go:build goolm

package signalling_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/signalling"
)

// Element Call's MatrixRTC membership timings: matrix-js-sdk's
// MembershipManager restarts the delayed leave every 5 s
// (delayedLeaveEventRestartMs) and schedules it 8 s ahead
// (delayedLeaveEventDelayMs), its defaults.
const (
	ecRestart = 5 * time.Second
	ecDelay   = 8 * time.Second
)

// TestRateLimitsCarryACall runs the default rate limits (as plexus serve
// has them unless --rate-limits=off) under a real call's HTTP traffic in
// real time: one user with three devices, each joining as Element Call
// does (a delayed leave of its call.member state, the membership, its
// media key to the others as to-device messages and a room event), then
// for 20 s restarting the delayed leave every 5 s and sending a chat
// message or key resend now and then, then leaving by sending its
// delayed leave. None of it may be refused with 429. A client far over
// the limits is refused, with M_LIMIT_EXCEEDED and retry_after_ms.
//
// The delayed event management limit (1/s, bursts of 20) is per user,
// so a user's devices share it: three heartbeats take 0.6/s of it.
func TestRateLimitsCarryACall(t *testing.T) {
	srv := startServer(t, storagetest.SQLite, func(c *signalling.Config) {
		c.RateLimits = signalling.DefaultRateLimits()
	})
	ctx := context.Background()
	// One registration only: the registration limit (3 requests per IP,
	// then one per 6 s) counts each of /register's user-interactive
	// auth requests, two per account.
	first := register(t, srv, "alice")
	devices := []*mautrix.Client{first, login(t, srv, "alice"), login(t, srv, "alice")}
	created, err := first.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID // alice, its creator, may set any state
	// The flooding client: another device, with its own send limit, of
	// the same user (the delayed event limit is the user's; the call has
	// ended when it floods).
	flooder := login(t, srv, "alice")

	var mu sync.Mutex // guards limited
	var limited []string
	for _, c := range devices {
		dev := c.DeviceID
		c.ResponseHook = func(req *http.Request, resp *http.Response, err error, _ time.Duration) {
			if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
				mu.Lock()
				limited = append(limited, fmt.Sprintf("%s %s %s", dev, req.Method, req.URL.Path))
				mu.Unlock()
			}
		}
	}
	typ := event.Type{Type: callMember, Class: event.StateEventType}
	keysEvent := event.Type{Type: "io.element.call.encryption_keys", Class: event.MessageEventType}
	keysToDevice := event.Type{Type: "io.element.call.encryption_keys", Class: event.ToDeviceEventType}
	sendKey := func(c *mautrix.Client) error {
		msgs := map[id.UserID]map[id.DeviceID]*event.Content{}
		for _, o := range devices {
			if o != c {
				if msgs[o.UserID] == nil {
					msgs[o.UserID] = map[id.DeviceID]*event.Content{}
				}
				msgs[o.UserID][o.DeviceID] = &event.Content{Raw: map[string]any{"keys": map[string]any{"index": 0, "key": "a2V5"}, "room_id": room}}
			}
		}
		if _, err := c.SendToDevice(ctx, keysToDevice, &mautrix.ReqSendToDevice{Messages: msgs}); err != nil {
			return fmt.Errorf("to-device key: %w", err)
		}
		if _, err := c.SendMessageEvent(ctx, room, keysEvent, map[string]any{"keys": []any{map[string]any{"index": 0, "key": "a2V5"}}, "device_id": c.DeviceID}); err != nil {
			return fmt.Errorf("key room event: %w", err)
		}
		return nil
	}
	const callLength = 20 * time.Second
	call := func(c *mautrix.Client) error {
		stateKey := "_" + c.UserID.String() + "_" + c.DeviceID.String() + "_m.call"
		leave, err := c.SendStateEvent(ctx, room, typ, stateKey, map[string]any{}, mautrix.ReqSendEvent{UnstableDelay: ecDelay})
		if err != nil {
			return fmt.Errorf("delayed leave: %w", err)
		}
		if _, err := c.SendStateEvent(ctx, room, typ, stateKey, map[string]any{
			"application": "m.call", "call_id": "", "scope": "m.room", "device_id": c.DeviceID.String(),
			"focus_active": map[string]any{"type": "livekit", "focus_selection": "oldest_membership"},
		}); err != nil {
			return fmt.Errorf("membership: %w", err)
		}
		if err := sendKey(c); err != nil {
			return err
		}
		restart := time.NewTicker(ecRestart) // Element Call's heartbeat period, not synchronisation
		defer restart.Stop()
		chat := time.NewTicker(3 * time.Second)
		defer chat.Stop()
		end := time.After(callLength)
		for n := 0; ; n++ {
			select {
			case <-restart.C:
				if _, err := c.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: leave.UnstableDelayID, Action: event.DelayActionRestart}); err != nil {
					return fmt.Errorf("restart: %w", err)
				}
			case <-chat.C:
				if n%2 == 0 {
					_, err = c.SendMessageEvent(ctx, room, event.EventMessage, text(fmt.Sprintf("%s says %d", c.DeviceID, n)))
				} else {
					err = sendKey(c)
				}
				if err != nil {
					return err
				}
			case <-end:
				// Hanging up: the membership ends by sending the
				// delayed leave now.
				if _, err := c.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: leave.UnstableDelayID, Action: event.DelayActionSend}); err != nil {
					return fmt.Errorf("leave: %w", err)
				}
				return nil
			}
		}
	}
	errs := make([]error, len(devices))
	var wg sync.WaitGroup
	for i, c := range devices {
		wg.Go(func() { errs[i] = call(c) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("device %s: %v", devices[i].DeviceID, err)
		}
	}
	mu.Lock()
	if len(limited) > 0 {
		t.Errorf("429 during the call: %v", limited)
	}
	mu.Unlock()
	for _, c := range devices {
		var content map[string]any
		key := "_" + c.UserID.String() + "_" + c.DeviceID.String() + "_m.call"
		if err := flooder.StateEvent(ctx, room, typ, key, &content); err != nil || len(content) != 0 {
			t.Errorf("%s's membership after hanging up: %v %v", c.DeviceID, content, err)
		}
	}

	// A client far over the limits is refused.
	t.Run("flood", func(t *testing.T) {
		leave, err := flooder.SendStateEvent(ctx, room, typ, "_"+flooder.UserID.String()+"_"+flooder.DeviceID.String()+"_m.call",
			map[string]any{}, mautrix.ReqSendEvent{UnstableDelay: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		restart := flooder.BuildURL(mautrix.ClientURLPath{"unstable", "org.matrix.msc4140", "delayed_events", string(leave.UnstableDelayID)})
		send := func(i int) string {
			return flooder.BuildURL(mautrix.ClientURLPath{"v3", "rooms", room.String(), "send", "m.room.message", fmt.Sprintf("flood%d", i)})
		}
		cases := []struct {
			name string
			req  func(i int) (method, url string)
			body string
		}{
			{"delayed event restarts", func(int) (string, string) { return http.MethodPost, restart }, `{"action":"restart"}`},
			{"messages", func(i int) (string, string) { return http.MethodPut, send(i) }, `{"msgtype":"m.text","body":"flood"}`},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				for i := range 200 {
					method, u := tc.req(i)
					status, body := rawRequest(t, flooder, method, u, tc.body)
					if status == http.StatusOK {
						continue
					}
					var e struct {
						Errcode    string `json:"errcode"`
						RetryAfter int64  `json:"retry_after_ms"`
					}
					if status != http.StatusTooManyRequests || json.Unmarshal(body, &e) != nil || e.Errcode != "M_LIMIT_EXCEEDED" || e.RetryAfter <= 0 {
						t.Fatalf("request %d: %d %s, want 429 M_LIMIT_EXCEEDED with retry_after_ms", i, status, body)
					}
					t.Logf("refused after %d requests: %s", i, body)
					return
				}
				t.Fatal("200 requests at once all allowed")
			})
		}
	})
}

// login logs user in again (a new device) with register's password.
func login(t *testing.T, srv *testServer, user string) *mautrix.Client {
	t.Helper()
	c, err := mautrix.NewClient(srv.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c.Log = zerolog.Nop()
	if _, err := c.Login(context.Background(), &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: user},
		Password:   "correct horse " + user, StoreCredentials: true,
	}); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}
