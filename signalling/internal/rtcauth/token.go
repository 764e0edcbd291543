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
	// Full is lk-jwt-service's "full access": publish media, and create
	// the room on the SFU when it does not exist yet. Without it the
	// holder joins an existing room and subscribes (and may publish data
	// messages, as lk-jwt-service's grants allow).
	Full bool
}

// Mint returns a LiveKit access token (a JWT signed with HMAC-SHA256
// under secret, naming key as its issuer) for identity to join room.
func Mint(key, secret, room, identity string, access Access, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	yes, publish := true, access.Full
	grant := &auth.VideoGrant{
		RoomJoin:       true,
		RoomCreate:     access.Full,
		Room:           room,
		CanPublish:     &publish,
		CanSubscribe:   &yes,
		CanPublishData: &yes,
	}
	jwt, err := auth.NewAccessToken(key, secret).SetVideoGrant(grant).SetIdentity(identity).SetValidFor(ttl).ToJWT()
	if err != nil {
		return "", fmt.Errorf("rtcauth: mint token: %w", err)
	}
	return jwt, nil
}
