package keys

import (
	"encoding/json"
	"fmt"
	"testing"
)

const (
	pVersion = "/_matrix/client/v3/room_keys/version"
	pKeys    = "/_matrix/client/v3/room_keys/keys"
	room     = "!room:test.local"
)

type backupVersionInfo struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int             `json:"count"`
	Etag      string          `json:"etag"`
	Version   string          `json:"version"`
}

type keysUpdate struct {
	Etag  string `json:"etag"`
	Count int    `json:"count"`
}

func keyBody(verified bool, fmi, fc int, marker string) string {
	return fmt.Sprintf(`{"first_message_index": %d, "forwarded_count": %d, "is_verified": %t, "session_data": {"ciphertext": %q}}`,
		fmi, fc, verified, marker)
}

func TestBackupLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const alg = "m.megolm_backup.v1.curve25519-aes-sha2"
		st, out := e.do("GET", pVersion, "alice1", nil)
		wantError(t, st, out, 404, "M_NOT_FOUND")

		var created struct{ Version string }
		e.ok("POST", pVersion, "alice1", `{"algorithm": "`+alg+`", "auth_data": {"public_key": "pk1", "signatures": {}}}`, &created)
		if created.Version != "1" {
			t.Fatalf("version = %q", created.Version)
		}
		var info backupVersionInfo
		e.ok("GET", pVersion, "alice1", nil, &info)
		if info.Version != "1" || info.Algorithm != alg || info.Count != 0 || info.Etag != "0" ||
			string(info.AuthData) != `{"public_key": "pk1", "signatures": {}}` {
			t.Fatalf("info = %+v", info)
		}
		// Backups are per user.
		st, out = e.do("GET", pVersion+"/1", "bob1", nil)
		wantError(t, st, out, 404, "M_NOT_FOUND")

		// The spec's replacement rules, applied one upload after another.
		session := pKeys + "/" + room + "/S1?version=1"
		steps := []struct {
			name     string
			body     string
			kept     string
			etagMove bool
		}{
			{"first upload", keyBody(false, 5, 1, "a"), "a", true},
			{"verified beats unverified", keyBody(true, 10, 3, "b"), "b", true},
			{"unverified never beats verified", keyBody(false, 0, 0, "c"), "b", false},
			{"lower first_message_index wins", keyBody(true, 3, 3, "d"), "d", true},
			{"higher first_message_index loses", keyBody(true, 4, 0, "e"), "d", false},
			{"lower forwarded_count wins", keyBody(true, 3, 1, "f"), "f", true},
			{"a tie keeps the stored key", keyBody(true, 3, 1, "g"), "f", false},
		}
		etag := 0
		for _, s := range steps {
			var u keysUpdate
			e.ok("PUT", session, "alice1", s.body, &u)
			if s.etagMove {
				etag++
			}
			if u.Etag != fmt.Sprint(etag) || u.Count != 1 {
				t.Fatalf("%s: update = %+v, want etag %d", s.name, u, etag)
			}
			var got struct {
				SessionData struct{ Ciphertext string } `json:"session_data"`
			}
			e.ok("GET", session, "alice1", nil, &got)
			if got.SessionData.Ciphertext != s.kept {
				t.Fatalf("%s: kept %q, want %q", s.name, got.SessionData.Ciphertext, s.kept)
			}
		}

		// Bulk upload and the three read shapes.
		e.ok("PUT", pKeys+"?version=1", "alice1", fmt.Sprintf(`{"rooms": {%q: {"sessions": {"S2": %s}}, "!other:test.local": {"sessions": {"S3": %s}}}}`,
			room, keyBody(false, 0, 0, "s2"), keyBody(false, 0, 0, "s3")), nil)
		e.ok("PUT", pKeys+"/!other:test.local?version=1", "alice1", fmt.Sprintf(`{"sessions": {"S4": %s}}`, keyBody(false, 0, 0, "s4")), nil)
		var all struct {
			Rooms map[string]struct {
				Sessions map[string]json.RawMessage `json:"sessions"`
			} `json:"rooms"`
		}
		e.ok("GET", pKeys+"?version=1", "alice1", nil, &all)
		if len(all.Rooms) != 2 || len(all.Rooms[room].Sessions) != 2 || len(all.Rooms["!other:test.local"].Sessions) != 2 {
			t.Fatalf("all keys = %+v", all)
		}
		if got := string(all.Rooms[room].Sessions["S2"]); got != `{"first_message_index":0,"forwarded_count":0,"is_verified":false,"session_data":{"ciphertext": "s2"}}` {
			t.Fatalf("S2 = %s", got)
		}
		var one struct {
			Sessions map[string]json.RawMessage `json:"sessions"`
		}
		e.ok("GET", pKeys+"/!empty:test.local?version=1", "alice1", nil, &one)
		if one.Sessions == nil || len(one.Sessions) != 0 {
			t.Fatalf("empty room = %+v", one)
		}
		st, out = e.do("GET", pKeys+"/"+room+"/NOPE?version=1", "alice1", nil)
		wantError(t, st, out, 404, "M_NOT_FOUND")

		// A new version becomes current; writes to the old one are refused.
		e.ok("POST", pVersion, "alice1", `{"algorithm": "`+alg+`", "auth_data": {"public_key": "pk2"}}`, &created)
		if created.Version != "2" {
			t.Fatalf("second version = %q", created.Version)
		}
		st, out = e.do("PUT", pKeys+"/"+room+"/S1?version=1", "alice1", keyBody(true, 0, 0, "x"))
		wantError(t, st, out, 403, CodeWrongRoomKeysVersion)
		var wrong struct {
			Current string `json:"current_version"`
		}
		if err := json.Unmarshal(out, &wrong); err != nil || wrong.Current != "2" {
			t.Fatalf("wrong version body %s", out)
		}

		bad := []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"unknown version", "PUT", pKeys + "/" + room + "/S1?version=9", keyBody(true, 0, 0, "x"), 404, "M_NOT_FOUND"},
			{"version not a number", "GET", pKeys + "?version=abc", "", 404, "M_NOT_FOUND"},
			{"no version", "GET", pKeys, "", 400, "M_MISSING_PARAM"},
			{"no version on put", "PUT", pKeys + "/" + room + "/S1", keyBody(true, 0, 0, "x"), 400, "M_MISSING_PARAM"},
			{"missing is_verified", "PUT", pKeys + "/" + room + "/S1?version=2",
				`{"first_message_index": 0, "forwarded_count": 0, "session_data": {}}`, 400, "M_MISSING_PARAM"},
			{"is_verified not a boolean", "PUT", pKeys + "/" + room + "/S1?version=2",
				`{"first_message_index": 0, "forwarded_count": 0, "is_verified": "yes", "session_data": {}}`, 400, "M_BAD_JSON"},
			{"session_data not an object", "PUT", pKeys + "/" + room + "/S1?version=2",
				`{"first_message_index": 0, "forwarded_count": 0, "is_verified": true, "session_data": 1}`, 400, "M_BAD_JSON"},
			{"rooms missing", "PUT", pKeys + "?version=2", `{}`, 400, "M_MISSING_PARAM"},
			{"create without auth_data", "POST", pVersion, `{"algorithm": "` + alg + `"}`, 400, "M_MISSING_PARAM"},
			{"create with auth_data not an object", "POST", pVersion, `{"algorithm": "` + alg + `", "auth_data": []}`, 400, "M_BAD_JSON"},
			{"update with another algorithm", "PUT", pVersion + "/2", `{"algorithm": "other", "auth_data": {}}`, 400, "M_INVALID_PARAM"},
			{"update with another version in the body", "PUT", pVersion + "/2", `{"algorithm": "` + alg + `", "auth_data": {}, "version": "1"}`, 400, "M_INVALID_PARAM"},
			{"update of an unknown version", "PUT", pVersion + "/7", `{"algorithm": "` + alg + `", "auth_data": {}}`, 404, "M_NOT_FOUND"},
			{"delete of an unknown version", "DELETE", pVersion + "/7", "", 404, "M_NOT_FOUND"},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				var body any
				if tt.body != "" {
					body = tt.body
				}
				st, out := e.do(tt.method, tt.path, "alice1", body)
				wantError(t, st, out, tt.status, tt.code)
			})
		}

		e.ok("PUT", pVersion+"/2", "alice1", `{"algorithm": "`+alg+`", "auth_data": {"public_key": "pk2b"}, "version": "2"}`, nil)
		e.ok("GET", pVersion+"/2", "alice1", nil, &info)
		if string(info.AuthData) != `{"public_key": "pk2b"}` {
			t.Fatalf("auth_data after update = %s", info.AuthData)
		}

		// Old versions stay readable and deletable key by key.
		var u keysUpdate
		e.ok("DELETE", pKeys+"/!other:test.local?version=1", "alice1", nil, &u)
		if u.Count != 2 || u.Etag != fmt.Sprint(etag+3) {
			t.Fatalf("after room delete = %+v (etag was %d)", u, etag+2)
		}

		// Deleting a version: again is fine; then it is gone and the
		// previous version is current again.
		e.ok("DELETE", pVersion+"/2", "alice1", nil, nil)
		e.ok("DELETE", pVersion+"/2", "alice1", nil, nil)
		st, out = e.do("GET", pVersion+"/2", "alice1", nil)
		wantError(t, st, out, 404, "M_NOT_FOUND")
		e.ok("GET", pVersion, "alice1", nil, &info)
		if info.Version != "1" || info.Count != 2 {
			t.Fatalf("current after delete = %+v", info)
		}
		e.ok("DELETE", pKeys+"?version=1", "alice1", nil, &u)
		if u.Count != 0 {
			t.Fatalf("after delete all = %+v", u)
		}
		// Version numbers are not reused.
		e.ok("POST", pVersion, "alice1", `{"algorithm": "`+alg+`", "auth_data": {}}`, &created)
		if created.Version != "3" {
			t.Fatalf("third version = %q", created.Version)
		}
	})
}
