package fedapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// isLocalUser reports whether userID is a user ID on this server.
func (a *API) isLocalUser(userID string) bool { return userServer(userID) == a.cfg.ServerName }

// queryDirectory is GET /query/directory?room_alias=: the room one of our
// aliases points to, and the servers in it, ours first.
func (a *API) queryDirectory(w http.ResponseWriter, r *http.Request, _ *fedhttp.Request) {
	ctx := r.Context()
	alias := r.URL.Query().Get("room_alias")
	if alias == "" {
		server.WriteError(w, mxerr.MissingParam("Missing room_alias"))
		return
	}
	local, srv, ok := strings.Cut(strings.TrimPrefix(alias, "#"), ":")
	if !strings.HasPrefix(alias, "#") || !ok || local == "" {
		server.WriteError(w, mxerr.InvalidParam("Invalid room alias"))
		return
	}
	if srv != a.cfg.ServerName {
		server.WriteError(w, mxerr.NotFound(fmt.Sprintf("Room alias %s is not on this server", alias)))
		return
	}
	roomID, err := a.local.ResolveAlias(ctx, alias)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	servers := []string{a.cfg.ServerName}
	info, err := a.store.Room(ctx, roomID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		server.WriteError(w, err)
		return
	}
	if info != nil {
		joined, err := a.joinedServers(ctx, info.Current)
		if err != nil {
			server.WriteError(w, err)
			return
		}
		delete(joined, a.cfg.ServerName)
		others := make([]string, 0, len(joined))
		for s := range joined {
			others = append(others, s)
		}
		slices.Sort(others)
		servers = append(servers, others...)
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"room_id": roomID, "servers": servers})
}

// queryProfile is GET /query/profile?user_id=&field=: a local user's
// profile, or only field of it (404 M_NOT_FOUND if unset).
func (a *API) queryProfile(w http.ResponseWriter, r *http.Request, _ *fedhttp.Request) {
	q := r.URL.Query()
	userID := q.Get("user_id")
	if userID == "" {
		server.WriteError(w, mxerr.MissingParam("Missing user_id"))
		return
	}
	if !a.isLocalUser(userID) {
		server.WriteError(w, mxerr.NotFound("User is not on this server"))
		return
	}
	prof, err := a.local.Profile(r.Context(), userID)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	if field := q.Get("field"); field != "" {
		v, ok := prof[field]
		if !ok {
			server.WriteError(w, mxerr.NotFound("The profile field is not set"))
			return
		}
		prof = map[string]json.RawMessage{field: v}
	}
	server.WriteJSON(w, http.StatusOK, prof)
}

// userDevices is GET /user/devices/{userId} (Server-Server API, "Device
// Management").
func (a *API) userDevices(w http.ResponseWriter, r *http.Request, _ *fedhttp.Request) {
	userID := r.PathValue("userId")
	if _, err := rooms.ParseUserID(userID); err != nil {
		server.WriteError(w, mxerr.InvalidParam("Invalid user ID"))
		return
	}
	if !a.isLocalUser(userID) {
		server.WriteError(w, mxerr.NotFound("User is not on this server"))
		return
	}
	body, err := a.local.UserDevices(r.Context(), userID)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, body)
}

// userKeysQuery is POST /user/keys/query (Server-Server API, "End-to-End
// Encryption"). Users of other servers are left out: "Requested users
// must be local to the receiving homeserver."
func (a *API) userKeysQuery(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	var body struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := decodeBody(req.Body, &body); err != nil {
		server.WriteError(w, err)
		return
	}
	if body.DeviceKeys == nil {
		server.WriteError(w, mxerr.BadJSON("device_keys is required"))
		return
	}
	query := map[string][]string{}
	for user, devices := range body.DeviceKeys {
		if a.isLocalUser(user) {
			query[user] = devices
		}
	}
	out, err := a.local.QueryKeys(r.Context(), query)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, out)
}

// userKeysClaim is POST /user/keys/claim; as for /user/keys/query, only
// local users are answered.
func (a *API) userKeysClaim(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	var body struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := decodeBody(req.Body, &body); err != nil {
		server.WriteError(w, err)
		return
	}
	if body.OneTimeKeys == nil {
		server.WriteError(w, mxerr.BadJSON("one_time_keys is required"))
		return
	}
	claim := map[string]map[string]string{}
	for user, devices := range body.OneTimeKeys {
		if a.isLocalUser(user) {
			claim[user] = devices
		}
	}
	out, err := a.local.ClaimKeys(r.Context(), claim)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, out)
}

// openIDUserInfo is GET /openid/userinfo?access_token= (Server-Server
// API, "OpenID"): unauthenticated; the token is the credential.
func (a *API) openIDUserInfo(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("access_token")
	if token == "" {
		server.WriteError(w, mxerr.UnknownToken("Access token unknown or expired"))
		return
	}
	userID, err := a.local.OpenIDUser(r.Context(), token)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, map[string]string{"sub": userID})
}

// publicRoomsGet is GET /publicRooms?limit=&since= (Server-Server API,
// "Public Room Directory"). include_all_networks and
// third_party_instance_id are accepted and ignored: we bridge no
// networks.
func (a *API) publicRoomsGet(w http.ResponseWriter, r *http.Request, _ *fedhttp.Request) {
	var q fedlocal.PublicRoomsQuery
	if r.URL.Query().Get("limit") != "" {
		n, err := queryInt(r, "limit", 0)
		if err != nil {
			server.WriteError(w, err)
			return
		}
		q.Limit = &n
	}
	q.Since = r.URL.Query().Get("since")
	a.publicRooms(w, r, q)
}

// publicRoomsPost is POST /publicRooms, with a filter.
func (a *API) publicRoomsPost(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	var body struct {
		Limit  *int   `json:"limit"`
		Since  string `json:"since"`
		Filter struct {
			GenericSearchTerm string    `json:"generic_search_term"`
			RoomTypes         []*string `json:"room_types"`
		} `json:"filter"`
	}
	raw := req.Body
	if len(raw) == 0 {
		raw = []byte("{}") // every field is optional
	}
	if err := decodeBody(raw, &body); err != nil {
		server.WriteError(w, err)
		return
	}
	a.publicRooms(w, r, fedlocal.PublicRoomsQuery{
		Limit: body.Limit, Since: body.Since,
		SearchTerm: body.Filter.GenericSearchTerm, RoomTypes: body.Filter.RoomTypes,
	})
}

func (a *API) publicRooms(w http.ResponseWriter, r *http.Request, q fedlocal.PublicRoomsQuery) {
	if q.Limit != nil && *q.Limit < 0 {
		server.WriteError(w, mxerr.InvalidParam("limit must not be negative"))
		return
	}
	out, err := a.local.PublicRooms(r.Context(), q)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, out)
}
