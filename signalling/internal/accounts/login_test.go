package accounts

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestLogin(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		uid, _, _ := e.register("ivy", "secret")
		out := e.expect("GET", v3+"/login", "", nil, 200, "")
		if !reflect.DeepEqual(out, obj{"flows": []any{obj{"type": "m.login.password"}}}) {
			t.Errorf("flows = %v", out)
		}
		ok := []struct {
			name string
			body obj
		}{
			{"localpart", obj{"type": "m.login.password", "identifier": obj{"type": "m.id.user", "user": "ivy"}, "password": "secret"}},
			{"user ID", obj{"type": "m.login.password", "identifier": obj{"type": "m.id.user", "user": uid}, "password": "secret"}},
			{"other case", obj{"type": "m.login.password", "identifier": obj{"type": "m.id.user", "user": "IVY"}, "password": "secret"}},
			{"deprecated user", obj{"type": "m.login.password", "user": "ivy", "password": "secret"}},
		}
		for _, c := range ok {
			t.Run(c.name, func(t *testing.T) {
				out := e.expect("POST", v3+"/login", "", c.body, 200, "")
				if out["user_id"] != uid || out["device_id"] == "" || out["home_server"] != testServer {
					t.Fatalf("login = %v", out)
				}
				e.expect("GET", v3+"/account/whoami", out["access_token"].(string), nil, 200, "")
			})
		}
		bad := []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"wrong password", obj{"type": "m.login.password", "user": "ivy", "password": "nope"}, 403, "M_FORBIDDEN"},
			{"unknown user", obj{"type": "m.login.password", "user": "nobody", "password": "secret"}, 403, "M_FORBIDDEN"},
			{"remote user", obj{"type": "m.login.password", "user": "@ivy:elsewhere", "password": "secret"}, 403, "M_FORBIDDEN"},
			{"third party", obj{"type": "m.login.password", "identifier": obj{"type": "m.id.thirdparty", "medium": "email", "address": "a@b"}, "password": "secret"}, 403, "M_FORBIDDEN"},
			{"unknown identifier", obj{"type": "m.login.password", "identifier": obj{"type": "m.id.owl"}, "password": "secret"}, 400, "M_UNKNOWN"},
			{"missing type", obj{"user": "ivy", "password": "secret"}, 400, "M_MISSING_PARAM"},
			{"unknown type", obj{"type": "m.login.token", "token": "x"}, 400, "M_UNKNOWN"},
			{"missing identifier", obj{"type": "m.login.password", "password": "secret"}, 400, "M_MISSING_PARAM"},
			{"missing password", obj{"type": "m.login.password", "user": "ivy"}, 400, "M_MISSING_PARAM"},
			{"password not string", obj{"type": "m.login.password", "user": "ivy", "password": 5}, 400, "M_INVALID_PARAM"},
			{"user not string", obj{"type": "m.login.password", "identifier": obj{"type": "m.id.user", "user": 5}, "password": "x"}, 400, "M_INVALID_PARAM"},
			{"type not string", obj{"type": 5}, 400, "M_BAD_JSON"},
			{"not json", "{", 400, "M_NOT_JSON"},
			{"not object", `"x"`, 400, "M_BAD_JSON"},
		}
		for _, c := range bad {
			t.Run(c.name, func(t *testing.T) {
				e.expect("POST", v3+"/login", "", c.body, c.status, c.code)
			})
		}
	})
}

func TestLoginReusesDevice(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		_, first, dev := e.register("jack", "pw")
		e.expect("GET", v3+"/account/whoami", first, nil, 200, "") // now cached
		out := e.expect("POST", v3+"/login", "", obj{"type": "m.login.password", "user": "jack", "password": "pw", "device_id": dev}, 200, "")
		if out["device_id"] != dev {
			t.Fatalf("device = %v, want %s", out["device_id"], dev)
		}
		// Logging in to a device replaces its token.
		out401 := e.expect("GET", v3+"/account/whoami", first, nil, 401, "M_UNKNOWN_TOKEN")
		if out401["soft_logout"] != false {
			t.Errorf("soft_logout = %v", out401["soft_logout"])
		}
		e.expect("GET", v3+"/account/whoami", out["access_token"].(string), nil, 200, "")
		if got := e.deletedDevices(); len(got) != 0 {
			t.Errorf("devices deleted: %v", got)
		}
	})
}

