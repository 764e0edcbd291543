package fedapi

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
)

// fakeLocal answers from fixed data and records what it was asked.
type fakeLocal struct {
	mu sync.Mutex // guards the fields below
	// aliases maps our aliases to rooms.
	aliases map[string]string
	// asked lists the users QueryKeys and ClaimKeys were asked about, and
	// the last public rooms and media queries.
	asked      []string
	roomsQuery fedlocal.PublicRoomsQuery
	mediaQuery fedlocal.MediaQuery
}

func newFakeLocal() *fakeLocal { return &fakeLocal{aliases: map[string]string{}} }

func (f *fakeLocal) ResolveAlias(_ context.Context, alias string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.aliases[alias]; ok {
		return id, nil
	}
	return "", mxerr.NotFound("no such alias")
}

func (f *fakeLocal) Profile(_ context.Context, userID string) (map[string]json.RawMessage, error) {
	if userID != alice {
		return nil, mxerr.NotFound("Profile not found")
	}
	return map[string]json.RawMessage{"displayname": json.RawMessage(`"Alice"`), "m.tz": json.RawMessage(`"Europe/Paris"`)}, nil
}

func (f *fakeLocal) PublicRooms(_ context.Context, q fedlocal.PublicRoomsQuery) (json.RawMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roomsQuery = q
	return json.RawMessage(`{"chunk":[],"total_room_count_estimate":0}`), nil
}

func (f *fakeLocal) UserDevices(_ context.Context, userID string) (json.RawMessage, error) {
	return json.Marshal(map[string]any{"user_id": userID, "stream_id": 7, "devices": []any{}})
}

func (f *fakeLocal) note(users ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, users...)
}

func (f *fakeLocal) QueryKeys(_ context.Context, query map[string][]string) (json.RawMessage, error) {
	for u := range query {
		f.note(u)
	}
	return json.RawMessage(`{"device_keys":{}}`), nil
}

func (f *fakeLocal) ClaimKeys(_ context.Context, claim map[string]map[string]string) (json.RawMessage, error) {
	for u := range claim {
		f.note(u)
	}
	return json.RawMessage(`{"one_time_keys":{}}`), nil
}

func (f *fakeLocal) OpenIDUser(_ context.Context, token string) (string, error) {
	if token == "good-token" {
		return alice, nil
	}
	return "", mxerr.UnknownToken("Access token unknown or expired")
}

func (f *fakeLocal) Media(_ context.Context, q fedlocal.MediaQuery) (*fedlocal.MediaFile, error) {
	f.mu.Lock()
	f.mediaQuery = q
	f.mu.Unlock()
	if q.MediaID != "abcDEF_123-x" {
		return nil, mxerr.NotFound("Media not found")
	}
	return &fedlocal.MediaFile{Body: io.NopCloser(strings.NewReader("hello media")), ContentType: "text/plain",
		Disposition: `attachment; filename="hello.txt"`}, nil
}

func (f *fakeLocal) takeAsked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.asked
	f.asked = nil
	slices.Sort(out)
	return out
}

