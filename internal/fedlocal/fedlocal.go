package fedlocal

import (
	"context"
	"encoding/json"
	"io"
	"time"
)

// Local answers what other servers ask about this server. A
// *mxerr.MatrixError from a method reaches the requesting server as is;
// any other error is a 500.
type Local interface {
	// ResolveAlias returns the room a local alias points to, or
	// 404 M_NOT_FOUND.
	ResolveAlias(ctx context.Context, alias string) (roomID string, err error)
	// Profile returns the public profile fields of a local user, or
	// 404 M_NOT_FOUND for an unknown user.
	Profile(ctx context.Context, userID string) (map[string]json.RawMessage, error)
	// PublicRooms returns a page of the published room directory: the
	// body of a PublicRoomsResponse (Server-Server API, "Public Room
	// Directory").
	PublicRooms(ctx context.Context, q PublicRoomsQuery) (json.RawMessage, error)
	// UserDevices returns the body of GET /user/devices/{userId} for a
	// local user: user_id, stream_id, devices and cross-signing keys.
	UserDevices(ctx context.Context, userID string) (json.RawMessage, error)
	// QueryKeys returns the body of POST /user/keys/query for local
	// users: device_keys, master_keys and self_signing_keys.
	QueryKeys(ctx context.Context, query map[string][]string) (json.RawMessage, error)
	// ClaimKeys claims one key per local user, device and algorithm and
	// returns the body of POST /user/keys/claim.
	ClaimKeys(ctx context.Context, claim map[string]map[string]string) (json.RawMessage, error)
	// OpenIDUser returns the user an OpenID token was issued to, or 401
	// M_UNKNOWN_TOKEN for an unknown or expired token.
	OpenIDUser(ctx context.Context, token string) (userID string, err error)
	// Media opens local media, or a thumbnail of it; 404 M_NOT_FOUND if
	// there is none. The caller closes the file's Body.
	Media(ctx context.Context, q MediaQuery) (*MediaFile, error)
}

// PublicRoomsQuery is a request for a page of the room directory.
type PublicRoomsQuery struct {
	// Limit is the most rooms to return; nil means no limit.
	Limit *int
	// Since is a pagination token from a previous answer.
	Since string
	// SearchTerm filters rooms by name, topic, alias or ID ("" for all).
	SearchTerm string
	// RoomTypes filters rooms by type; nil means any, and a nil entry
	// stands for rooms without a type.
	RoomTypes []*string
}

// MediaQuery names local media and, for a thumbnail, its size.
type MediaQuery struct {
	MediaID string
	// Wait is how long to wait for the content of an asynchronous upload
	// that has not arrived yet.
	Wait time.Duration
	// Thumbnail is nil for the media itself.
	Thumbnail *ThumbnailSize
}

// ThumbnailSize is what a thumbnail request asks for.
type ThumbnailSize struct {
	Width, Height int
	// Crop is method=crop (else scale).
	Crop     bool
	Animated bool
}

// MediaFile is opened media content.
type MediaFile struct {
	Body        io.ReadCloser
	ContentType string
	// Disposition is the Content-Disposition of the content.
	Disposition string
}
