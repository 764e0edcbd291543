package accounts

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestProfile(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		ctx := context.Background()
		uid, tok, _ := e.register("sam", "pw")
		_, otherTok, _ := e.register("tess", "pw")
		p := v3 + "/profile/" + uid

		// A new account's display name is its localpart, as in Synapse.
		if got := e.expect("GET", p, "", nil, 200, ""); !reflect.DeepEqual(got, obj{"displayname": "sam"}) {
			t.Errorf("profile = %v", got)
		}
		e.expect("PUT", p+"/displayname", tok, obj{"displayname": "Sam S."}, 200, "")
		e.expect("PUT", p+"/avatar_url", tok, obj{"avatar_url": "mxc://" + testServer + "/abc"}, 200, "")
		e.expect("PUT", p+"/m.tz", tok, obj{"m.tz": "Europe/London"}, 200, "")
		e.expect("PUT", p+"/org.example.pets", tok, obj{"org.example.pets": []string{"cat"}}, 200, "")
		want := obj{"displayname": "Sam S.", "avatar_url": "mxc://" + testServer + "/abc", "m.tz": "Europe/London",
			"org.example.pets": []any{"cat"}}
		if got := e.expect("GET", p, "", nil, 200, ""); !reflect.DeepEqual(got, want) {
			t.Errorf("profile = %v, want %v", got, want)
		}
		if got := e.expect("GET", p+"/displayname", "", nil, 200, ""); !reflect.DeepEqual(got, obj{"displayname": "Sam S."}) {
			t.Errorf("displayname = %v", got)
		}
		if got, want := e.profileChanges(), []string{uid, uid}; !reflect.DeepEqual(got, want) {
			t.Errorf("profile hooks = %v, want %v (custom fields do not change member events)", got, want)
		}
		name, avatar, err := e.a.Profile(ctx, uid)
		if err != nil || name != "Sam S." || avatar != "mxc://"+testServer+"/abc" {
			t.Errorf("Profile = %q, %q, %v", name, avatar, err)
		}
		// Setting the same value again changes nothing.
		e.expect("PUT", p+"/displayname", tok, obj{"displayname": "Sam S."}, 200, "")
		if got := e.profileChanges(); len(got) != 2 {
			t.Errorf("profile hooks = %v after a no-op", got)
		}

		e.expect("DELETE", p+"/org.example.pets", tok, nil, 200, "")
		e.expect("GET", p+"/org.example.pets", "", nil, 404, "M_NOT_FOUND")
		e.expect("DELETE", p+"/avatar_url", tok, nil, 200, "")
		e.expect("GET", p+"/avatar_url", "", nil, 404, "M_NOT_FOUND")
		if got := e.profileChanges(); len(got) != 3 {
			t.Errorf("profile hooks = %v after deleting avatar_url", got)
		}

		for _, c := range []struct {
			name, method, path, token string
			body                      any
			status                    int
			code                      string
		}{
			{"someone else's", "PUT", p + "/displayname", otherTok, obj{"displayname": "x"}, 403, "M_FORBIDDEN"},
			{"delete someone else's", "DELETE", p + "/m.tz", otherTok, nil, 403, "M_FORBIDDEN"},
			{"no token", "PUT", p + "/displayname", "", obj{"displayname": "x"}, 401, "M_MISSING_TOKEN"},
			{"missing key", "PUT", p + "/displayname", tok, obj{"avatar_url": "mxc://a/b"}, 400, "M_MISSING_PARAM"},
			{"not string", "PUT", p + "/displayname", tok, obj{"displayname": 5}, 400, "M_INVALID_PARAM"},
			{"too long", "PUT", p + "/displayname", tok, obj{"displayname": strings.Repeat("x", 257)}, 400, "M_INVALID_PARAM"},
			{"avatar not mxc", "PUT", p + "/avatar_url", tok, obj{"avatar_url": "https://x/y"}, 400, "M_INVALID_PARAM"},
			{"tz not string", "PUT", p + "/m.tz", tok, obj{"m.tz": 1}, 400, "M_INVALID_PARAM"},
			{"bad key", "PUT", p + "/Pets", tok, obj{"Pets": 1}, 400, "M_INVALID_PARAM"},
			{"key too long", "PUT", p + "/a." + strings.Repeat("b", 300), tok, obj{}, 400, "M_KEY_TOO_LARGE"},
			{"profile too large", "PUT", p + "/org.example.big", tok, obj{"org.example.big": strings.Repeat("x", 70000)}, 400, "M_PROFILE_TOO_LARGE"},
			{"not json", "PUT", p + "/displayname", tok, "{", 400, "M_NOT_JSON"},
			{"not object", "PUT", p + "/displayname", tok, "[]", 400, "M_BAD_JSON"},
			{"unknown user", "GET", v3 + "/profile/@nobody:" + testServer, "", nil, 404, "M_NOT_FOUND"},
			{"unknown user field", "GET", v3 + "/profile/@nobody:" + testServer + "/displayname", "", nil, 404, "M_NOT_FOUND"},
			{"remote user", "GET", v3 + "/profile/@sam:elsewhere", "", nil, 404, "M_NOT_FOUND"},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.expect(c.method, c.path, c.token, c.body, c.status, c.code)
			})
		}
		if _, _, err := e.a.Profile(ctx, "@nobody:"+testServer); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("Profile(unknown) error = %v", err)
		}
		// An empty display name clears it.
		e.expect("PUT", p+"/displayname", tok, obj{"displayname": ""}, 200, "")
		e.expect("GET", p+"/displayname", "", nil, 404, "M_NOT_FOUND")
	})
}
