package rtcauth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
)

// Prefix is where the token service is mounted on the client listener;
// the URL of it is the livekit_service_url clients are told about.
const Prefix = "/livekit/jwt"

// SFUPath is where the SFU's LiveKit signalling is mounted on the client
// listener; a token's url is its ws(s):// form unless configured.
const SFUPath = "/livekit/sfu"

// Config configures the token service.
type Config struct {
	// ServerName is this server's name: OpenID tokens naming it are
	// checked locally, and its users get full access.
	ServerName string
	// APIKey and APISecret sign the tokens; the SFU verifies them with
	// the same pair.
	APIKey, APISecret string
	// SFUURL is the ws(s):// URL handed out with tokens; empty derives
	// it from PublicBaseURL, or else from each request.
	SFUURL string
	// PublicBaseURL is the client API's public URL, if configured.
	PublicBaseURL string
	// TokenTTL is the tokens' lifetime; 0 means DefaultTokenTTL.
	TokenTTL time.Duration
	// Limit bounds requests per client address (each may cost a
	// federation request); the zero value disables it.
	Limit ratelimit.Config
	// MaxRemoteChecks bounds the OpenID tokens of other servers being
	// checked at once; 0 means DefaultMaxRemoteChecks.
	MaxRemoteChecks int
}

// DefaultMaxRemoteChecks is the default of Config.MaxRemoteChecks. A
// check is a federation request that may take the client's full timeout
// (30 s) against a slow or silent server of the caller's choosing, and
// the requests need no account: the per-address rate limit alone would
// let a few addresses hold thousands of outbound connections open.
const DefaultMaxRemoteChecks = 64

// Deps are the token service's collaborators.
type Deps struct {
	// OpenID holds this server's OpenID tokens.
	OpenID *OpenIDStore
	// Remote asks server who an OpenID token of its belongs to (GET
	// /_matrix/federation/v1/openid/userinfo); nil refuses the tokens of
	// other servers.
	Remote func(ctx context.Context, server, token string) (string, error)
	// Membership is a user's current membership of a room as this
	// server's copy of the room has it ("" if none).
	Membership func(ctx context.Context, roomID, userID string) (string, error)
	// Store records the rooms and identities tokens are minted for.
	Store  *Store
	Logger *slog.Logger
	Now    func() time.Time
}

// Service is the token service.
type Service struct {
	cfg   Config
	deps  Deps
	limit *ratelimit.Limiter
	// remote holds one token per OpenID check in flight at another
	// server.
	remote chan struct{}
}

