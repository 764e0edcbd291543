package cable

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint/endpointtest"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
	"github.com/plexus-chat/plexus/signalling/internal/syncer"
)

// tokenAuth maps fixed tokens to sessions.
type tokenAuth = endpointtest.Tokens

const fakeRoom = "!visible:hs1"

// fakeSync is an in-memory sync source for the protocol tests: one room
// whose timeline is a list of bodies; a token's Events is how many of
// them the client has.
type fakeSync struct {
	hub *stream.Hub
	// pad is added to every event, to make big messages.
	pad string

	mu     sync.Mutex // guards bodies
	bodies []string
}

func (f *fakeSync) ParseRequest(_ context.Context, s *endpoint.Session, since, filter, fullState, timeout string) (syncer.Request, error) {
	req := syncer.Request{UserID: s.UserID, DeviceID: s.DeviceID}
	if since != "" {
		t, err := stream.ParseToken(since)
		if err != nil {
			return req, mxerr.InvalidParam("Unknown or malformed since token")
		}
		req.Since = &t
	}
	return req, nil
}

func (f *fakeSync) Sync(ctx context.Context, req syncer.Request) (*syncer.Response, stream.Token, error) {
	f.mu.Lock()
	all := append([]string(nil), f.bodies...)
	f.mu.Unlock()
	var from int64
	if req.Since != nil {
		from = req.Since.Events
	}
	next := stream.Token{Events: int64(len(all))}
	resp := &syncer.Response{NextBatch: next.String()}
	if from < int64(len(all)) {
		var evs []json.RawMessage
		for _, b := range all[from:] {
			ev, _ := json.Marshal(map[string]any{"type": "m.room.message", "content": map[string]string{"body": b, "pad": f.pad}})
			evs = append(evs, ev)
		}
		resp.Rooms = &syncer.RoomsPart{Join: map[string]*syncer.JoinedRoom{fakeRoom: {Timeline: syncer.Timeline{Events: evs}}}}
	}
	return resp, next, nil
}

func (f *fakeSync) add(body string) {
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	f.hub.WakeRoom(fakeRoom)
}

// fakeRooms lets everyone see fakeRoom and nothing else; sends go to the
// fakeSync.
type fakeRooms struct {
	sync *fakeSync

	mu     sync.Mutex // guards typing
	typing []string
}

func (r *fakeRooms) CanSee(_ context.Context, _, roomID string) (bool, error) {
	return roomID == fakeRoom, nil
}

func (r *fakeRooms) Send(_ context.Context, s *endpoint.Session, roomID, eventType string, content json.RawMessage, txnID string) (string, error) {
	var c struct {
		Body string `json:"body"`
	}
	if err := json.Unmarshal(content, &c); err != nil || c.Body == "" {
		return "", mxerr.BadJSON("body is required")
	}
	r.sync.add(c.Body)
	return fmt.Sprintf("$%s-%s", txnID, c.Body), nil
}

func (r *fakeRooms) Typing(_ context.Context, s *endpoint.Session, roomID string, typing bool, timeoutMS int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.typing = append(r.typing, fmt.Sprintf("%s %v %d", s.UserID, typing, timeoutMS))
	return nil
}

func (r *fakeRooms) Receipt(_ context.Context, s *endpoint.Session, roomID, receiptType, eventID string) error {
	if !strings.HasPrefix(eventID, "$") {
		return mxerr.NotFound("Unknown event")
	}
	return nil
}

var testAuth = tokenAuth{
	"tok-alice": {UserID: "@alice:hs1", DeviceID: "ALICE"},
	"tok-bob":   {UserID: "@bob:hs1", DeviceID: "BOB"},
}

// harness is a cable Server on a loopback HTTP server.
type harness struct {
	t    *testing.T
	srv  *Server
	http *httptest.Server
	hub  *stream.Hub
	// wsURL is the WebSocket's ws:// URL.
	wsURL string
}

func newHarness(t *testing.T, cfg Config, sync Syncer, rooms RoomActions, hub *stream.Hub) *harness {
	t.Helper()
	srv, err := New(cfg, Deps{Auth: testAuth, Sync: sync, Rooms: rooms, Hub: hub})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv.Register(endpoint.NewRouter(mux, testAuth))
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return &harness{t: t, srv: srv, http: hs, hub: hub, wsURL: "ws" + strings.TrimPrefix(hs.URL, "http") + srv.cfg.Path}
}

