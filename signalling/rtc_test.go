//go:build goolm

package signalling_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/signalling"
	"github.com/plexus-chat/plexus/signalling/internal/rtcauth"
)

const (
	rtcKey    = "plexus-test"
	rtcSecret = "a-secret-of-at-least-thirty-two-bytes!"
)

// testClock is a clock tests move forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// stubVerifier stands for the OpenID userinfo answers of other servers:
// token -> the user the server says it belongs to.
type stubVerifier map[string]string

func (v stubVerifier) OpenIDUserInfo(_ context.Context, server, token string) (string, error) {
	if u, ok := v[server+"/"+token]; ok {
		return u, nil
	}
	return "", errors.New("401 M_UNKNOWN_TOKEN")
}

// startRTCServer is startServer with the SFU token service on, the
// given clock and the given verifier of other servers' OpenID tokens.
func startRTCServer(t *testing.T, backend string, clock *testClock, verifier signalling.OpenIDVerifier) *testServer {
	t.Helper()
	return startServerWith(t, backend, func(cfg *signalling.Config, deps *signalling.Deps) {
		cfg.RTC = signalling.RTCConfig{APIKey: rtcKey, APISecret: rtcSecret}
		deps.Now, deps.OpenID = clock.now, verifier
	})
}

// rtcAnswer is a token service answer.
type rtcAnswer struct {
	status  int
	header  http.Header
	errcode string
	URL     string `json:"url"`
	JWT     string `json:"jwt"`
}

// postRTC posts body (raw bytes if []byte) to the token service.
func postRTC(t *testing.T, srv *testServer, path string, body any) rtcAnswer {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		raw, _ = json.Marshal(body)
	}
	resp, err := http.Post(srv.URL+"/livekit/jwt"+path, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := rtcAnswer{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("answer %s: %v", b, err)
		}
		return a
	}
	var e struct {
		Errcode string `json:"errcode"`
	}
	_ = json.Unmarshal(b, &e)
	a.errcode = e.Errcode
	return a
}

func openIDOf(t *testing.T, c *mautrix.Client) map[string]any {
	t.Helper()
	tok, err := c.RequestOpenIDToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"access_token": tok.AccessToken, "token_type": tok.TokenType,
		"matrix_server_name": tok.MatrixServerName, "expires_in": tok.ExpiresIn}
}

// verifyJWT checks jwt's signature and returns its grants.
func verifyJWT(t *testing.T, jwt string) *auth.ClaimGrants {
	t.Helper()
	v, err := auth.ParseAPIToken(jwt)
	if err != nil {
		t.Fatal(err)
	}
	if v.APIKey() != rtcKey {
		t.Fatalf("issuer %q", v.APIKey())
	}
	claims, grants, err := v.Verify(rtcSecret)
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	if ttl := claims.ExpiresAt.Sub(claims.NotBefore.Time); ttl != time.Hour {
		t.Fatalf("token valid for %s, want 1h", ttl)
	}
	if _, _, err := v.Verify("another secret of at least thirty-two bytes"); err == nil {
		t.Fatal("token verifies under another secret")
	}
	return grants
}

func TestRTC(t *testing.T) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Setenv(storagetest.EnvPostgres, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) { testRTC(t, backend) })
	}
}

