package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// Registration modes (Config.Registration).
const (
	// RegistrationOpen lets anyone register, completing m.login.dummy.
	RegistrationOpen = "open"
	// RegistrationToken requires a registration token
	// (m.login.registration_token).
	RegistrationToken = "token"
	// RegistrationClosed refuses /register with 403 M_FORBIDDEN; accounts
	// are made with `plexus user add` or the shared-secret admin API.
	RegistrationClosed = "closed"
)

// RateLimits are the limits of the endpoints that guess or create
// accounts. A zero Rate disables a limit.
type RateLimits struct {
	// LoginIP limits POST /login per client address.
	LoginIP ratelimit.Config
	// LoginUser limits password attempts (login and user-interactive
	// auth) per user.
	LoginUser ratelimit.Config
	// Register limits /register, /register/available and the token
	// validity check per client address.
	Register ratelimit.Config
}

// DefaultRateLimits are Synapse's defaults (rc_login.address,
// rc_login.account, rc_registration).
func DefaultRateLimits() RateLimits {
	return RateLimits{
		LoginIP:   ratelimit.Config{Rate: 0.003, Burst: 5},
		LoginUser: ratelimit.Config{Rate: 0.003, Burst: 5},
		Register:  ratelimit.Config{Rate: 0.17, Burst: 3},
	}
}

// Config configures Accounts.
type Config struct {
	// ServerName is the homeserver's name, the domain of local user IDs.
	ServerName string
	// Registration is RegistrationOpen, RegistrationToken or
	// RegistrationClosed; empty means closed.
	Registration string
	// RegistrationSharedSecret enables Synapse's shared-secret admin
	// registration when not empty.
	RegistrationSharedSecret string
	// RateLimits; the zero value disables every limit (see
	// DefaultRateLimits).
	RateLimits RateLimits
	// SessionCacheSize bounds the access token cache; 0 means 10,000.
	SessionCacheSize int
	// UIATimeout is how long a user-interactive auth session lives; 0
	// means 30 minutes.
	UIATimeout time.Duration
}

// Deps are Accounts' collaborators.
type Deps struct {
	DB *storage.DB
	// Hub is woken when account data changes; nil wakes nobody.
	Hub *stream.Hub
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnDeviceDeleted, if set, is called after a device has been deleted
	// (logout, device deletion, password change), outside any
	// transaction: the keys slice deletes the device's E2EE keys.
	OnDeviceDeleted func(ctx context.Context, userID, deviceID string)
	// OnProfileChanged, if set, is called after a user's displayname or
	// avatar_url changed, to update their m.room.member events (Client-
	// Server API, "Events on Change of Profile Information").
	OnProfileChanged func(ctx context.Context, userID string)
	// RemoteProfile, if set, fetches the profile of a user on another
	// server (federation's query/profile) for GET /profile.
	RemoteProfile func(ctx context.Context, userID string) (map[string]json.RawMessage, error)
}

// Accounts serves the account endpoints. Create it with New.
type Accounts struct {
	cfg Config
	db  *storage.DB
	hub *stream.Hub
	log *slog.Logger
	now func() time.Time

	onDeviceDeleted  func(ctx context.Context, userID, deviceID string)
	onProfileChanged func(ctx context.Context, userID string)
	remoteProfile    func(ctx context.Context, userID string) (map[string]json.RawMessage, error)

	loginIP, loginUser, register *ratelimit.Limiter

	sessions *sessionCache
	uia      *uiaStore
	nonces   *nonceStore
}

