package fedapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage"
)

// transactionBody is the Transaction the spec answers /event and
// /backfill with.
type transactionBody struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
}

// pduIDs maps served PDUs back to the test's event names, checking each
// is byte for byte the stored event.
func (e *env) pduNames(t *testing.T, pdus []json.RawMessage) []string {
	t.Helper()
	var out []string
	for _, p := range pdus {
		found := ""
		for name, st := range e.ev {
			if bytes.Equal(p, st.Event.JSON()) {
				found = name
			}
		}
		if found == "" {
			t.Fatalf("served PDU is not a stored event as stored: %s", p)
		}
		out = append(out, found)
	}
	return out
}

func (e *env) names(t *testing.T, ids []string) []string {
	t.Helper()
	var out []string
	for _, id := range ids {
		found := ""
		for name, st := range e.ev {
			if string(st.Event.ID()) == id {
				found = name
			}
		}
		if found == "" {
			t.Fatalf("unknown event ID %s", id)
		}
		out = append(out, found)
	}
	return out
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func TestRoomEndpoints(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		room := url.PathEscape(e.room)
		v1 := "/_matrix/federation/v1"
		stateBeforeM6 := []string{"alice", "bob", "create", "hv", "jr", "pl"}

		t.Run("version", func(t *testing.T) {
			var body struct {
				Server struct{ Name, Version string } `json:"server"`
			}
			st, b := e.do("GET", "", v1+"/version", "")
			decode(t, st, b, &body)
			if body.Server.Name != "Plexus" || body.Server.Version != "1.2.3" {
				t.Fatalf("got %+v", body)
			}
		})

		t.Run("event", func(t *testing.T) {
			var tx transactionBody
			st, b := e.do("GET", hs2, v1+"/event/"+url.PathEscape(e.id("m3")), "")
			decode(t, st, b, &tx)
			if tx.Origin != hs1 || tx.OriginServerTS == 0 || !slices.Equal(e.pduNames(t, tx.PDUs), []string{"m3"}) {
				t.Fatalf("got %s", b)
			}
		})

		t.Run("state_ids", func(t *testing.T) {
			var body struct {
				AuthChain []string `json:"auth_chain_ids"`
				PDUs      []string `json:"pdu_ids"`
			}
			st, b := e.do("GET", hs2, v1+"/state_ids/"+room+"?event_id="+url.QueryEscape(e.id("m6")), "")
			decode(t, st, b, &body)
			if got := sorted(e.names(t, body.PDUs)); !slices.Equal(got, stateBeforeM6) {
				t.Fatalf("state before m6: got %v, want %v", got, stateBeforeM6)
			}
			want, err := e.us.db.AuthChain(context.Background(), body.PDUs)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sorted(body.AuthChain), sorted(want)) {
				t.Fatalf("auth chain: got %v, want %v", body.AuthChain, want)
			}
		})

		t.Run("state", func(t *testing.T) {
			var body struct {
				AuthChain []json.RawMessage `json:"auth_chain"`
				PDUs      []json.RawMessage `json:"pdus"`
			}
			st, b := e.do("GET", hs2, v1+"/state/"+room+"?event_id="+url.QueryEscape(e.id("m6")), "")
			decode(t, st, b, &body)
			if got := sorted(e.pduNames(t, body.PDUs)); !slices.Equal(got, stateBeforeM6) {
				t.Fatalf("state before m6: got %v", got)
			}
			var ids []string
			for _, name := range stateBeforeM6 {
				ids = append(ids, e.id(name))
			}
			want, err := e.us.db.AuthChain(context.Background(), ids)
			if err != nil {
				t.Fatal(err)
			}
			if got := sorted(e.pduNames(t, body.AuthChain)); !slices.Equal(got, sorted(e.names(t, want))) || len(got) == 0 {
				t.Fatalf("auth chain: got %v, want %v", got, e.names(t, want))
			}
		})

		t.Run("event_auth", func(t *testing.T) {
			var body struct {
				AuthChain []json.RawMessage `json:"auth_chain"`
			}
			st, b := e.do("GET", hs2, v1+"/event_auth/"+room+"/"+url.PathEscape(e.id("m6")), "")
			decode(t, st, b, &body)
			want, err := e.us.db.AuthChain(context.Background(), []string{e.id("m6")})
			if err != nil {
				t.Fatal(err)
			}
			if got := sorted(e.pduNames(t, body.AuthChain)); !slices.Equal(got, sorted(e.names(t, want))) || len(got) == 0 {
				t.Fatalf("got %v, want %v", got, e.names(t, want))
			}
		})

		t.Run("backfill", func(t *testing.T) {
			for _, tc := range []struct {
				query string
				want  []string
			}{
				{"v=" + url.QueryEscape(e.id("m6")) + "&limit=3", []string{"m6", "bob", "m5"}},
				{"v=" + url.QueryEscape(e.id("m2")) + "&limit=100", []string{"m2", "m1", "hv", "jr", "pl", "alice", "create"}},
				{"v=" + url.QueryEscape(e.id("m2")) + "&v=" + url.QueryEscape(e.id("m4")) + "&limit=3", []string{"m4", "m3", "m2"}},
				{"v=" + url.QueryEscape(e.id("m2")) + "&limit=0", nil},
				// Over the cap: capped, not refused.
				{"v=" + url.QueryEscape(e.id("m6")) + "&limit=100000", []string{"m6", "bob", "m5", "m4", "m3", "m2", "m1", "hv", "jr", "pl", "alice", "create"}},
			} {
				var tx transactionBody
				st, b := e.do("GET", hs2, v1+"/backfill/"+room+"?"+tc.query, "")
				decode(t, st, b, &tx)
				if got := e.pduNames(t, tx.PDUs); !slices.Equal(got, tc.want) || tx.Origin != hs1 {
					t.Fatalf("%s: got %v, want %v", tc.query, got, tc.want)
				}
			}
		})

		t.Run("get_missing_events", func(t *testing.T) {
			for _, tc := range []struct {
				body string
				want []string
			}{
				{`{"earliest_events":["` + e.id("m3") + `"],"latest_events":["` + e.id("m6") + `"]}`, []string{"m4", "m5", "bob"}},
				{`{"earliest_events":[],"latest_events":["` + e.id("m6") + `"],"limit":2}`, []string{"m5", "bob"}},
				{`{"earliest_events":[],"latest_events":["` + e.id("m6") + `"],"min_depth":` +
					strconv.FormatInt(e.ev["m4"].Event.Depth(), 10) + `}`, []string{"m4", "m5", "bob"}},
				{`{"earliest_events":[],"latest_events":["` + e.id("m2") + `"],"limit":100000}`, []string{"create", "alice", "pl", "jr", "hv", "m1"}},
			} {
				var body struct {
					Events []json.RawMessage `json:"events"`
				}
				st, b := e.do("POST", hs2, v1+"/get_missing_events/"+room, tc.body)
				decode(t, st, b, &body)
				if got := e.pduNames(t, body.Events); !slices.Equal(got, tc.want) {
					t.Fatalf("%s: got %v, want %v", tc.body, got, tc.want)
				}
			}
		})

		t.Run("errors", func(t *testing.T) {
			m6 := url.QueryEscape(e.id("m6"))
			unknownEvent := url.PathEscape("$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
			unknownRoom := url.PathEscape("!nope:" + hs1)
			gme := v1 + "/get_missing_events/" + room
			for _, tc := range []struct {
				name, method, origin, path, body string
				status                           int
				code                             string
			}{
				{"unauthenticated", "GET", "", v1 + "/event/" + m6, "", 401, "M_UNAUTHORIZED"},
				{"stranger event", "GET", hs3, v1 + "/event/" + m6, "", 403, "M_FORBIDDEN"},
				{"stranger state", "GET", hs3, v1 + "/state/" + room + "?event_id=" + m6, "", 403, "M_FORBIDDEN"},
				{"stranger state_ids", "GET", hs3, v1 + "/state_ids/" + room + "?event_id=" + m6, "", 403, "M_FORBIDDEN"},
				{"stranger event_auth", "GET", hs3, v1 + "/event_auth/" + room + "/" + m6, "", 403, "M_FORBIDDEN"},
				{"stranger backfill", "GET", hs3, v1 + "/backfill/" + room + "?limit=5&v=" + m6, "", 403, "M_FORBIDDEN"},
				{"stranger missing", "POST", hs3, gme, `{"earliest_events":[],"latest_events":["` + e.id("m6") + `"]}`, 403, "M_FORBIDDEN"},
				{"unknown event", "GET", hs2, v1 + "/event/" + unknownEvent, "", 404, "M_NOT_FOUND"},
				{"malformed event", "GET", hs2, v1 + "/event/nonsense", "", 404, "M_NOT_FOUND"},
				{"state unknown room", "GET", hs2, v1 + "/state_ids/" + unknownRoom + "?event_id=" + m6, "", 404, "M_NOT_FOUND"},
				{"state malformed room", "GET", hs2, v1 + "/state_ids/nonsense?event_id=" + m6, "", 400, "M_INVALID_PARAM"},
				{"state no event_id", "GET", hs2, v1 + "/state/" + room, "", 400, "M_MISSING_PARAM"},
				{"state unknown event", "GET", hs2, v1 + "/state/" + room + "?event_id=" + unknownEvent, "", 404, "M_NOT_FOUND"},
				{"event_auth unknown room", "GET", hs2, v1 + "/event_auth/" + unknownRoom + "/" + m6, "", 404, "M_NOT_FOUND"},
				{"backfill no v", "GET", hs2, v1 + "/backfill/" + room + "?limit=5", "", 400, "M_MISSING_PARAM"},
				{"backfill no limit", "GET", hs2, v1 + "/backfill/" + room + "?v=" + m6, "", 400, "M_MISSING_PARAM"},
				{"backfill bad limit", "GET", hs2, v1 + "/backfill/" + room + "?limit=x&v=" + m6, "", 400, "M_INVALID_PARAM"},
				{"backfill negative limit", "GET", hs2, v1 + "/backfill/" + room + "?limit=-1&v=" + m6, "", 400, "M_INVALID_PARAM"},
				{"backfill unknown v", "GET", hs2, v1 + "/backfill/" + room + "?limit=5&v=" + unknownEvent, "", 404, "M_NOT_FOUND"},
				{"backfill unknown room", "GET", hs2, v1 + "/backfill/" + unknownRoom + "?limit=5&v=" + m6, "", 404, "M_NOT_FOUND"},
				{"missing not JSON", "POST", hs2, gme, `{"earliest_events":`, 400, "M_NOT_JSON"},
				{"missing no body", "POST", hs2, gme, ``, 400, "M_NOT_JSON"},
				{"missing wrong type", "POST", hs2, gme, `{"earliest_events":"x","latest_events":[]}`, 400, "M_BAD_JSON"},
				{"missing no latest", "POST", hs2, gme, `{"earliest_events":[]}`, 400, "M_BAD_JSON"},
				{"missing negative limit", "POST", hs2, gme, `{"earliest_events":[],"latest_events":["` + e.id("m6") + `"],"limit":-3}`, 400, "M_INVALID_PARAM"},
				{"missing unknown latest", "POST", hs2, gme, `{"earliest_events":[],"latest_events":["$x"]}`, 404, "M_NOT_FOUND"},
				{"missing unknown room", "POST", hs2, v1 + "/get_missing_events/" + unknownRoom, `{"earliest_events":[],"latest_events":[]}`, 404, "M_NOT_FOUND"},
				{"missing wrong method", "GET", hs2, gme, "", 405, "M_UNRECOGNIZED"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					st, b := e.do(tc.method, tc.origin, tc.path, tc.body)
					wantError(t, st, b, tc.status, tc.code)
				})
			}
		})

		t.Run("rejected events are not served", func(t *testing.T) {
			ctx := context.Background()
			m6 := e.ev["m6"].Event
			id := "$rejectedAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
			err := e.us.db.Commit(ctx, &storage.Batch{RoomID: e.room, Events: []storage.PersistEvent{{Record: storage.EventRecord{
				EventID: id, RoomID: e.room, Type: "m.room.message", Depth: m6.Depth() + 1,
				OriginServerTS: m6.OriginServerTS() + 1, JSON: []byte(`{"type":"m.room.message"}`),
				PrevEvents: []string{string(m6.ID())}, AuthEvents: []string{e.id("create")}, Rejected: "test",
			}}}})
			if err != nil {
				t.Fatal(err)
			}
			st, b := e.do("GET", hs2, v1+"/event/"+url.PathEscape(id), "")
			wantError(t, st, b, 404, "M_NOT_FOUND")
			st, b = e.do("GET", hs2, v1+"/backfill/"+room+"?limit=5&v="+url.QueryEscape(id), "")
			wantError(t, st, b, 404, "M_NOT_FOUND")
			st, b = e.do("GET", hs2, v1+"/state_ids/"+room+"?event_id="+url.QueryEscape(id), "")
			wantError(t, st, b, 404, "M_NOT_FOUND")
		})

		t.Run("world-readable rooms are open to every server", func(t *testing.T) {
			open := e.newRoom("world_readable")
			closed := e.newRoom("shared")
			for _, tc := range []struct {
				room   string
				status int
			}{{open, 200}, {closed, 403}} {
				info, err := e.us.db.Room(context.Background(), tc.room)
				if err != nil {
					t.Fatal(err)
				}
				st, b := e.do("GET", hs3, v1+"/backfill/"+url.PathEscape(tc.room)+"?limit=5&v="+url.QueryEscape(info.Extremities[0]), "")
				if st != tc.status {
					t.Fatalf("room %s: got %d %s, want %d", tc.room, st, b, tc.status)
				}
			}
		})

		t.Run("server ACL", func(t *testing.T) {
			// The last subtest: the ACL shuts hs2 out of the room.
			m6 := v1 + "/event/" + url.PathEscape(e.id("m6"))
			if st, b := e.do("GET", hs2, m6, ""); st != http.StatusOK {
				t.Fatalf("before the ACL: %d %s", st, b)
			}
			e.appendState("acl", "m.room.server_acl", "", `{"allow":["*"],"deny":["hs2.*"]}`)
			st, b := e.do("GET", hs2, m6, "")
			wantError(t, st, b, 403, "M_FORBIDDEN")
			st, b = e.do("GET", hs2, v1+"/state_ids/"+room+"?event_id="+url.QueryEscape(e.id("m6")), "")
			wantError(t, st, b, 403, "M_FORBIDDEN")
		})
	})
}
