package accounts

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestTags(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		uid, tok, _ := e.register("zoe", "pw")
		_, otherTok, _ := e.register("zack", "pw")
		room := "!r:" + testServer
		p := v3 + "/user/" + uid + "/rooms/" + room + "/tags"

		if got := e.expect("GET", p, tok, nil, 200, ""); !reflect.DeepEqual(got, obj{"tags": obj{}}) {
			t.Errorf("no tags = %v", got)
		}
		before := e.db.AuxPos()
		e.expect("PUT", p+"/m.favourite", tok, obj{"order": 0.25}, 200, "")
		e.expect("PUT", p+"/u.work", tok, obj{}, 200, "")
		want := obj{"tags": obj{"m.favourite": obj{"order": 0.25}, "u.work": obj{}}}
		if got := e.expect("GET", p, tok, nil, 200, ""); !reflect.DeepEqual(got, want) {
			t.Errorf("tags = %v, want %v", got, want)
		}
		// The tags are the room's m.tag account data, for /sync.
		_, rooms, err := e.a.AccountDataSince(context.Background(), uid, before, e.db.AuxPos())
		if err != nil {
			t.Fatal(err)
		}
		if got := events(t, rooms[room]); len(got) != 1 || !strings.HasPrefix(got[0], "m.tag=") {
			t.Errorf("account data = %v", got)
		}
		e.expect("DELETE", p+"/m.favourite", tok, nil, 200, "")
		e.expect("DELETE", p+"/m.favourite", tok, nil, 200, "") // already gone: fine
		if got := e.expect("GET", p, tok, nil, 200, ""); !reflect.DeepEqual(got, obj{"tags": obj{"u.work": obj{}}}) {
			t.Errorf("after delete = %v", got)
		}
		for _, c := range []struct {
			name, method, path, token string
			body                      any
			status                    int
			code                      string
		}{
			{"other user", "GET", p, otherTok, nil, 403, "M_FORBIDDEN"},
			{"other user put", "PUT", p + "/u.x", otherTok, obj{}, 403, "M_FORBIDDEN"},
			{"bad room", "GET", v3 + "/user/" + uid + "/rooms/r/tags", tok, nil, 400, "M_INVALID_PARAM"},
			{"order not number", "PUT", p + "/u.x", tok, obj{"order": "high"}, 400, "M_BAD_JSON"},
			{"tag too long", "PUT", p + "/u." + strings.Repeat("x", 260), tok, obj{}, 400, "M_INVALID_PARAM"},
			{"not json", "PUT", p + "/u.x", tok, "{", 400, "M_NOT_JSON"},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.expect(c.method, c.path, c.token, c.body, c.status, c.code)
			})
		}
	})
}
