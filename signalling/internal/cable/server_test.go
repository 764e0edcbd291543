package cable

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestHandshakeAndPing(t *testing.T) {
	h, _ := newFakeHarness(t, Config{PingInterval: 20 * time.Millisecond})
	c := h.dial("tok-alice") // asserts the subprotocol and the welcome
	before := time.Now().Unix()
	f, err := c.read(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var unix int64
	if f.Type != "ping" || json.Unmarshal(f.Message, &unix) != nil || unix < before-1 || unix > time.Now().Unix()+1 {
		t.Fatalf("heartbeat %+v (message %s), want a ping with the time", f, f.Message)
	}
	waitFor(t, "one connection", func() bool { return h.srv.Connections() == 1 })
	c.ws.Close()
	waitFor(t, "no connection", func() bool { return h.srv.Connections() == 0 })
}

// matrixError reads a failed handshake's status and errcode.
func matrixError(t *testing.T, resp *http.Response) (int, string) {
	t.Helper()
	if resp == nil {
		t.Fatal("no HTTP response")
	}
	var body struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil || body.Error == "" {
		t.Fatalf("body %q is not a Matrix error", b)
	}
	return resp.StatusCode, body.Errcode
}

func TestAuthentication(t *testing.T) {
	h, _ := newFakeHarness(t, Config{})
	other, _ := newFakeHarness(t, Config{}) // a different cookie key

	// Cookie round trip: POST the session with the access token, then
	// connect with nothing but the cookie.
	cookieFor := func(h *harness) *http.Cookie {
		req, _ := http.NewRequest(http.MethodPost, h.http.URL+SessionPath, nil)
		req.Header.Set("Authorization", "Bearer tok-alice")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
			t.Fatalf("POST session: %d %v", resp.StatusCode, resp.Cookies())
		}
		return resp.Cookies()[0]
	}
	good := cookieFor(h)
	if !good.HttpOnly || good.SameSite != http.SameSiteStrictMode || good.Path != "/" || good.Secure {
		t.Fatalf("cookie attributes %+v", good)
	}
	if strings.Contains(good.Value, "tok-alice") {
		t.Fatal("cookie carries the token in clear")
	}
	tampered := []byte(good.Value)
	tampered[len(tampered)/2] ^= 1
	if tampered[len(tampered)/2] == '-' || tampered[len(tampered)/2] == '_' {
		tampered[len(tampered)/2] = 'A'
	}
	foreign := cookieFor(other)

	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
		status int
		code   string
	}{
		{"no token", h.wsURL, nil, 401, "M_MISSING_TOKEN"},
		{"bad bearer", h.wsURL, http.Header{"Authorization": {"Bearer nope"}}, 401, "M_UNKNOWN_TOKEN"},
		{"malformed authorization", h.wsURL, http.Header{"Authorization": {"Basic abc"}}, 401, "M_UNKNOWN_TOKEN"},
		{"bad query token", h.wsURL + "?access_token=nope", nil, 401, "M_UNKNOWN_TOKEN"},
		{"query token", h.wsURL + "?access_token=tok-alice", nil, 101, ""},
		{"cookie", h.wsURL, http.Header{"Cookie": {good.String()}}, 101, ""},
		{"tampered cookie", h.wsURL, http.Header{"Cookie": {good.Name + "=" + string(tampered)}}, 401, "M_UNKNOWN_TOKEN"},
		{"garbage cookie", h.wsURL, http.Header{"Cookie": {good.Name + "=%%%"}}, 401, "M_UNKNOWN_TOKEN"},
		{"foreign cookie", h.wsURL, http.Header{"Cookie": {foreign.String()}}, 401, "M_UNKNOWN_TOKEN"},
		{"same-host origin", h.wsURL, http.Header{"Authorization": {"Bearer tok-alice"}, "Origin": {h.http.URL}}, 101, ""},
		{"foreign origin", h.wsURL, http.Header{"Authorization": {"Bearer tok-alice"}, "Origin": {"https://evil.example"}}, 403, "M_FORBIDDEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, resp, err := dialer.Dial(tc.url, tc.header)
			if tc.status == 101 {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer ws.Close()
				c := &client{t: t, ws: ws}
				if f := c.next(); f.Type != "welcome" {
					t.Fatalf("first frame %+v", f)
				}
				return
			}
			if err == nil {
				ws.Close()
				t.Fatal("upgraded without valid credentials")
			}
			if status, code := matrixError(t, resp); status != tc.status || code != tc.code {
				t.Fatalf("got %d %s, want %d %s", status, code, tc.status, tc.code)
			}
		})
	}

	t.Run("not a websocket", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, h.http.URL+DefaultPath, nil)
		req.Header.Set("Authorization", "Bearer tok-alice")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if status, code := matrixError(t, resp); status != 400 || code != "M_UNRECOGNIZED" {
			t.Fatalf("got %d %s", status, code)
		}
	})
	t.Run("session needs a token", func(t *testing.T) {
		resp, err := http.Post(h.http.URL+SessionPath, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if status, code := matrixError(t, resp); status != 401 || code != "M_MISSING_TOKEN" {
			t.Fatalf("got %d %s", status, code)
		}
	})
	t.Run("delete session clears the cookie", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodDelete, h.http.URL+SessionPath, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cs := resp.Cookies()
		if resp.StatusCode != 200 || len(cs) != 1 || cs[0].Name != good.Name || cs[0].MaxAge >= 0 {
			t.Fatalf("DELETE session: %d %+v", resp.StatusCode, cs)
		}
	})
}

