package server

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
)

// Route labels for requests that matched no pattern. They are in
// parentheses so they can never be mistaken for a real path.
const (
	routeUnmatched = "(unmatched)"
	routeOptions   = "(options)"
)

// ServeHTTP runs every request through CORS, routing, panic recovery,
// logging and metrics; see the package documentation.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	route := routeOptions
	if r.Method != http.MethodOptions {
		// Asking the mux first (rather than reading r.Pattern after it has
		// served) tells us the route label and whether it matched at all.
		_, pattern := s.mux.Handler(r)
		route = routeLabel(pattern)
	}
	if s.metrics != nil {
		s.metrics.inFlight.Inc()
	}
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path,
				"panic", p, "stack", string(debug.Stack()))
			if rec.status == 0 {
				WriteError(rec, fmt.Errorf("panic: %v", p))
				p = nil
			} else {
				// Half a response is out; the only honest thing left is to
				// drop the connection.
				p = http.ErrAbortHandler
			}
		}
		rec.aborted = p != nil
		s.observe(r, route, rec, time.Since(start))
		if p != nil {
			panic(p) // http.ErrAbortHandler: net/http drops the connection quietly
		}
	}()

	// Client-Server API, "Web Browser Clients": CORS headers on all
	// responses, and OPTIONS answered without running the endpoint.
	h := rec.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
	if r.Method == http.MethodOptions {
		rec.WriteHeader(http.StatusNoContent)
		return
	}

	if route == routeUnmatched && isMatrixPath(r.URL.Path) {
		s.mux.ServeHTTP(&unrecognizedWriter{ResponseWriter: rec}, r)
		return
	}
	s.mux.ServeHTTP(rec, r)
}

// routeLabel turns a mux pattern ("GET /_matrix/client/versions") into the
// route label ("/_matrix/client/versions"); the method is its own label.
func routeLabel(pattern string) string {
	if pattern == "" {
		return routeUnmatched
	}
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		return pattern[i+1:]
	}
	return pattern
}

func isMatrixPath(p string) bool {
	return p == "/_matrix" || strings.HasPrefix(p, "/_matrix/")
}

func (s *Server) observe(r *http.Request, route string, rec *recorder, d time.Duration) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK // handler wrote nothing: net/http sends 200
	}
	if s.metrics != nil {
		s.metrics.inFlight.Dec()
		s.metrics.observe(r.Method, route, status, d)
	}
	level := slog.LevelInfo
	switch {
	case status >= 500 || rec.aborted:
		level = slog.LevelError
	case route == "/metrics" || route == routeOptions:
		level = slog.LevelDebug // scrapes and pre-flights would drown the log
	}
	if !s.log.Enabled(r.Context(), level) {
		return
	}
	// The path only, never the query: clients may put access_token there.
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Duration("dur", d),
		slog.String("remote", r.RemoteAddr),
	}
	if rec.aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	if rec.err != nil {
		attrs = append(attrs, slog.String("err", rec.err.Error()))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// recorder notes what was sent, for the log and metrics.
type recorder struct {
	http.ResponseWriter
	status  int   // first final status written; 0 until then
	bytes   int64 // body bytes written
	err     error // internal error behind a 5xx, from WriteError
	aborted bool  // the handler gave up mid-response
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer's optional
// methods (deadlines, full duplex).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush implements http.Flusher for handlers (e.g. streaming) that type
// assert rather than use http.ResponseController.
func (r *recorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker for WebSocket libraries that type assert.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil && r.status == 0 {
		r.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (r *recorder) noteError(err error) { r.err = err }

// unrecognizedWriter turns the mux's plain-text 404 and 405 into the Matrix
// error M_UNRECOGNIZED with the same status (Client-Server API, "Common
// error codes"), keeping the Allow header the mux sets for 405. Other
// statuses (the mux's redirects to a cleaned path) pass through.
type unrecognizedWriter struct {
	http.ResponseWriter
	swallow bool // the mux's own body must not follow ours
}

func (u *unrecognizedWriter) WriteHeader(code int) {
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		u.Header().Del("X-Content-Type-Options")
		WriteError(u.ResponseWriter, mxerr.Unrecognized(code))
		u.swallow = true
		return
	}
	u.ResponseWriter.WriteHeader(code)
}

func (u *unrecognizedWriter) Write(b []byte) (int, error) {
	if u.swallow {
		return len(b), nil
	}
	return u.ResponseWriter.Write(b)
}

func (u *unrecognizedWriter) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// errorNoter is implemented by recorder; WriteError finds it through Unwrap.
type errorNoter interface{ noteError(error) }

func noteError(w http.ResponseWriter, err error) {
	for {
		if n, ok := w.(errorNoter); ok {
			n.noteError(err)
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}
