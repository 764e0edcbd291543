package media

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint/endpointtest"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

const (
	ourServer = "example.org"
	aliceTok  = "alice-token"
	bobTok    = "bob-token"
	alice     = "@alice:example.org"
	bob       = "@bob:example.org"
)

// tokenAuth maps fixed tokens to sessions.
type tokenAuth = endpointtest.Tokens

// harness is one repository on a real database, served over real HTTP.
type harness struct {
	t     *testing.T
	m     *Media
	db    *storage.DB
	srv   *httptest.Server
	dir   string
	nowMS atomic.Int64
}

// forEachBackend runs fn once per storage backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { fn(t, b) })
	}
}

func newHarness(t *testing.T, backend string, cfg Config, deps Deps) *harness {
	t.Helper()
	dsn, dataDir := storagetest.Fresh(t, backend)
	ctx := context.Background()
	db, err := storage.Open(ctx, dsn, dataDir)
	if err != nil {
		t.Fatalf("open storage: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	h := &harness{t: t, db: db, dir: filepath.Join(t.TempDir(), "media")}
	h.nowMS.Store(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli())
	cfg.ServerName, cfg.Dir = ourServer, h.dir
	deps.DB = db
	deps.Now = func() time.Time { return time.UnixMilli(h.nowMS.Load()) }
	if h.m, err = New(cfg, deps); err != nil {
		t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	h.m.Register(endpoint.NewRouter(mux, tokenAuth{
		aliceTok: {UserID: alice, DeviceID: "A"},
		bobTok:   {UserID: bob, DeviceID: "B"},
	}))
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errcode is the Matrix errcode of an error response ("" if none).
func (r response) errcode() string {
	var e struct {
		Code string `json:"errcode"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Code
}

// json decodes the body into v, failing the test if it is not JSON.
func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// request is one HTTP request to the harness.
type request struct {
	method, path, token string
	body                io.Reader
	header              map[string]string
}

func (h *harness) do(q request) response {
	h.t.Helper()
	req, err := http.NewRequest(q.method, h.srv.URL+q.path, q.body)
	if err != nil {
		h.t.Fatal(err)
	}
	if q.token != "" {
		req.Header.Set("Authorization", "Bearer "+q.token)
	}
	for k, v := range q.header {
		req.Header.Set(k, v)
	}
	res, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", q.method, q.path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (h *harness) get(path, token string) response {
	h.t.Helper()
	return h.do(request{method: http.MethodGet, path: path, token: token})
}

// upload posts content and returns its media ID.
func (h *harness) upload(token string, content []byte, contentType, query string) string {
	h.t.Helper()
	hdr := map[string]string{}
	if contentType != "" {
		hdr["Content-Type"] = contentType
	}
	res := h.do(request{method: http.MethodPost, path: "/_matrix/media/v3/upload" + query, token: token,
		body: bytes.NewReader(content), header: hdr})
	if res.status != http.StatusOK {
		h.t.Fatalf("upload: %d %s", res.status, res.body)
	}
	var out struct {
		URI string `json:"content_uri"`
	}
	res.json(h.t, &out)
	id, ok := strings.CutPrefix(out.URI, "mxc://"+ourServer+"/")
	if !ok || !validMediaID(id) || len(id) < 24 {
		h.t.Fatalf("content_uri %q", out.URI)
	}
	return id
}

// files lists the regular files under the repository's folder sub.
func (h *harness) files(sub string) []string {
	h.t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(h.dir, sub), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// rows counts the media rows.
func (h *harness) rows() int {
	h.t.Helper()
	var n int
	err := h.db.View(context.Background(), func(tx *storage.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT COUNT(*) FROM media`).Scan(&n)
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// wantError checks an error response.
func wantError(t *testing.T, res response, status int, code string) {
	t.Helper()
	if res.status != status || res.errcode() != code {
		t.Fatalf("got %d %s, want %d %s", res.status, res.body, status, code)
	}
}

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