// New returns Accounts; it does no I/O (see Start).
func New(cfg Config, deps Deps) (*Accounts, error) {
	if cfg.ServerName == "" {
		return nil, errors.New("accounts: ServerName not set")
	}
	if deps.DB == nil {
		return nil, errors.New("accounts: DB not set")
	}
	switch cfg.Registration {
	case "":
		cfg.Registration = RegistrationClosed
	case RegistrationOpen, RegistrationToken, RegistrationClosed:
	default:
		return nil, fmt.Errorf("accounts: registration mode %q: want %q, %q or %q",
			cfg.Registration, RegistrationOpen, RegistrationToken, RegistrationClosed)
	}
	if cfg.SessionCacheSize <= 0 {
		cfg.SessionCacheSize = 10000
	}
	if cfg.UIATimeout <= 0 {
		cfg.UIATimeout = 30 * time.Minute
	}
	a := &Accounts{
		cfg:              cfg,
		db:               deps.DB,
		hub:              deps.Hub,
		log:              deps.Logger,
		now:              deps.Now,
		onDeviceDeleted:  deps.OnDeviceDeleted,
		onProfileChanged: deps.OnProfileChanged,
		remoteProfile:    deps.RemoteProfile,
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.loginIP = ratelimit.New(cfg.RateLimits.LoginIP, a.now)
	a.loginUser = ratelimit.New(cfg.RateLimits.LoginUser, a.now)
	a.register = ratelimit.New(cfg.RateLimits.Register, a.now)
	a.sessions = newSessionCache(cfg.SessionCacheSize)
	a.uia = newUIAStore()
	a.nonces = newNonceStore()
	return a, nil
}

// Start releases the registration token uses that the previous process's
// user-interactive auth sessions held: those sessions lived in memory and
// are gone. Call it once before serving.
func (a *Accounts) Start(ctx context.Context) error {
	return a.db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE registration_tokens SET pending = 0 WHERE pending <> 0`); err != nil {
			return fmt.Errorf("accounts: reset registration token pending uses: %w", err)
		}
		return nil
	})
}

// Close does nothing: Accounts starts no goroutines. It exists so that
// Accounts can be a serve component.
func (a *Accounts) Close() error { return nil }

// Register adds every endpoint of the package to rt.
func (a *Accounts) Register(rt *endpoint.Router) {
	const v3 = "/_matrix/client/v3"
	// Registration ("Account registration").
	rt.Public("POST "+v3+"/register", a.handleRegister)
	rt.Public("GET "+v3+"/register/available", a.handleAvailable)
	rt.Public("GET /_matrix/client/v1/register/m.login.registration_token/validity", a.handleTokenValidity)
	rt.Public("GET /_synapse/admin/v1/register", a.handleAdminNonce)
	rt.Public("POST /_synapse/admin/v1/register", a.handleAdminRegister)
	// Sessions ("Login").
	rt.Public("GET "+v3+"/login", a.handleLoginFlows)
	rt.Public("POST "+v3+"/login", a.handleLogin)
	rt.Authed("POST "+v3+"/logout", a.handleLogout)
	rt.Authed("POST "+v3+"/logout/all", a.handleLogoutAll)
	rt.Authed("GET "+v3+"/account/whoami", a.handleWhoami)
	rt.Authed("POST "+v3+"/account/password", a.handlePassword)
	// Devices ("Device management").
	rt.Authed("GET "+v3+"/devices", a.handleDevices)
	rt.Authed("GET "+v3+"/devices/{deviceId}", a.handleGetDevice)
	rt.Authed("PUT "+v3+"/devices/{deviceId}", a.handlePutDevice)
	rt.Authed("DELETE "+v3+"/devices/{deviceId}", a.handleDeleteDevice)
	rt.Authed("POST "+v3+"/delete_devices", a.handleDeleteDevices)
	// Profiles.
	rt.Public("GET "+v3+"/profile/{userId}", a.handleGetProfile)
	rt.Public("GET "+v3+"/profile/{userId}/{keyName}", a.handleGetProfileField)
	rt.Authed("PUT "+v3+"/profile/{userId}/{keyName}", a.handlePutProfileField)
	rt.Authed("DELETE "+v3+"/profile/{userId}/{keyName}", a.handleDeleteProfileField)
	// Account data ("Client Config").
	rt.Authed("GET "+v3+"/user/{userId}/account_data/{type}", a.handleGetAccountData)
	rt.Authed("PUT "+v3+"/user/{userId}/account_data/{type}", a.handlePutAccountData)
	rt.Authed("GET "+v3+"/user/{userId}/rooms/{roomId}/account_data/{type}", a.handleGetAccountData)
	rt.Authed("PUT "+v3+"/user/{userId}/rooms/{roomId}/account_data/{type}", a.handlePutAccountData)
	// Room tags ("Room Tagging"), kept as m.tag room account data.
	rt.Authed("GET "+v3+"/user/{userId}/rooms/{roomId}/tags", a.handleGetTags)
	rt.Authed("PUT "+v3+"/user/{userId}/rooms/{roomId}/tags/{tag}", a.handlePutTag)
	rt.Authed("DELETE "+v3+"/user/{userId}/rooms/{roomId}/tags/{tag}", a.handleDeleteTag)
	// Filters ("Filtering").
	rt.Authed("POST "+v3+"/user/{userId}/filter", a.handlePostFilter)
	rt.Authed("GET "+v3+"/user/{userId}/filter/{filterId}", a.handleGetFilter)
}

// fail answers with err: a user-interactive auth challenge as its 401
// body, anything else as a standard error response.
func fail(w http.ResponseWriter, err error) {
	var c *uiaChallenge
	if errors.As(err, &c) {
		server.WriteJSON(w, http.StatusUnauthorized, c)
		return
	}
	endpoint.Fail(w, err)
}

// clientIP is the rate-limit key of a request's sender. Forwarded headers
// are not trusted: a reverse proxy that needs them must say so in config,
// which we do not support yet.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// nowMS is the clock in milliseconds since the epoch, the unit of every
// timestamp column.
func (a *Accounts) nowMS() int64 { return a.now().UnixMilli() }

// wake tells the sync engine that something for users was stored.
func (a *Accounts) wake(users ...string) {
	if a.hub != nil {
		a.hub.Wake(users...)
	}
}

// empty is the {} answer of endpoints with no response fields.
var empty = struct{}{}
