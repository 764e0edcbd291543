package server

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/keyring"
	"github.com/plexus-chat/plexus/internal/signing"
)

// TestKeysOverHTTP fetches GET /_matrix/key/v2/server over loopback and
// checks it against the spec (Server-Server API, "Publishing Keys"): it
// verifies with the key it publishes, with our verifier and with
// gomatrixserverlib's as an independent one.
func TestKeysOverHTTP(t *testing.T) {
	kr, err := keyring.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_700_000_000_123)
	keys, err := NewKeys(KeysConfig{ServerName: "example.org:8448"}, KeysDeps{Key: kr, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{}, Deps{}, func(s *Server) { keys.Register(s) })

	for _, path := range []string{"/_matrix/key/v2/server", "/_matrix/key/v2/server/" + kr.KeyID()} {
		t.Run(path, func(t *testing.T) {
			res := do(t, "GET", url(s, path))
			if res.status != 200 || res.header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, type %q", res.status, res.header.Get("Content-Type"))
			}
			body := []byte(res.body)

			var got struct {
				ServerName    string                       `json:"server_name"`
				VerifyKeys    map[string]map[string]string `json:"verify_keys"`
				OldVerifyKeys map[string]any               `json:"old_verify_keys"`
				ValidUntilTS  int64                        `json:"valid_until_ts"`
				Signatures    map[string]map[string]string `json:"signatures"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got.ServerName != "example.org:8448" {
				t.Errorf("server_name = %q", got.ServerName)
			}
			if want := now.Add(24 * time.Hour).UnixMilli(); got.ValidUntilTS != want {
				t.Errorf("valid_until_ts = %d, want %d", got.ValidUntilTS, want)
			}
			if got.OldVerifyKeys == nil || len(got.OldVerifyKeys) != 0 {
				t.Errorf("old_verify_keys = %v, want {}", got.OldVerifyKeys)
			}
			if len(got.VerifyKeys) != 1 || got.VerifyKeys[kr.KeyID()] == nil {
				t.Fatalf("verify_keys = %v, want only %s", got.VerifyKeys, kr.KeyID())
			}
			b64 := got.VerifyKeys[kr.KeyID()]["key"]
			if strings.HasSuffix(b64, "=") {
				t.Errorf("key %q is padded; the spec wants unpadded base64", b64)
			}
			pub, err := base64.RawStdEncoding.DecodeString(b64)
			if err != nil || !ed25519.PublicKey(pub).Equal(kr.PublicKey()) {
				t.Fatalf("published key %q is not the keyring's", b64)
			}

			// The body is canonical JSON, as signed.
			v, err := cjson.Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			if string(cjson.Marshal(v)) != res.body {
				t.Errorf("body is not canonical JSON:\n%s", body)
			}
			if err := signing.VerifyJSON(body, "example.org:8448", kr.KeyID(), pub); err != nil {
				t.Errorf("signing.VerifyJSON: %v", err)
			}
			if err := gomatrixserverlib.VerifyJSON("example.org:8448", gomatrixserverlib.KeyID(kr.KeyID()), pub, body); err != nil {
				t.Errorf("gomatrixserverlib.VerifyJSON: %v", err)
			}
			// gomatrixserverlib's own parser accepts it as a server key response.
			var sk gomatrixserverlib.ServerKeys
			if err := json.Unmarshal(body, &sk); err != nil {
				t.Fatalf("gomatrixserverlib cannot parse: %v", err)
			}
			if sk.ServerName != spec.ServerName("example.org:8448") || sk.ValidUntilTS != spec.Timestamp(got.ValidUntilTS) {
				t.Errorf("gomatrixserverlib read %+v", sk.ServerKeyFields)
			}
			// A tampered body must not verify.
			tampered := []byte(strings.Replace(res.body, "example.org:8448", "evil.org:8448", 1))
			if err := signing.VerifyJSON(tampered, "example.org:8448", kr.KeyID(), pub); err == nil {
				t.Error("tampered body verifies")
			}
		})
	}
}

func TestNewKeysErrors(t *testing.T) {
	kr, err := keyring.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  KeysConfig
		deps KeysDeps
		want string
	}{
		{"no server name", KeysConfig{}, KeysDeps{Key: kr}, "server name not set"},
		{"no key", KeysConfig{ServerName: "a"}, KeysDeps{}, "signing key not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewKeys(tt.cfg, tt.deps)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewKeys() error = %v, want %q", err, tt.want)
			}
		})
	}
}

func BenchmarkKeysResponse(b *testing.B) {
	kr, err := keyring.Load(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	keys, err := NewKeys(KeysConfig{ServerName: "example.org"}, KeysDeps{Key: kr})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := keys.Response(); err != nil {
			b.Fatal(err)
		}
	}
}