// newFakeHarness is a harness over fakeSync and fakeRooms.
func newFakeHarness(t *testing.T, cfg Config) (*harness, *fakeSync) {
	hub := stream.NewHub()
	hub.SetMember(fakeRoom, "@alice:hs1", true)
	hub.SetMember(fakeRoom, "@bob:hs1", true)
	fs := &fakeSync{hub: hub}
	return newHarness(t, cfg, fs, &fakeRooms{sync: fs}, hub), fs
}

// frame is any server frame.
type frame struct {
	Type       string          `json:"type"`
	Identifier string          `json:"identifier"`
	Message    json.RawMessage `json:"message"`
	Reason     string          `json:"reason"`
	Reconnect  *bool           `json:"reconnect"`
}

// client is a Go WebSocket consumer.
type client struct {
	t  testing.TB
	ws *websocket.Conn
}

var dialer = websocket.Dialer{Subprotocols: []string{Subprotocol, "actioncable-unsupported"}, HandshakeTimeout: 10 * time.Second}

// dial connects with token as a Bearer token ("" for none).
func (h *harness) dial(token string) *client {
	h.t.Helper()
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := dialer.Dial(h.wsURL, hdr)
	if err != nil {
		h.t.Fatalf("dial: %v (%v)", err, resp)
	}
	if got := ws.Subprotocol(); got != Subprotocol {
		h.t.Fatalf("subprotocol %q", got)
	}
	c := &client{t: h.t, ws: ws}
	h.t.Cleanup(func() { ws.Close() })
	if f := c.next(); f.Type != "welcome" {
		h.t.Fatalf("first frame %+v, want welcome", f)
	}
	return c
}

// next reads the next frame other than a ping.
func (c *client) next() frame {
	c.t.Helper()
	for {
		f, err := c.read(10 * time.Second)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if f.Type != "ping" {
			return f
		}
	}
}

func (c *client) read(timeout time.Duration) (frame, error) {
	var f frame
	_ = c.ws.SetReadDeadline(time.Now().Add(timeout))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Fatalf("frame %s: %v", b, err)
	}
	return f, nil
}

func (c *client) send(v any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

func identifier(params map[string]string) string {
	b, _ := json.Marshal(params)
	return string(b)
}

// subscribe subscribes and returns the answer (confirm or reject).
func (c *client) subscribe(id string) frame {
	c.t.Helper()
	c.send(command{Command: cmdSubscribe, Identifier: id})
	f := c.next()
	if f.Identifier != id {
		c.t.Fatalf("answer %+v for another identifier than %s", f, id)
	}
	return f
}

func (c *client) perform(id, act string, data map[string]any) {
	c.t.Helper()
	if data == nil {
		data = map[string]any{}
	}
	data["action"] = act
	b, _ := json.Marshal(data)
	c.send(command{Command: cmdMessage, Identifier: id, Data: string(b)})
}

// message reads the next channel message of id and decodes it into v.
func (c *client) message(id string, v any) {
	c.t.Helper()
	f := c.next()
	if f.Identifier != id || f.Type != "" {
		c.t.Fatalf("frame %+v, want a message for %s", f, id)
	}
	if err := json.Unmarshal(f.Message, v); err != nil {
		c.t.Fatalf("message %s: %v", f.Message, err)
	}
}

// syncMsg is a decoded sync channel message.
type syncMsg struct {
	Type      string          `json:"type"`
	NextBatch string          `json:"next_batch"`
	Sync      syncer.Response `json:"sync"`
}

// roomMsg is a decoded room channel message.
type roomMsg struct {
	Type       string          `json:"type"`
	RoomID     string          `json:"room_id"`
	Membership string          `json:"membership"`
	NextBatch  string          `json:"next_batch"`
	Timeline   syncer.Timeline `json:"timeline"`
	Action     string          `json:"action"`
	TxnID      string          `json:"txn_id"`
	EventID    string          `json:"event_id"`
	Errcode    string          `json:"errcode"`
}

// timelineBodies lists the bodies of m.room.message events.
func timelineBodies(t testing.TB, evs []json.RawMessage) []string {
	t.Helper()
	var out []string
	for _, raw := range evs {
		var ev struct {
			Type    string `json:"type"`
			Content struct {
				Body string `json:"body"`
			} `json:"content"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type == "m.room.message" {
			out = append(out, ev.Content.Body)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition with a deadline
	}
}
