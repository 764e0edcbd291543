package fedapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// ServerSoftware is the name GET /version reports.
const ServerSoftware = "Plexus"

// MaxLimit caps the limit of /backfill and /get_missing_events, and the
// number of starting events either takes: a peer asking for more gets at
// most this many events per request and asks again.
const MaxLimit = 100

// Config configures the API.
type Config struct {
	// ServerName is this homeserver's name: the origin of the transactions
	// we answer with and the server whose users, aliases and media we serve.
	ServerName string
	// Version is the software version GET /version reports.
	Version string
}

// Store is what the room endpoints read from the event store;
// *storage.DB implements it.
type Store interface {
	Room(ctx context.Context, roomID string) (*storage.RoomInfo, error)
	Events(ctx context.Context, eventIDs []string) (map[string]*storage.EventRecord, error)
	AuthChain(ctx context.Context, eventIDs []string) ([]string, error)
	StateAfter(ctx context.Context, eventID string) (storage.StateMap, error)
	// View reads the redactions table, whose rows say which events are
	// served redacted (redact.go).
	View(ctx context.Context, fn func(*storage.Tx) error) error
}

// Graph is what the room endpoints need the room service to compute.
type Graph interface {
	// StateBefore returns the IDs of the state before eventID (the state
	// resolved over its prev events) and of that state's auth chain.
	StateBefore(ctx context.Context, roomID rooms.RoomID, eventID rooms.EventID) (state, authChain []rooms.EventID, err error)
}

// Deps are the API's collaborators.
type Deps struct {
	Store Store
	Graph Graph
	Local fedlocal.Local
	// Logger is nil to discard.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// API serves the endpoints.
type API struct {
	cfg   Config
	store Store
	graph Graph
	local fedlocal.Local
	log   *slog.Logger
	now   func() time.Time
}

// New returns the API.
func New(cfg Config, deps Deps) (*API, error) {
	if _, err := rooms.ParseServerName(cfg.ServerName); err != nil {
		return nil, errors.New("fedapi: Config.ServerName is not a valid server name")
	}
	if deps.Store == nil || deps.Graph == nil || deps.Local == nil {
		return nil, errors.New("fedapi: Deps.Store, Deps.Graph and Deps.Local are required")
	}
	a := &API{cfg: cfg, store: deps.Store, graph: deps.Graph, local: deps.Local, log: deps.Logger, now: deps.Now}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}

const v1 = "/_matrix/federation/v1"

// Register adds the endpoints to r; auth verifies the X-Matrix signature
// of every endpoint that needs one.
func (a *API) Register(r server.Router, auth fedhttp.Authenticator) {
	authed := func(pattern string, h fedhttp.Handler) { r.Handle(pattern, fedhttp.Wrap(auth, 0, h)) }

	// Server-Server API, "GET /_matrix/federation/v1/version" and
	// "OpenID": neither is signed.
	r.Handle("GET "+v1+"/version", http.HandlerFunc(a.version))
	r.Handle("GET "+v1+"/openid/userinfo", http.HandlerFunc(a.openIDUserInfo))

	authed("GET "+v1+"/event/{eventId}", a.event)
	authed("GET "+v1+"/state/{roomId}", a.state)
	authed("GET "+v1+"/state_ids/{roomId}", a.stateIDs)
	authed("GET "+v1+"/event_auth/{roomId}/{eventId}", a.eventAuth)
	authed("GET "+v1+"/backfill/{roomId}", a.backfill)
	authed("POST "+v1+"/get_missing_events/{roomId}", a.getMissingEvents)

	authed("GET "+v1+"/query/directory", a.queryDirectory)
	authed("GET "+v1+"/query/profile", a.queryProfile)
	authed("GET "+v1+"/user/devices/{userId}", a.userDevices)
	authed("POST "+v1+"/user/keys/query", a.userKeysQuery)
	authed("POST "+v1+"/user/keys/claim", a.userKeysClaim)
	authed("GET "+v1+"/publicRooms", a.publicRoomsGet)
	authed("POST "+v1+"/publicRooms", a.publicRoomsPost)
	authed("GET "+v1+"/media/download/{mediaId}", a.mediaDownload)
	authed("GET "+v1+"/media/thumbnail/{mediaId}", a.mediaThumbnail)
}

// version is GET /version (Server-Server API, "Server implementation").
func (a *API) version(w http.ResponseWriter, _ *http.Request) {
	server.WriteJSON(w, http.StatusOK, map[string]any{
		"server": map[string]string{"name": ServerSoftware, "version": a.cfg.Version},
	})
}

// decodeBody decodes a JSON request body into dst with the Client-Server
// API's error codes, which the federation API shares: M_NOT_JSON for a
// body that is not JSON, M_BAD_JSON for JSON of the wrong shape.
func decodeBody(body []byte, dst any) error {
	if len(body) == 0 || !json.Valid(body) {
		return mxerr.NotJSON("Content not JSON")
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return mxerr.BadJSON("Malformed request body: " + err.Error())
	}
	return nil
}

// queryInt reads an integer query parameter: def when absent, and
// 400 M_INVALID_PARAM when it is not an integer.
func queryInt(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, mxerr.InvalidParam(name + " must be an integer")
	}
	return n, nil
}

// clampLimit applies MaxLimit to a requested limit; a negative one is 400
// M_INVALID_PARAM.
func clampLimit(n int) (int, error) {
	if n < 0 {
		return 0, mxerr.InvalidParam("limit must not be negative")
	}
	return min(n, MaxLimit), nil
}
