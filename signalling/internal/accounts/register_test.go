package accounts

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRegisterOpen(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		// The first request is challenged with the flows, a session, empty
		// params and nothing completed, and no errcode.
		out := e.expect("POST", v3+"/register", "", obj{"username": "Alice", "password": "pw1"}, 401, "")
		if _, has := out["errcode"]; has {
			t.Errorf("plain challenge has an errcode: %v", out)
		}
		want := []any{obj{"stages": []any{"m.login.dummy"}}}
		if !reflect.DeepEqual(out["flows"], want) || out["session"] == "" || !reflect.DeepEqual(out["params"], obj{}) ||
			!reflect.DeepEqual(out["completed"], []any{}) {
			t.Fatalf("challenge = %v", out)
		}
		// The completing request may carry auth alone: the username and
		// password of the first request are used.
		out = e.expect("POST", v3+"/register", "", obj{
			"auth": obj{"type": "m.login.dummy", "session": out["session"]}, "device_id": "PHONE",
			"initial_device_display_name": "Alice's phone",
		}, 200, "")
		if out["user_id"] != "@alice:"+testServer || out["device_id"] != "PHONE" || out["home_server"] != testServer {
			t.Fatalf("register = %v", out)
		}
		tok := out["access_token"].(string)
		who := e.expect("GET", v3+"/account/whoami", tok, nil, 200, "")
		if !reflect.DeepEqual(who, obj{"user_id": "@alice:" + testServer, "device_id": "PHONE", "is_guest": false}) {
			t.Errorf("whoami = %v", who)
		}
		dev := e.expect("GET", v3+"/devices/PHONE", tok, nil, 200, "")
		if dev["display_name"] != "Alice's phone" {
			t.Errorf("device = %v", dev)
		}
		e.login("alice", "pw1")

		// inhibit_login: no token, no device.
		out = e.expect("POST", v3+"/register", "", obj{"username": "bob", "password": "pw", "inhibit_login": true,
			"auth": obj{"type": "m.login.dummy"}}, 200, "")
		if _, has := out["access_token"]; has || out["user_id"] != "@bob:"+testServer {
			t.Errorf("inhibit_login register = %v", out)
		}
		// No username: the server picks one.
		out = e.expect("POST", v3+"/register", "", obj{"password": "pw", "auth": obj{"type": "m.login.dummy"}}, 200, "")
		if uid, _ := out["user_id"].(string); len(uid) < 3 || uid[0] != '@' {
			t.Errorf("generated user = %v", out)
		}
	})
}

func TestRegisterErrors(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		e.register("taken", "pw")
		dummy := obj{"type": "m.login.dummy"}
		for _, c := range []struct {
			name   string
			query  string
			body   any
			status int
			code   string
		}{
			{"guest", "?kind=guest", obj{}, 403, "M_GUEST_ACCESS_FORBIDDEN"},
			{"bad kind", "?kind=robot", obj{}, 400, "M_INVALID_PARAM"},
			{"not json", "", "{nope", 400, "M_NOT_JSON"},
			{"array", "", "[]", 400, "M_BAD_JSON"},
			{"username not string", "", obj{"username": 5}, 400, "M_BAD_JSON"},
			// Username checks come before user-interactive auth.
			{"taken", "", obj{"username": "taken", "password": "pw"}, 400, "M_USER_IN_USE"},
			{"taken other case", "", obj{"username": "TAKEN", "password": "pw"}, 400, "M_USER_IN_USE"},
			{"invalid char", "", obj{"username": "al ice", "password": "pw"}, 400, "M_INVALID_USERNAME"},
			{"empty", "", obj{"username": "", "password": "pw"}, 400, "M_INVALID_USERNAME"},
			{"underscore", "", obj{"username": "_bridge", "password": "pw"}, 400, "M_INVALID_USERNAME"},
			{"colon", "", obj{"username": "a:b", "password": "pw"}, 400, "M_INVALID_USERNAME"},
			{"too long", "", obj{"username": strings.Repeat("a", 250), "password": "pw"}, 400, "M_INVALID_USERNAME"},
			{"missing password", "", obj{"username": "nopw", "auth": dummy}, 400, "M_MISSING_PARAM"},
			{"auth not object", "", obj{"username": "x1", "auth": "dummy"}, 400, "M_BAD_JSON"},
			{"unknown session", "", obj{"username": "x2", "auth": obj{"type": "m.login.dummy", "session": "nope"}}, 400, "M_UNKNOWN"},
			{"stage not offered", "", obj{"username": "x3", "auth": obj{"type": "m.login.password"}}, 400, "M_UNRECOGNIZED"},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.expect("POST", v3+"/register"+c.query, "", c.body, c.status, c.code)
			})
		}
	})
}

