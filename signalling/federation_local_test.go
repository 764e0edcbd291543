package signalling_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// wantMatrixError checks err is a *mxerr.MatrixError with code.
func wantMatrixError(t *testing.T, err error, code string) {
	t.Helper()
	var me *mxerr.MatrixError
	if !errors.As(err, &me) || me.Code != code {
		t.Fatalf("got %v, want %s", err, code)
	}
}

// TestFederationLocal reads through FederationLocal what the federation
// endpoints serve, after a user set it up through the client API.
func TestFederationLocal(t *testing.T) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Setenv(storagetest.EnvPostgres, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) { testFederationLocal(t, backend) })
	}
}

func testFederationLocal(t *testing.T, backend string) {
	srv := startServer(t, backend)
	ctx := context.Background()
	hc := &http.Client{}
	a := &api{base: srv.URL, hc: hc}
	var reg struct {
		AccessToken string `json:"access_token"`
		UserID      string `json:"user_id"`
		DeviceID    string `json:"device_id"`
	}
	if err := a.do("POST", "/_matrix/client/v3/register", map[string]any{
		"username": "alice", "password": "pw", "auth": map[string]string{"type": "m.login.dummy"},
		"initial_device_display_name": "Alice's phone",
	}, &reg); err != nil {
		t.Fatal(err)
	}
	a.token = reg.AccessToken
	alice := reg.UserID
	if err := a.do("PUT", "/_matrix/client/v3/profile/"+url.PathEscape(alice)+"/displayname",
		map[string]string{"displayname": "Alice"}, nil); err != nil {
		t.Fatal(err)
	}
	var room struct {
		RoomID string `json:"room_id"`
	}
	if err := a.do("POST", "/_matrix/client/v3/createRoom", map[string]any{
		"room_alias_name": "fed", "visibility": "public", "preset": "public_chat", "name": "Fed room",
	}, &room); err != nil {
		t.Fatal(err)
	}
	// Device keys, one one-time key and a fallback key.
	pub, priv, _ := ed25519.GenerateKey(nil)
	dev := reg.DeviceID
	keyID := "ed25519:" + dev
	deviceKeys := signed(t, map[string]any{
		"user_id": alice, "device_id": dev, "algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys": map[string]string{keyID: base64.RawStdEncoding.EncodeToString(pub), "curve25519:" + dev: "curve"},
	}, alice, keyID, priv)
	otk := signed(t, map[string]any{"key": "otk1"}, alice, keyID, priv)
	fallback := signed(t, map[string]any{"key": "fb1", "fallback": true}, alice, keyID, priv)
	if err := a.do("POST", "/_matrix/client/v3/keys/upload", map[string]any{
		"device_keys":         deviceKeys,
		"one_time_keys":       map[string]json.RawMessage{"signed_curve25519:AAAA": otk},
		"fallback_keys":       map[string]json.RawMessage{"signed_curve25519:FFFF": fallback},
		"org.example.padding": true,
	}, nil); err != nil {
		t.Fatal(err)
	}

	local := srv.Sig.FederationLocal()

	t.Run("profile", func(t *testing.T) {
		p, err := local.Profile(ctx, alice)
		if err != nil || string(p["displayname"]) != `"Alice"` {
			t.Fatalf("got %s, %v", p, err)
		}
		_, err = local.Profile(ctx, "@nobody:"+srv.Name)
		wantMatrixError(t, err, "M_NOT_FOUND")
	})

	t.Run("alias", func(t *testing.T) {
		id, err := local.ResolveAlias(ctx, "#fed:"+srv.Name)
		if err != nil || id != room.RoomID {
			t.Fatalf("got %q, %v", id, err)
		}
		_, err = local.ResolveAlias(ctx, "#other:"+srv.Name)
		wantMatrixError(t, err, "M_NOT_FOUND")
		_, err = local.ResolveAlias(ctx, "#fed:elsewhere.test")
		wantMatrixError(t, err, "M_NOT_FOUND")
	})

	t.Run("public rooms", func(t *testing.T) {
		var page struct {
			Chunk []struct {
				RoomID string `json:"room_id"`
				Name   string `json:"name"`
			} `json:"chunk"`
		}
		raw, err := local.PublicRooms(ctx, fedlocal.PublicRoomsQuery{SearchTerm: "fed"})
		if err != nil || json.Unmarshal(raw, &page) != nil || len(page.Chunk) != 1 ||
			page.Chunk[0].RoomID != room.RoomID || page.Chunk[0].Name != "Fed room" {
			t.Fatalf("got %s, %v", raw, err)
		}
		space := "m.space"
		raw, err = local.PublicRooms(ctx, fedlocal.PublicRoomsQuery{RoomTypes: []*string{&space}})
		if err != nil || json.Unmarshal(raw, &page) != nil || len(page.Chunk) != 0 {
			t.Fatalf("spaces only: got %s, %v", raw, err)
		}
		bad := "x"
		_, err = local.PublicRooms(ctx, fedlocal.PublicRoomsQuery{Since: bad})
		wantMatrixError(t, err, "M_INVALID_PARAM")
	})

	t.Run("devices", func(t *testing.T) {
		raw, err := local.UserDevices(ctx, alice)
		var body struct {
			UserID   string `json:"user_id"`
			StreamID int64  `json:"stream_id"`
			Devices  []struct {
				DeviceID    string          `json:"device_id"`
				Keys        json.RawMessage `json:"keys"`
				DisplayName string          `json:"device_display_name"`
			} `json:"devices"`
		}
		if err != nil || json.Unmarshal(raw, &body) != nil {
			t.Fatalf("got %s, %v", raw, err)
		}
		if body.UserID != alice || body.StreamID <= 0 || len(body.Devices) != 1 || body.Devices[0].DeviceID != dev ||
			body.Devices[0].DisplayName != "Alice's phone" {
			t.Fatalf("got %s", raw)
		}
		if err := signing.VerifyJSON(body.Devices[0].Keys, alice, keyID, pub); err != nil {
			t.Fatalf("served device keys do not verify: %v", err)
		}
	})

	t.Run("query keys", func(t *testing.T) {
		raw, err := local.QueryKeys(ctx, map[string][]string{alice: {}})
		var body struct {
			DeviceKeys map[string]map[string]json.RawMessage `json:"device_keys"`
		}
		if err != nil || json.Unmarshal(raw, &body) != nil || body.DeviceKeys[alice][dev] == nil {
			t.Fatalf("got %s, %v", raw, err)
		}
		if err := signing.VerifyJSON(body.DeviceKeys[alice][dev], alice, keyID, pub); err != nil {
			t.Fatalf("served device keys do not verify: %v", err)
		}
	})

	t.Run("claim keys", func(t *testing.T) {
		// The one-time key once, then the fallback key.
		for _, want := range []string{"signed_curve25519:AAAA", "signed_curve25519:FFFF"} {
			raw, err := local.ClaimKeys(ctx, map[string]map[string]string{alice: {dev: "signed_curve25519"}})
			var body struct {
				OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
			}
			if err != nil || json.Unmarshal(raw, &body) != nil || body.OneTimeKeys[alice][dev][want] == nil {
				t.Fatalf("want %s: got %s, %v", want, raw, err)
			}
		}
	})

	t.Run("openid", func(t *testing.T) {
		var tok struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			Server      string `json:"matrix_server_name"`
			ExpiresIn   int64  `json:"expires_in"`
		}
		path := "/_matrix/client/v3/user/" + url.PathEscape(alice) + "/openid/request_token"
		if err := a.do("POST", path, map[string]any{}, &tok); err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.Server != srv.Name || tok.ExpiresIn != 3600 {
			t.Fatalf("got %+v", tok)
		}
		user, err := local.OpenIDUser(ctx, tok.AccessToken)
		if err != nil || user != alice {
			t.Fatalf("got %q, %v", user, err)
		}
		_, err = local.OpenIDUser(ctx, tok.AccessToken+"x")
		wantMatrixError(t, err, "M_UNKNOWN_TOKEN")
		err = a.do("POST", "/_matrix/client/v3/user/"+url.PathEscape("@bob:"+srv.Name)+"/openid/request_token", map[string]any{}, nil)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte("M_FORBIDDEN")) {
			t.Fatalf("a token for another user: %v", err)
		}
	})

	t.Run("media", func(t *testing.T) {
		req, _ := http.NewRequest("POST", srv.URL+"/_matrix/media/v3/upload?filename=hello.txt", bytes.NewReader([]byte("hello")))
		req.Header.Set("Authorization", "Bearer "+a.token)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var up struct {
			URI string `json:"content_uri"`
		}
		err = json.NewDecoder(resp.Body).Decode(&up)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("upload: %d %v", resp.StatusCode, err)
		}
		u, err := url.Parse(up.URI)
		if err != nil {
			t.Fatal(err)
		}
		f, err := local.Media(ctx, fedlocal.MediaQuery{MediaID: u.Path[1:], Wait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f.Body)
		f.Body.Close()
		if string(b) != "hello" || !strings.HasPrefix(f.ContentType, "text/plain") || f.Disposition == "" {
			t.Fatalf("got %q %q %q", b, f.ContentType, f.Disposition)
		}
		_, err = local.Media(ctx, fedlocal.MediaQuery{MediaID: "missing", Wait: 0})
		wantMatrixError(t, err, "M_NOT_FOUND")
		_, err = local.Media(ctx, fedlocal.MediaQuery{MediaID: u.Path[1:], Thumbnail: &fedlocal.ThumbnailSize{Width: 32, Height: 32}})
		if err == nil {
			t.Fatal("a thumbnail of text")
		}
	})
}

// signed returns obj signed by entity's key, as JSON.
func signed(t *testing.T, obj map[string]any, entity, keyID string, priv ed25519.PrivateKey) json.RawMessage {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	out, err := signing.SignJSON(raw, entity, keyID, priv)
	if err != nil {
		t.Fatal(fmt.Errorf("sign: %w", err))
	}
	return out
}