func TestSubscriptions(t *testing.T) {
	h, _ := newFakeHarness(t, Config{})
	c := h.dial("tok-alice")
	for _, tc := range []struct {
		name       string
		identifier string
		want       string // confirm_subscription or the reject's errcode
	}{
		{"sync", identifier(map[string]string{"channel": SyncChannel}), "confirm_subscription"},
		{"sync with filter object", `{"channel":"SyncChannel","filter":{"room":{"timeline":{"limit":1}}}}`, "confirm_subscription"},
		{"visible room", identifier(map[string]string{"channel": RoomChannel, "room_id": fakeRoom}), "confirm_subscription"},
		{"invisible room", identifier(map[string]string{"channel": RoomChannel, "room_id": "!secret:hs1"}), "M_FORBIDDEN"},
		{"room without id", identifier(map[string]string{"channel": RoomChannel}), "M_MISSING_PARAM"},
		{"unknown channel", identifier(map[string]string{"channel": "NoSuchChannel"}), "M_INVALID_PARAM"},
		{"bad since", identifier(map[string]string{"channel": SyncChannel, "since": "garbage"}), "M_INVALID_PARAM"},
		{"identifier not JSON", `{nope`, "M_BAD_JSON"},
		{"filter of the wrong type", `{"channel":"SyncChannel","filter":5}`, "M_BAD_JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := c.subscribe(tc.identifier)
			switch {
			case tc.want == "confirm_subscription" && f.Type == tc.want:
				// The first message of a subscription without a token
				// follows the confirmation.
				var m map[string]any
				c.message(tc.identifier, &m)
			case f.Type == "reject_subscription":
				var reason struct{ Errcode string }
				if err := json.Unmarshal(f.Message, &reason); err != nil || reason.Errcode != tc.want {
					t.Fatalf("rejected with %s, want %s", f.Message, tc.want)
				}
			default:
				t.Fatalf("answer %+v, want %s", f, tc.want)
			}
		})
	}

	// A repeated subscribe is ignored, as ActionCable does: the next
	// frame answers the command after it.
	dup := identifier(map[string]string{"channel": SyncChannel})
	c.send(command{Command: cmdSubscribe, Identifier: dup})
	probe := identifier(map[string]string{"channel": RoomChannel, "room_id": "!probe:hs1"})
	if f := c.subscribe(probe); f.Type != "reject_subscription" {
		t.Fatalf("answer %+v", f)
	}
	// Garbage and unknown commands are ignored without closing.
	for _, raw := range []string{`nope`, `{"command":"dance"}`, `{"command":"message","identifier":"{}","data":"{}"}`} {
		if err := c.ws.WriteMessage(websocket.TextMessage, []byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	if f := c.subscribe(probe); f.Type != "reject_subscription" {
		t.Fatalf("after garbage: %+v", f)
	}
}

func TestSubscriptionLimit(t *testing.T) {
	h, _ := newFakeHarness(t, Config{MaxSubscriptions: 1})
	c := h.dial("tok-alice")
	first := identifier(map[string]string{"channel": SyncChannel})
	if f := c.subscribe(first); f.Type != "confirm_subscription" {
		t.Fatalf("%+v", f)
	}
	var m syncMsg
	c.message(first, &m)
	if f := c.subscribe(identifier(map[string]string{"channel": SyncChannel, "since": "s0_0_0"})); f.Type != "reject_subscription" {
		t.Fatalf("%+v", f)
	}
}

func TestRoomChannelActions(t *testing.T) {
	h, _ := newFakeHarness(t, Config{})
	alice, bob := h.dial("tok-alice"), h.dial("tok-bob")
	room := identifier(map[string]string{"channel": RoomChannel, "room_id": fakeRoom})
	for _, c := range []*client{alice, bob} {
		if f := c.subscribe(room); f.Type != "confirm_subscription" {
			t.Fatalf("%+v", f)
		}
		var first roomMsg
		c.message(room, &first)
		if first.Type != "room" || first.RoomID != fakeRoom || first.NextBatch == "" {
			t.Fatalf("first message %+v", first)
		}
	}

	// Bob sends: he gets the ack, alice the event.
	bob.perform(room, actSendMessage, map[string]any{"content": map[string]string{"msgtype": "m.text", "body": "hi alice"}, "txn_id": "t1"})
	var ack, evBob, evAlice roomMsg
	// Bob's ack and his own echo may come in either order.
	for range 2 {
		var m roomMsg
		bob.message(room, &m)
		if m.Type == "ack" {
			ack = m
		} else {
			evBob = m
		}
	}
	if ack.Action != actSendMessage || ack.TxnID != "t1" || ack.EventID != "$t1-hi alice" {
		t.Fatalf("ack %+v", ack)
	}
	if b := timelineBodies(t, evBob.Timeline.Events); len(b) != 1 || b[0] != "hi alice" {
		t.Fatalf("bob's echo %+v", evBob)
	}
	alice.message(room, &evAlice)
	if b := timelineBodies(t, evAlice.Timeline.Events); evAlice.Membership != "join" || len(b) != 1 || b[0] != "hi alice" {
		t.Fatalf("alice got %+v", evAlice)
	}

	for _, tc := range []struct {
		name    string
		act     string
		data    map[string]any
		reply   string // ack or the errcode
		eventID string
	}{
		{"typing", actTyping, map[string]any{"typing": true, "timeout": 3000}, "ack", ""},
		{"typing without flag", actTyping, map[string]any{"timeout": 3000}, "M_MISSING_PARAM", ""},
		{"typing of the wrong type", actTyping, map[string]any{"typing": "yes"}, "M_BAD_JSON", ""},
		{"negative timeout", actTyping, map[string]any{"typing": true, "timeout": -1}, "M_INVALID_PARAM", ""},
		{"receipt", actReceipt, map[string]any{"event_id": "$x"}, "ack", "$x"},
		{"receipt without event", actReceipt, map[string]any{}, "M_MISSING_PARAM", ""},
		{"receipt refused", actReceipt, map[string]any{"event_id": "nope"}, "M_NOT_FOUND", ""},
		{"content not an object", actSendMessage, map[string]any{"content": "hi", "txn_id": "t2"}, "M_BAD_JSON", ""},
		{"send refused", actSendMessage, map[string]any{"content": map[string]string{}, "txn_id": "t3"}, "M_BAD_JSON", ""},
		{"unknown action", "dance", nil, "M_UNRECOGNIZED", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice.perform(room, tc.act, tc.data)
			var m roomMsg
			alice.message(room, &m)
			got := m.Type
			if m.Type == "error" {
				got = m.Errcode
			}
			if got != tc.reply || m.Action != tc.act || m.EventID != tc.eventID {
				t.Fatalf("reply %+v, want %s", m, tc.reply)
			}
		})
	}
	// Data that is not JSON at all.
	alice.send(command{Command: cmdMessage, Identifier: room, Data: "nope"})
	var m roomMsg
	alice.message(room, &m)
	if m.Type != "error" || m.Errcode != "M_NOT_JSON" {
		t.Fatalf("reply %+v", m)
	}
}

