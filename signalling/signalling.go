package signalling

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/accounts"
	"github.com/plexus-chat/plexus/signalling/internal/cable"
	"github.com/plexus-chat/plexus/signalling/internal/delayed"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/invites"
	"github.com/plexus-chat/plexus/signalling/internal/keys"
	"github.com/plexus-chat/plexus/signalling/internal/media"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
	"github.com/plexus-chat/plexus/signalling/internal/roomapi"
	"github.com/plexus-chat/plexus/signalling/internal/rtcauth"
	"github.com/plexus-chat/plexus/signalling/internal/status"
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
	// delayed hears current state changes once Signalling is built
	// (delayed.go).
	delayed atomic.Pointer[delayed.Service]
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
func (f *Feed) EventsStored(room rooms.RoomID, evs []*rooms.Stored) {
	f.index.EventsStored(room, evs)
}

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
	// MaxEventDelay is the longest delay of a delayed event (MSC4140);
	// 0 means 24 hours.
	MaxEventDelay time.Duration
	// RTC configures the SFU token service and its discovery (rtc.go).
	RTC RTCConfig
}

// RateLimits are the per-key limits of the rate-limited endpoints.
type RateLimits struct {
	Accounts accounts.RateLimits
	Send     ratelimit.Config
	// DelayedManage limits delayed event management per user (MSC4140
	// heartbeats; delayed.go).
	DelayedManage ratelimit.Config
}

// DefaultRateLimits are Synapse-like limits for a production server.
//
// The send limit (10 events/s per device, bursts of 50) is far above
// what a MatrixRTC call needs: an Element Call device sends a few state
// and key events on joining, one key resend per joining participant and
// under one event per second in a call (TestSendLimitCarriesACall
// replays such an hour, counting the delayed leave's restarts as sends
// to be safe). To-device messages are not under this limit.
func DefaultRateLimits() RateLimits {
	return RateLimits{Accounts: accounts.DefaultRateLimits(), Send: ratelimit.Config{Rate: 10, Burst: 50},
		DelayedManage: defaultDelayedManageRate()}
}

// Deps are the collaborators.
type Deps struct {
	DB      *storage.DB
	Rooms   *rooms.Service
	Feed    *Feed
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Now     func() time.Time
	// Federation, if set, reaches rooms and users on other servers.
	Federation Federation
	// OpenID, if set, verifies other servers' OpenID tokens for the SFU
	// token service (rtc.go).
	OpenID OpenIDVerifier
	// Status are the parts of the server the operator page reports on
	// besides rooms and calls, by section name ("sfu", "turn",
	// "federation"; status.go).
	Status map[string]StatusSource
}

