package signalling_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/signalling"
	"github.com/plexus-chat/plexus/signalling/internal/rtcauth"
)

// sfuStub stands in for the SFU's status source: what cmd wires in.
type sfuStub struct{}

func (sfuStub) Status(context.Context) (any, error) {
	return map[string]any{"participants": 3, "rooms": 1}, nil
}

// startStatusServer is startServer with status sources.
func startStatusServer(t *testing.T, backend string, sources map[string]signalling.StatusSource) *testServer {
	t.Helper()
	return startServerWith(t, backend, func(_ *signalling.Config, deps *signalling.Deps) {
		deps.Status = sources
	})
}

// getAs GETs the url with c's access token.
func getAs(t *testing.T, c *mautrix.Client, url string) (int, []byte) {
	t.Helper()
	return rawRequest(t, c, http.MethodGet, url, "")
}

func TestOperatorStatus(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) { testOperatorStatus(t, backend) })
	}
}

func testOperatorStatus(t *testing.T, backend string) {
	ctx := context.Background()
	srv := startStatusServer(t, backend, map[string]signalling.StatusSource{"sfu": sfuStub{}})
	if _, err := signalling.AddUser(ctx, srv.DB, srv.Name, "root", "root password", true); err != nil {
		t.Fatal(err)
	}
	root, err := mautrix.NewClient(srv.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	root.Log = zerolog.Nop()
	if _, err := root.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "root"}, Password: "root password", StoreCredentials: true}); err != nil {
		t.Fatal(err)
	}
	alice, bob := register(t, srv, "alice"), register(t, srv, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{"@carol:elsewhere.test"}}); err != nil {
		t.Fatal(err)
	}
	key := "_" + string(alice.UserID) + "_" + string(alice.DeviceID) + "_m.call"
	if _, err := alice.SendStateEvent(ctx, room.RoomID, event.Type{Type: rtcauth.TypeCallMember, Class: event.StateEventType}, key,
		map[string]any{"application": "m.call", "call_id": "", "scope": "m.room", "device_id": alice.DeviceID,
			"focus_active":   map[string]string{"type": "livekit", "focus_selection": "oldest_membership"},
			"foci_preferred": []map[string]string{{"type": "livekit", "livekit_service_url": srv.URL + "/livekit/jwt"}}}); err != nil {
		t.Fatal(err)
	}

	code, body := getAs(t, root, srv.URL+"/_plexus/admin/v1/status")
	if code != http.StatusOK {
		t.Fatalf("status as admin: %d %s", code, body)
	}
	var st struct {
		Rooms struct {
			Total       int `json:"total"`
			Joined      int `json:"joined_members"`
			Invited     int `json:"invited_members"`
			LocalJoined int `json:"local_joined_members"`
		} `json:"rooms"`
		Calls []struct {
			RoomID       string `json:"room_id"`
			Participants int    `json:"participants"`
			Members      []struct {
				UserID   string `json:"user_id"`
				DeviceID string `json:"device_id"`
			} `json:"members"`
		} `json:"calls"`
		SFU struct {
			Participants int `json:"participants"`
		} `json:"sfu"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Rooms.Total != 2 || st.Rooms.Joined != 3 || st.Rooms.Invited != 1 || st.Rooms.LocalJoined != 3 {
		t.Errorf("rooms %+v in %s", st.Rooms, body)
	}
	if len(st.Calls) != 1 || st.Calls[0].RoomID != string(room.RoomID) || st.Calls[0].Participants != 1 ||
		st.Calls[0].Members[0].UserID != string(alice.UserID) || st.Calls[0].Members[0].DeviceID != string(alice.DeviceID) {
		t.Errorf("calls %+v in %s", st.Calls, body)
	}
	if st.SFU.Participants != 3 {
		t.Errorf("sfu section missing: %s", body)
	}

	// The call ends: the room keeps an emptied member event, and no call.
	if _, err := alice.SendStateEvent(ctx, room.RoomID, event.Type{Type: rtcauth.TypeCallMember, Class: event.StateEventType}, key, map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if _, body = getAs(t, root, srv.URL+"/_plexus/admin/v1/status"); json.Unmarshal(body, &st) != nil || len(st.Calls) != 0 {
		t.Errorf("calls after hang-up: %s", body)
	}

	code, body = getAs(t, root, srv.URL+"/_plexus/admin/v1/status/history")
	var h struct {
		IntervalMS int64                        `json:"interval_ms"`
		Sources    map[string][]json.RawMessage `json:"sources"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &h) != nil || h.IntervalMS != 10_000 || len(h.Sources) != 1 || h.Sources["sfu"] == nil {
		t.Errorf("history: %d %s; want the sfu's ring only", code, body)
	}

	for _, p := range []string{"/_plexus/admin/v1/status", "/_plexus/admin/v1/status/history"} {
		code, body := getAs(t, alice, srv.URL+p)
		var e struct{ Errcode string }
		if json.Unmarshal(body, &e); code != http.StatusForbidden || e.Errcode != "M_FORBIDDEN" {
			t.Errorf("%s as a user: %d %s", p, code, body)
		}
	}
}