func TestSyncChannelResume(t *testing.T) {
	h, fs := newFakeHarness(t, Config{})
	for _, b := range []string{"one", "two", "three"} {
		fs.add(b)
	}
	c := h.dial("tok-alice")
	id := identifier(map[string]string{"channel": SyncChannel})
	c.subscribe(id)
	var m syncMsg
	c.message(id, &m)
	if b := timelineBodies(t, m.Sync.Rooms.Join[fakeRoom].Timeline.Events); fmt.Sprint(b) != "[one two three]" || m.NextBatch != "s3_0_0" {
		t.Fatalf("initial %v %s", b, m.NextBatch)
	}
	c.perform(id, "resume", map[string]any{"since": "s1_0_0"})
	c.message(id, &m)
	if b := timelineBodies(t, m.Sync.Rooms.Join[fakeRoom].Timeline.Events); fmt.Sprint(b) != "[two three]" {
		t.Fatalf("resumed %v", b)
	}
	c.perform(id, "resume", map[string]any{"since": "bad"})
	var e roomMsg
	c.message(id, &e)
	if e.Type != "error" || e.Errcode != "M_INVALID_PARAM" || e.Action != "resume" {
		t.Fatalf("bad resume: %+v", e)
	}
	// A subscription from a token gets nothing until something new.
	since := identifier(map[string]string{"channel": SyncChannel, "since": "s3_0_0"})
	c.subscribe(since)
	fs.add("four")
	for got := map[string]bool{}; len(got) < 2; {
		f := c.next()
		var sm syncMsg
		if err := json.Unmarshal(f.Message, &sm); err != nil {
			t.Fatal(err)
		}
		if b := timelineBodies(t, sm.Sync.Rooms.Join[fakeRoom].Timeline.Events); fmt.Sprint(b) != "[four]" || got[f.Identifier] {
			t.Fatalf("%s got %v", f.Identifier, b)
		}
		got[f.Identifier] = true
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	h, fs := newFakeHarness(t, Config{})
	c := h.dial("tok-alice")
	room := identifier(map[string]string{"channel": RoomChannel, "room_id": fakeRoom})
	c.subscribe(room)
	var m roomMsg
	c.message(room, &m)
	c.send(command{Command: cmdUnsubscribe, Identifier: room})
	// Commands run in order: once this subscription is confirmed, the
	// unsubscribe has been done.
	sync := identifier(map[string]string{"channel": SyncChannel, "since": "s0_0_0"})
	if f := c.subscribe(sync); f.Type != "confirm_subscription" {
		t.Fatalf("%+v", f)
	}
	fs.add("after unsubscribe")
	f := c.next()
	if f.Identifier != sync {
		t.Fatalf("frame for %s after unsubscribing it: %s", f.Identifier, f.Message)
	}
	// And a second round, so a late frame would show too.
	fs.add("again")
	if f := c.next(); f.Identifier != sync {
		t.Fatalf("frame for %s after unsubscribing it: %s", f.Identifier, f.Message)
	}
	waitFor(t, "one subscription", func() bool { return value(h.srv.metrics.subscriptions) == 1 })
}

func TestSlowConsumer(t *testing.T) {
	h, fs := newFakeHarness(t, Config{QueueSize: 4})
	fs.pad = strings.Repeat("x", 256<<10)
	// The slow consumer never reads until the server gave up on it:
	// the socket buffers fill, then its queue.
	ws, _, err := dialer.Dial(h.wsURL, http.Header{"Authorization": {"Bearer tok-bob"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	slow := &client{t: t, ws: ws}
	slow.next() // welcome
	id := identifier(map[string]string{"channel": SyncChannel, "since": "s0_0_0"})
	slow.subscribe(id)

	fast := h.dial("tok-alice")
	fast.subscribe(id)

	// Until the server gives up on the slow consumer, every event still
	// reaches the fast one promptly.
	for i := 0; value(h.srv.metrics.slowConsumers) == 0; i++ {
		if i == 200 {
			t.Fatal("the slow consumer was never disconnected")
		}
		body := fmt.Sprint("event ", i)
		start := time.Now()
		fs.add(body)
		var m syncMsg
		fast.message(id, &m)
		if b := timelineBodies(t, m.Sync.Rooms.Join[fakeRoom].Timeline.Events); len(b) != 1 || b[0] != body {
			t.Fatalf("fast consumer got %v, want %s", b, body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("fast consumer waited %v", d)
		}
	}
	// The slow consumer, reading at last, finds the disconnect with the
	// reconnect hint at the end of what was written.
	var last frame
	for {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			break
		}
		if bytes.HasPrefix(b, []byte(`{"type"`)) {
			_ = json.Unmarshal(b, &last)
		}
	}
	if last.Type != "disconnect" || last.Reason != ReasonSlowConsumer || last.Reconnect == nil || !*last.Reconnect {
		t.Fatalf("last frame %+v, want a slow_consumer disconnect with reconnect", last)
	}
	fs.add("still flowing")
	var m syncMsg
	fast.message(id, &m)
	if b := timelineBodies(t, m.Sync.Rooms.Join[fakeRoom].Timeline.Events); len(b) != 1 || b[0] != "still flowing" {
		t.Fatalf("after: %v", b)
	}
	waitFor(t, "the slow connection to go", func() bool { return h.srv.Connections() == 1 })
}

func TestCloseSendsServerRestart(t *testing.T) {
	h, _ := newFakeHarness(t, Config{})
	clients := []*client{h.dial("tok-alice"), h.dial("tok-bob")}
	id := identifier(map[string]string{"channel": SyncChannel})
	for _, c := range clients {
		c.subscribe(id)
		var m syncMsg
		c.message(id, &m)
	}
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		f := c.next()
		if f.Type != "disconnect" || f.Reason != ReasonServerRestart || f.Reconnect == nil || !*f.Reconnect {
			t.Fatalf("frame %+v, want a server_restart disconnect", f)
		}
		if _, err := c.read(5 * time.Second); err == nil {
			t.Fatal("socket still open after the disconnect")
		}
	}
	if n := h.srv.Connections(); n != 0 {
		t.Fatalf("%d connections after Close", n)
	}
	if err := h.srv.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	// New connections are refused.
	_, resp, err := dialer.Dial(h.wsURL, http.Header{"Authorization": {"Bearer tok-alice"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Close: %v %v", err, resp)
	}
}

// value reads a gauge or counter.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}