// New returns the token service.
func New(cfg Config, deps Deps) (*Service, error) {
	if cfg.APIKey == "" || cfg.APISecret == "" {
		return nil, errors.New("rtcauth: APIKey and APISecret are required")
	}
	if deps.OpenID == nil || deps.Membership == nil || deps.Store == nil {
		return nil, errors.New("rtcauth: OpenID, Membership and Store are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if cfg.MaxRemoteChecks <= 0 {
		cfg.MaxRemoteChecks = DefaultMaxRemoteChecks
	}
	return &Service{cfg: cfg, deps: deps, limit: ratelimit.New(cfg.Limit, deps.Now),
		remote: make(chan struct{}, cfg.MaxRemoteChecks)}, nil
}

// Register mounts the service's endpoints under Prefix. Each pattern has
// no method: like lk-jwt-service, a wrong method answers 405 with the
// service's headers, and OPTIONS preflights are answered by the server's
// CORS layer.
func (s *Service) Register(mux server.Router) {
	mux.Handle(Prefix+"/sfu/get", http.HandlerFunc(s.legacy))
	mux.Handle(Prefix+"/get_token", http.HandlerFunc(s.getToken))
	mux.Handle(Prefix+"/healthz", http.HandlerFunc(healthz))
}

func healthz(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// corsJSON sets the headers lk-jwt-service puts on every answer of its
// POST endpoints: browsers call it cross-origin from Element Call.
func corsJSON(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", "Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token")
}

// openIDToken is the body of POST /openid/request_token's answer, as the
// client passes it on.
type openIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int64  `json:"expires_in"`
}

// legacyRequest is the body of POST /sfu/get.
type legacyRequest struct {
	Room        string      `json:"room"`
	OpenIDToken openIDToken `json:"openid_token"`
	DeviceID    string      `json:"device_id"`
}

// tokenRequest is the body of POST /get_token (MSC4195).
type tokenRequest struct {
	RoomID      string      `json:"room_id"`
	SlotID      string      `json:"slot_id"`
	OpenIDToken openIDToken `json:"openid_token"`
	Member      struct {
		ID              string `json:"id"`
		ClaimedUserID   string `json:"claimed_user_id"`
		ClaimedDeviceID string `json:"claimed_device_id"`
	} `json:"member"`
}

// Field size limits. The names are stored (Store) and hashed, and the
// server name and token go out in a federation request, so each is
// bounded: identifiers as the spec bounds user and room IDs (Appendices,
// "Identifier Grammar": 255 bytes), the opaque token more loosely.
const (
	maxIDBytes    = 255
	maxTokenBytes = 1024
)

// errTooLong answers a request with a field over its limit.
var errTooLong = mxerr.BadJSON("A request field is too long")

// tooLong reports whether tok or any of ids is over its limit.
func tooLong(tok openIDToken, ids ...string) bool {
	if len(tok.AccessToken) > maxTokenBytes || len(tok.MatrixServerName) > maxIDBytes {
		return true
	}
	for _, id := range ids {
		if len(id) > maxIDBytes {
			return true
		}
	}
	return false
}

type tokenResponse struct {
	URL string `json:"url"`
	JWT string `json:"jwt"`
}

// begin does what both POST endpoints do first: method check, rate limit
// and body decoding. It answers and returns false when the request goes
// no further.
func (s *Service) begin(w http.ResponseWriter, r *http.Request, dst any) bool {
	corsJSON(w)
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return false
	}
	if err := s.limit.Check(clientAddr(r)); err != nil {
		server.WriteError(w, err)
		return false
	}
	body, err := endpoint.ReadBody(r, 0)
	if err == nil && json.Unmarshal(body, dst) != nil {
		err = mxerr.NotJSON("Error reading request")
	}
	if err != nil {
		// lk-jwt-service answers any unreadable body with 400 M_NOT_JSON.
		var me *mxerr.MatrixError
		if !errors.As(err, &me) || me.Code != mxerr.CodeTooLarge {
			err = mxerr.NotJSON("Error reading request")
		}
		server.WriteError(w, err)
		return false
	}
	return true
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// legacy is POST /sfu/get.
func (s *Service) legacy(w http.ResponseWriter, r *http.Request) {
	var req legacyRequest
	if !s.begin(w, r, &req) {
		return
	}
	if req.Room == "" {
		server.WriteError(w, mxerr.BadJSON("Missing room parameter"))
		return
	}
	if req.OpenIDToken.AccessToken == "" || req.OpenIDToken.MatrixServerName == "" {
		server.WriteError(w, mxerr.BadJSON("Missing OpenID token parameters"))
		return
	}
	if tooLong(req.OpenIDToken, req.Room, req.DeviceID) {
		server.WriteError(w, errTooLong)
		return
	}
	s.issue(w, r, req.OpenIDToken, "", req.Room, LegacySlot, req.DeviceID, func(userID string) string {
		return LegacyIdentity(userID, req.DeviceID)
	})
}

// getToken is POST /get_token.
func (s *Service) getToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if !s.begin(w, r, &req) {
		return
	}
	switch {
	case req.RoomID == "" || req.SlotID == "":
		server.WriteError(w, mxerr.BadJSON("The request body is missing `room_id` or `slot_id`"))
		return
	case req.Member.ID == "" || req.Member.ClaimedUserID == "" || req.Member.ClaimedDeviceID == "":
		server.WriteError(w, mxerr.BadJSON("The request body `member` is missing a `id`, `claimed_user_id` or `claimed_device_id`"))
		return
	case req.OpenIDToken.AccessToken == "" || req.OpenIDToken.MatrixServerName == "":
		server.WriteError(w, mxerr.BadJSON("The request body `openid_token` is missing a `access_token` or `matrix_server_name`"))
		return
	case tooLong(req.OpenIDToken, req.RoomID, req.SlotID, req.Member.ID, req.Member.ClaimedUserID, req.Member.ClaimedDeviceID):
		server.WriteError(w, errTooLong)
		return
	}
	s.issue(w, r, req.OpenIDToken, req.Member.ClaimedUserID, req.RoomID, req.SlotID, req.Member.ClaimedDeviceID,
		func(userID string) string { return Identity(userID, req.Member.ClaimedDeviceID, req.Member.ID) })
}

