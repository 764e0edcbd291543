package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/metrics"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/prometheus/client_golang/prometheus"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger on server goroutines.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start builds and starts a server on a free loopback port; the test's
// cleanup closes it.
func start(t *testing.T, cfg Config, deps Deps, routes func(*Server)) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if routes != nil {
		routes(s)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func url(s *Server, path string) string { return "http://" + s.Addr().String() + path }

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, u string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, string(b)}
}

func TestRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := start(t, Config{}, Deps{Metrics: reg}, func(s *Server) {
		RegisterVersions(s)
		s.HandleFunc("GET /test/matrix-error", func(w http.ResponseWriter, r *http.Request) {
			WriteError(w, errors.Join(errors.New("context"), mxerr.Forbidden("not yours")))
		})
		s.HandleFunc("GET /test/internal-error", func(w http.ResponseWriter, r *http.Request) {
			WriteError(w, errors.New("db password is hunter2"))
		})
		s.HandleFunc("GET /test/panic", func(w http.ResponseWriter, r *http.Request) {
			panic("boom")
		})
		s.HandleFunc("PUT /_matrix/client/v3/rooms/{room}/send/{type}/{txn}", func(w http.ResponseWriter, r *http.Request) {
			WriteJSON(w, http.StatusOK, map[string]string{"room": r.PathValue("room")})
		})
	})

	const jsonType = "application/json"
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantBody   string // exact, unless empty
		wantType   string
		wantHeader map[string]string
	}{
		{
			name: "versions", method: "GET", path: "/_matrix/client/versions",
			wantStatus: 200, wantType: jsonType,
			wantBody: `{"versions":["v1.1","v1.2","v1.3","v1.4","v1.5","v1.6","v1.7","v1.8","v1.9","v1.10","v1.11","v1.12"],"unstable_features":{"org.matrix.msc3266":true,"org.matrix.msc4140":true,"org.matrix.msc4143":true,"org.matrix.msc4222":true}}`,
		},
		{
			name: "unknown matrix path", method: "GET", path: "/_matrix/client/v3/nonexistent",
			wantStatus: 404, wantType: jsonType,
			wantBody: `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`,
		},
		{
			name: "matrix root", method: "GET", path: "/_matrix",
			wantStatus: 404, wantType: jsonType,
			wantBody: `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`,
		},
		{
			name: "trailing slash is another path", method: "GET", path: "/_matrix/client/versions/",
			wantStatus: 404, wantType: jsonType,
			wantBody: `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`,
		},
		{
			name: "wrong method", method: "POST", path: "/_matrix/client/versions",
			wantStatus: 405, wantType: jsonType,
			wantBody:   `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request: method not allowed on this endpoint"}`,
			wantHeader: map[string]string{"Allow": "GET, HEAD"},
		},
		{
			name: "wrong method on a pattern with wildcards", method: "GET", path: "/_matrix/client/v3/rooms/!a:b/send/m.room.message/1",
			wantStatus: 405, wantType: jsonType,
			wantBody: `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request: method not allowed on this endpoint"}`,
		},
		{
			name: "path values", method: "PUT", path: "/_matrix/client/v3/rooms/!a:b/send/m.room.message/1",
			wantStatus: 200, wantType: jsonType, wantBody: `{"room":"!a:b"}`,
		},
		{
			name: "pre-flight runs no endpoint", method: "OPTIONS", path: "/_matrix/client/v3/rooms/!a:b/send/m.room.message/1",
			wantStatus: 204,
		},
		{
			name: "pre-flight on unknown path", method: "OPTIONS", path: "/_matrix/client/v3/login",
			wantStatus: 204,
		},
		{
			name: "non-matrix unknown path keeps plain 404", method: "GET", path: "/nope",
			wantStatus: 404, wantType: "text/plain; charset=utf-8",
		},
		{
			name: "matrix error from a handler", method: "GET", path: "/test/matrix-error",
			wantStatus: 403, wantType: jsonType, wantBody: `{"errcode":"M_FORBIDDEN","error":"not yours"}`,
		},
		{
			name: "internal error hides its text", method: "GET", path: "/test/internal-error",
			wantStatus: 500, wantType: jsonType, wantBody: `{"errcode":"M_UNKNOWN","error":"Internal server error"}`,
		},
		{
			name: "panic becomes M_UNKNOWN", method: "GET", path: "/test/panic",
			wantStatus: 500, wantType: jsonType, wantBody: `{"errcode":"M_UNKNOWN","error":"Internal server error"}`,
		},
		{
			name: "metrics on the main listener", method: "GET", path: "/metrics",
			wantStatus: 200,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, tt.method, url(s, tt.path))
			if res.status != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", res.status, tt.wantStatus, res.body)
			}
			if tt.wantBody != "" && res.body != tt.wantBody {
				t.Errorf("body = %s\nwant   %s", res.body, tt.wantBody)
			}
			if tt.wantStatus == 204 && res.body != "" {
				t.Errorf("pre-flight has a body: %q", res.body)
			}
			if tt.wantType != "" && res.header.Get("Content-Type") != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", res.header.Get("Content-Type"), tt.wantType)
			}
			// Client-Server API, "Web Browser Clients".
			cors := map[string]string{
				"Access-Control-Allow-Origin":  "*",
				"Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
				"Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
			}
			for k, v := range cors {
				if got := res.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for k, v := range tt.wantHeader {
				if got := res.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}

	// The server survived the panic, and metrics counted by route pattern.
	body := do(t, "GET", url(s, "/metrics")).body
	for _, want := range []string{
		`plexus_http_requests_total{code="200",method="GET",route="/_matrix/client/versions"} 1`,
		`plexus_http_requests_total{code="404",method="GET",route="(unmatched)"} 4`,
		`plexus_http_requests_total{code="405",method="POST",route="(unmatched)"} 1`,
		`plexus_http_requests_total{code="200",method="PUT",route="/_matrix/client/v3/rooms/{room}/send/{type}/{txn}"} 1`,
		`plexus_http_requests_total{code="204",method="OPTIONS",route="(options)"} 2`,
		`plexus_http_requests_total{code="500",method="GET",route="/test/panic"} 1`,
		`plexus_http_request_duration_seconds_count{method="GET",route="/_matrix/client/versions"} 1`,
		`plexus_http_requests_in_flight 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestRequestLog(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(Config{Listen: "127.0.0.1:0"}, Deps{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	RegisterVersions(s)
	s.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, errors.New("disk on fire"))
	})

	tests := []struct {
		name   string
		target string
		want   map[string]any
	}{
		{
			name:   "query string never logged",
			target: "/_matrix/client/versions?access_token=secret",
			want:   map[string]any{"level": "INFO", "msg": "request", "method": "GET", "path": "/_matrix/client/versions", "status": 200.0},
		},
		{
			name:   "internal error logged, not sent",
			target: "/fail",
			want:   map[string]any{"level": "ERROR", "status": 500.0, "err": "disk on fire"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(buf.String())
			rec := newRecorder()
			s.ServeHTTP(rec, mustRequest(t, "GET", tt.target))
			line := strings.TrimSpace(buf.String()[before:])
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("log %s = %v, want %v (line %s)", k, got[k], v, line)
				}
			}
			if strings.Contains(line, "secret") || strings.Contains(rec.body.String(), "disk on fire") {
				t.Errorf("leak: log %s, body %s", line, rec.body.String())
			}
		})
	}
}

// recorder for direct ServeHTTP calls (httptest.ResponseRecorder would do,
// but this keeps the test free of another writer implementation's quirks).
type testRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *testRecorder { return &testRecorder{header: http.Header{}} }

func (r *testRecorder) Header() http.Header { return r.header }
func (r *testRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(b)
}
func (r *testRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func mustRequest(t *testing.T, method, target string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, "http://plexus.test"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RemoteAddr = "192.0.2.1:1234"
	return r
}

func TestSeparateMetricsListener(t *testing.T) {
	tests := []struct {
		name          string
		metrics       *prometheus.Registry
		metricsListen string
		wantMain      int
		wantSeparate  bool
	}{
		{"on main listener", prometheus.NewRegistry(), "", 200, false},
		{"separate listener only", prometheus.NewRegistry(), "127.0.0.1:0", 404, true},
		{"off", nil, "", 404, false},
		{"off ignores address", nil, "127.0.0.1:0", 404, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deps := Deps{}
			if tt.metrics != nil {
				deps.Metrics = tt.metrics
			}
			s := start(t, Config{MetricsListen: tt.metricsListen}, deps, nil)
			if got := do(t, "GET", url(s, "/metrics")).status; got != tt.wantMain {
				t.Errorf("main /metrics status = %d, want %d", got, tt.wantMain)
			}
			ma := s.MetricsAddr()
			if (ma != nil) != tt.wantSeparate {
				t.Fatalf("MetricsAddr() = %v, want separate=%v", ma, tt.wantSeparate)
			}
			if ma != nil {
				res := do(t, "GET", "http://"+ma.String()+"/metrics")
				if res.status != 200 || !strings.Contains(res.body, "plexus_http_requests_in_flight") {
					t.Errorf("separate /metrics: status %d", res.status)
				}
				if got := do(t, "GET", "http://"+ma.String()+"/_matrix/client/versions").status; got != 404 {
					t.Errorf("metrics listener serves the API: status %d", got)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Listen: "127.0.0.1:0"}, Deps{Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		deps Deps
		want string
	}{
		{"no listen address", Config{}, Deps{}, "listen address not set"},
		{"registry already has request metrics", Config{Listen: "127.0.0.1:0"}, Deps{Metrics: reg}, "registering request metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, tt.deps)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New() error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	taken := start(t, Config{}, Deps{}, nil)
	tests := []struct {
		name string
		cfg  Config
		deps Deps
		want string
	}{
		{"port in use", Config{Listen: taken.Addr().String()}, Deps{}, "listening on"},
		{"metrics port in use", Config{Listen: "127.0.0.1:0", MetricsListen: taken.Addr().String()}, Deps{Metrics: metricsRegistry(t)}, "listening for metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg, tt.deps)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Start(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start() error = %v, want %q", err, tt.want)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close after failed Start: %v", err)
			}
		})
	}
}

func metricsRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestLifecycle(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Error("Addr before Start is not nil")
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	addr := s.Addr().String()
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after Close: %v", err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("still accepting after Close")
	}

	never, err := New(Config{Listen: "127.0.0.1:0"}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := never.Close(); err != nil {
		t.Errorf("Close without Start: %v", err)
	}
}

// TestGracefulShutdown: Shutdown stops accepting at once, lets the request
// in flight finish, and only then returns.
func TestGracefulShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	s, err := New(Config{Listen: "127.0.0.1:0"}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		select {
		case <-s.Stopping():
		default:
			t.Error("Stopping() not closed during shutdown")
		}
		WriteJSON(w, http.StatusOK, map[string]bool{"done": true})
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()

	type result struct {
		res response
		err error
	}
	got := make(chan result, 1)
	go func() {
		res, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		got <- result{response{status: res.StatusCode, body: string(b)}, err}
	}()
	<-entered

	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- s.Shutdown(context.Background()) }()

	waitFor(t, "listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	default:
	}

	close(release)
	r := <-got
	if r.err != nil || r.res.status != 200 || r.res.body != `{"done":true}` {
		t.Errorf("in-flight request: %+v", r)
	}
	if err := <-shutdownDone; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestShutdownDeadline: a request that outlives the deadline is cut off and
// Shutdown says so.
func TestShutdownDeadline(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	s, err := New(Config{Listen: "127.0.0.1:0", ShutdownTimeout: 50 * time.Millisecond}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleFunc("GET /stuck", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	clientErr := make(chan error, 1)
	go func() {
		res, err := http.Get(url(s, "/stuck"))
		if err == nil {
			res.Body.Close()
		}
		clientErr <- err
	}()
	<-entered
	err = s.Close()
	if err == nil || !strings.Contains(err.Error(), "cut off") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close() = %v, want a deadline error", err)
	}
	if err := <-clientErr; err == nil {
		t.Error("the stuck request got an answer")
	}
	if err2 := s.Close(); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Close() = %v, want the first result again", err2)
	}
}
