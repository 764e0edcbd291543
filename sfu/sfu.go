package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/interceptor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plexus-chat/plexus/internal/metrics"
	"github.com/plexus-chat/plexus/sfu/internal/data"
	"github.com/plexus-chat/plexus/sfu/internal/rtc"
	"github.com/plexus-chat/plexus/sfu/internal/signal"
)

// DataConfig tunes the data relay (sfu/internal/data).
type DataConfig = data.Config

// Config configures the SFU.
type Config struct {
	// APIKey and APISecret verify access tokens (HS256 JWTs in LiveKit's
	// format: issuer = key, signed with the secret).
	APIKey, APISecret string
	// ListenIP is the IP the media sockets bind; "" = all.
	ListenIP string
	// UDPPort is the one UDP port for all ICE and media; 0 = ephemeral.
	UDPPort int
	// TCPPort is the ICE-TCP passive port; -1 disables it, 0 = ephemeral.
	TCPPort int
	// ExternalIPs are advertised as host candidates (1:1 NAT).
	ExternalIPs []string
	// IncludeLoopback offers loopback candidates (tests, local
	// development); it is forced on when ListenIP is a loopback address.
	IncludeLoopback bool
	// EmptyTimeout keeps an empty room this long (default 20s).
	EmptyTimeout time.Duration
	// PingInterval and PingTimeout are sent in the JoinResponse and used
	// for the WebSocket keepalive (defaults 10s, 20s).
	PingInterval, PingTimeout time.Duration
	// ReconnectGrace is how long a participant whose signalling
	// connection dropped may resume (default 15s).
	ReconnectGrace time.Duration
	// NegotiationTimeout is how long a subscriber offer may wait for its
	// answer; a client that lets it pass is told to reconnect (LeaveRequest
	// RECONNECT) and removed, as livekit-server does (default 15s).
	NegotiationTimeout time.Duration
	// RequireRoomCreate lets only tokens with the roomCreate grant start a
	// room; a token without it joins a live room or is refused. This is
	// livekit-server with room.auto_create off, which lk-jwt-service
	// deployments need: the token service gives roomCreate to its own
	// server's users alone, so another server's users cannot open rooms
	// here. Off (LiveKit's default): any roomJoin token starts its room.
	RequireRoomCreate bool
	// MaxParticipants bounds one room's participants (default 256),
	// MaxTotalParticipants the server's (default 2048).
	MaxParticipants, MaxTotalParticipants int
	// TokenRefreshInterval is how often each participant is sent a fresh
	// access token with its grants, valid for TokenRefreshTTL (defaults
	// 5 and 10 minutes, as livekit-server).
	TokenRefreshInterval, TokenRefreshTTL time.Duration
	// WorldSaveInterval is the most often a changing world is saved
	// (default 30s).
	WorldSaveInterval time.Duration
	// Data is passed to the data relay.
	Data DataConfig
	// PublisherInterceptors and SubscriberInterceptors are appended to
	// every publisher / subscriber peer connection's interceptor
	// registry after the SFU's own (instrumentation, loss injection in
	// tests).
	PublisherInterceptors  []interceptor.Factory
	SubscriberInterceptors []interceptor.Factory
}

// Deps are the SFU's dependencies.
type Deps struct {
	Logger *slog.Logger
	// Metrics is optional.
	Metrics prometheus.Registerer
	Now     func() time.Time
	// ICEServers returns the ICE servers handed to a participant in the
	// JoinResponse (the embedded TURN relay with fresh credentials); nil
	// = none.
	ICEServers func(identity string) []*livekit.ICEServer
	// World persists rooms' AR/VR world snapshots; nil = not persisted.
	World WorldStore
}

// WorldStore persists world snapshots. LoadWorld returns nil, nil if the
// room has none.
type WorldStore interface {
	LoadWorld(ctx context.Context, room string) ([]byte, error)
	SaveWorld(ctx context.Context, room string, snapshot []byte, identities []string) error
}

// Server is the SFU.
type Server struct {
	engine  *rtc.Engine
	mgr     *rtc.Manager
	handler *signal.Handler

	closeOnce sync.Once
	closeErr  error
}

// Version is reported to clients in ServerInfo.
const Version = "plexus-sfu"

