package signalling

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/media"
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

func (f federationLocal) OpenIDUser(_ context.Context, token string) (string, error) {
	return f.s.openid.user(token, f.s.now())
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

// OpenID tokens (Client-Server API, "OpenID"): a user asks for one and
// hands it to a third party, which exchanges it for the user's ID at
// GET /_matrix/federation/v1/openid/userinfo.
const (
	// openIDLifetime is the tokens' expires_in; Synapse's is an hour too.
	openIDLifetime = time.Hour
	// maxOpenIDPerUser bounds the live tokens of one user; asking for
	// more retires the oldest.
	maxOpenIDPerUser = 20
)

// openIDTokens holds the live OpenID tokens in memory: they live an hour,
// so a restart only makes a third party ask the user again. The zero
// value is ready to use.
type openIDTokens struct {
	mu sync.Mutex // guards byDigest
	// byDigest maps the SHA-256 of a token to its owner and expiry.
	byDigest map[[32]byte]openIDToken
}

type openIDToken struct {
	userID  string
	expires time.Time
}

// issue makes a token for userID valid until now+openIDLifetime.
func (o *openIDTokens) issue(userID string, now time.Time) string {
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand never fails (Go 1.24+)
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byDigest == nil {
		o.byDigest = map[[32]byte]openIDToken{}
	}
	var oldest [32]byte
	live := 0
	for d, t := range o.byDigest {
		switch {
		case !now.Before(t.expires):
			delete(o.byDigest, d)
		case t.userID == userID:
			if live == 0 || t.expires.Before(o.byDigest[oldest].expires) {
				oldest = d
			}
			live++
		}
	}
	if live >= maxOpenIDPerUser {
		delete(o.byDigest, oldest)
	}
	o.byDigest[sha256.Sum256([]byte(tok))] = openIDToken{userID: userID, expires: now.Add(openIDLifetime)}
	return tok
}

// user returns the owner of a live token: 401 M_UNKNOWN_TOKEN otherwise.
func (o *openIDTokens) user(token string, now time.Time) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.byDigest[sha256.Sum256([]byte(token))]
	if !ok || !now.Before(t.expires) {
		return "", mxerr.UnknownToken("Access token unknown or expired")
	}
	return t.userID, nil
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
	endpoint.Write(w, map[string]any{
		"access_token":       s.openid.issue(sess.UserID, s.now()),
		"token_type":         "Bearer",
		"matrix_server_name": s.cfg.ServerName,
		"expires_in":         int64(openIDLifetime / time.Second),
	})
}