func TestQueryEndpoints(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.local.aliases["#room:"+hs1] = e.room
		v1 := "/_matrix/federation/v1"

		t.Run("directory", func(t *testing.T) {
			var body struct {
				RoomID  string   `json:"room_id"`
				Servers []string `json:"servers"`
			}
			st, b := e.do("GET", hs3, v1+"/query/directory?room_alias="+url.QueryEscape("#room:"+hs1), "")
			decode(t, st, b, &body)
			if body.RoomID != e.room || !slices.Equal(body.Servers, []string{hs1, hs2}) {
				t.Fatalf("got %s", b)
			}
		})

		t.Run("profile", func(t *testing.T) {
			var body map[string]string
			st, b := e.do("GET", hs2, v1+"/query/profile?user_id="+url.QueryEscape(alice), "")
			decode(t, st, b, &body)
			if body["displayname"] != "Alice" || body["m.tz"] != "Europe/Paris" {
				t.Fatalf("got %s", b)
			}
			body = nil
			st, b = e.do("GET", hs2, v1+"/query/profile?field=displayname&user_id="+url.QueryEscape(alice), "")
			decode(t, st, b, &body)
			if len(body) != 1 || body["displayname"] != "Alice" {
				t.Fatalf("got %s", b)
			}
		})

		t.Run("devices", func(t *testing.T) {
			var body struct {
				UserID   string `json:"user_id"`
				StreamID int64  `json:"stream_id"`
			}
			st, b := e.do("GET", hs2, v1+"/user/devices/"+url.PathEscape(alice), "")
			decode(t, st, b, &body)
			if body.UserID != alice || body.StreamID != 7 {
				t.Fatalf("got %s", b)
			}
		})

		t.Run("keys are asked about local users only", func(t *testing.T) {
			st, b := e.do("POST", hs2, v1+"/user/keys/query", `{"device_keys":{"`+alice+`":[],"`+bob+`":[]}}`)
			decode(t, st, b, &map[string]any{})
			if got := e.local.takeAsked(); !slices.Equal(got, []string{alice}) {
				t.Fatalf("query asked about %v", got)
			}
			st, b = e.do("POST", hs2, v1+"/user/keys/claim", `{"one_time_keys":{"`+alice+`":{"DEV":"signed_curve25519"},"`+bob+`":{"D":"x"}}}`)
			decode(t, st, b, &map[string]any{})
			if got := e.local.takeAsked(); !slices.Equal(got, []string{alice}) {
				t.Fatalf("claim asked about %v", got)
			}
		})

		t.Run("openid needs no signature", func(t *testing.T) {
			var body map[string]string
			st, b := e.do("GET", "", v1+"/openid/userinfo?access_token=good-token", "")
			decode(t, st, b, &body)
			if body["sub"] != alice {
				t.Fatalf("got %s", b)
			}
		})

		t.Run("publicRooms", func(t *testing.T) {
			st, b := e.do("GET", hs2, v1+"/publicRooms?limit=5&since=o5", "")
			decode(t, st, b, &map[string]any{})
			e.local.mu.Lock()
			q := e.local.roomsQuery
			e.local.mu.Unlock()
			if q.Limit == nil || *q.Limit != 5 || q.Since != "o5" || q.RoomTypes != nil {
				t.Fatalf("GET passed %+v", q)
			}
			st, b = e.do("POST", hs2, v1+"/publicRooms", `{"filter":{"generic_search_term":"cats","room_types":[null,"m.space"]}}`)
			decode(t, st, b, &map[string]any{})
			e.local.mu.Lock()
			q = e.local.roomsQuery
			e.local.mu.Unlock()
			if q.Limit != nil || q.SearchTerm != "cats" || len(q.RoomTypes) != 2 || q.RoomTypes[0] != nil || *q.RoomTypes[1] != "m.space" {
				t.Fatalf("POST passed %+v", q)
			}
		})

		t.Run("media download is multipart", func(t *testing.T) {
			req, err := http.NewRequest("GET", e.url+v1+"/media/download/abcDEF_123-x?timeout_ms=500", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(originHeader, hs2)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
			if err != nil || mt != "multipart/mixed" || resp.StatusCode != 200 {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			mr := multipart.NewReader(resp.Body, params["boundary"])
			var parts []string
			var headers []http.Header
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(p)
				if err != nil {
					t.Fatal(err)
				}
				parts = append(parts, string(b))
				headers = append(headers, http.Header(p.Header))
			}
			if len(parts) != 2 || parts[0] != "{}" || headers[0].Get("Content-Type") != "application/json" ||
				parts[1] != "hello media" || headers[1].Get("Content-Type") != "text/plain" ||
				headers[1].Get("Content-Disposition") != `attachment; filename="hello.txt"` {
				t.Fatalf("parts %q, headers %v", parts, headers)
			}
			e.local.mu.Lock()
			q := e.local.mediaQuery
			e.local.mu.Unlock()
			if q.Wait != 500*time.Millisecond || q.Thumbnail != nil {
				t.Fatalf("passed %+v", q)
			}
		})

		t.Run("media thumbnail parameters", func(t *testing.T) {
			st, b := e.do("GET", hs2, v1+"/media/thumbnail/abcDEF_123-x?width=32&height=24&method=crop&animated=true", "")
			if st != 200 {
				t.Fatalf("got %d %s", st, b)
			}
			e.local.mu.Lock()
			q := e.local.mediaQuery
			e.local.mu.Unlock()
			if q.Thumbnail == nil || *q.Thumbnail != (fedlocal.ThumbnailSize{Width: 32, Height: 24, Crop: true, Animated: true}) ||
				q.Wait != defaultMediaWait {
				t.Fatalf("passed %+v", q)
			}
		})

		t.Run("errors", func(t *testing.T) {
			for _, tc := range []struct {
				name, method, origin, path, body string
				status                           int
				code                             string
			}{
				{"directory unauthenticated", "GET", "", v1 + "/query/directory?room_alias=%23room:" + hs1, "", 401, "M_UNAUTHORIZED"},
				{"directory missing", "GET", hs2, v1 + "/query/directory", "", 400, "M_MISSING_PARAM"},
				{"directory malformed", "GET", hs2, v1 + "/query/directory?room_alias=room", "", 400, "M_INVALID_PARAM"},
				{"directory remote", "GET", hs2, v1 + "/query/directory?room_alias=%23room:" + hs2, "", 404, "M_NOT_FOUND"},
				{"directory unknown", "GET", hs2, v1 + "/query/directory?room_alias=%23other:" + hs1, "", 404, "M_NOT_FOUND"},
				{"profile missing", "GET", hs2, v1 + "/query/profile", "", 400, "M_MISSING_PARAM"},
				{"profile remote", "GET", hs2, v1 + "/query/profile?user_id=" + url.QueryEscape(bob), "", 404, "M_NOT_FOUND"},
				{"profile unknown", "GET", hs2, v1 + "/query/profile?user_id=" + url.QueryEscape("@nobody:"+hs1), "", 404, "M_NOT_FOUND"},
				{"profile unset field", "GET", hs2, v1 + "/query/profile?field=avatar_url&user_id=" + url.QueryEscape(alice), "", 404, "M_NOT_FOUND"},
				{"devices remote", "GET", hs2, v1 + "/user/devices/" + url.PathEscape(bob), "", 404, "M_NOT_FOUND"},
				{"devices malformed", "GET", hs2, v1 + "/user/devices/alice", "", 400, "M_INVALID_PARAM"},
				{"keys query not JSON", "POST", hs2, v1 + "/user/keys/query", "{", 400, "M_NOT_JSON"},
				{"keys query no body", "POST", hs2, v1 + "/user/keys/query", "", 400, "M_NOT_JSON"},
				{"keys query missing", "POST", hs2, v1 + "/user/keys/query", "{}", 400, "M_BAD_JSON"},
				{"keys query wrong type", "POST", hs2, v1 + "/user/keys/query", `{"device_keys":{"` + alice + `":"DEV"}}`, 400, "M_BAD_JSON"},
				{"keys claim missing", "POST", hs2, v1 + "/user/keys/claim", "{}", 400, "M_BAD_JSON"},
				{"keys claim wrong type", "POST", hs2, v1 + "/user/keys/claim", `{"one_time_keys":[]}`, 400, "M_BAD_JSON"},
				{"openid no token", "GET", "", v1 + "/openid/userinfo", "", 401, "M_UNKNOWN_TOKEN"},
				{"openid bad token", "GET", "", v1 + "/openid/userinfo?access_token=nope", "", 401, "M_UNKNOWN_TOKEN"},
				{"publicRooms bad limit", "GET", hs2, v1 + "/publicRooms?limit=x", "", 400, "M_INVALID_PARAM"},
				{"publicRooms negative limit", "POST", hs2, v1 + "/publicRooms", `{"limit":-1}`, 400, "M_INVALID_PARAM"},
				{"publicRooms not JSON", "POST", hs2, v1 + "/publicRooms", `{`, 400, "M_NOT_JSON"},
				{"media unknown", "GET", hs2, v1 + "/media/download/nothere", "", 404, "M_NOT_FOUND"},
				{"media bad id", "GET", hs2, v1 + "/media/download/a.b", "", 404, "M_NOT_FOUND"},
				{"media bad timeout", "GET", hs2, v1 + "/media/download/abcDEF_123-x?timeout_ms=soon", "", 400, "M_INVALID_PARAM"},
				{"thumbnail no width", "GET", hs2, v1 + "/media/thumbnail/abcDEF_123-x?height=3", "", 400, "M_MISSING_PARAM"},
				{"thumbnail zero height", "GET", hs2, v1 + "/media/thumbnail/abcDEF_123-x?width=3&height=0", "", 400, "M_INVALID_PARAM"},
				{"thumbnail bad method", "GET", hs2, v1 + "/media/thumbnail/abcDEF_123-x?width=3&height=3&method=zoom", "", 400, "M_INVALID_PARAM"},
				{"thumbnail bad animated", "GET", hs2, v1 + "/media/thumbnail/abcDEF_123-x?width=3&height=3&animated=yes", "", 400, "M_INVALID_PARAM"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					st, b := e.do(tc.method, tc.origin, tc.path, tc.body)
					wantError(t, st, b, tc.status, tc.code)
				})
			}
		})
	})
}
