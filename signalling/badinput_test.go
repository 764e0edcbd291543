package signalling_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// TestBadInput sends the kinds of bad request the issue lists through the
// whole server and checks each gets the spec's status and errcode, with
// the standard error body.
func TestBadInput(t *testing.T) {
	srv := startServer(t, storagetest.SQLite)
	hc := &http.Client{}
	a := (&api{base: srv.URL, hc: hc})
	var reg struct {
		AccessToken string `json:"access_token"`
		UserID      string `json:"user_id"`
	}
	if err := a.do("POST", "/_matrix/client/v3/register", map[string]any{
		"username": "alice", "password": "pw", "auth": map[string]string{"type": "m.login.dummy"},
	}, &reg); err != nil {
		t.Fatal(err)
	}
	a.token = reg.AccessToken
	var room struct {
		RoomID string `json:"room_id"`
	}
	if err := a.do("POST", "/_matrix/client/v3/createRoom", map[string]any{}, &room); err != nil {
		t.Fatal(err)
	}
	// A room alice is not in.
	b := &api{base: srv.URL, hc: hc}
	var reg2 struct {
		AccessToken string `json:"access_token"`
	}
	if err := b.do("POST", "/_matrix/client/v3/register", map[string]any{
		"username": "bob", "password": "pw", "auth": map[string]string{"type": "m.login.dummy"},
	}, &reg2); err != nil {
		t.Fatal(err)
	}
	b.token = reg2.AccessToken
	var bobRoom struct {
		RoomID string `json:"room_id"`
	}
	if err := b.do("POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat"}, &bobRoom); err != nil {
		t.Fatal(err)
	}
	send := "/_matrix/client/v3/rooms/" + url.PathEscape(room.RoomID) + "/send/m.room.message/"

	tests := []struct {
		name, method, path, token, body string
		status                          int
		errcode                         string
	}{
		{"malformed JSON", "PUT", send + "t1", reg.AccessToken, `{"msgtype":`, 400, "M_NOT_JSON"},
		{"wrong type", "POST", "/_matrix/client/v3/createRoom", reg.AccessToken, `{"name":42}`, 400, "M_BAD_JSON"},
		{"not an object", "POST", "/_matrix/client/v3/login", "", `[1,2]`, 400, "M_BAD_JSON"},
		{"oversized body", "PUT", send + "t2", reg.AccessToken, `{"body":"` + strings.Repeat("x", 70_000) + `"}`, 413, "M_TOO_LARGE"},
		{"no token", "GET", "/_matrix/client/v3/account/whoami", "", "", 401, "M_MISSING_TOKEN"},
		{"invalid token", "GET", "/_matrix/client/v3/account/whoami", "syt_nonsense", "", 401, "M_UNKNOWN_TOKEN"},
		{"invalid token on sync", "GET", "/_matrix/client/v3/sync", "syt_nonsense", "", 401, "M_UNKNOWN_TOKEN"},
		{"room not joined: send", "PUT", "/_matrix/client/v3/rooms/" + url.PathEscape(bobRoom.RoomID) + "/send/m.room.message/t3", reg.AccessToken, `{"body":"hi","msgtype":"m.text"}`, 403, "M_FORBIDDEN"},
		{"room not joined: state", "GET", "/_matrix/client/v3/rooms/" + url.PathEscape(bobRoom.RoomID) + "/state", reg.AccessToken, "", 403, "M_FORBIDDEN"},
		{"room not joined: messages", "GET", "/_matrix/client/v3/rooms/" + url.PathEscape(bobRoom.RoomID) + "/messages?dir=b", reg.AccessToken, "", 403, "M_FORBIDDEN"},
		{"bad since token", "GET", "/_matrix/client/v3/sync?since=garbage", reg.AccessToken, "", 400, "M_INVALID_PARAM"},
		{"bad timeout", "GET", "/_matrix/client/v3/sync?timeout=-5", reg.AccessToken, "", 400, "M_INVALID_PARAM"},
		{"unknown endpoint", "GET", "/_matrix/client/v3/no/such/thing", reg.AccessToken, "", 404, "M_UNRECOGNIZED"},
		{"wrong method", "DELETE", "/_matrix/client/v3/sync", reg.AccessToken, "", 405, "M_UNRECOGNIZED"},
		{"wrong password", "POST", "/_matrix/client/v3/login", "", `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"nope"}`, 403, "M_FORBIDDEN"},
		{"unsupported room version", "POST", "/_matrix/client/v3/createRoom", reg.AccessToken, `{"room_version":"999"}`, 400, "M_UNSUPPORTED_ROOM_VERSION"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader
			if tc.body != "" {
				rd = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, rd)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Errcode string `json:"errcode"`
				Error   string `json:"error"`
			}
			raw, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(raw, &body); err != nil || resp.StatusCode != tc.status || body.Errcode != tc.errcode || body.Error == "" {
				t.Fatalf("got %d %s, want %d %s with an error message", resp.StatusCode, raw, tc.status, tc.errcode)
			}
		})
	}

	// A replayed transaction gives the same event ID back.
	var first, second struct {
		EventID string `json:"event_id"`
	}
	msg := map[string]any{"msgtype": "m.text", "body": "once"}
	if err := a.do("PUT", send+"replay", msg, &first); err != nil {
		t.Fatal(err)
	}
	if err := a.do("PUT", send+"replay", msg, &second); err != nil || second.EventID != first.EventID {
		t.Fatalf("replay gave %q (%v), want %q", second.EventID, err, first.EventID)
	}
}
