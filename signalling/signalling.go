package signalling

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/accounts"
	"github.com/plexus-chat/plexus/signalling/internal/cable"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/keys"
	"github.com/plexus-chat/plexus/signalling/internal/media"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
	"github.com/plexus-chat/plexus/signalling/internal/roomapi"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
	"github.com/plexus-chat/plexus/signalling/internal/syncer"
)

// Registration modes (--registration).
const (
	RegistrationOpen   = accounts.RegistrationOpen
	RegistrationToken  = accounts.RegistrationToken
	RegistrationClosed = accounts.RegistrationClosed
)

// Feed follows the event stream for /sync and the realtime connections.
// It is the room service's Listener.
type Feed struct {
	hub   *stream.Hub
	index *syncer.Index
	db    *storage.DB
}

// FeedConfig configures the Feed.
type FeedConfig struct {
	ServerName string
	// Window is how many recent events are kept in memory for
	// incremental syncs; 0 means the default (65,536).
	Window int
}

// NewFeed loads room memberships and starts following the stream.
func NewFeed(ctx context.Context, cfg FeedConfig, db *storage.DB, log *slog.Logger) (*Feed, error) {
	hub := stream.NewHub()
	idx, err := syncer.NewIndex(ctx, syncer.IndexConfig{ServerName: cfg.ServerName, Window: cfg.Window},
		syncer.IndexDeps{DB: db, Hub: hub, Logger: log})
	if err != nil {
		return nil, err
	}
	return &Feed{hub: hub, index: idx, db: db}, nil
}

// EventsStored implements rooms.Listener.
func (f *Feed) EventsStored(room rooms.RoomID, evs []*rooms.Stored) { f.index.EventsStored(room, evs) }

// Close stops following the stream. It is idempotent.
func (f *Feed) Close() error { return f.index.Close() }

// TURNConfig is what GET /voip/turnServer hands out.
type TURNConfig struct {
	// Secret is the TURN REST shared secret; empty disables the endpoint's
	// credentials.
	Secret []byte
	// URIs are the relay's turn: and turns: URIs.
	URIs []string
	// TTL is how long credentials stay valid; 0 means 24 hours.
	TTL time.Duration
}

// Config configures the client side.
type Config struct {
	ServerName string
	// PublicBaseURL is the client API's URL for /.well-known/matrix/client;
	// empty derives it from each request.
	PublicBaseURL            string
	Registration             string
	RegistrationSharedSecret string
	// RateLimits for login, registration and sending; the zero value
	// disables them (tests), DefaultRateLimits is what serve uses.
	RateLimits RateLimits
	// DataDir holds the media folder unless MediaDir is set.
	DataDir        string
	MediaDir       string
	MaxUploadBytes int64
	TURN           TURNConfig
	// CookieKey seals the web client's session cookie (32 bytes).
	CookieKey []byte
}

// RateLimits are the per-key limits of the rate-limited endpoints.
type RateLimits struct {
	Accounts accounts.RateLimits
	Send     ratelimit.Config
}

// DefaultRateLimits are Synapse-like limits for a production server.
func DefaultRateLimits() RateLimits {
	return RateLimits{Accounts: accounts.DefaultRateLimits(), Send: ratelimit.Config{Rate: 10, Burst: 50}}
}

// Deps are the collaborators.
type Deps struct {
	DB      *storage.DB
	Rooms   *rooms.Service
	Feed    *Feed
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Now     func() time.Time
}

// Signalling is the whole client side.
type Signalling struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	feed     *Feed
	accounts *accounts.Accounts
	keys     *keys.Keys
	media    *media.Media
	rooms    *roomapi.API
	sync     *syncer.Engine
	cable    *cable.Server
}

