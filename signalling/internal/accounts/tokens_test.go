package accounts

import (
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// A fill that read the database before an invalidation must not cache
// what it read: the token may have been revoked in between.
func TestSessionCacheDropsStaleFill(t *testing.T) {
	c := newSessionCache(10)
	s := endpoint.Session{UserID: "@a:x", DeviceID: "D", TokenHash: "h1"}
	gen := c.generation()
	c.invalidate("@a:x", nil) // a logout commits while the fill reads
	c.put("h1", s, gen)
	if _, ok := c.get("h1"); ok {
		t.Fatal("a fill older than an invalidation was cached")
	}
	c.put("h1", s, c.generation())
	if _, ok := c.get("h1"); !ok {
		t.Fatal("a current fill was not cached")
	}
	c.put("h2", endpoint.Session{UserID: "@a:x", DeviceID: "E", TokenHash: "h2"}, c.generation())
	c.invalidate("@a:x", func(s endpoint.Session) bool { return s.DeviceID == "D" })
	if _, ok := c.get("h1"); ok {
		t.Error("invalidated device still cached")
	}
	if _, ok := c.get("h2"); !ok {
		t.Error("another device's session was dropped")
	}
}

func TestAccessTokenFormat(t *testing.T) {
	tok, digest, err := newAccessToken()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, tokenPrefix) || len(tok) != len(tokenPrefix)+43 || digest != tokenDigest(tok) || len(digest) != 64 {
		t.Errorf("token %q digest %q", tok, digest)
	}
	tok2, _, _ := newAccessToken()
	if tok2 == tok {
		t.Error("two tokens are equal")
	}
}
