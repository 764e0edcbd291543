package cable

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
	"github.com/plexus-chat/plexus/signalling/internal/syncer"
)

// Syncer is the sync engine the channels read from (*syncer.Engine).
type Syncer interface {
	ParseRequest(ctx context.Context, s *endpoint.Session, since, filter, fullState, timeout string) (syncer.Request, error)
	Sync(ctx context.Context, req syncer.Request) (*syncer.Response, stream.Token, error)
}

// RoomActions are what the room channel's actions do, and its
// visibility check. Errors that are *mxerr.MatrixError reach the
// consumer with their errcode; others become M_UNKNOWN.
type RoomActions interface {
	// CanSee reports whether userID may subscribe to roomID's channel.
	CanSee(ctx context.Context, userID, roomID string) (bool, error)
	// Send sends an event as PUT /rooms/{roomId}/send/{eventType}/{txnId}.
	Send(ctx context.Context, s *endpoint.Session, roomID, eventType string, content json.RawMessage, txnID string) (eventID string, err error)
	// Typing is PUT /rooms/{roomId}/typing/{userId}.
	Typing(ctx context.Context, s *endpoint.Session, roomID string, typing bool, timeoutMS int64) error
	// Receipt is POST /rooms/{roomId}/receipt/{receiptType}/{eventId}.
	Receipt(ctx context.Context, s *endpoint.Session, roomID, receiptType, eventID string) error
}

// Config configures the Server. Zero values take the defaults.
type Config struct {
	// Path is where the WebSocket is served. Default DefaultPath.
	Path string
	// QueueSize bounds each connection's queue of unsent messages;
	// a connection whose queue overflows is closed. Default 256.
	QueueSize int
	// PingInterval is the heartbeat period. Default 3 s, ActionCable's
	// beat: the JavaScript consumer reopens a socket silent for 6 s.
	PingInterval time.Duration
	// WriteTimeout bounds one frame's write. Default 10 s.
	WriteTimeout time.Duration
	// MaxSubscriptions bounds one connection's subscriptions. Default 100.
	MaxSubscriptions int
	// MaxMessageBytes bounds a frame from the consumer. Default 256 KiB
	// (an event may be 64 KiB, and the data string escapes it again).
	MaxMessageBytes int64
	// CookieName is the session cookie's name. Default "plexus_session".
	CookieName string
	// CookieKey is the 32-byte AES-256-GCM key sealing session cookies.
	// Empty: a random key, so cookies do not outlive the process.
	CookieKey []byte
	// AllowedOrigins lists the browser origins ("https://app.example")
	// allowed to connect; "*" allows any. Empty: only the server's own
	// host. Requests without an Origin (non-browser clients) are allowed.
	AllowedOrigins []string
}

// DefaultPath is where the WebSocket is served by default.
const DefaultPath = "/_plexus/cable"

// SessionPath is the session cookie endpoint: POST issues it, DELETE
// clears it.
const SessionPath = "/_plexus/client/v1/session"

// Deps are the Server's collaborators.
type Deps struct {
	Auth  endpoint.Authenticator
	Sync  Syncer
	Rooms RoomActions
	// Hub wakes the channels when something for their user is stored.
	Hub    *stream.Hub
	Logger *slog.Logger
	// Metrics, if set, receives the server's instruments.
	Metrics prometheus.Registerer
}

// Server serves the realtime WebSocket connections.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	metrics  *metrics
	aead     cipher.AEAD
	upgrader websocket.Upgrader

	stop       chan struct{}
	pingerDone chan struct{}
	// workers run the channels' syncs and the commands (workers.go).
	workers *workers
	// wg counts the connections being served (from before the upgrade).
	wg sync.WaitGroup

	mu sync.Mutex // guards the fields below
	// conns is the registry of live connections.
	conns  map[*conn]struct{}
	closed bool
}

// New returns a Server and starts its heartbeat.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Auth == nil || deps.Sync == nil || deps.Rooms == nil || deps.Hub == nil {
		return nil, errors.New("cable: Auth, Sync, Rooms and Hub are required")
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if !strings.HasPrefix(cfg.Path, "/") {
		return nil, fmt.Errorf("cable: path %q does not start with /", cfg.Path)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 3 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.MaxSubscriptions <= 0 {
		cfg.MaxSubscriptions = 100
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 256 << 10
	}
	if cfg.CookieName == "" {
		cfg.CookieName = "plexus_session"
	}
	if len(cfg.CookieKey) == 0 {
		cfg.CookieKey = make([]byte, 32)
		if _, err := rand.Read(cfg.CookieKey); err != nil {
			return nil, fmt.Errorf("cable: cookie key: %w", err)
		}
	}
	if len(cfg.CookieKey) != 32 {
		return nil, fmt.Errorf("cable: cookie key is %d bytes, want 32", len(cfg.CookieKey))
	}
	block, err := aes.NewCipher(cfg.CookieKey)
	if err != nil {
		return nil, fmt.Errorf("cable: cookie key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("cable: cookie key: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, deps: deps, log: deps.Logger, metrics: m, aead: aead,
		stop:       make(chan struct{}),
		pingerDone: make(chan struct{}),
		conns:      map[*conn]struct{}{},
		workers:    newWorkers(0),
	}
	s.upgrader = websocket.Upgrader{
		// Small per-connection buffers and a shared write buffer pool:
		// an idle connection then holds only its 512-byte read buffer.
		ReadBufferSize:  512,
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    []string{Subprotocol},
		// The origin was checked before the upgrade (originAllowed).
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			endpoint.Fail(w, mxerr.New(status, mxerr.CodeUnrecognized, reason.Error()))
		},
	}
	go s.pinger()
	return s, nil
}

