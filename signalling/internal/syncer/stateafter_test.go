package syncer

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint/endpointtest"
)

// The wire form of a /sync answer, as far as these tests read it. The
// state sections are pointers so that an absent key reads as nil.
type (
	wireEvent struct {
		EventID  string  `json:"event_id"`
		Type     string  `json:"type"`
		StateKey *string `json:"state_key"`
	}
	wireList struct {
		Events []wireEvent `json:"events"`
	}
	wireRoom struct {
		State      *wireList `json:"state"`
		StateAfter *wireList `json:"state_after"`
		Unstable   *wireList `json:"org.matrix.msc4222.state_after"`
		Timeline   struct {
			Events  []wireEvent `json:"events"`
			Limited bool        `json:"limited"`
		} `json:"timeline"`
	}
	wireSync struct {
		NextBatch string `json:"next_batch"`
		Rooms     struct {
			Join  map[string]wireRoom `json:"join"`
			Leave map[string]wireRoom `json:"leave"`
		} `json:"rooms"`
	}
)

// httpSync serves the fixture's engine on a loopback HTTP server and
// syncs through it as bob.
type httpSync struct {
	t    *testing.T
	base string
}

func newHTTPSync(t *testing.T, f *fixture) *httpSync {
	mux := http.NewServeMux()
	f.eng.Register(endpoint.NewRouter(mux, endpointtest.Tokens{"bob-token": {UserID: "@bob:hs1", DeviceID: "DEV"}}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &httpSync{t: t, base: srv.URL}
}

// get syncs with the query q and returns the status and body.
func (h *httpSync) get(q url.Values) (int, []byte) {
	h.t.Helper()
	q.Set("timeout", "0")
	return endpointtest.Do(h.t, http.DefaultClient, h.base, "GET", "/_matrix/client/v3/sync?"+q.Encode(), "bob-token", nil)
}

// sync syncs with q, which must succeed.
func (h *httpSync) sync(q url.Values) wireSync {
	h.t.Helper()
	code, body := h.get(q)
	if code != http.StatusOK {
		h.t.Fatalf("sync %v: %d %s", q, code, body)
	}
	var s wireSync
	if err := json.Unmarshal(body, &s); err != nil {
		h.t.Fatalf("sync %v: %v: %s", q, err, body)
	}
	return s
}

// stateAfterOf returns a room's state_after event IDs, failing unless the
// answer carries exactly the stable state_after: no state, no unstable
// twin.
func stateAfterOf(t *testing.T, r wireRoom) []string {
	t.Helper()
	if r.State != nil || r.Unstable != nil {
		t.Fatalf("state %v / unstable %v sent alongside state_after", r.State, r.Unstable)
	}
	if r.StateAfter == nil {
		t.Fatal("no state_after")
	}
	return ids(r.StateAfter.Events)
}

func ids(evs []wireEvent) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	slices.Sort(out)
	return out
}

func currentIDs(t *testing.T, f *fixture, room rooms.RoomID, keep func(storage.StateKey) bool) []string {
	t.Helper()
	info, err := f.db.Room(f.ctx, string(room))
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for k, id := range info.Current {
		if keep == nil || keep(k) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func sortedOf(xs ...string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

func TestStateAfter(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			h := newHTTPSync(t, f)
			room := f.newRoom()
			r := string(room)
			empty := ""
			bob := "@bob:hs1"
			f.member(room, "@alice:hs1", bob, "invite")
			f.member(room, bob, bob, "join")
			f.message(room, "@alice:hs1", "hello")
			f.caughtUp()

			// Initial sync: the whole current state, bob's join included
			// though the timeline shows it too.
			initial := h.sync(url.Values{"use_state_after": {"true"}})
			jr := initial.Rooms.Join[r]
			if got, want := stateAfterOf(t, jr), currentIDs(t, f, room, nil); !slices.Equal(got, want) {
				t.Fatalf("initial state_after %v, want the current state %v", got, want)
			}
			if !slices.ContainsFunc(jr.Timeline.Events, func(e wireEvent) bool { return e.Type == "m.room.member" }) {
				t.Fatalf("the timeline lacks bob's join: %v", jr.Timeline.Events)
			}
			classic := h.sync(url.Values{}).Rooms.Join[r]
			if classic.State == nil || classic.StateAfter != nil || classic.Unstable != nil {
				t.Fatalf("a sync without use_state_after: state %v state_after %v unstable %v", classic.State, classic.StateAfter, classic.Unstable)
			}
			since := initial.NextBatch

			t.Run("state change in the timeline", func(t *testing.T) {
				topic := f.send(room, "@alice:hs1", "m.room.topic", &empty, `{"topic":"calls"}`)
				f.message(room, "@alice:hs1", "after the topic")
				f.caughtUp()
				// The classic sync first: the section it builds is shared
				// with members syncing the same positions, and must not
				// be handed to a state_after request.
				old := h.sync(url.Values{"since": {since}}).Rooms.Join[r]
				if old.State == nil || len(old.State.Events) != 0 || old.StateAfter != nil {
					t.Fatalf("classic incremental state %v state_after %v, want an empty state", old.State, old.StateAfter)
				}
				got := stateAfterOf(t, h.sync(url.Values{"since": {since}, "use_state_after": {"true"}}).Rooms.Join[r])
				if !slices.Equal(got, []string{topic}) {
					t.Fatalf("state_after %v, want the topic %s", got, topic)
				}
			})

			t.Run("no state change", func(t *testing.T) {
				s := h.sync(url.Values{"use_state_after": {"true"}})
				f.message(room, "@alice:hs1", "just talk")
				f.caughtUp()
				// Required even when empty: it tells the client the
				// parameter was honoured.
				got := stateAfterOf(t, h.sync(url.Values{"since": {s.NextBatch}, "use_state_after": {"true"}}).Rooms.Join[r])
				if len(got) != 0 {
					t.Fatalf("state_after %v, want empty", got)
				}
			})

			t.Run("limited", func(t *testing.T) {
				s := h.sync(url.Values{"use_state_after": {"true"}})
				name := f.send(room, "@alice:hs1", "m.room.name", &empty, `{"name":"Standup"}`)
				for _, b := range []string{"one", "two", "three"} {
					f.message(room, "@alice:hs1", b)
				}
				f.caughtUp()
				jr := h.sync(url.Values{"since": {s.NextBatch}, "use_state_after": {"true"}, "filter": {`{"room":{"timeline":{"limit":1}}}`}}).Rooms.Join[r]
				if !jr.Timeline.Limited || len(jr.Timeline.Events) != 1 {
					t.Fatalf("timeline limited %v with %d events, want limited with 1", jr.Timeline.Limited, len(jr.Timeline.Events))
				}
				if got := stateAfterOf(t, jr); !slices.Equal(got, []string{name}) {
					t.Fatalf("state_after %v, want the name %s", got, name)
				}
			})

			t.Run("lazy members", func(t *testing.T) {
				carol := "@carol:hs1"
				f.member(room, carol, carol, "join")
				f.message(room, "@alice:hs1", "last word")
				f.caughtUp()
				filter := `{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}`
				got := stateAfterOf(t, h.sync(url.Values{"use_state_after": {"true"}, "filter": {filter}}).Rooms.Join[r])
				want := currentIDs(t, f, room, func(k storage.StateKey) bool {
					return k.Type != "m.room.member" || k.StateKey == "@alice:hs1" || k.StateKey == bob
				})
				if !slices.Equal(got, want) {
					t.Fatalf("lazy state_after %v, want every state but carol's membership %v", got, want)
				}
			})

			t.Run("unstable names", func(t *testing.T) {
				s := h.sync(url.Values{"org.matrix.msc4222.use_state_after": {"true"}})
				jr := s.Rooms.Join[r]
				if jr.State != nil || jr.StateAfter != nil || jr.Unstable == nil {
					t.Fatalf("unstable request: state %v state_after %v unstable %v", jr.State, jr.StateAfter, jr.Unstable)
				}
				if got, want := ids(jr.Unstable.Events), currentIDs(t, f, room, nil); !slices.Equal(got, want) {
					t.Fatalf("unstable state_after %v, want %v", got, want)
				}
			})

			t.Run("bad parameter", func(t *testing.T) {
				for _, p := range []string{"use_state_after", "org.matrix.msc4222.use_state_after"} {
					code, body := h.get(url.Values{p: {"yes"}})
					var e struct {
						ErrCode string `json:"errcode"`
					}
					_ = json.Unmarshal(body, &e)
					if code != http.StatusBadRequest || e.ErrCode != "M_INVALID_PARAM" {
						t.Errorf("%s=yes: %d %s, want 400 M_INVALID_PARAM", p, code, body)
					}
				}
			})

			t.Run("left room", func(t *testing.T) {
				s := h.sync(url.Values{"use_state_after": {"true"}})
				topic := f.send(room, "@alice:hs1", "m.room.topic", &empty, `{"topic":"leaving"}`)
				f.member(room, bob, bob, "leave")
				f.message(room, "@alice:hs1", "bob cannot see this")
				f.caughtUp()
				info, err := f.db.Room(f.ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				leave := info.Current[storage.StateKey{Type: "m.room.member", StateKey: bob}]
				lr, ok := h.sync(url.Values{"since": {s.NextBatch}, "use_state_after": {"true"}}).Rooms.Leave[r]
				if !ok {
					t.Fatal("the left room is missing from rooms.leave")
				}
				if got := stateAfterOf(t, lr); !slices.Equal(got, sortedOf(topic, leave)) {
					t.Fatalf("left state_after %v, want the topic %s and the leave %s", got, topic, leave)
				}

				// An initial sync lists it with include_leave: the whole
				// state right after the leave.
				lr, ok = h.sync(url.Values{"use_state_after": {"true"}, "filter": {`{"room":{"include_leave":true}}`}}).Rooms.Leave[r]
				if !ok {
					t.Fatal("include_leave: the left room is missing")
				}
				want, err := f.db.StateAfter(f.ctx, leave)
				if err != nil {
					t.Fatal(err)
				}
				var wantIDs []string
				for _, id := range want {
					wantIDs = append(wantIDs, id)
				}
				if got := stateAfterOf(t, lr); !slices.Equal(got, sortedOf(wantIDs...)) {
					t.Fatalf("archived state_after %v, want the state after the leave %v", got, sortedOf(wantIDs...))
				}
			})
		})
	}
}

// TestStateAfterEncoding holds the hand-written encoder to encoding/json
// for the state_after fields, as the realtime connection's test does for
// the rest.
func TestStateAfterEncoding(t *testing.T) {
	evs := []json.RawMessage{json.RawMessage(`{"type":"m.room.topic","state_key":""}`)}
	for _, tc := range []struct {
		name string
		jr   *JoinedRoom
		lr   *LeftRoom
	}{
		{"stable", &JoinedRoom{StateAfter: &EventList{Events: evs}, Timeline: Timeline{Events: evs}},
			&LeftRoom{StateAfter: &EventList{Events: []json.RawMessage{}}}},
		{"unstable", &JoinedRoom{UnstableStateAfter: &EventList{Events: evs}, Summary: &Summary{Heroes: []string{"@a:hs"}}},
			&LeftRoom{UnstableStateAfter: &EventList{Events: evs}}},
		{"classic", &JoinedRoom{State: EventList{Events: []json.RawMessage{}}}, &LeftRoom{State: EventList{Events: evs}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &Response{NextBatch: "s", Rooms: &RoomsPart{Join: map[string]*JoinedRoom{"!a:hs": tc.jr}, Leave: map[string]*LeftRoom{"!b:hs": tc.lr}}}
			want, err := json.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			got := AppendResponse(nil, resp)
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("invalid JSON %s: %v", got, err)
			}
			_ = json.Unmarshal(want, &w)
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("encoder wrote\n%s\nencoding/json\n%s", got, want)
			}
		})
	}
}

