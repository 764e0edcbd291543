package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestFilters(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		uid, tok, _ := e.register("xena", "pw")
		other, otherTok, _ := e.register("yuri", "pw")
		p := v3 + "/user/" + uid + "/filter"
		filter := obj{
			"room": obj{
				"state":    obj{"types": []string{"m.room.*"}, "not_rooms": []string{"!a:x"}, "lazy_load_members": true},
				"timeline": obj{"limit": 10, "types": []string{"m.room.message"}, "not_senders": []string{"@spam:x"}},
			},
			"presence":     obj{"types": []string{"m.presence"}},
			"event_format": "client",
			"event_fields": []string{"type", "content"},
		}
		out := e.expect("POST", p, tok, filter, 200, "")
		if out["filter_id"] != "0" {
			t.Errorf("first filter_id = %v", out["filter_id"])
		}
		if out := e.expect("POST", p, tok, obj{}, 200, ""); out["filter_id"] != "1" {
			t.Errorf("second filter_id = %v", out["filter_id"])
		}
		got := e.expect("GET", p+"/0", tok, nil, 200, "")
		var want obj
		b, _ := json.Marshal(filter)
		_ = json.Unmarshal(b, &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GET filter = %v, want %v", got, want)
		}
		raw, err := e.a.Filter(context.Background(), uid, "0")
		if err != nil || !json.Valid(raw) {
			t.Errorf("Filter = %s, %v", raw, err)
		}
		if _, err := e.a.Filter(context.Background(), other, "0"); !errors.Is(err, ErrFilterNotFound) {
			t.Errorf("another user's filter: %v", err)
		}

		for _, c := range []struct {
			name, method, path, token string
			body                      any
			status                    int
			code                      string
		}{
			{"unknown", "GET", p + "/7", tok, nil, 404, "M_NOT_FOUND"},
			{"not a number", "GET", p + "/abc", tok, nil, 404, "M_NOT_FOUND"},
			{"other user get", "GET", p + "/0", otherTok, nil, 403, "M_FORBIDDEN"},
			{"other user post", "POST", v3 + "/user/" + other + "/filter", tok, obj{}, 403, "M_FORBIDDEN"},
			{"not json", "POST", p, tok, "{", 400, "M_NOT_JSON"},
			{"array", "POST", p, tok, "[]", 400, "M_BAD_JSON"},
			{"null", "POST", p, tok, "null", 400, "M_BAD_JSON"},
			{"room not object", "POST", p, tok, obj{"room": []int{1}}, 400, "M_BAD_JSON"},
			{"types not list", "POST", p, tok, obj{"presence": obj{"types": "m.presence"}}, 400, "M_BAD_JSON"},
			{"limit not integer", "POST", p, tok, obj{"room": obj{"timeline": obj{"limit": 1.5}}}, 400, "M_BAD_JSON"},
			{"limit zero", "POST", p, tok, obj{"room": obj{"timeline": obj{"limit": 0}}}, 400, "M_INVALID_PARAM"},
			{"include_leave not bool", "POST", p, tok, obj{"room": obj{"include_leave": "yes"}}, 400, "M_BAD_JSON"},
			{"bad event_format", "POST", p, tok, obj{"event_format": "xml"}, 400, "M_INVALID_PARAM"},
			{"bad room ID", "POST", p, tok, obj{"room": obj{"rooms": []string{"room"}}}, 400, "M_INVALID_PARAM"},
			{"bad sender", "POST", p, tok, obj{"room": obj{"timeline": obj{"senders": []string{"bob"}}}}, 400, "M_INVALID_PARAM"},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.expect(c.method, c.path, c.token, c.body, c.status, c.code)
			})
		}
	})
}

func FuzzValidateFilter(f *testing.F) {
	for _, s := range []string{`{}`, `{"room":{"timeline":{"limit":5,"rooms":["!a:b"]}}}`, `{"event_format":"client"}`,
		`[]`, `null`, `{"room":{"state":{"senders":["@a:b"],"not_senders":[""]}}}`, `{"presence":{"limit":0}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if ValidateFilter(b) != nil {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil && len(strings.TrimSpace(string(b))) > 0 {
			t.Errorf("accepted %q, which is not a JSON object", b)
		}
	})
}
