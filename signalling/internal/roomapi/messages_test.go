package roomapi

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// bodies lists the content.body of each m.room.message in a chunk.
func bodies(chunk any) []string {
	var out []string
	for _, ev := range chunk.([]any) {
		ev := ev.(map[string]any)
		if ev["type"] == "m.room.message" {
			out = append(out, ev["content"].(map[string]any)["body"].(string))
		}
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMessagesPagination(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"preset": "public_chat"})
		e.ok(bob, "POST", v3+"/rooms/"+esc(id)+"/join", nil)
		mid, err := e.api.currentToken(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 7 {
			sender := alice
			if i%2 == 1 {
				sender = bob
			}
			e.sendMsg(sender, id, fmt.Sprint("t", i), fmt.Sprint("m", i))
		}
		e.ok(alice, "PUT", v3+"/rooms/"+esc(id)+"/send/m.room.message/img", map[string]any{"msgtype": "m.image", "body": "pic", "url": "mxc://hs1/x"})
		msgs := func(query string) map[string]any {
			t.Helper()
			return e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/messages?"+query, nil)
		}

		// Backward from the end, in pages of 3, until end is omitted.
		var all []string
		from := ""
		for page := 0; ; page++ {
			q := "dir=b&limit=3&filter=" + url.QueryEscape(`{"types":["m.room.message"]}`)
			if from != "" {
				q += "&from=" + from
			}
			r := msgs(q)
			if from != "" && r["start"] != from {
				t.Fatalf("start %v, want the from token %s", r["start"], from)
			}
			all = append(all, bodies(r["chunk"])...)
			end, ok := r["end"].(string)
			if !ok {
				break
			}
			if page > 10 {
				t.Fatal("pagination does not end")
			}
			from = end
		}
		if want := []string{"pic", "m6", "m5", "m4", "m3", "m2", "m1", "m0"}; !equal(all, want) {
			t.Fatalf("dir=b pages %v, want %v", all, want)
		}

		cases := []struct {
			name  string
			query string
			want  []string
			end   bool
		}{
			{"forward from a token", "dir=f&limit=3&from=" + mid.String(), []string{"m0", "m1", "m2"}, true},
			{"backward to a token", "dir=b&limit=50&to=" + mid.String(), []string{"pic", "m6", "m5", "m4", "m3", "m2", "m1", "m0"}, false},
			{"forward from start", "dir=f&limit=3&filter=" + url.QueryEscape(`{"types":["m.room.mes*"]}`), []string{"m0", "m1", "m2"}, true},
			{"senders", "dir=b&limit=50&filter=" + url.QueryEscape(`{"senders":["`+bob+`"],"types":["m.room.message"]}`), []string{"m5", "m3", "m1"}, false},
			{"not_senders", "dir=f&limit=50&from=" + mid.String() + "&filter=" + url.QueryEscape(`{"not_senders":["`+bob+`"]}`), []string{"m0", "m2", "m4", "m6", "pic"}, false},
			{"not_types wins", "dir=b&limit=50&filter=" + url.QueryEscape(`{"types":["*"],"not_types":["m.room.message"]}`), nil, false},
			{"contains_url", "dir=b&limit=50&filter=" + url.QueryEscape(`{"contains_url":true}`), []string{"pic"}, false},
			{"not_rooms", "dir=b&limit=50&filter=" + url.QueryEscape(`{"not_rooms":["`+id+`"]}`), nil, false},
			{"filter limit", "dir=b&filter=" + url.QueryEscape(`{"limit":2,"types":["m.room.message"]}`), []string{"pic", "m6"}, true},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := msgs(c.query)
				if got := bodies(r["chunk"]); !equal(got, c.want) {
					t.Fatalf("chunk %v, want %v", got, c.want)
				}
				if _, has := r["end"]; has != c.end {
					t.Fatalf("end present = %v, want %v (%v)", has, c.end, r["end"])
				}
			})
		}

		// Lazy-loaded members: one member event per sender of the chunk.
		r := msgs("dir=b&limit=2&filter=" + url.QueryEscape(`{"lazy_load_members":true,"types":["m.room.message"]}`))
		state, _ := r["state"].([]any)
		senders := map[string]bool{}
		for _, ev := range state {
			ev := ev.(map[string]any)
			if ev["type"] != "m.room.member" {
				t.Fatalf("lazy state holds %v", ev["type"])
			}
			senders[ev["state_key"].(string)] = true
		}
		if len(senders) != 1 || !senders[alice] {
			t.Fatalf("lazy members %v, want alice only (senders of pic and m6)", senders)
		}

		bad := []struct {
			name, query string
			status      int
			code        string
		}{
			{"no dir", "limit=3", 400, "M_MISSING_PARAM"},
			{"bad dir", "dir=x", 400, "M_INVALID_PARAM"},
			{"bad from", "dir=b&from=xyz", 400, "M_INVALID_PARAM"},
			{"bad limit", "dir=b&limit=ten", 400, "M_INVALID_PARAM"},
			{"filter not json", "dir=b&filter=" + url.QueryEscape(`{"types":`), 400, "M_NOT_JSON"},
			{"filter wrong shape", "dir=b&filter=" + url.QueryEscape(`{"types":"m.room.message"}`), 400, "M_BAD_JSON"},
		}
		for _, c := range bad {
			t.Run(c.name, func(t *testing.T) {
				e.fails(alice, "GET", v3+"/rooms/"+esc(id)+"/messages?"+c.query, nil, c.status, c.code)
			})
		}
		e.fails(carol, "GET", v3+"/rooms/"+esc(id)+"/messages?dir=b", nil, 403, "M_FORBIDDEN")
		e.fails(carol, "GET", v3+"/rooms/"+esc("!nope:hs1")+"/messages?dir=b", nil, 403, "M_FORBIDDEN")
	})
}

