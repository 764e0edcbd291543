package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/plexus-chat/plexus/internal/server"
)

// Config configures the web client's handler.
type Config struct {
	// Assets is the bundle: index.html and assets/. Nil: the bundle
	// embedded at build time.
	Assets fs.FS
}

// Deps are the handler's dependencies.
type Deps struct {
	Logger *slog.Logger
}

// Web serves the web client. It holds the whole bundle in memory (a few
// hundred KiB), read once at New.
type Web struct {
	log    *slog.Logger
	index  *file            // nil: no bundle, GET / answers 503
	assets map[string]*file // by name under assets/
}

// file is one servable file with its validators, computed once.
type file struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

// indexFile is the page every visit starts from.
const indexFile = "index.html"

// assetsDir holds the hashed bundle files.
const assetsDir = "assets"

// New reads the bundle. A missing index.html is not an error: the binary
// was built before `make web`, and GET / says so (503) while the rest of
// the server works.
func New(cfg Config, deps Deps) (*Web, error) {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	assets := cfg.Assets
	if assets == nil {
		sub, err := fs.Sub(dist, "dist")
		if err != nil {
			return nil, fmt.Errorf("web: embedded bundle: %w", err)
		}
		assets = sub
	}
	w := &Web{log: log, assets: map[string]*file{}}
	idx, err := readFile(assets, indexFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Warn("the web client is not built into this binary; run `make web` and rebuild")
		return w, nil
	case err != nil:
		return nil, err
	}
	w.index = idx
	err = fs.WalkDir(assets, assetsDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := readFile(assets, p)
		if err != nil {
			return err
		}
		w.assets[strings.TrimPrefix(p, assetsDir+"/")] = f
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("web: reading %s: %w", assetsDir, err)
	}
	return w, nil
}

func readFile(fsys fs.FS, name string) (*file, error) {
	body, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("web: reading %s: %w", name, err)
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = http.DetectContentType(body)
	}
	sum := sha256.Sum256(body)
	return &file{
		name: name, body: body, ctype: ctype,
		etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
	}, nil
}

// Built reports whether the binary carries the client's bundle.
func (w *Web) Built() bool { return w.index != nil }

// Register adds the web client's routes: exactly / and /assets/, so that
// every other path (notably /_matrix) keeps its own handler or 404.
func (w *Web) Register(mux server.Router) {
	mux.Handle("GET /{$}", http.HandlerFunc(w.serveIndex))
	mux.Handle("GET /assets/{name...}", http.HandlerFunc(w.serveAsset))
}

// notBuilt is the page of a binary built without the bundle.
const notBuilt = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Plexus: web client not built</title></head>
<body><h1>The web client is not built into this binary</h1>
<p>Run <code>make web</code> (or <code>make build</code>, which runs it) and start the new binary.
The Matrix Client-Server API on this server works without it.</p></body></html>
`

func (w *Web) serveIndex(rw http.ResponseWriter, r *http.Request) {
	h := rw.Header()
	setSecurityHeaders(h)
	if w.index == nil {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		rw.WriteHeader(http.StatusServiceUnavailable)
		_, _ = rw.Write([]byte(notBuilt))
		return
	}
	// no-cache: revalidate every visit (cheap, by ETag), so that a new
	// build's asset names are seen at once.
	h.Set("Cache-Control", "no-cache")
	serve(rw, r, w.index)
}

func (w *Web) serveAsset(rw http.ResponseWriter, r *http.Request) {
	f, ok := w.assets[r.PathValue("name")]
	if !ok {
		http.NotFound(rw, r)
		return
	}
	h := rw.Header()
	setSecurityHeaders(h)
	// The build names every asset by its content hash: a name never
	// changes meaning, so browsers may keep it for good.
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	serve(rw, r, f)
}

func serve(rw http.ResponseWriter, r *http.Request, f *file) {
	h := rw.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("ETag", f.etag)
	// ServeContent answers If-None-Match (304), ranges and HEAD.
	http.ServeContent(rw, r, f.name, time.Time{}, bytes.NewReader(f.body))
}

// setSecurityHeaders confines the page's code to this origin: its
// scripts and styles come only from the bundle. What it connects to is
// wider: a group call started on another server goes through that
// server's token service (an HTTP(S) POST to the livekit_service_url of
// the call's oldest membership, MSC4143) and SFU (a WebSocket), neither
// known in advance. connect-src names the schemes only; a page served
// over HTTPS still cannot fetch plain HTTP (mixed content). Media goes to
// the TURN relay and SFUs, which CSP does not govern.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
		"img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self' http: https: ws: wss:; "+
		"object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// The page asks for camera and microphone itself; nothing it embeds may.
	h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
}
