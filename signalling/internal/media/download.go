package media

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// timeout_ms of the download and thumbnail endpoints: "The default value
// is 20000 (20 seconds). The content repository SHOULD impose a maximum
// value for this parameter." The maximum is Synapse's.
const (
	defaultWait = 20 * time.Second
	maxWait     = 60 * time.Second
)

func notFound() error { return mxerr.NotFound("Media not found") }

// parseWait reads timeout_ms, clamped to [0, maxWait].
func parseWait(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("timeout_ms")
	if v == "" {
		return defaultWait, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, mxerr.InvalidParam("timeout_ms must be an integer")
	}
	return min(time.Duration(max(ms, 0))*time.Millisecond, maxWait), nil
}

// parseBool reads an optional boolean query parameter; Synapse accepts
// exactly "true" and "false".
func parseBool(r *http.Request, name string, def bool) (bool, error) {
	switch r.URL.Query().Get(name) {
	case "":
		return def, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, mxerr.InvalidParam(name + " must be true or false")
}

// resolve finds the uploaded media a download or thumbnail request names,
// waiting up to timeout_ms for a pending asynchronous upload.
func (m *Media) resolve(r *http.Request, a access) (*record, error) {
	server, id := r.PathValue("serverName"), r.PathValue("mediaId")
	// Client-Server API, "Content repository", "Security considerations":
	// the server name must be valid and the ID only [A-Za-z0-9_-].
	if !validServerName(server) || !validMediaID(id) {
		return nil, notFound()
	}
	wait, err := parseWait(r)
	if err != nil {
		return nil, err
	}
	if server != m.cfg.ServerName {
		allowRemote := true
		if !a.authed { // allow_remote exists on the deprecated endpoints only
			if allowRemote, err = parseBool(r, "allow_remote", true); err != nil {
				return nil, err
			}
		}
		return m.fetchRemote(r.Context(), server, id, allowRemote)
	}
	return m.waitLocal(r.Context(), server, id, wait)
}

// waitLocal returns our media server/id once it has content, waiting up
// to wait for a pending upload; 504 M_NOT_YET_UPLOADED after that.
func (m *Media) waitLocal(ctx context.Context, server, id string, wait time.Duration) (*record, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	key := server + "/" + id
	for {
		uploaded, release := m.uploaded.watch(key)
		rec, err := m.lookup(ctx, server, id)
		if err == nil && (rec == nil || rec.expired(m.now().UnixMilli())) {
			err = notFound()
		}
		if err != nil || !rec.pending() {
			release()
			return rec, err
		}
		select {
		case <-uploaded:
			release()
		case <-timer.C:
			release()
			return nil, mxerr.New(http.StatusGatewayTimeout, CodeNotYetUploaded, "Content has not yet been uploaded")
		case <-ctx.Done():
			release()
			return nil, ctx.Err()
		}
	}
}

// handleDownload is GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]
// and the deprecated /_matrix/media/v3/download/... .
func (m *Media) handleDownload(w http.ResponseWriter, r *http.Request, a access) {
	rec, err := m.resolve(r, a)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	// "If the upload was made with a filename, this header MUST contain
	// the same filename"; the /{fileName} form replaces it.
	filename := rec.Filename
	if f := r.PathValue("fileName"); f != "" {
		filename = f
	}
	m.serveFile(w, r, m.files.contentPath(rec.SHA256), rec, rec.SHA256, servedContentType(rec.ContentType),
		contentDisposition(rec.ContentType, filename), a)
}

// serveFile answers with the file at path, made from rec; Range and
// conditional requests are handled by http.ServeContent with etag.
func (m *Media) serveFile(w http.ResponseWriter, r *http.Request, path string, rec *record, etag, ct, disposition string, a access) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		// A row without its file: the disk lost it (we never delete
		// one that a row refers to). Synapse answers 404 too.
		m.log.Error("media: file missing", "media_id", rec.ID, "server", rec.Server, "path", path)
		endpoint.Fail(w, notFound())
		return
	}
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	defer f.Close()
	setServeHeaders(w.Header(), ct, disposition, a.authed)
	w.Header().Set("ETag", `"`+etag+`"`)
	http.ServeContent(w, r, "", time.UnixMilli(rec.CreatedTS), f)
}