// Federation is what the client side asks of federation.
type Federation interface {
	// Join joins a local user to a room this server is not in, through
	// one of servers; content is the membership event's content.
	Join(ctx context.Context, roomID, userID string, servers []string, content map[string]any) (string, error)
	// SendEDU queues an EDU for destinations, persistently (this server
	// is skipped): typing, receipts, device list and signing key updates,
	// to-device messages (federation_edu.go, keys).
	SendEDU(ctx context.Context, destinations []string, eduType string, content json.RawMessage) error
	// ServersInRoom lists the other servers with users joined to a room.
	ServersInRoom(ctx context.Context, roomID string) ([]string, error)
	// QueryRemoteKeys is POST /_matrix/federation/v1/user/keys/query on
	// server with body; it returns the answer as received.
	QueryRemoteKeys(ctx context.Context, server string, body json.RawMessage) (json.RawMessage, error)
	// ClaimRemoteKeys is POST /_matrix/federation/v1/user/keys/claim on
	// server with body; it returns the answer as received.
	ClaimRemoteKeys(ctx context.Context, server string, body json.RawMessage) (json.RawMessage, error)
	// Backfill fetches up to limit events of a room's history from before
	// from (the room's backward extremities) from a server in the room,
	// checks them and stores them below the live stream (GET /backfill).
	Backfill(ctx context.Context, roomID string, from []string, limit int) error
	// Invite has the invitee's server countersign our invite (PUT
	// /invite v2, with state as invite_room_state) and returns the
	// countersigned event; Leave and Knock are the make_/send_
	// handshakes for a local user in a room this server is not in;
	// QueryDirectory and QueryProfile ask another server about its
	// aliases and users (federation_invite.go).
	Invite(ctx context.Context, roomID, version string, event json.RawMessage, state []json.RawMessage) (json.RawMessage, error)
	Leave(ctx context.Context, roomID, userID string, servers []string) (json.RawMessage, error)
	Knock(ctx context.Context, roomID, userID string, servers []string, content map[string]any) (json.RawMessage, []json.RawMessage, error)
	QueryDirectory(ctx context.Context, alias string) (roomID string, servers []string, err error)
	QueryProfile(ctx context.Context, userID, field string) (map[string]json.RawMessage, error)
	// FetchMedia downloads mxc://server/mediaID (a thumbnail of it when
	// thumb is set) from its origin; the Body yields at most maxBytes+1
	// bytes and the caller closes it (federation_media.go).
	FetchMedia(ctx context.Context, server, mediaID string, thumb *fedlocal.ThumbnailSize, maxBytes int64) (*fedlocal.MediaFile, error)
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
	// fed and typingOut reach other servers; nil without federation.
	fed       Federation
	typingOut *typingOut
	// openid holds the OpenID tokens (federation_local.go, rtc.go).
	openid *rtcauth.OpenIDStore
	// rtc is MatrixRTC support (rtc.go).
	rtc rtcSide
	// invites holds local users' invites to rooms this server is not in
	// (federation_invite.go).
	invites *invites.Store
	// delayed holds delayed events (MSC4140, delayed.go).
	delayed *delayed.Service
	// status serves the operator page (status.go).
	status *status.Service
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
	s := &Signalling{cfg: cfg, log: deps.Logger, now: deps.Now, feed: deps.Feed, fed: deps.Federation}
	idx, hub := deps.Feed.index, deps.Feed.hub
	s.invites = invites.New(deps.DB, hub.Wake)
	if err := s.newRTC(cfg, deps); err != nil {
		return nil, err
	}
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
		RemoteProfile:    remoteProfile(deps.Federation),
	})
	if err != nil {
		return nil, err
	}
	s.keys, err = keys.New(keys.Config{ServerName: cfg.ServerName}, keys.Deps{
		DB: deps.DB, Hub: hub, Logger: deps.Logger.With("component", "keys"), Now: deps.Now,
		CheckPassword: s.accounts.CheckPassword,
		SharedUsers:   idx.SharedUsers,
		KnownDevices:  s.accounts.DeviceIDs,
		Remote:        keysRemote(deps.Federation),
	})
	if err != nil {
		return nil, err
	}
	if err := s.newDelayed(cfg, deps); err != nil {
		return nil, err
	}
	var onTyping func(roomID, userID string, typing bool)
	var onReceipt func(ctx context.Context, roomID, userID, receiptType, threadID, eventID string, ts int64)
	if s.fed != nil {
		s.typingOut = newTypingOut(s)
		onTyping, onReceipt = s.typingOut.changed, s.sendReceipt
	}
	s.rooms, err = roomapi.New(roomapi.Config{ServerName: cfg.ServerName, SendRate: cfg.RateLimits.Send}, roomapi.Deps{
		Rooms: deps.Rooms, DB: deps.DB, Hub: hub, Members: idx, Profiles: s.accounts,
		SetRoomAccountData: s.accounts.SetRoomAccountData,
		OnRead:             idx.MarkRead,
		RemoteJoin:         remoteJoin(deps.Federation),
		Backfill:           backfill(deps.Federation),
		Remote:             roomRemote(deps.Federation),
		Invites:            s.invites,
		WaitIndexed:        idx.WaitFor,
		OnTyping:           onTyping,
		OnReceipt:          onReceipt,
		Delayed:            delayedScheduler{s.delayed},
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
		media.Deps{DB: deps.DB, Logger: deps.Logger.With("component", "media"), Now: deps.Now, Remote: mediaRemote(deps.Federation)})
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

		RemoteInvites: s.invites,
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
	// Last: it starts the status sampler, which nothing after could stop.
	if err := s.newStatus(deps); err != nil {
		return nil, err
	}
	return s, nil
}

// Start does what must happen once before requests are served: it
// releases registration-token uses held by sign-ups that a restart cut
// short, and hands federation the to-device messages for other servers
// that a restart left in the outbox.
func (s *Signalling) Start(ctx context.Context) error {
	if err := s.keys.FlushOutbox(ctx); err != nil {
		s.log.Warn("to-device messages for other servers wait in the outbox", "err", err)
	}
	if err := s.delayed.Start(ctx); err != nil { // sends the overdue delayed events
		return err
	}
	return s.accounts.Start(ctx)
}

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
	s.registerOpenID(rt)
	s.delayed.Register(rt)
	s.registerRTC(rt, mux)
	s.status.Register(rt)
}

// Close closes the realtime connections and stops the typing timers. It
// is idempotent.
func (s *Signalling) Close() error {
	// The realtime connections go first: they read from the others. The
	// typing sender goes after roomapi, whose expiry timer feeds it.
	err := errors.Join(s.cable.Close(), s.delayed.Close(), s.rooms.Close(), s.accounts.Close(), s.status.Close())
	if s.typingOut != nil {
		s.typingOut.close()
	}
	return err
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

// remoteJoin adapts federation's Join to roomapi's hook; nil without
// federation.
func remoteJoin(f Federation) func(ctx context.Context, roomID, userID string, servers []string, content cjson.Value) error {
	if f == nil {
		return nil
	}
	return func(ctx context.Context, roomID, userID string, servers []string, content cjson.Value) error {
		raw, err := json.Marshal(content)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		_, err = f.Join(ctx, roomID, userID, servers, m)
		return err
	}
}

// backfill is federation's Backfill for /messages; nil without
// federation.
func backfill(f Federation) func(ctx context.Context, roomID string, from []string, limit int) error {
	if f == nil {
		return nil
	}
	return f.Backfill
}

// keysRemote is federation as the keys package sees it; nil without
// federation.
func keysRemote(f Federation) keys.Remote {
	if f == nil {
		return nil
	}
	return f
}
