package signalling

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/media"
	"github.com/plexus-chat/plexus/signalling/internal/rtcauth"
)

// FederationLocal returns what the federation endpoints read about this
// server's users, aliases, directory, OpenID tokens and media.
func (s *Signalling) FederationLocal() fedlocal.Local { return federationLocal{s} }

// federationLocal implements fedlocal.Local over signalling's parts.
type federationLocal struct{ s *Signalling }

func (f federationLocal) ResolveAlias(ctx context.Context, alias string) (string, error) {
	return f.s.rooms.ResolveLocalAlias(ctx, alias)
}

func (f federationLocal) Profile(ctx context.Context, userID string) (map[string]json.RawMessage, error) {
	return f.s.accounts.PublicProfile(ctx, userID)
}

func (f federationLocal) PublicRooms(ctx context.Context, q fedlocal.PublicRoomsQuery) (json.RawMessage, error) {
	var types map[string]bool
	if q.RoomTypes != nil {
		types = map[string]bool{}
		for _, t := range q.RoomTypes {
			if t == nil {
				types[""] = true
			} else {
				types[*t] = true
			}
		}
	}
	page, err := f.s.rooms.PublicRooms(ctx, q.Limit, q.Since, q.SearchTerm, types)
	if err != nil {
		return nil, err
	}
	return json.Marshal(page)
}

func (f federationLocal) UserDevices(ctx context.Context, userID string) (json.RawMessage, error) {
	return f.s.keys.FederationDevices(ctx, userID)
}

func (f federationLocal) QueryKeys(ctx context.Context, query map[string][]string) (json.RawMessage, error) {
	return f.s.keys.FederationQuery(ctx, query)
}

func (f federationLocal) ClaimKeys(ctx context.Context, claim map[string]map[string]string) (json.RawMessage, error) {
	return f.s.keys.FederationClaim(ctx, claim)
}

func (f federationLocal) OpenIDUser(ctx context.Context, token string) (string, error) {
	return f.s.openid.User(ctx, token)
}

func (f federationLocal) Media(ctx context.Context, q fedlocal.MediaQuery) (*fedlocal.MediaFile, error) {
	var thumb *media.Thumbnail
	if t := q.Thumbnail; t != nil {
		thumb = &media.Thumbnail{Width: t.Width, Height: t.Height, Crop: t.Crop, Animated: t.Animated}
	}
	lf, err := f.s.media.OpenLocal(ctx, q.MediaID, q.Wait, thumb)
	if err != nil {
		return nil, err
	}
	return &fedlocal.MediaFile{Body: lf.Body, ContentType: lf.ContentType, Disposition: lf.Disposition}, nil
}

// registerOpenID adds POST /user/{userId}/openid/request_token.
func (s *Signalling) registerOpenID(rt *endpoint.Router) {
	rt.Authed("POST /_matrix/client/v3/user/{userId}/openid/request_token", s.requestOpenIDToken)
}

// requestOpenIDToken is POST /_matrix/client/v3/user/{userId}/openid/request_token
// (Client-Server API, "OpenID"): only for the caller itself.
func (s *Signalling) requestOpenIDToken(w http.ResponseWriter, r *http.Request, sess *endpoint.Session) {
	var body map[string]json.RawMessage
	if err := endpoint.Decode(r, 0, &body); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if r.PathValue("userId") != sess.UserID {
		endpoint.Fail(w, mxerr.Forbidden("Cannot request tokens for other users"))
		return
	}
	tok, err := s.openid.Issue(r.Context(), sess.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string]any{
		"access_token":       tok,
		"token_type":         "Bearer",
		"matrix_server_name": s.cfg.ServerName,
		"expires_in":         int64(rtcauth.OpenIDLifetime / time.Second),
	})
}
