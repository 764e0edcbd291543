package rtcauth

import (
	"fmt"
	"time"

	"github.com/livekit/protocol/auth"
)

// DefaultTokenTTL is how long an SFU access token stays valid: an hour,
// as lk-jwt-service mints them. The token only gates joining; a
// participant stays in the call after it expires.
const DefaultTokenTTL = time.Hour

// Access is what a token lets its holder do in its LiveKit room.
type Access struct {
	// Full is lk-jwt-service's "full access": create the room on the
	// SFU when it does not exist yet. Without it the holder may only join
	// a room that is running. Either may publish media and data and
	// subscribe, as lk-jwt-service's tokens allow: when a call's
	// participants share the SFU of its oldest member (MSC4143's
	// "oldest_membership" focus selection), users of other servers
	// publish there too.
	Full bool
}

// Mint returns a LiveKit access token (a JWT signed with HMAC-SHA256
// under secret, naming key as its issuer) for identity to join room.
func Mint(key, secret, room, identity string, access Access, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	yes := true
	grant := &auth.VideoGrant{
		RoomJoin:       true,
		RoomCreate:     access.Full,
		Room:           room,
		CanPublish:     &yes,
		CanSubscribe:   &yes,
		CanPublishData: &yes,
	}
	jwt, err := auth.NewAccessToken(key, secret).SetVideoGrant(grant).SetIdentity(identity).SetValidFor(ttl).ToJWT()
	if err != nil {
		return "", fmt.Errorf("rtcauth: mint token: %w", err)
	}
	return jwt, nil
}
