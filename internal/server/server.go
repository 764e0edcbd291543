package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultShutdownTimeout is how long Close lets in-flight requests finish
// when Config.ShutdownTimeout is zero. It is shorter than the usual 30 s
// long-poll of /sync on purpose: a client whose long-poll is cut simply
// retries, and an operator restarting the server should not wait for it.
const DefaultShutdownTimeout = 10 * time.Second

// Config configures a Server.
type Config struct {
	// Listen is the host:port of the main listener; port 0 picks a free
	// port, which Addr reports after Start.
	Listen string
	// MetricsListen, if set, serves /metrics only on this host:port instead
	// of on the main listener. It is ignored when Deps.Metrics is nil.
	MetricsListen string
	// ShutdownTimeout bounds how long Close waits for in-flight requests
	// before cutting them off. Zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// TLS, if set, makes the main listener serve HTTPS with it (the
	// federation listener).
	TLS *tls.Config
}

// Deps are the Server's dependencies.
type Deps struct {
	// Logger receives one line per request and the server's own events.
	// Nil discards them.
	Logger *slog.Logger
	// Metrics is where the request metrics are registered and what /metrics
	// serves. Nil disables both.
	Metrics *prometheus.Registry
}

// Router is the part of *Server that API packages need to add routes; they
// should accept this interface rather than *Server.
type Router interface {
	Handle(pattern string, h http.Handler)
}

// Server is the HTTP listener plumbing. Create it with New, register routes
// with Handle, then Start it; Close or Shutdown stops it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *requestMetrics // nil when metrics are off
	gather  prometheus.Gatherer

	failed   chan error    // fatal errors from Serve, buffered for every listener
	stopping chan struct{} // closed when shutdown begins
	wg       sync.WaitGroup

	mu          sync.Mutex // guards the following fields
	state       lifecycle
	servers     []*http.Server
	addr        net.Addr
	metricsAddr net.Addr

	closeOnce sync.Once
	closeErr  error
}

type lifecycle int

const (
	stateNew lifecycle = iota
	stateStarting
	stateRunning
	stateClosed
)

// New returns a Server that is not listening yet.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.Listen == "" {
		return nil, errors.New("server: listen address not set")
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		mux:      http.NewServeMux(),
		failed:   make(chan error, 2),
		stopping: make(chan struct{}),
	}
	if deps.Metrics != nil {
		m, err := newRequestMetrics(deps.Metrics)
		if err != nil {
			return nil, err
		}
		s.metrics = m
		s.gather = deps.Metrics
		if cfg.MetricsListen == "" {
			s.mux.Handle("GET /metrics", metrics.Handler(deps.Metrics))
		}
	}
	return s, nil
}

// Handle registers h for pattern on the main listener's mux. Patterns follow
// http.ServeMux and should include the method. Like ServeMux.Handle, it
// panics on a pattern that conflicts with one already registered: that is a
// wiring bug, found by the first test that builds the server.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// HandleFunc registers f for pattern; see Handle.
func (s *Server) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	s.mux.HandleFunc(pattern, f)
}

// Start binds the listeners and serves in background goroutines. It
// returns once the listeners are bound, so that Addr is known and a port
// already in use is reported here, not later. ctx bounds only the binding;
// the server runs until Close or Shutdown.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.state != stateNew {
		s.mu.Unlock()
		return errors.New("server: Start called twice or after Close")
	}
	s.state = stateStarting
	s.mu.Unlock()

	var lc net.ListenConfig
	main, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		s.setState(stateNew)
		return fmt.Errorf("server: listening on %s: %w", s.cfg.Listen, err)
	}
	if s.cfg.TLS != nil {
		main = tls.NewListener(main, s.cfg.TLS)
	}
	var ml net.Listener
	if s.gather != nil && s.cfg.MetricsListen != "" {
		ml, err = lc.Listen(ctx, "tcp", s.cfg.MetricsListen)
		if err != nil {
			main.Close()
			s.setState(stateNew)
			return fmt.Errorf("server: listening for metrics on %s: %w", s.cfg.MetricsListen, err)
		}
	}

	servers := []*http.Server{s.httpServer(s)}
	listeners := []net.Listener{main}
	if ml != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler(s.gather))
		servers = append(servers, s.httpServer(mux))
		listeners = append(listeners, ml)
	}

	s.mu.Lock()
	if s.state == stateClosed { // Close ran while we were binding
		s.mu.Unlock()
		for _, l := range listeners {
			l.Close()
		}
		return errors.New("server: closed while starting")
	}
	s.state = stateRunning
	s.servers = servers
	s.addr = main.Addr()
	if ml != nil {
		s.metricsAddr = ml.Addr()
	}
	for i, hs := range servers {
		s.wg.Add(1)
		go s.serve(hs, listeners[i])
	}
	s.mu.Unlock()
	return nil
}

func (s *Server) setState(st lifecycle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateClosed {
		s.state = st
	}
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler: h,
		// Bound the time to send headers, against slow-loris clients. There
		// is deliberately no overall read or write timeout: /sync long-polls
		// and media uploads legitimately take long.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

func (s *Server) serve(hs *http.Server, l net.Listener) {
	defer s.wg.Done()
	err := hs.Serve(l)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("listener failed", "addr", l.Addr().String(), "err", err)
		select {
		case s.failed <- fmt.Errorf("server: serving on %s: %w", l.Addr(), err):
		default:
		}
	}
}

// Addr returns the main listener's address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// MetricsAddr returns the separate metrics listener's address, or nil when
// /metrics is served on the main listener, is off, or before Start.
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metricsAddr
}

// Failed delivers an error if a listener stops serving on its own (not
// through Close), which leaves the process unable to answer and should
// bring it down.
func (s *Server) Failed() <-chan error { return s.failed }

// Stopping is closed when Shutdown begins. Long-polling handlers (/sync)
// select on it to answer at once rather than hold the shutdown up until its
// deadline.
func (s *Server) Stopping() <-chan struct{} { return s.stopping }

// Shutdown stops accepting connections, lets in-flight requests finish until
// ctx is done, then cuts off whatever is left, and waits for the serving
// goroutines to exit. Only the first call does anything; later calls return
// its result. Connections taken over with Hijack (WebSockets) are not
// tracked and must be closed by their owners.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown(ctx) })
	return s.closeErr
}

// Close is Shutdown with Config.ShutdownTimeout as the deadline.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	return s.Shutdown(ctx)
}

func (s *Server) shutdown(ctx context.Context) error {
	close(s.stopping)
	s.mu.Lock()
	s.state = stateClosed
	servers := s.servers
	s.mu.Unlock()

	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
			errs = append(errs, fmt.Errorf("server: requests still running at the shutdown deadline were cut off: %w", err))
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}
