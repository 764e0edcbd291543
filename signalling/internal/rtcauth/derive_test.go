package rtcauth

import (
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

// TestDerive checks the names against the hash of the JSON text that
// lk-jwt-service (serde_json) hashes, written out by hand.
func TestDerive(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"room alias", RoomAlias("!abc:hs1.test", "m.call#ROOM"), hashOf(`["!abc:hs1.test","m.call#ROOM"]`)},
		{"identity", Identity("@alice:hs1.test", "DEV", "member-1"), hashOf(`["@alice:hs1.test","DEV","member-1"]`)},
		{"no HTML escaping", RoomAlias("!a<b>&c:hs", "s"), hashOf(`["!a<b>&c:hs","s"]`)},
		{"quotes and controls", RoomAlias("a\"b\\c\n\x01", "\u2028"), hashOf("[\"a\\\"b\\\\c\\n\\u0001\",\"\u2028\"]")},
		{"legacy identity", LegacyIdentity("@alice:hs1.test", "DEV"), "@alice:hs1.test:DEV"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %s, want %s", tt.got, tt.want)
			}
		})
	}
	if len(RoomAlias("!r:s", LegacySlot)) != 43 {
		t.Fatal("alias is not 43 base64 characters")
	}
}
