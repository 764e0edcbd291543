package signal

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/livekit/protocol/auth"
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
	}, nil
}
