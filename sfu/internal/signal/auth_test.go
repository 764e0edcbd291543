package signal

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/auth"
)

const (
	key    = "k1"
	secret = "secret-secret-secret-secret-secret-secret"
)

func mint(t *testing.T, k, s string, grant *auth.VideoGrant, identity string, validFor time.Duration) string {
	t.Helper()
	at := auth.NewAccessToken(k, s).SetIdentity(identity).SetValidFor(validFor)
	if grant != nil {
		at.SetVideoGrant(grant)
	}
	tok, err := at.ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// expired is a well-signed token whose exp is an hour ago (the auth
// package's minter cannot make one).
func expired(t *testing.T) string {
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": key, "sub": "alice", "nbf": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix(),
		"video": map[string]any{"roomJoin": true, "room": "r"},
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerify(t *testing.T) {
	yes, no := true, false
	join := &auth.VideoGrant{RoomJoin: true, Room: "r", CanPublish: &no, CanSubscribe: &yes}
	for _, tc := range []struct {
		name    string
		tok     string
		wantErr bool
	}{
		{"good", mint(t, key, secret, join, "alice", time.Hour), false},
		{"wrong secret", mint(t, key, "another-secret-another-secret-another", join, "alice", time.Hour), true},
		{"wrong key", mint(t, "k2", secret, join, "alice", time.Hour), true},
		{"expired", expired(t), true},
		{"no roomJoin", mint(t, key, secret, &auth.VideoGrant{Room: "r"}, "alice", time.Hour), true},
		{"no room", mint(t, key, secret, &auth.VideoGrant{RoomJoin: true}, "alice", time.Hour), true},
		{"no video grant", mint(t, key, secret, nil, "alice", time.Hour), true},
		{"no identity", mint(t, key, secret, join, "", time.Hour), true},
		{"garbage", "not.a.jwt", true},
		{"empty", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Verify(tc.tok, key, secret)
			if tc.wantErr {
				if !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("err = %v, want ErrUnauthorized", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Identity != "alice" || c.Room != "r" || c.CanPublish || !c.CanSubscribe || c.CanPublishData {
				t.Fatalf("claims = %+v", c)
			}
		})
	}
}

func TestTokenFromRequest(t *testing.T) {
	r := httptest.NewRequest("GET", "/rtc?access_token=q", nil)
	if got := TokenFromRequest(r); got != "q" {
		t.Errorf("query: %q", got)
	}
	r = httptest.NewRequest("GET", "/rtc", nil)
	r.Header.Set("Authorization", "Bearer h")
	if got := TokenFromRequest(r); got != "h" {
		t.Errorf("header: %q", got)
	}
}

func TestParseParams(t *testing.T) {
	q, _ := url.ParseQuery("version=2.19.0&protocol=17&&auto_subscribe=0&reconnect=1&sid=PA_x&attributes=eyJhIjoiYiJ9&sdk=go")
	p, err := ParseParams(q)
	if err != nil {
		t.Fatal(err)
	}
	if p.AutoSubscribe || !p.Reconnect || p.ParticipantSID != "PA_x" || p.Protocol != 17 || p.Attributes["a"] != "b" || p.SDK != "go" {
		t.Fatalf("params = %+v", p)
	}
	q, _ = url.ParseQuery("protocol=x")
	if _, err := ParseParams(q); err == nil {
		t.Error("a bad protocol was accepted")
	}
	q, _ = url.ParseQuery("")
	if p, _ := ParseParams(q); !p.AutoSubscribe {
		t.Error("auto_subscribe defaults to on")
	}
}
