package accounts

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestAccountDataEndpoints(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		uid, tok, _ := e.register("uma", "pw")
		other, otherTok, _ := e.register("vic", "pw")
		g := v3 + "/user/" + uid + "/account_data/"
		r := v3 + "/user/" + uid + "/rooms/!room:" + testServer + "/account_data/"

		e.expect("PUT", g+"org.example.settings", tok, obj{"theme": "dark"}, 200, "")
		if got := e.expect("GET", g+"org.example.settings", tok, nil, 200, ""); !reflect.DeepEqual(got, obj{"theme": "dark"}) {
			t.Errorf("global = %v", got)
		}
		e.expect("PUT", r+"m.tag", tok, obj{"tags": obj{"u.work": obj{}}}, 200, "")
		if got := e.expect("GET", r+"m.tag", tok, nil, 200, ""); !reflect.DeepEqual(got, obj{"tags": obj{"u.work": obj{}}}) {
			t.Errorf("room = %v", got)
		}
		// No inheritance between global and room data.
		e.expect("GET", g+"m.tag", tok, nil, 404, "M_NOT_FOUND")
		e.expect("GET", r+"org.example.settings", tok, nil, 404, "M_NOT_FOUND")

		for _, c := range []struct {
			name, method, path, token string
			body                      any
			status                    int
			code                      string
		}{
			{"put for other user", "PUT", v3 + "/user/" + other + "/account_data/x", tok, obj{}, 403, "M_FORBIDDEN"},
			{"get for other user", "GET", g + "org.example.settings", otherTok, nil, 403, "M_FORBIDDEN"},
			{"room put for other user", "PUT", r + "x", otherTok, obj{}, 403, "M_FORBIDDEN"},
			{"fully_read", "PUT", r + "m.fully_read", tok, obj{"event_id": "$x"}, 405, "M_BAD_JSON"},
			{"push_rules", "PUT", g + "m.push_rules", tok, obj{}, 405, "M_BAD_JSON"},
			{"bad room", "PUT", v3 + "/user/" + uid + "/rooms/room/account_data/x", tok, obj{}, 400, "M_INVALID_PARAM"},
			{"bad room get", "GET", v3 + "/user/" + uid + "/rooms/room/account_data/x", tok, nil, 400, "M_INVALID_PARAM"},
			{"not object", "PUT", g + "x", tok, "[1]", 400, "M_BAD_JSON"},
			{"null", "PUT", g + "x", tok, "null", 400, "M_BAD_JSON"},
			{"not json", "PUT", g + "x", tok, "{", 400, "M_NOT_JSON"},
			{"no token", "GET", g + "x", "", nil, 401, "M_MISSING_TOKEN"},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.expect(c.method, c.path, c.token, c.body, c.status, c.code)
			})
		}
		// Server-managed types may still be read when set by the server.
		if err := e.a.SetRoomAccountData(context.Background(), uid, "!room:"+testServer, "m.fully_read", json.RawMessage(`{"event_id":"$e"}`)); err != nil {
			t.Fatal(err)
		}
		if got := e.expect("GET", r+"m.fully_read", tok, nil, 200, ""); got["event_id"] != "$e" {
			t.Errorf("m.fully_read = %v", got)
		}
	})
}

// events decodes AccountDataSince's events to "type=content" strings.
func events(t *testing.T, raw []json.RawMessage) []string {
	t.Helper()
	var out []string
	for _, r := range raw {
		var ev struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(r, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Type+"="+string(ev.Content))
	}
	return out
}

func TestAccountDataSince(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		ctx := context.Background()
		uid, tok, _ := e.register("wes", "pw")
		g := v3 + "/user/" + uid + "/account_data/"

		sub := e.hub.Subscribe(uid)
		defer sub.Close()
		start := e.db.AuxPos()
		e.expect("PUT", g+"a", tok, obj{"n": 1}, 200, "")
		select {
		case <-sub.C():
		case <-time.After(5 * time.Second):
			t.Fatal("account data write did not wake the user")
		}
		e.expect("PUT", g+"b", tok, obj{"n": 1}, 200, "")
		mid := e.db.AuxPos()
		if err := e.a.SetRoomAccountData(ctx, uid, "!r:x", "m.fully_read", json.RawMessage(`{"event_id":"$1"}`)); err != nil {
			t.Fatal(err)
		}
		e.expect("PUT", g+"a", tok, obj{"n": 2}, 200, "") // rewriting a moves it to the end
		end := e.db.AuxPos()
		if !(start < mid && mid < end) {
			t.Fatalf("aux positions did not advance: %d %d %d", start, mid, end)
		}

		global, rooms, err := e.a.AccountDataSince(ctx, uid, 0, end)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := events(t, global), []string{`b={"n":1}`, `a={"n":2}`}; !reflect.DeepEqual(got, want) {
			t.Errorf("global since 0 = %v, want %v", got, want)
		}
		if got, want := events(t, rooms["!r:x"]), []string{`m.fully_read={"event_id":"$1"}`}; len(rooms) != 1 || !reflect.DeepEqual(got, want) {
			t.Errorf("rooms since 0 = %v, want !r:x: %v", rooms, want)
		}

		global, rooms, err = e.a.AccountDataSince(ctx, uid, mid, end)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := events(t, global), []string{`a={"n":2}`}; !reflect.DeepEqual(got, want) || len(rooms) != 1 {
			t.Errorf("since mid = %v %v, want %v and one room", got, rooms, want)
		}
		// upto bounds the read: nothing after mid.
		global, rooms, err = e.a.AccountDataSince(ctx, uid, 0, mid)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := events(t, global), []string{`b={"n":1}`}; !reflect.DeepEqual(got, want) || len(rooms) != 0 {
			t.Errorf("upto mid = %v %v, want %v and no rooms", got, rooms, want)
		}
		// Nothing new: nothing returned; other users see nothing.
		if global, rooms, err = e.a.AccountDataSince(ctx, uid, end, end); err != nil || len(global)+len(rooms) != 0 {
			t.Errorf("since end = %v %v %v", global, rooms, err)
		}
		if global, rooms, err = e.a.AccountDataSince(ctx, "@other:x", 0, end); err != nil || len(global)+len(rooms) != 0 {
			t.Errorf("other user = %v %v %v", global, rooms, err)
		}
		if err := e.a.SetGlobalAccountData(ctx, uid, "m.push_rules", json.RawMessage(`[]`)); err == nil {
			t.Error("SetGlobalAccountData accepted a non-object")
		}
	})
}