func TestLoginRateLimits(t *testing.T) {
	t.Run("ip", func(t *testing.T) {
		forEachBackend(t, Config{RateLimits: RateLimits{LoginIP: rateConfig(2)}}, func(t *testing.T, e *env) {
			body := obj{"type": "m.login.password", "user": "nobody", "password": "x"}
			e.expect("POST", v3+"/login", "", body, 403, "M_FORBIDDEN")
			e.expect("POST", v3+"/login", "", body, 403, "M_FORBIDDEN")
			out := e.expect("POST", v3+"/login", "", body, 429, "M_LIMIT_EXCEEDED")
			if ms, _ := out["retry_after_ms"].(float64); ms <= 0 || ms > 3600*1000 {
				t.Errorf("retry_after_ms = %v", out["retry_after_ms"])
			}
		})
	})
	t.Run("user", func(t *testing.T) {
		forEachBackend(t, Config{RateLimits: RateLimits{LoginUser: rateConfig(1)}}, func(t *testing.T, e *env) {
			e.register("kate", "pw")
			e.expect("POST", v3+"/login", "", obj{"type": "m.login.password", "user": "kate", "password": "x"}, 403, "M_FORBIDDEN")
			// Even the right password waits now; another user does not.
			e.expect("POST", v3+"/login", "", obj{"type": "m.login.password", "user": "kate", "password": "pw"}, 429, "M_LIMIT_EXCEEDED")
			e.expect("POST", v3+"/login", "", obj{"type": "m.login.password", "user": "other", "password": "pw"}, 403, "M_FORBIDDEN")
			e.clock.Advance(time.Hour)
			e.login("kate", "pw")
		})
	})
}

