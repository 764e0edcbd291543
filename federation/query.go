package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/mxerr"
)

// QueryDirectory resolves a room alias of another server with GET
// /_matrix/federation/v1/query/directory on the alias's server
// (server-server API, "Querying for information"): the room ID and the
// servers in the room, which a join through the alias goes through. An
// unknown alias is the remote's 404 M_NOT_FOUND; an unreachable server is
// 404 too, as the client's GET /directory/room/{roomAlias} has no other
// answer for it.
func (f *Federation) QueryDirectory(ctx context.Context, alias string) (roomID string, servers []string, err error) {
	_, dest, ok := strings.Cut(alias, ":")
	if !strings.HasPrefix(alias, "#") || !ok || dest == "" {
		return "", nil, mxerr.InvalidParam("Invalid room alias")
	}
	var resp struct {
		RoomID  string   `json:"room_id"`
		Servers []string `json:"servers"`
	}
	path := "/_matrix/federation/v1/query/directory?" + url.Values{"room_alias": {alias}}.Encode()
	if err := f.client.Do(ctx, dest, "GET", path, nil, &resp); err != nil {
		return "", nil, queryError(err, "Room alias "+alias+" not found")
	}
	if resp.RoomID == "" {
		return "", nil, mxerr.NotFound("Room alias " + alias + " not found")
	}
	return resp.RoomID, resp.Servers, nil
}

// QueryProfile fetches the profile of a user on another server with GET
// /_matrix/federation/v1/query/profile, or only field of it if field is
// not empty. An unknown user, or an unset field, is 404 M_NOT_FOUND.
func (f *Federation) QueryProfile(ctx context.Context, userID, field string) (map[string]json.RawMessage, error) {
	_, dest, ok := strings.Cut(userID, ":")
	if !strings.HasPrefix(userID, "@") || !ok || dest == "" {
		return nil, mxerr.InvalidParam("Invalid user ID")
	}
	q := url.Values{"user_id": {userID}}
	if field != "" {
		q.Set("field", field)
	}
	var resp map[string]json.RawMessage
	if err := f.client.Do(ctx, dest, "GET", "/_matrix/federation/v1/query/profile?"+q.Encode(), nil, &resp); err != nil {
		return nil, queryError(err, "Profile not found")
	}
	if resp == nil {
		resp = map[string]json.RawMessage{}
	}
	return resp, nil
}

// queryError passes a remote server's 4xx Matrix error through and
// turns anything else (unreachable, 5xx) into notFound.
func queryError(err error, notFound string) error {
	var remote *transport.RemoteError
	if errors.As(err, &remote) && remote.ErrCode != "" && remote.Status >= 400 && remote.Status < 500 {
		return mxerr.New(remote.Status, remote.ErrCode, remote.Message)
	}
	return mxerr.New(http.StatusNotFound, mxerr.CodeNotFound, notFound+": "+err.Error())
}
