package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/plexus-chat/plexus/internal/signing"
)

const (
	pUpload = "/_matrix/client/v3/keys/upload"
	pQuery  = "/_matrix/client/v3/keys/query"
	pClaim  = "/_matrix/client/v3/keys/claim"
)

// otkText is a signed one-time key object with irregular spacing.
func otkText(t *testing.T, user, device, id string, kp keyPair, fallback bool) []byte {
	text := fmt.Sprintf(`{"key" :  "otk+%s"}`, id)
	if fallback {
		text = fmt.Sprintf(`{"key" :  "fb+%s", "fallback": true}`, id)
	}
	return signText(t, text, user, "ed25519:"+device, kp.priv)
}

func TestUploadQueryClaimRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		kp := newKeyPair(t)
		dk := deviceKeysText(t, alice, "ALICE1", kp)
		otks := map[string][]byte{}
		var body bytes.Buffer
		body.WriteString(`{"device_keys": `)
		body.Write(dk)
		body.WriteString(`, "one_time_keys": {`)
		for i := 1; i <= 3; i++ {
			id := fmt.Sprintf("signed_curve25519:AAAA%d", i)
			otks[id] = otkText(t, alice, "ALICE1", id, kp, false)
			if i > 1 {
				body.WriteString(", ")
			}
			fmt.Fprintf(&body, "%q: %s", id, otks[id])
		}
		body.WriteString(`, "curve25519:plain": "plainkey"}}`)
		var up struct {
			Counts map[string]int `json:"one_time_key_counts"`
		}
		e.ok("POST", pUpload, "alice1", body.Bytes(), &up)
		if up.Counts["signed_curve25519"] != 3 || up.Counts["curve25519"] != 1 {
			t.Fatalf("counts = %v", up.Counts)
		}

		// The device keys come back byte for byte, with only "unsigned"
		// added before the closing brace, and still verify.
		out := e.ok("POST", pQuery, "bob1", `{"device_keys": {"@alice:test.local": [], "@zed:other.example": []}}`, nil)
		got := rawTree(t, out)["device_keys"][alice]["ALICE1"]
		i := bytes.LastIndexByte(dk, '}')
		want := string(dk[:i]) + `,"unsigned":{"device_display_name":"Alice's phone"}` + string(dk[i:])
		if string(got) != want {
			t.Fatalf("device keys\n got %s\nwant %s", got, want)
		}
		if err := signing.VerifyJSON(got, alice, "ed25519:ALICE1", mustPub(t, kp)); err != nil {
			t.Fatalf("signature over served keys: %v", err)
		}
		var q struct {
			DeviceKeys map[string]map[string]json.RawMessage `json:"device_keys"`
			Failures   map[string]json.RawMessage            `json:"failures"`
			Master     map[string]json.RawMessage            `json:"master_keys"`
		}
		if err := json.Unmarshal(out, &q); err != nil {
			t.Fatal(err)
		}
		if _, ok := q.Failures["other.example"]; !ok || q.Master == nil {
			t.Fatalf("query answer %s: want a failure for other.example and master_keys", out)
		}

		// Named devices: only those; a device without keys is absent.
		e.ok("POST", pQuery, "bob1", `{"device_keys": {"@alice:test.local": ["ALICE2"]}}`, &q)
		if devs, ok := q.DeviceKeys[alice]; !ok || len(devs) != 0 {
			t.Fatalf("query for ALICE2: %v", q.DeviceKeys)
		}

		// Claims hand out each one-time key once, byte-exact, then nothing.
		seen := map[string]bool{}
		for n := 0; n < 4; n++ {
			out := e.ok("POST", pClaim, "bob1", `{"one_time_keys": {"@alice:test.local": {"ALICE1": "signed_curve25519"}}}`, nil)
			var c struct {
				OTK map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
			}
			if err := json.Unmarshal(out, &c); err != nil {
				t.Fatal(err)
			}
			keys := c.OTK[alice]["ALICE1"]
			if n == 3 {
				if len(keys) != 0 {
					t.Fatalf("claim after exhaustion returned %s", out)
				}
				continue
			}
			if len(keys) != 1 {
				t.Fatalf("claim %d returned %s", n, out)
			}
			for id, raw := range keys {
				if seen[id] || !bytes.Equal(raw, otks[id]) {
					t.Fatalf("claim %d: %s = %s (seen before: %v), uploaded %s", n, id, raw, seen[id], otks[id])
				}
				seen[id] = true
			}
		}
		counts, err := e.k.OneTimeKeyCounts(context.Background(), alice, "ALICE1")
		if err != nil || counts["signed_curve25519"] != 0 || counts["curve25519"] != 1 {
			t.Fatalf("counts after claims = %v, %v", counts, err)
		}
	})
}