// New builds every client endpoint.
func New(cfg Config, deps Deps) (*Signalling, error) {
	if deps.DB == nil || deps.Rooms == nil || deps.Feed == nil {
		return nil, errors.New("signalling: DB, Rooms and Feed are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Signalling{cfg: cfg, log: deps.Logger, now: deps.Now, feed: deps.Feed}
	idx, hub := deps.Feed.index, deps.Feed.hub
	var err error

	// Accounts call back into keys (device deletion) and rooms (profile
	// changes); those are built after it, so the hooks go through s.
	s.accounts, err = accounts.New(accounts.Config{
		ServerName:               cfg.ServerName,
		Registration:             cfg.Registration,
		RegistrationSharedSecret: cfg.RegistrationSharedSecret,
		RateLimits:               cfg.RateLimits.Accounts,
	}, accounts.Deps{
		DB: deps.DB, Hub: hub, Logger: deps.Logger.With("component", "accounts"), Now: deps.Now,
		OnDeviceDeleted:  s.deviceDeleted,
		OnProfileChanged: s.profileChanged,
	})
	if err != nil {
		return nil, err
	}
	s.keys, err = keys.New(keys.Config{ServerName: cfg.ServerName}, keys.Deps{
		DB: deps.DB, Hub: hub, Logger: deps.Logger.With("component", "keys"), Now: deps.Now,
		CheckPassword: s.accounts.CheckPassword,
		SharedUsers:   idx.SharedUsers,
		KnownDevices:  s.accounts.DeviceIDs,
	})
	if err != nil {
		return nil, err
	}
	s.rooms, err = roomapi.New(roomapi.Config{ServerName: cfg.ServerName, SendRate: cfg.RateLimits.Send}, roomapi.Deps{
		Rooms: deps.Rooms, DB: deps.DB, Hub: hub, Members: idx, Profiles: s.accounts,
		SetRoomAccountData: s.accounts.SetRoomAccountData,
		OnRead:             idx.MarkRead,
		Logger:             deps.Logger.With("component", "roomapi"), Now: deps.Now,
	})
	if err != nil {
		return nil, err
	}
	mediaDir := cfg.MediaDir
	if mediaDir == "" {
		mediaDir = filepath.Join(cfg.DataDir, "media")
	}
	s.media, err = media.New(media.Config{ServerName: cfg.ServerName, Dir: mediaDir, MaxUploadBytes: cfg.MaxUploadBytes},
		media.Deps{DB: deps.DB, Logger: deps.Logger.With("component", "media"), Now: deps.Now})
	if err != nil {
		return nil, err
	}
	s.sync, err = syncer.New(syncer.Config{}, syncer.Deps{
		Index: idx, DB: deps.DB, Hub: hub,
		AccountData: s.accounts,
		Devices:     s.keys,
		Ephemeral:   s.rooms,
		Annotations: s.rooms,
		Filters:     s.accounts,
		Logger:      deps.Logger.With("component", "sync"),
		Now:         deps.Now,
	})
	if err != nil {
		return nil, err
	}
	s.cable, err = cable.New(cable.Config{CookieKey: cfg.CookieKey}, cable.Deps{
		Auth: s.accounts, Sync: s.sync, Rooms: s.rooms.Actions(), Hub: hub,
		Logger: deps.Logger.With("component", "cable"), Metrics: deps.Metrics,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Start does what must happen once before requests are served: it
// releases registration-token uses held by sign-ups that a restart cut
// short.
func (s *Signalling) Start(ctx context.Context) error { return s.accounts.Start(ctx) }

// Register adds every client endpoint to mux.
func (s *Signalling) Register(mux server.Router) {
	rt := endpoint.NewRouter(mux, s.accounts)
	s.registerDiscovery(rt)
	s.accounts.Register(rt)
	s.keys.Register(rt)
	s.rooms.Register(rt)
	s.media.Register(rt)
	s.sync.Register(rt)
	s.cable.Register(rt)
}

// Close closes the realtime connections and stops the typing timers. It
// is idempotent.
func (s *Signalling) Close() error {
	// The realtime connections go first: they read from the others.
	return errors.Join(s.cable.Close(), s.rooms.Close(), s.accounts.Close())
}

// AddUser creates the local account @localpart:serverName directly in
// db and returns its user ID (for `plexus user add`; no server needs to
// run). localpart is lower-cased and must follow the user ID grammar; an
// existing account is an error (*mxerr.MatrixError M_USER_IN_USE). An
// empty password makes an account that cannot log in with a password.
func AddUser(ctx context.Context, db *storage.DB, serverName, localpart, password string, admin bool) (string, error) {
	a, err := accounts.New(accounts.Config{ServerName: serverName}, accounts.Deps{DB: db})
	if err != nil {
		return "", err
	}
	return a.CreateUser(ctx, localpart, password, admin)
}

func (s *Signalling) deviceDeleted(ctx context.Context, userID, deviceID string) {
	if err := s.keys.DeleteDevice(ctx, userID, deviceID); err != nil {
		s.log.Error("deleting a device's keys failed", "user", userID, "device", deviceID, "err", err)
	}
}

func (s *Signalling) profileChanged(ctx context.Context, userID string) {
	name, avatar, err := s.accounts.Profile(ctx, userID)
	if err == nil {
		err = s.rooms.UpdateProfile(ctx, userID, name, avatar)
	}
	if err != nil {
		s.log.Error("updating member events after a profile change failed", "user", userID, "err", err)
	}
}