func TestRegisterClosed(t *testing.T) {
	forEachBackend(t, Config{Registration: RegistrationClosed}, func(t *testing.T, e *env) {
		e.expect("POST", v3+"/register", "", obj{"username": "a", "password": "pw"}, 403, "M_FORBIDDEN")
		e.expect("GET", v3+"/register/available?username=a", "", nil, 403, "M_FORBIDDEN")
		e.expect("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=x", "", nil, 403, "M_FORBIDDEN")
	})
}

func TestRegisterAvailable(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		e.register("carol", "pw")
		out := e.expect("GET", v3+"/register/available?username=dave", "", nil, 200, "")
		if out["available"] != true {
			t.Errorf("available = %v", out)
		}
		e.expect("GET", v3+"/register/available?username=Carol", "", nil, 400, "M_USER_IN_USE")
		e.expect("GET", v3+"/register/available?username=c%20d", "", nil, 400, "M_INVALID_USERNAME")
		e.expect("GET", v3+"/register/available", "", nil, 400, "M_MISSING_PARAM")
	})
}

func TestRegisterToken(t *testing.T) {
	forEachBackend(t, Config{Registration: RegistrationToken, UIATimeout: 10 * time.Minute}, func(t *testing.T, e *env) {
		ctx := context.Background()
		validity := func(token string) any {
			t.Helper()
			return e.expect("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token="+token, "", nil, 200, "")["valid"]
		}
		uses := func(token string) (int64, int64) {
			t.Helper()
			info, ok, err := e.a.GetRegistrationToken(ctx, token)
			if err != nil || !ok {
				t.Fatalf("GetRegistrationToken(%s) = %v, %v", token, ok, err)
			}
			return info.Pending, info.Completed
		}
		if err := e.a.CreateRegistrationToken(ctx, RegistrationTokenInfo{Token: "once", UsesAllowed: 1}); err != nil {
			t.Fatal(err)
		}
		if err := e.a.CreateRegistrationToken(ctx, RegistrationTokenInfo{Token: "old", Expiry: e.clock.Now().Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
		if err := e.a.CreateRegistrationToken(ctx, RegistrationTokenInfo{Token: "bad token!"}); err == nil {
			t.Error("a token outside the opaque identifier grammar was accepted")
		}
		e.expect("GET", "/_matrix/client/v1/register/m.login.registration_token/validity", "", nil, 400, "M_MISSING_PARAM")
		for tok, want := range map[string]bool{"once": true, "old": false, "unknown": false} {
			if got := validity(tok); got != want {
				t.Errorf("valid(%s) = %v, want %v", tok, got, want)
			}
		}

		out := e.expect("POST", v3+"/register", "", obj{"username": "erin", "password": "pw"}, 401, "")
		session := out["session"]
		if want := []any{obj{"stages": []any{"m.login.registration_token"}}}; !reflect.DeepEqual(out["flows"], want) {
			t.Fatalf("flows = %v", out["flows"])
		}
		// A wrong token fails the stage: 401 with the errcode and the
		// challenge.
		out = e.expect("POST", v3+"/register", "", obj{"auth": obj{"type": "m.login.registration_token", "token": "nope", "session": session}}, 401, "M_UNAUTHORIZED")
		if out["session"] != session || out["flows"] == nil {
			t.Errorf("failed stage = %v", out)
		}
		e.expect("POST", v3+"/register", "", obj{"auth": obj{"type": "m.login.registration_token", "token": 7, "session": session}}, 401, "M_INVALID_PARAM")
		e.expect("POST", v3+"/register", "", obj{"auth": obj{"type": "m.login.registration_token", "token": "old", "session": session}}, 401, "M_UNAUTHORIZED")
		out = e.expect("POST", v3+"/register", "", obj{"auth": obj{"type": "m.login.registration_token", "token": "once", "session": session}}, 200, "")
		if out["user_id"] != "@erin:"+testServer {
			t.Fatalf("register = %v", out)
		}
		if p, c := uses("once"); p != 0 || c != 1 {
			t.Errorf("after registering: pending %d completed %d, want 0 1", p, c)
		}
		if validity("once") != false {
			t.Error("a used-up token is still valid")
		}
		// A retry of the completed request answers with the same account.
		out = e.expect("POST", v3+"/register", "", obj{"auth": obj{"type": "m.login.registration_token", "token": "once", "session": session}}, 200, "")
		if out["user_id"] != "@erin:"+testServer {
			t.Errorf("retry = %v", out)
		}
		// Someone else cannot use it.
		e.expect("POST", v3+"/register", "", obj{"username": "frank", "password": "pw",
			"auth": obj{"type": "m.login.registration_token", "token": "once"}}, 401, "M_UNAUTHORIZED")

		// A completed stage holds a pending use until the session expires.
		if err := e.a.CreateRegistrationToken(ctx, RegistrationTokenInfo{Token: "twice", UsesAllowed: 2}); err != nil {
			t.Fatal(err)
		}
		e.expect("POST", v3+"/register", "", obj{"username": "gina", "auth": obj{"type": "m.login.registration_token", "token": "twice"}}, 400, "M_MISSING_PARAM")
		if p, c := uses("twice"); p != 1 || c != 0 {
			t.Errorf("stage done, not registered: pending %d completed %d, want 1 0", p, c)
		}
		e.clock.Advance(11 * time.Minute)
		e.expect("POST", v3+"/register", "", obj{"username": "hank"}, 401, "") // sweeps expired sessions
		if p, _ := uses("twice"); p != 0 {
			t.Errorf("after the session expired: pending %d, want 0", p)
		}
		// Start clears pending uses left by a previous process.
		e.expect("POST", v3+"/register", "", obj{"username": "gina", "auth": obj{"type": "m.login.registration_token", "token": "twice"}}, 400, "M_MISSING_PARAM")
		if err := e.a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if p, _ := uses("twice"); p != 0 {
			t.Errorf("after Start: pending %d, want 0", p)
		}
	})
}

func TestRegisterRateLimit(t *testing.T) {
	cfg := Config{RateLimits: RateLimits{Register: rateConfig(2)}}
	forEachBackend(t, cfg, func(t *testing.T, e *env) {
		// The steps of user-interactive auth cost nothing: only an
		// account created does (a burst of 2 here).
		for range 5 {
			e.expect("POST", v3+"/register", "", obj{}, 401, "")
		}
		e.register("ann", "pw")
		e.register("ben", "pw")
		out := e.expect("POST", v3+"/register", "", obj{}, 429, "M_LIMIT_EXCEEDED")
		if ms, _ := out["retry_after_ms"].(float64); ms <= 0 {
			t.Errorf("retry_after_ms = %v", out["retry_after_ms"])
		}
		e.expect("POST", v3+"/register", "", obj{"username": "cal", "password": "pw", "auth": obj{"type": "m.login.dummy"}}, 429, "M_LIMIT_EXCEEDED")
		e.clock.Advance(time.Hour)
		e.register("cal", "pw")
	})
}
