package rtcauth

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
)

func TestMint(t *testing.T) {
	const key, secret = "k", "a-secret-of-at-least-thirty-two-bytes"
	tests := []struct {
		name                          string
		access                        Access
		create, publish, sub, pubData bool
	}{
		{"full access (local user)", Access{Full: true}, true, true, true, true},
		{"restricted (other server's user)", Access{}, false, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jwt, err := Mint(key, secret, "lkroom", "ident", tt.access, 0)
			if err != nil {
				t.Fatal(err)
			}
			v, err := auth.ParseAPIToken(jwt)
			if err != nil {
				t.Fatal(err)
			}
			claims, g, err := v.Verify(secret)
			if err != nil {
				t.Fatal(err)
			}
			if ttl := claims.ExpiresAt.Sub(claims.NotBefore.Time); ttl != DefaultTokenTTL {
				t.Fatalf("ttl %s", ttl)
			}
			vg := g.Video
			if g.Identity != "ident" || vg.Room != "lkroom" || !vg.RoomJoin || vg.RoomCreate != tt.create ||
				vg.GetCanPublish() != tt.publish || vg.GetCanSubscribe() != tt.sub || vg.GetCanPublishData() != tt.pubData {
				t.Fatalf("grants %+v identity %q", vg, g.Identity)
			}
		})
	}
	if jwt, err := Mint(key, secret, "r", "i", Access{}, time.Minute); err != nil {
		t.Fatal(err)
	} else if v, _ := auth.ParseAPIToken(jwt); v == nil {
		t.Fatal("unparsable")
	} else if c, _, err := v.Verify(secret); err != nil || c.ExpiresAt.Sub(c.NotBefore.Time) != time.Minute {
		t.Fatalf("custom ttl: %v", err)
	}
}

func TestSFUURL(t *testing.T) {
	plain := &http.Request{Host: "hs.example:8008"}
	tlsReq := &http.Request{Host: "hs.example", TLS: &tls.ConnectionState{}}
	tests := []struct {
		name string
		cfg  Config
		r    *http.Request
		want string
	}{
		{"from the request", Config{}, plain, "ws://hs.example:8008/livekit/sfu"},
		{"from a TLS request", Config{}, tlsReq, "wss://hs.example/livekit/sfu"},
		{"from the public base URL", Config{PublicBaseURL: "https://matrix.example/"}, plain, "wss://matrix.example/livekit/sfu"},
		{"configured", Config{SFUURL: "wss://sfu.example"}, plain, "wss://sfu.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (&Service{cfg: tt.cfg}).sfuURL(tt.r); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}