func TestContext(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		id := e.createRoom(alice, map[string]any{"name": "ctx"})
		var ids []string
		for i := range 6 {
			ids = append(ids, e.sendMsg(alice, id, fmt.Sprint("c", i), fmt.Sprint("m", i)))
		}
		filter := url.QueryEscape(`{"types":["m.room.message"]}`)
		r := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/context/"+esc(ids[3])+"?limit=4&filter="+filter, nil)
		if r["event"].(map[string]any)["event_id"] != ids[3] {
			t.Fatalf("event %v", r["event"])
		}
		if got := bodies(r["events_before"]); !equal(got, []string{"m2", "m1"}) {
			t.Fatalf("events_before %v", got)
		}
		if got := bodies(r["events_after"]); !equal(got, []string{"m4", "m5"}) {
			t.Fatalf("events_after %v", got)
		}
		hasName := false
		for _, ev := range r["state"].([]any) {
			hasName = hasName || ev.(map[string]any)["type"] == "m.room.name"
		}
		if hasName {
			t.Fatal("the filter applies to state too")
		}
		unfiltered := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/context/"+esc(ids[3])+"?limit=0", nil)
		for _, ev := range unfiltered["state"].([]any) {
			hasName = hasName || ev.(map[string]any)["type"] == "m.room.name"
		}
		if !hasName || len(unfiltered["events_before"].([]any)) != 0 {
			t.Fatalf("limit=0 context: %v", unfiltered)
		}
		// start/end continue pagination with /messages.
		start, err := stream.ParseToken(r["start"].(string))
		if err != nil {
			t.Fatal(err)
		}
		back := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/messages?dir=b&limit=1&filter="+filter+"&from="+start.String(), nil)
		if got := bodies(back["chunk"]); !equal(got, []string{"m0"}) {
			t.Fatalf("paginating back from start: %v", got)
		}
		fwd := e.ok(alice, "GET", v3+"/rooms/"+esc(id)+"/messages?dir=f&limit=5&from="+r["end"].(string), nil)
		if got := bodies(fwd["chunk"]); len(got) != 0 {
			t.Fatalf("paginating forward from end: %v", got)
		}

		e.fails(alice, "GET", v3+"/rooms/"+esc(id)+"/context/"+esc("$missing"), nil, 404, "M_NOT_FOUND")
		e.fails(bob, "GET", v3+"/rooms/"+esc(id)+"/context/"+esc(ids[0]), nil, 403, "M_FORBIDDEN")
	})
}