// Register adds the WebSocket route (GET Config.Path) and the session
// cookie endpoint (POST and DELETE SessionPath).
func (s *Server) Register(rt *endpoint.Router) {
	rt.Public("GET "+s.cfg.Path, s.handleUpgrade)
	rt.Authed("POST "+SessionPath, s.handleIssueCookie)
	rt.Public("DELETE "+SessionPath, s.handleClearCookie)
}

// Connections is the number of live connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close tells every consumer to reconnect later ({"type":"disconnect",
// "reason":"server_restart","reconnect":true}), closes the connections
// and waits for their goroutines. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	close(s.stop)
	<-s.pingerDone
	frame := disconnectFrame(ReasonServerRestart, true)
	for _, c := range conns {
		c.close(frame, true)
	}
	s.wg.Wait()
	s.workers.close()
	return nil
}

// handleUpgrade authenticates the request and, only then, upgrades it:
// a consumer without valid credentials gets a plain HTTP 401 with the
// standard error body (M_MISSING_TOKEN or M_UNKNOWN_TOKEN), never a
// socket.
func (s *Server) handleUpgrade(w http.ResponseWriter, r *http.Request) {
	if !s.originAllowed(r) {
		endpoint.Fail(w, mxerr.Forbidden("Origin not allowed"))
		return
	}
	sess, err := s.authenticate(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		endpoint.Fail(w, mxerr.New(http.StatusBadRequest, mxerr.CodeUnrecognized, "Expected a WebSocket upgrade"))
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		endpoint.Fail(w, mxerr.New(http.StatusServiceUnavailable, mxerr.CodeUnknown, "Server shutting down"))
		return
	}
	s.wg.Add(1) // under mu, so Close cannot be waiting already
	s.mu.Unlock()
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.wg.Done()
		return // the upgrader answered
	}
	// The connection gets a goroutine of its own, and the handler
	// returns: net/http's goroutine, its buffers and the request (several
	// KiB a connection) are freed.
	go s.serve(ws, sess)
}

// serve runs a connection until it closes; its goroutine is the reader.
func (s *Server) serve(ws *websocket.Conn, sess *endpoint.Session) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ws.SetReadLimit(s.cfg.MaxMessageBytes)
	c := newConn(s, ws, sess, cancel)
	// ActionCable's first frame: the consumer (re)subscribes on it.
	c.queue = append(c.queue, frameWelcome)
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.conns[c] = struct{}{}
	}
	s.mu.Unlock()
	s.metrics.connections.Inc()
	go c.writeLoop()
	c.signal()
	if closed {
		c.close(disconnectFrame(ReasonServerRestart, true), true)
	} else {
		c.readLoop(ctx)
		c.close(nil, true)
	}
	c.wg.Wait()
	<-c.writerDone
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.connections.Dec()
}

// pinger is the one heartbeat goroutine: every PingInterval it queues
// the same encoded ping on every connection (no per-connection timers).
func (s *Server) pinger() {
	defer close(s.pingerDone)
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	var batch []*conn
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			frame := pingFrame(now.Unix())
			s.mu.Lock()
			for c := range s.conns {
				batch = append(batch, c)
			}
			s.mu.Unlock()
			for _, c := range batch {
				c.enqueue(nil, frame)
			}
			clear(batch)
			batch = batch[:0]
		}
	}
}

// originAllowed applies Config.AllowedOrigins to a browser's Origin
// header, refusing cross-site WebSocket hijacking: a page elsewhere
// cannot open a socket riding on the session cookie.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(s.cfg.AllowedOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// authenticate finds the request's access token: the Authorization
// header, the access_token query parameter (browsers cannot set headers
// on a WebSocket) or the session cookie, in that order.
func (s *Server) authenticate(r *http.Request) (*endpoint.Session, error) {
	tok, err := endpoint.AccessToken(r)
	if err != nil {
		var me *mxerr.MatrixError
		if !errors.As(err, &me) || me.Code != mxerr.CodeMissingToken {
			return nil, err
		}
		c, cerr := r.Cookie(s.cfg.CookieName)
		if cerr != nil {
			return nil, err
		}
		if tok, err = s.openCookie(c.Value); err != nil {
			return nil, err
		}
	}
	return s.deps.Auth.Authenticate(r.Context(), tok)
}
