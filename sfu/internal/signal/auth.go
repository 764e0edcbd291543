package signal

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
)

// Claims is what a verified access token grants.
type Claims struct {
	Identity string
	Name     string
	Metadata string
	Room     string
	// Attributes are the token's participant attributes.
	Attributes map[string]string

	CanPublish     bool
	CanSubscribe   bool
	CanPublishData bool
	Hidden         bool
	// CanCreateRoom is the roomCreate grant: whether joining may start a
	// room that is not live yet (see sfu.Config.RequireRoomCreate).
	CanCreateRoom bool
	// CanUpdateOwnMetadata is needed to set attributes in the /rtc
	// query, as livekit-server requires (rtcservice validateInternal).
	CanUpdateOwnMetadata bool
	// Sources are the track sources the participant may publish, as
	// the token names them (canPublishSources: "camera", "microphone",
	// "screen_share", "screen_share_audio"); empty allows every source.
	Sources []string

	// video is the verified grant itself, which Refresh signs again.
	video *auth.VideoGrant
}

// CanPublishSource reports whether a track of source may be published:
// the publish grant, and source among Sources when the token lists any
// (livekit/protocol auth VideoGrant.GetCanPublishSource).
func (c *Claims) CanPublishSource(source livekit.TrackSource) bool {
	if !c.CanPublish {
		return false
	}
	if len(c.Sources) == 0 {
		return true
	}
	return slices.Contains(c.Sources, strings.ToLower(source.String()))
}

// ErrUnauthorized is returned (wrapped) for every token problem; the
// wrapped message is the reason given to the client.
var ErrUnauthorized = errors.New("unauthorized")

// TokenFromRequest returns the access token of r: the access_token query
// parameter, else an "Authorization: Bearer" header (LiveKit SDKs use
// either; the Go SDK the header).
func TokenFromRequest(r *http.Request) string {
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t
	}
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Verify checks raw against the API key and secret and returns its
// claims. It requires the roomJoin grant and a room name, as
// livekit-server's /rtc does.
func Verify(raw, apiKey, apiSecret string) (*Claims, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: missing access token", ErrUnauthorized)
	}
	v, err := auth.ParseAPIToken(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid token: %v", ErrUnauthorized, err)
	}
	if v.APIKey() != apiKey {
		return nil, fmt.Errorf("%w: invalid API key", ErrUnauthorized)
	}
	_, grants, err := v.Verify(apiSecret)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid token: %v", ErrUnauthorized, err)
	}
	vg := grants.Video
	if vg == nil || !vg.RoomJoin {
		return nil, fmt.Errorf("%w: permissions denied: no roomJoin grant", ErrUnauthorized)
	}
	if vg.Room == "" {
		return nil, fmt.Errorf("%w: permissions denied: no room in token", ErrUnauthorized)
	}
	if grants.Identity == "" {
		return nil, fmt.Errorf("%w: token has no identity", ErrUnauthorized)
	}
	return &Claims{
		Identity:       grants.Identity,
		Name:           grants.Name,
		Metadata:       grants.Metadata,
		Room:           vg.Room,
		Attributes:     grants.Attributes,
		CanPublish:     vg.GetCanPublish(),
		CanSubscribe:   vg.GetCanSubscribe(),
		CanPublishData: vg.GetCanPublishData(),
		Hidden:         vg.Hidden,
		CanCreateRoom:  vg.RoomCreate,

		CanUpdateOwnMetadata: vg.GetCanUpdateOwnMetadata(),
		Sources:              slices.Clone(vg.CanPublishSources),
		video:                vg.Clone(),
	}, nil
}

// Refresh returns a token with c's grants, valid for ttl. livekit-server
// sends every participant such a token every few minutes (RefreshToken;
// roommanager.go refreshToken) and the SDKs resume and reconnect with
// the newest one they got, so a client whose first token expired during
// a long call can still resume.
func Refresh(c *Claims, apiKey, apiSecret string, ttl time.Duration) (string, error) {
	vg := c.video.Clone()
	if vg == nil {
		canPublish, canSubscribe, canData, canMeta := c.CanPublish, c.CanSubscribe, c.CanPublishData, c.CanUpdateOwnMetadata
		vg = &auth.VideoGrant{
			RoomJoin: true, Room: c.Room, RoomCreate: c.CanCreateRoom, Hidden: c.Hidden,
			CanPublish: &canPublish, CanSubscribe: &canSubscribe, CanPublishData: &canData,
			CanUpdateOwnMetadata: &canMeta, CanPublishSources: slices.Clone(c.Sources),
		}
	}
	jwt, err := auth.NewAccessToken(apiKey, apiSecret).
		SetIdentity(c.Identity).SetName(c.Name).SetMetadata(c.Metadata).SetAttributes(c.Attributes).
		SetVideoGrant(vg).SetValidFor(ttl).ToJWT()
	if err != nil {
		return "", fmt.Errorf("signal: refresh token: %w", err)
	}
	return jwt, nil
}