// issue verifies the OpenID token (and that its owner is claimedUser,
// if given), checks the owner is joined to roomID, and answers with a
// token for the slot's LiveKit room under the identity identityOf gives.
func (s *Service) issue(w http.ResponseWriter, r *http.Request, tok openIDToken, claimedUser, roomID, slotID, deviceID string, identityOf func(userID string) string) {
	ctx := r.Context()
	userID, err := s.verify(ctx, tok)
	if err == nil && claimedUser != "" && claimedUser != userID {
		s.deps.Logger.Warn("claimed user does not match the OpenID token", "claimed", claimedUser, "user", userID)
		err = errUnauthorised
	}
	if err != nil {
		server.WriteError(w, err)
		return
	}
	m, err := s.deps.Membership(ctx, roomID, userID)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	if m != "join" {
		server.WriteError(w, mxerr.Forbidden("The requesting user is not a member of the room"))
		return
	}
	local := userServer(userID) == s.cfg.ServerName
	g := Grant{LKRoom: RoomAlias(roomID, slotID), RoomID: roomID, SlotID: slotID,
		Identity: identityOf(userID), UserID: userID, DeviceID: deviceID}
	if err := s.deps.Store.Record(ctx, g, s.deps.Now()); err != nil {
		server.WriteError(w, err)
		return
	}
	jwt, err := Mint(s.cfg.APIKey, s.cfg.APISecret, g.LKRoom, g.Identity, Access{Full: local}, s.cfg.TokenTTL)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	s.deps.Logger.Info("minted SFU token", "user", userID, "room", roomID, "slot", slotID, "lk_room", g.LKRoom, "full", local)
	server.WriteJSON(w, http.StatusOK, tokenResponse{URL: s.sfuURL(r), JWT: jwt})
}

// errUnauthorised is lk-jwt-service's answer to any OpenID token it
// cannot verify: it does not say why.
var errUnauthorised = mxerr.New(http.StatusUnauthorized, mxerr.CodeUnauthorized, "The request could not be authorised.")

// verify returns the owner of an OpenID token: ours checked in the
// database, another server's through federation, whose answer must name
// one of its own users.
func (s *Service) verify(ctx context.Context, tok openIDToken) (string, error) {
	if tok.MatrixServerName == s.cfg.ServerName {
		userID, err := s.deps.OpenID.User(ctx, tok.AccessToken)
		var me *mxerr.MatrixError
		if errors.As(err, &me) {
			return "", errUnauthorised
		}
		return userID, err
	}
	if s.deps.Remote == nil {
		return "", errUnauthorised
	}
	select {
	case s.remote <- struct{}{}:
		defer func() { <-s.remote }()
	default:
		s.deps.Logger.Warn("too many OpenID checks at other servers in flight; refusing", "server", tok.MatrixServerName)
		return "", mxerr.LimitExceeded(time.Second.Milliseconds())
	}
	userID, err := s.deps.Remote(ctx, tok.MatrixServerName, tok.AccessToken)
	if err != nil {
		s.deps.Logger.Info("OpenID token of another server not verified", "server", tok.MatrixServerName, "err", err)
		return "", errUnauthorised
	}
	if userServer(userID) != tok.MatrixServerName {
		s.deps.Logger.Warn("OpenID userinfo names a user of another server", "server", tok.MatrixServerName, "user", userID)
		return "", errUnauthorised
	}
	return userID, nil
}

// userServer is the server name of a user ID, "" if it has none.
func userServer(userID string) string {
	if !strings.HasPrefix(userID, "@") {
		return ""
	}
	_, server, _ := strings.Cut(userID, ":")
	return server
}

// sfuURL is the SFU's URL as the client should dial it: configured, or
// the ws(s) form of the public base URL or of the request's own origin
// with SFUPath.
func (s *Service) sfuURL(r *http.Request) string {
	if s.cfg.SFUURL != "" {
		return s.cfg.SFUURL
	}
	return WSURL(BaseURL(s.cfg.PublicBaseURL, r)) + SFUPath
}

// BaseURL is the client API's public URL: base if configured, else the
// origin r came in on.
func BaseURL(base string, r *http.Request) string {
	if base != "" {
		return strings.TrimSuffix(base, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// WSURL turns an http(s) URL into its ws(s) form.
func WSURL(u string) string {
	switch {
	case strings.HasPrefix(u, "https://"):
		return "wss://" + strings.TrimPrefix(u, "https://")
	case strings.HasPrefix(u, "http://"):
		return "ws://" + strings.TrimPrefix(u, "http://")
	}
	return u
}