func testRTC(t *testing.T, backend string) {
	ctx := context.Background()
	clock := &testClock{}
	verifier := stubVerifier{
		"hs2.test/carol-token": "@carol:hs2.test",
		"hs2.test/liar-token":  "@eve:hs3.test",
	}
	srv := startRTCServer(t, backend, clock, verifier)
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Call"})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID
	var since string
	syncUntil(t, alice, &since, "the room", func(r *mautrix.RespSync) bool { return r.Rooms.Join[room] != nil })

	t.Run("discovery", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/.well-known/matrix/client")
		if err != nil {
			t.Fatal(err)
		}
		var wk struct {
			Foci []map[string]string `json:"org.matrix.msc4143.rtc_foci"`
		}
		err = json.NewDecoder(resp.Body).Decode(&wk)
		resp.Body.Close()
		want := srv.URL + "/livekit/jwt"
		if err != nil || len(wk.Foci) != 1 || wk.Foci[0]["type"] != "livekit" || wk.Foci[0]["livekit_service_url"] != want {
			t.Fatalf("well-known foci %v (%v), want livekit at %s", wk.Foci, err, want)
		}
		for _, path := range []string{"/_matrix/client/v1/rtc/transports", "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports"} {
			var tr struct {
				Transports []map[string]string `json:"rtc_transports"`
			}
			var parts mautrix.BaseURLPath
			for _, p := range strings.Split(path[1:], "/") {
				parts = append(parts, p)
			}
			u := alice.BuildURL(parts)
			if _, err := alice.MakeRequest(ctx, http.MethodGet, u, nil, &tr); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if len(tr.Transports) != 1 || tr.Transports[0]["livekit_service_url"] != want {
				t.Fatalf("%s: %v", path, tr.Transports)
			}
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s without a token: %d", path, resp.StatusCode)
			}
		}
		resp, err = http.Get(srv.URL + "/livekit/jwt/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("healthz: %d", resp.StatusCode)
		}
	})

	var aliceIdentity string
	t.Run("legacy sfu/get", func(t *testing.T) {
		a := postRTC(t, srv, "/sfu/get", map[string]any{"room": room, "openid_token": openIDOf(t, alice), "device_id": alice.DeviceID})
		if a.status != http.StatusOK {
			t.Fatalf("status %d %s", a.status, a.errcode)
		}
		if want := "ws" + srv.URL[len("http"):] + "/livekit/sfu"; a.URL != want {
			t.Fatalf("url %q, want %q", a.URL, want)
		}
		if got := a.header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Fatalf("CORS origin %q", got)
		}
		g := verifyJWT(t, a.JWT)
		if want := string(alice.UserID) + ":" + string(alice.DeviceID); g.Identity != want {
			t.Fatalf("identity %q, want %q", g.Identity, want)
		}
		v := g.Video
		if v.Room != rtcauth.RoomAlias(string(room), "m.call#ROOM") || !v.RoomJoin || !v.RoomCreate ||
			!v.GetCanPublish() || !v.GetCanSubscribe() || !v.GetCanPublishData() {
			t.Fatalf("grants %+v", v)
		}
	})

	t.Run("get_token", func(t *testing.T) {
		body := map[string]any{"room_id": room, "slot_id": "m.call#ROOM", "openid_token": openIDOf(t, alice),
			"member": map[string]string{"id": "member-1", "claimed_user_id": string(alice.UserID), "claimed_device_id": string(alice.DeviceID)}}
		a := postRTC(t, srv, "/get_token", body)
		if a.status != http.StatusOK {
			t.Fatalf("status %d %s", a.status, a.errcode)
		}
		g := verifyJWT(t, a.JWT)
		aliceIdentity = rtcauth.Identity(string(alice.UserID), string(alice.DeviceID), "member-1")
		if g.Identity != aliceIdentity || g.Video.Room != rtcauth.RoomAlias(string(room), "m.call#ROOM") {
			t.Fatalf("identity %q room %q", g.Identity, g.Video.Room)
		}
		// Claiming to be someone else with one's own token.
		body["member"] = map[string]string{"id": "m", "claimed_user_id": string(bob.UserID), "claimed_device_id": "X"}
		body["openid_token"] = openIDOf(t, alice)
		if a := postRTC(t, srv, "/get_token", body); a.status != http.StatusUnauthorized || a.errcode != "M_UNAUTHORIZED" {
			t.Fatalf("claiming another user: %d %s", a.status, a.errcode)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		member := func(u string) map[string]string {
			return map[string]string{"id": "m", "claimed_user_id": u, "claimed_device_id": "D"}
		}
		tests := []struct {
			name    string
			path    string
			body    any
			status  int
			errcode string
		}{
			{"not joined", "/sfu/get", map[string]any{"room": room, "openid_token": openIDOf(t, bob), "device_id": "D"}, 403, "M_FORBIDDEN"},
			{"unknown room", "/sfu/get", map[string]any{"room": "!nope:hs1.test", "openid_token": openIDOf(t, alice), "device_id": "D"}, 403, "M_FORBIDDEN"},
			{"unknown token", "/sfu/get", map[string]any{"room": room, "device_id": "D",
				"openid_token": map[string]any{"access_token": "nope", "matrix_server_name": "hs1.test"}}, 401, "M_UNAUTHORIZED"},
			{"remote user not joined", "/get_token", map[string]any{"room_id": room, "slot_id": "m.call#ROOM", "member": member("@carol:hs2.test"),
				"openid_token": map[string]any{"access_token": "carol-token", "matrix_server_name": "hs2.test"}}, 403, "M_FORBIDDEN"},
			{"remote server vouching for another's user", "/sfu/get", map[string]any{"room": room, "device_id": "D",
				"openid_token": map[string]any{"access_token": "liar-token", "matrix_server_name": "hs2.test"}}, 401, "M_UNAUTHORIZED"},
			{"remote token unknown", "/sfu/get", map[string]any{"room": room, "device_id": "D",
				"openid_token": map[string]any{"access_token": "x", "matrix_server_name": "hs2.test"}}, 401, "M_UNAUTHORIZED"},
			{"malformed JSON", "/sfu/get", []byte(`{"room":`), 400, "M_NOT_JSON"},
			{"wrong types", "/get_token", []byte(`{"room_id":5}`), 400, "M_NOT_JSON"},
			{"no room", "/sfu/get", map[string]any{"openid_token": openIDOf(t, alice)}, 400, "M_BAD_JSON"},
			{"no openid token", "/sfu/get", map[string]any{"room": room}, 400, "M_BAD_JSON"},
			{"no slot", "/get_token", map[string]any{"room_id": room, "openid_token": openIDOf(t, alice), "member": member(string(alice.UserID))}, 400, "M_BAD_JSON"},
			{"no member", "/get_token", map[string]any{"room_id": room, "slot_id": "s", "openid_token": openIDOf(t, alice)}, 400, "M_BAD_JSON"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				a := postRTC(t, srv, tt.path, tt.body)
				if a.status != tt.status || a.errcode != tt.errcode {
					t.Fatalf("got %d %s, want %d %s", a.status, a.errcode, tt.status, tt.errcode)
				}
				if got := a.header.Get("Access-Control-Allow-Methods"); got != "POST" {
					t.Fatalf("CORS methods %q", got)
				}
			})
		}
		resp, err := http.Get(srv.URL + "/livekit/jwt/sfu/get")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("GET sfu/get: %d", resp.StatusCode)
		}
	})

	t.Run("openid tokens persist and expire", func(t *testing.T) {
		tok := openIDOf(t, alice)
		// A fresh store on the same database is what a restart sees.
		fresh := rtcauth.NewOpenIDStore(srv.DB, clock.now)
		if u, err := fresh.User(ctx, tok["access_token"].(string)); err != nil || u != string(alice.UserID) {
			t.Fatalf("after restart: %q %v", u, err)
		}
		clock.advance(rtcauth.OpenIDLifetime + time.Second)
		a := postRTC(t, srv, "/sfu/get", map[string]any{"room": room, "openid_token": tok, "device_id": "D"})
		if a.status != http.StatusUnauthorized || a.errcode != "M_UNAUTHORIZED" {
			t.Fatalf("expired token: %d %s", a.status, a.errcode)
		}
		wantMatrixError(t, func() error {
			_, err := srv.Sig.FederationLocal().OpenIDUser(ctx, tok["access_token"].(string))
			return err
		}(), "M_UNKNOWN_TOKEN")
	})

	t.Run("call members", func(t *testing.T) {
		key := "_" + string(alice.UserID) + "_" + string(alice.DeviceID) + "_m.call"
		content := map[string]any{"application": "m.call", "call_id": "", "scope": "m.room", "device_id": alice.DeviceID,
			"focus_active":   map[string]string{"type": "livekit", "focus_selection": "oldest_membership"},
			"foci_preferred": []map[string]string{{"type": "livekit", "livekit_service_url": srv.URL + "/livekit/jwt"}}}
		send := func(c map[string]any) {
			if _, err := alice.SendStateEvent(ctx, room, event.Type{Type: rtcauth.TypeCallMember, Class: event.StateEventType}, key, c); err != nil {
				t.Fatal(err)
			}
		}
		send(content)
		members, err := srv.Sig.ActiveCallMembers(ctx, string(room))
		if err != nil || len(members) != 1 || members[0].UserID != string(alice.UserID) || members[0].DeviceID != string(alice.DeviceID) {
			t.Fatalf("members %+v %v", members, err)
		}
		// Created long ago: expired (the clock is past the default 4h).
		content["created_ts"] = clock.now().Add(-5 * time.Hour).UnixMilli()
		send(content)
		if members, err := srv.Sig.ActiveCallMembers(ctx, string(room)); err != nil || len(members) != 0 {
			t.Fatalf("expired: %+v %v", members, err)
		}
		delete(content, "created_ts")
		send(content)
		send(map[string]any{}) // hung up
		if members, err := srv.Sig.ActiveCallMembers(ctx, string(room)); err != nil || len(members) != 0 {
			t.Fatalf("left: %+v %v", members, err)
		}
	})

	t.Run("world", func(t *testing.T) { testCallWorld(t, srv, alice, bob, room, aliceIdentity) })
}