func mustPub(t *testing.T, kp keyPair) []byte {
	t.Helper()
	b, err := signing.DecodeBase64(kp.id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClaimConcurrentExactlyOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const keys, claimers = 20, 40
		var b strings.Builder
		b.WriteString(`{"one_time_keys": {`)
		for i := 0; i < keys; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"signed_curve25519:K%02d": {"key": "k%d", "signatures": {}}`, i, i)
		}
		b.WriteString("}}")
		e.ok("POST", pUpload, "alice1", b.String(), nil)

		var mu sync.Mutex
		var got []string
		var wg sync.WaitGroup
		errs := make(chan error, claimers)
		for i := 0; i < claimers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := e.srv.Client().Post(e.srv.URL+pClaim+"?access_token=bob1", "application/json",
					strings.NewReader(`{"one_time_keys": {"@alice:test.local": {"ALICE1": "signed_curve25519"}}}`))
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				var c struct {
					OTK map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
				}
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
				if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for id := range c.OTK[alice]["ALICE1"] {
					got = append(got, id)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		sort.Strings(got)
		if len(got) != keys {
			t.Fatalf("claimed %d keys, want %d: %v", len(got), keys, got)
		}
		for i := 1; i < len(got); i++ {
			if got[i] == got[i-1] {
				t.Fatalf("key %s handed out twice", got[i])
			}
		}
	})
}

func TestFallbackKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		kp := newKeyPair(t)
		fb1 := otkText(t, alice, "ALICE1", "F1", kp, true)
		upload := func(id string, raw []byte) {
			e.ok("POST", pUpload, "alice1", fmt.Sprintf(`{"fallback_keys": {%q: %s}}`, id, raw), nil)
		}
		unused := func(want string) {
			t.Helper()
			got, err := e.k.UnusedFallbackKeyTypes(ctx, alice, "ALICE1")
			if err != nil || strings.Join(got, ",") != want {
				t.Fatalf("unused fallback types = %v, %v; want %q", got, err, want)
			}
		}
		claim := func() string {
			t.Helper()
			out := e.ok("POST", pClaim, "bob1", `{"one_time_keys": {"@alice:test.local": {"ALICE1": "signed_curve25519"}}}`, nil)
			var c struct {
				OTK map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
			}
			if err := json.Unmarshal(out, &c); err != nil {
				t.Fatal(err)
			}
			for id, raw := range c.OTK[alice]["ALICE1"] {
				return id + "=" + string(raw)
			}
			return ""
		}
		unused("")
		upload("signed_curve25519:F1", fb1)
		unused("signed_curve25519")
		// No one-time keys: the fallback key, every time, marked used.
		for i := 0; i < 2; i++ {
			if got := claim(); got != "signed_curve25519:F1="+string(fb1) {
				t.Fatalf("claim %d = %s", i, got)
			}
		}
		unused("")
		// Re-uploading the same key keeps it used; a new one is unused.
		upload("signed_curve25519:F1", fb1)
		unused("")
		fb2 := otkText(t, alice, "ALICE1", "F2", kp, true)
		upload("signed_curve25519:F2", fb2)
		unused("signed_curve25519")
		// A one-time key goes first.
		e.ok("POST", pUpload, "alice1", `{"one_time_keys": {"signed_curve25519:O1": {"key": "o", "signatures": {}}}}`, nil)
		if got := claim(); !strings.HasPrefix(got, "signed_curve25519:O1=") {
			t.Fatalf("claim with a one-time key left = %s", got)
		}
		if got := claim(); got != "signed_curve25519:F2="+string(fb2) {
			t.Fatalf("claim = %s", got)
		}
		st, body := e.do("POST", pUpload, "alice1", `{"fallback_keys": {"signed_curve25519:A": "x", "signed_curve25519:B": "y"}}`)
		wantError(t, st, body, 400, "M_INVALID_PARAM")
	})
}

func TestBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		kp := newKeyPair(t)
		e.ok("POST", pUpload, "alice1", `{"device_keys": `+string(deviceKeysText(t, alice, "ALICE1", kp))+
			`, "one_time_keys": {"signed_curve25519:X": {"key": "x", "signatures": {}}}}`, nil)
		other := newKeyPair(t)
		tests := []struct {
			name, method, path, token, body string
			status                          int
			code                            string
		}{
			{"no token", "POST", pUpload, "", `{}`, 401, "M_MISSING_TOKEN"},
			{"bad token", "POST", pUpload, "nope", `{}`, 401, "M_UNKNOWN_TOKEN"},
			{"malformed JSON", "POST", pUpload, "alice1", `{"device_keys": `, 400, "M_NOT_JSON"},
			{"device_keys not an object", "POST", pUpload, "alice1", `{"device_keys": 5}`, 400, "M_BAD_JSON"},
			{"device_keys null", "POST", pUpload, "alice1", `{"device_keys": null}`, 400, "M_BAD_JSON"},
			{"device_keys missing signatures", "POST", pUpload, "alice1",
				`{"device_keys": {"user_id": "@alice:test.local", "device_id": "ALICE1", "algorithms": [], "keys": {}}}`, 400, "M_BAD_JSON"},
			{"device_keys keys of wrong type", "POST", pUpload, "alice1",
				`{"device_keys": {"user_id": "@alice:test.local", "device_id": "ALICE1", "algorithms": [], "keys": [], "signatures": {}}}`, 400, "M_BAD_JSON"},
			{"device_keys for another user", "POST", pUpload, "alice2", `{"device_keys": ` + string(deviceKeysText(t, bob, "ALICE2", kp)) + `}`, 400, "M_INVALID_PARAM"},
			{"device_keys for another device", "POST", pUpload, "alice2", `{"device_keys": ` + string(deviceKeysText(t, alice, "ALICE1", kp)) + `}`, 400, "M_INVALID_PARAM"},
			{"changed identity keys", "POST", pUpload, "alice1", `{"device_keys": ` + string(deviceKeysText(t, alice, "ALICE1", other)) + `}`, 400, "M_INVALID_PARAM"},
			{"device_keys with a duplicate key", "POST", pUpload, "alice1",
				`{"device_keys": {"user_id": "@alice:test.local", "user_id": "@alice:test.local", "device_id": "ALICE1", "algorithms": [], "keys": {}, "signatures": {}}}`, 400, "M_BAD_JSON"},
			{"one-time key with a float", "POST", pUpload, "alice1", `{"one_time_keys": {"a:b": {"key": "k", "n": 1.5, "signatures": {}}}}`, 400, "M_BAD_JSON"},
			{"one_time_keys not an object", "POST", pUpload, "alice1", `{"one_time_keys": []}`, 400, "M_BAD_JSON"},
			{"one-time key name without algorithm", "POST", pUpload, "alice1", `{"one_time_keys": {"nocolon": "x"}}`, 400, "M_BAD_JSON"},
			{"one-time key a number", "POST", pUpload, "alice1", `{"one_time_keys": {"a:b": 5}}`, 400, "M_BAD_JSON"},
			{"one-time key object without key", "POST", pUpload, "alice1", `{"one_time_keys": {"a:b": {"signatures": {}}}}`, 400, "M_BAD_JSON"},
			{"one-time key reused with another value", "POST", pUpload, "alice1", `{"one_time_keys": {"signed_curve25519:X": {"key": "y", "signatures": {}}}}`, 400, "M_INVALID_PARAM"},
			{"query without device_keys", "POST", pQuery, "alice1", `{}`, 400, "M_BAD_JSON"},
			{"query device list not a list", "POST", pQuery, "alice1", `{"device_keys": {"@bob:test.local": "BOB1"}}`, 400, "M_BAD_JSON"},
			{"query not JSON", "POST", pQuery, "alice1", `device_keys`, 400, "M_NOT_JSON"},
			{"claim algorithm not a string", "POST", pClaim, "alice1", `{"one_time_keys": {"@bob:test.local": {"BOB1": 1}}}`, 400, "M_BAD_JSON"},
			{"changes without from", "GET", "/_matrix/client/v3/keys/changes?to=s0_0_0", "alice1", ``, 400, "M_MISSING_PARAM"},
			{"changes with bad from", "GET", "/_matrix/client/v3/keys/changes?from=xyz", "alice1", ``, 400, "M_INVALID_PARAM"},
			{"sendToDevice without messages", "PUT", pSend + "m.test/t1", "alice1", `{}`, 400, "M_MISSING_PARAM"},
			{"sendToDevice to a bad user ID", "PUT", pSend + "m.test/t2", "alice1", `{"messages": {"bob": {"BOB1": {}}}}`, 400, "M_INVALID_PARAM"},
			{"sendToDevice content not an object", "PUT", pSend + "m.test/t3", "alice1", `{"messages": {"@bob:test.local": {"BOB1": "hi"}}}`, 400, "M_BAD_JSON"},
			{"sendToDevice messages of wrong type", "PUT", pSend + "m.test/t4", "alice1", `{"messages": []}`, 400, "M_BAD_JSON"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var body any
				if tt.body != "" {
					body = tt.body
				}
				st, out := e.do(tt.method, tt.path, tt.token, body)
				wantError(t, st, out, tt.status, tt.code)
			})
		}
		// Nothing was half-written: the original keys and key survive.
		counts, err := e.k.OneTimeKeyCounts(context.Background(), alice, "ALICE1")
		if err != nil || counts["signed_curve25519"] != 1 {
			t.Fatalf("counts = %v, %v", counts, err)
		}
		out := e.ok("POST", pQuery, "bob1", `{"device_keys": {"@alice:test.local": []}}`, nil)
		if got := rawTree(t, out)["device_keys"][alice]["ALICE1"]; !bytes.Contains(got, []byte(kp.id)) {
			t.Fatalf("device keys replaced: %s", got)
		}
	})
}