func TestLogout(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		uid, tok, dev := e.register("liam", "pw")
		tok2, dev2 := e.login("liam", "pw")
		tok3, dev3 := e.login("liam", "pw")
		for _, tk := range []string{tok, tok2, tok3} {
			e.expect("GET", v3+"/account/whoami", tk, nil, 200, "") // cache every session
		}
		e.expect("POST", v3+"/logout", tok, nil, 200, "")
		e.expect("GET", v3+"/account/whoami", tok, nil, 401, "M_UNKNOWN_TOKEN")
		e.expect("GET", v3+"/account/whoami", tok2, nil, 200, "")
		if got, want := e.deletedDevices(), []string{uid + "/" + dev}; !reflect.DeepEqual(got, want) {
			t.Errorf("deleted = %v, want %v", got, want)
		}
		ids, err := e.a.DeviceIDs(context.Background(), uid)
		if want := []string{dev2, dev3}; err != nil || !reflect.DeepEqual(ids, sorted(want)) {
			t.Errorf("DeviceIDs = %v, %v; want %v", ids, err, sorted(want))
		}

		e.expect("POST", v3+"/logout/all", tok2, nil, 200, "")
		e.expect("GET", v3+"/account/whoami", tok2, nil, 401, "M_UNKNOWN_TOKEN")
		e.expect("GET", v3+"/account/whoami", tok3, nil, 401, "M_UNKNOWN_TOKEN")
		if got := e.deletedDevices(); len(got) != 3 {
			t.Errorf("deleted = %v, want 3 devices", got)
		}
		if ids, _ := e.a.DeviceIDs(context.Background(), uid); len(ids) != 0 {
			t.Errorf("devices left: %v", ids)
		}
		e.expect("POST", v3+"/logout", "", nil, 401, "M_MISSING_TOKEN")
		e.expect("POST", v3+"/logout", "syt_bogus", nil, 401, "M_UNKNOWN_TOKEN")
	})
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestPasswordChange(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		uid, tok, dev := e.register("mia", "old")
		other, otherDev := e.login("mia", "old")
		e.expect("GET", v3+"/account/whoami", other, nil, 200, "")
		e.expect("POST", v3+"/account/password", tok, obj{}, 400, "M_MISSING_PARAM")
		e.expect("POST", v3+"/account/password", tok, obj{"new_password": 5}, 400, "M_BAD_JSON")
		e.expect("POST", v3+"/account/password", "", obj{"new_password": "new"}, 401, "M_MISSING_TOKEN")

		out := e.expect("POST", v3+"/account/password", tok, obj{"new_password": "new"}, 401, "")
		if want := []any{obj{"stages": []any{"m.login.password"}}}; !reflect.DeepEqual(out["flows"], want) {
			t.Fatalf("flows = %v", out["flows"])
		}
		session := out["session"]
		out = e.expect("POST", v3+"/account/password", tok, obj{"new_password": "new", "auth": passwordAuth(session, "mia", "wrong")}, 401, "M_FORBIDDEN")
		if out["session"] != session || !reflect.DeepEqual(out["completed"], []any{}) {
			t.Errorf("failed stage = %v", out)
		}
		// Another user's password does not authorise mia's request.
		e.register("nick", "nickpw")
		e.expect("POST", v3+"/account/password", tok, obj{"new_password": "new", "auth": passwordAuth(session, "nick", "nickpw")}, 403, "M_FORBIDDEN")
		// The session belongs to mia: nick cannot use it.
		_, nickTok, _ := e.register("nick2", "pw")
		e.expect("POST", v3+"/account/password", nickTok, obj{"new_password": "x", "auth": passwordAuth(session, "nick2", "pw")}, 403, "M_FORBIDDEN")

		e.expect("POST", v3+"/account/password", tok, obj{"new_password": "new", "auth": passwordAuth(session, "mia", "old")}, 200, "")
		e.expect("GET", v3+"/account/whoami", tok, nil, 200, "")
		e.expect("GET", v3+"/account/whoami", other, nil, 401, "M_UNKNOWN_TOKEN")
		if got, want := e.deletedDevices(), []string{uid + "/" + otherDev}; !reflect.DeepEqual(got, want) {
			t.Errorf("deleted = %v, want %v", got, want)
		}
		e.expect("POST", v3+"/login", "", obj{"type": "m.login.password", "user": "mia", "password": "old"}, 403, "M_FORBIDDEN")
		third, _ := e.login("mia", "new")

		// logout_devices false keeps the other sessions.
		out = e.expect("POST", v3+"/account/password", tok, obj{"new_password": "newer", "logout_devices": false}, 401, "")
		e.expect("POST", v3+"/account/password", tok, obj{"new_password": "newer", "logout_devices": false,
			"auth": passwordAuth(out["session"], "@mia:"+testServer, "new")}, 200, "")
		e.expect("GET", v3+"/account/whoami", third, nil, 200, "")
		e.login("mia", "newer")
		if ids, _ := e.a.DeviceIDs(context.Background(), uid); !slices.Contains(ids, dev) {
			t.Errorf("current device %s gone: %v", dev, ids)
		}
	})
}

func TestCheckPassword(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		uid, _, _ := e.register("olga", "pw")
		ctx := context.Background()
		if err := e.a.CheckPassword(ctx, uid, "pw"); err != nil {
			t.Errorf("right password: %v", err)
		}
		for _, c := range [][2]string{{uid, "nope"}, {"@nobody:" + testServer, "pw"}} {
			if err := e.a.CheckPassword(ctx, c[0], c[1]); err == nil {
				t.Errorf("CheckPassword(%s, %s) = nil", c[0], c[1])
			}
		}
	})
}

func TestSessionCacheBound(t *testing.T) {
	forEachBackend(t, Config{SessionCacheSize: 2}, func(t *testing.T, e *env) {
		_, tok, _ := e.register("pam", "pw")
		toks := []string{tok}
		for range 3 {
			tk, _ := e.login("pam", "pw")
			toks = append(toks, tk)
		}
		for range 2 {
			for _, tk := range toks {
				e.expect("GET", v3+"/account/whoami", tk, nil, 200, "")
			}
		}
		e.a.sessions.mu.Lock()
		n := len(e.a.sessions.byDigest)
		e.a.sessions.mu.Unlock()
		if n > 2 {
			t.Errorf("cache holds %d sessions, bound is 2", n)
		}
		e.expect("POST", v3+"/logout/all", toks[0], nil, 200, "")
		for _, tk := range toks {
			e.expect("GET", v3+"/account/whoami", tk, nil, 401, "M_UNKNOWN_TOKEN")
		}
	})
}