// New opens the media sockets and returns the server.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.APIKey == "" || cfg.APISecret == "" {
		return nil, errors.New("sfu: API key and secret are required")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if ip := net.ParseIP(cfg.ListenIP); ip != nil && ip.IsLoopback() {
		cfg.IncludeLoopback = true
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 10 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 20 * time.Second
	}
	engine, err := rtc.NewEngine(rtc.EngineConfig{
		ListenIP: cfg.ListenIP, UDPPort: cfg.UDPPort, TCPPort: cfg.TCPPort,
		ExternalIPs: cfg.ExternalIPs, IncludeLoopback: cfg.IncludeLoopback,
		PublisherInterceptors: cfg.PublisherInterceptors, SubscriberInterceptors: cfg.SubscriberInterceptors,
		Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("sfu: %w", err)
	}
	var world rtc.WorldStore
	if deps.World != nil {
		world = deps.World
	}
	dc := cfg.Data
	if dc.Now == nil {
		dc.Now = deps.Now
	}
	if cfg.TokenRefreshTTL <= 0 {
		cfg.TokenRefreshTTL = 10 * time.Minute
	}
	key, secret, ttl := cfg.APIKey, cfg.APISecret, cfg.TokenRefreshTTL
	refresh := func(c *signal.Claims) (string, error) { return signal.Refresh(c, key, secret, ttl) }
	mgr := rtc.NewManager(rtc.Config{
		Engine: engine, Data: dc,
		EmptyTimeout: cfg.EmptyTimeout, PingInterval: cfg.PingInterval, PingTimeout: cfg.PingTimeout,
		ReconnectGrace: cfg.ReconnectGrace, SaveInterval: cfg.WorldSaveInterval, NegotiationTimeout: cfg.NegotiationTimeout,
		RequireRoomCreate: cfg.RequireRoomCreate, MaxParticipants: cfg.MaxParticipants, MaxTotalParticipants: cfg.MaxTotalParticipants,
		RefreshInterval: cfg.TokenRefreshInterval, Refresh: refresh,
		ICEServers: deps.ICEServers, World: world, Logger: log, Now: deps.Now, Version: Version,
	})
	s := &Server{engine: engine, mgr: mgr}
	s.handler = signal.NewHandler(cfg.APIKey, cfg.APISecret, mgr, signal.ConnConfig{
		PingInterval: cfg.PingInterval, PingTimeout: cfg.PingTimeout,
	}, log)
	if deps.Metrics != nil {
		if err := s.registerMetrics(deps.Metrics); err != nil {
			mgr.Close()
			_ = engine.Close()
			return nil, err
		}
	}
	return s, nil
}

// Handler serves "/rtc" and "/rtc/validate" relative to where it is
// mounted (strip the mount prefix first).
func (s *Server) Handler() http.Handler { return s.handler }

// UDPAddr is the media UDP address.
func (s *Server) UDPAddr() net.Addr { return s.engine.UDPAddr() }

// TCPAddr is the ICE-TCP address, nil if disabled.
func (s *Server) TCPAddr() net.Addr { return s.engine.TCPAddr() }

// RoomInfo, ParticipantInfo and TrackInfo describe the rooms for an
// operator page.
type (
	RoomInfo        = rtc.RoomInfo
	ParticipantInfo = rtc.ParticipantInfo
	TrackInfo       = rtc.TrackInfo
	// Stats are the SFU's counters.
	Stats = rtc.Stats
)

// Rooms lists the live rooms.
func (s *Server) Rooms() []RoomInfo { return s.mgr.Rooms() }

// Stats returns the counters summed over live rooms.
func (s *Server) Stats() Stats { return s.mgr.Stats() }

// Close disconnects everyone (LeaveRequest SERVER_SHUTDOWN), saves the
// worlds, waits for the rooms and closes the media sockets. Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mgr.Close()
		s.closeErr = s.engine.Close()
	})
	return s.closeErr
}

func (s *Server) registerMetrics(reg prometheus.Registerer) error {
	gauge := func(name, help string, f func(Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: "sfu", Name: name, Help: help},
			func() float64 { return f(s.Stats()) })
	}
	counter := func(name, help string, f func(Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "sfu", Name: name, Help: help},
			func() float64 { return f(s.Stats()) })
	}
	cs := []prometheus.Collector{
		gauge("rooms", "Live SFU rooms.", func(st Stats) float64 { return float64(st.Rooms) }),
		gauge("participants", "Participants in SFU rooms.", func(st Stats) float64 { return float64(st.Participants) }),
		gauge("tracks", "Published tracks.", func(st Stats) float64 { return float64(st.Tracks) }),
		gauge("down_tracks", "Subscriptions (forwarded track copies).", func(st Stats) float64 { return float64(st.DownTracks) }),
		// Summed over live rooms: these drop when a room closes, so they
		// are gauges, not counters.
		gauge("forwarded_packets", "RTP packets forwarded by live rooms.", func(st Stats) float64 { return float64(st.ForwardedPackets) }),
		gauge("forwarded_bytes", "RTP bytes forwarded by live rooms.", func(st Stats) float64 { return float64(st.ForwardedBytes) }),
		gauge("received_packets", "RTP packets received by live rooms.", func(st Stats) float64 { return float64(st.ReceivedPackets) }),
		counter("data_refused_total", "Data packets refused (too large, flooding, malformed, not allowed).", func(st Stats) float64 { return float64(st.DataRefused) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("sfu: metrics: %w", err)
		}
	}
	return nil
}