// TestWindowStateAfterResolved checks the case state_after exists for:
// the room's resolved state keeps an event other than the window's
// latest for a state key. State resolution is the only way there, so
// the resolved state is given directly here.
func TestWindowStateAfterResolved(t *testing.T) {
	f := newFixture(t, storagetest.SQLite)
	room := f.newRoom()
	empty := ""
	older := f.send(room, "@alice:hs1", "m.room.topic", &empty, `{"topic":"older"}`)
	newer := f.send(room, "@alice:hs1", "m.room.topic", &empty, `{"topic":"newer"}`)
	f.caughtUp()
	b := &builder{e: f.eng, ctx: f.ctx, req: Request{UserID: "@alice:hs1", StateAfter: StateAfterStable}, upto: f.eng.Positions()}
	window, err := b.loadEvents(string(room), []string{newer})
	if err != nil {
		t.Fatal(err)
	}
	later := f.send(room, "@alice:hs1", "m.room.topic", &empty, `{"topic":"after upto"}`)
	topic := storage.StateKey{Type: "m.room.topic"}
	for _, tc := range []struct {
		name  string
		truth storage.StateMap
		want  string
	}{
		{"resolution kept the older event", storage.StateMap{topic: older}, older},
		{"the window's event won", storage.StateMap{topic: newer}, newer},
		{"a later event is the next sync's", storage.StateMap{topic: later}, newer},
		{"the key is unknown to the resolved state", storage.StateMap{}, newer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.windowStateAfter(string(room), window, tc.truth)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || string(got[0].ev.ID()) != tc.want {
				t.Fatalf("state_after %v, want %s", got, tc.want)
			}
		})
	}
}
