package federation

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// TestInviteRefusals: PUT /invite refuses what the endpoint says a server
// must not sign ("Servers MUST apply certain validation to ensure they
// don't accidentally sign non-invite events"), a room version we do not
// support, and an invitee we do not have, each with its error code, and
// stores nothing.
func TestInviteRefusals(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		e := newEnv(t, backend, envOptions{}, "hs2.test", "hs3.test")
		hs2, hs3 := e.peers["hs2.test"], e.peers["hs3.test"]
		invite := func(p *peer, target string) *rooms.Event {
			t.Helper()
			ev, err := p.svc.Invite(ctx, e.room, rooms.LocalEvent{Type: "m.room.member", StateKey: &target,
				Sender: p.user(), Content: cjson.Obj(cjson.M("membership", cjson.Str("invite")))})
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}
		version := mustVersion(t, e).ID
		bob := invite(hs2, "@bob:"+usName)
		fromHS3 := invite(hs3, "@bob:"+usName)
		notOurs := invite(hs2, "@carol:hs3.test")
		message := e.build(hs2, "m.room.message", nil, `{"body":"sign me"}`).Event
		body := func(ev *rooms.Event, v string) []byte {
			b, _ := json.Marshal(map[string]any{"room_version": v, "event": json.RawMessage(ev.JSON()), "invite_room_state": []any{}})
			return b
		}
		path := func(ev *rooms.Event) string {
			return "/_matrix/federation/v2/invite/" + pathEscape(string(e.room)) + "/" + pathEscape(string(ev.ID()))
		}
		for _, tc := range []struct {
			name   string
			uri    string
			body   []byte
			status int
			code   string
		}{
			{"not JSON", path(bob), []byte(`[1]`), 400, "M_BAD_JSON"},
			{"no event", path(bob), []byte(`{"room_version":"` + version + `"}`), 400, "M_MISSING_PARAM"},
			{"unsupported version", path(bob), body(bob, "1"), 400, "M_INCOMPATIBLE_ROOM_VERSION"},
			{"event ID of another event", path(fromHS3), body(bob, version), 400, "M_INVALID_PARAM"},
			{"another room", "/_matrix/federation/v2/invite/" + pathEscape("!other:hs2.test") + "/" + pathEscape(string(bob.ID())), body(bob, version), 400, "M_INVALID_PARAM"},
			{"not an invite", path(message), body(message, version), 400, "M_INVALID_PARAM"},
			{"sender on another server", path(fromHS3), body(fromHS3, version), 400, "M_INVALID_PARAM"},
			{"invitee on another server", path(notOurs), body(notOurs, version), 400, "M_INVALID_PARAM"},
			{"unknown invitee", path(bob), body(bob, version), 404, "M_NOT_FOUND"},
			{"v1", "/_matrix/federation/v1/invite/" + pathEscape(string(e.room)) + "/" + pathEscape(string(bob.ID())), bob.JSON(), 400, "M_INCOMPATIBLE_ROOM_VERSION"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, b := e.rawPut(hs2, tc.uri, tc.body)
				wantErrorBody(t, status, b, tc.status, tc.code)
				if tc.code == "M_INCOMPATIBLE_ROOM_VERSION" {
					var m map[string]any
					if json.Unmarshal(b, &m) != nil || m["room_version"] == nil {
						t.Fatalf("no room_version in %s", b)
					}
				}
			})
		}
		var n int
		err := e.db.View(ctx, func(tx *storage.Tx) error {
			return tx.QueryRow(ctx, `SELECT COUNT(*) FROM remote_invites`).Scan(&n)
		})
		if err != nil || n != 0 {
			t.Fatalf("%d invites stored (%v)", n, err)
		}
	})
}

// rawPut sends a signed PUT of body to uri as the peer.
func (e *env) rawPut(p *peer, uri string, body []byte) (int, []byte) {
	e.t.Helper()
	auth, err := transport.SignRequest(p.name, usName, testKeyID, p.key, http.MethodPut, uri, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, "https://"+e.addr+uri, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: usName, RootCAs: e.roots}}, Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.StatusCode, b
}
