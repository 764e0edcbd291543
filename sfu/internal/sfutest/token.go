package sfutest

import (
	"fmt"
	"time"

	"github.com/livekit/protocol/auth"
)

// Token mints a LiveKit access token for identity in room, with the grants
// a normal call participant has (join, publish, subscribe, publish data)
// unless grant adjusts them.
func Token(apiKey, apiSecret, room, identity string, grant func(*auth.VideoGrant)) (string, error) {
	yes := true
	g := &auth.VideoGrant{RoomJoin: true, Room: room, CanPublish: &yes, CanSubscribe: &yes, CanPublishData: &yes}
	if grant != nil {
		grant(g)
	}
	tok, err := auth.NewAccessToken(apiKey, apiSecret).
		SetIdentity(identity).
		SetValidFor(time.Hour).
		SetVideoGrant(g).
		ToJWT()
	if err != nil {
		return "", fmt.Errorf("sfutest: token: %w", err)
	}
	return tok, nil
}
