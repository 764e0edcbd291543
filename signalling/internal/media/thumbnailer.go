package media

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// thumbnailer bounds how many images are decoded at once and makes sure
// one thumbnail is generated once however many requests want it.
type thumbnailer struct {
	sem       chan struct{} // one slot per decode running
	maxPixels int64

	mu      sync.Mutex               // guards flights
	flights map[string]chan struct{} // cache path -> closed when its generation ends
}

func newThumbnailer(parallel int, maxPixels int64) *thumbnailer {
	return &thumbnailer{
		sem:       make(chan struct{}, max(parallel, 1)),
		maxPixels: maxPixels,
		flights:   map[string]chan struct{}{},
	}
}

// acquire waits until no one else works on key and a decode slot is
// free; the returned function gives both back.
func (t *thumbnailer) acquire(ctx context.Context, key string) (func(), error) {
	var mine chan struct{}
	for mine == nil {
		t.mu.Lock()
		ch, busy := t.flights[key]
		if !busy {
			mine = make(chan struct{})
			t.flights[key] = mine
		}
		t.mu.Unlock()
		if busy {
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	done := func() {
		t.mu.Lock()
		delete(t.flights, key)
		t.mu.Unlock()
		close(mine)
	}
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
	return func() { <-t.sem; done() }, nil
}

// thumbFile is a file to answer a thumbnail request with.
type thumbFile struct {
	path        string
	contentType string
	etag        string
}

// thumbnail returns the thumbnail of rec for q: from the cache, the
// original itself, or generated now and cached.
func (m *Media) thumbnail(ctx context.Context, rec *record, q thumbRequest) (thumbFile, error) {
	cache := thumbFile{
		path: m.files.thumbnailPath(rec.SHA256, q.variant()),
		etag: rec.SHA256 + "-" + q.variant(),
	}
	// With animated=true the original may be the answer (a small GIF),
	// which only the generator can tell; a cached still must wait.
	if !q.animated {
		if ct, ok := cachedType(cache.path); ok {
			cache.contentType = ct
			return cache, nil
		}
	}
	release, err := m.thumbs.acquire(ctx, cache.path)
	if err != nil {
		return thumbFile{}, err
	}
	defer release()
	src, err := os.Open(m.files.contentPath(rec.SHA256))
	if err != nil {
		return thumbFile{}, fmt.Errorf("media: open content: %w", err)
	}
	defer src.Close()
	res, err := makeThumbnail(src, q, m.thumbs.maxPixels)
	if err != nil {
		return thumbFile{}, err
	}
	if res.original {
		return thumbFile{path: m.files.contentPath(rec.SHA256), contentType: res.contentType, etag: rec.SHA256}, nil
	}
	if err := m.files.writeFile(cache.path, res.data); err != nil {
		return thumbFile{}, err
	}
	cache.contentType = res.contentType
	return cache, nil
}

// cachedType reports whether the thumbnail at path exists, and its type.
func cachedType(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	var head [16]byte
	n, _ := f.Read(head[:])
	switch sniffFormat(head[:n]) {
	case "jpeg":
		return "image/jpeg", true
	case "png":
		return "image/png", true
	}
	return "", false
}

// parseThumbRequest reads width, height, method and animated (GET
// /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}).
func parseThumbRequest(r *http.Request) (thumbRequest, error) {
	var q thumbRequest
	dim := func(name string) (int, error) {
		v := r.URL.Query().Get(name)
		if v == "" {
			return 0, mxerr.MissingParam("Missing integer query parameter '" + name + "'")
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return 0, mxerr.InvalidParam("Query parameter '" + name + "' must be a positive integer")
		}
		return roundUpSize(n), nil
	}
	var err error
	if q.w, err = dim("width"); err != nil {
		return q, err
	}
	if q.h, err = dim("height"); err != nil {
		return q, err
	}
	switch r.URL.Query().Get("method") {
	case "", "scale":
	case "crop":
		q.crop = true
	default:
		return q, mxerr.InvalidParam("method must be crop or scale")
	}
	q.animated, err = parseBool(r, "animated", false)
	return q, err
}

// handleThumbnail is GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}
// and the deprecated /_matrix/media/v3/thumbnail/... .
func (m *Media) handleThumbnail(w http.ResponseWriter, r *http.Request, a access) {
	q, err := parseThumbRequest(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	rec, err := m.resolve(r, a)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	cannot := mxerr.New(http.StatusBadRequest, mxerr.CodeUnknown, "Cannot generate thumbnails for the requested content")
	if !thumbnailTypes[baseType(rec.ContentType)] {
		endpoint.Fail(w, cannot)
		return
	}
	tf, err := m.thumbnail(r.Context(), rec, q)
	switch {
	case errors.Is(err, errUnthumbnailable):
		m.log.Debug("media: thumbnail failed", "media_id", rec.ID, "err", err)
		endpoint.Fail(w, cannot)
		return
	case errors.Is(err, errTooManyPixels):
		// Client-Server API, "Content repository", "Security
		// considerations": 413 for local images, 502 for remote ones.
		status := http.StatusRequestEntityTooLarge
		if rec.Server != m.cfg.ServerName {
			status = http.StatusBadGateway
		}
		endpoint.Fail(w, mxerr.New(status, mxerr.CodeTooLarge, "Content is too large to thumbnail"))
		return
	case err != nil:
		endpoint.Fail(w, err)
		return
	}
	// The disposition MUST be inline and SHOULD name a file (GET
	// .../thumbnail, Content-Disposition).
	name := "thumbnail." + map[string]string{
		"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
	}[tf.contentType]
	m.serveFile(w, r, tf.path, rec, tf.etag, tf.contentType, "inline; filename="+name, a)
}
