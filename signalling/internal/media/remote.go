package media

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/plexus-chat/plexus/internal/mxerr"
)

// fetchRemote returns the media mxc://server/id of another homeserver:
// from our cache, or fetched through Deps.Remote and cached. This is the
// hook federation fills; without a Remote every remote URI is 404.
//
// Concurrent first requests for one remote URI each fetch it; the second
// insert finds the row and its file (same hash) already there.
func (m *Media) fetchRemote(ctx context.Context, server, id string, allowRemote bool) (*record, error) {
	rec, err := m.lookup(ctx, server, id)
	if err != nil {
		return nil, err
	}
	if rec != nil && !rec.pending() {
		return rec, nil
	}
	// allow_remote=false: "the server ... should not attempt to fetch the
	// media if it is deemed remote" (routing loops).
	if m.remote == nil || !allowRemote {
		return nil, notFound()
	}
	rm, err := m.remote.Fetch(ctx, server, id, m.cfg.MaxUploadBytes)
	if err != nil {
		var me *mxerr.MatrixError
		if errors.As(err, &me) {
			return nil, err
		}
		m.log.Warn("media: remote fetch failed", "server", server, "media_id", id, "err", err)
		return nil, mxerr.New(http.StatusBadGateway, mxerr.CodeUnknown, "Could not fetch the remote media")
	}
	defer rm.Body.Close()
	hash, size, err := m.files.ingest(rm.Body, m.cfg.MaxUploadBytes)
	var re *readError
	switch {
	case errors.Is(err, errTooLarge):
		// Client-Server API, "Content repository", "Security
		// considerations": large remote files are a 502 M_TOO_LARGE.
		return nil, mxerr.New(http.StatusBadGateway, mxerr.CodeTooLarge, "Content is too large to serve")
	case errors.As(err, &re):
		m.log.Warn("media: remote fetch failed", "server", server, "media_id", id, "err", err)
		return nil, mxerr.New(http.StatusBadGateway, mxerr.CodeUnknown, "Could not fetch the remote media")
	case err != nil:
		return nil, err
	}
	rec = &record{
		Server: server, ID: id, CreatedTS: m.now().UnixMilli(),
		ContentType: normalizeContentType(rm.ContentType), Filename: rm.Filename, Size: size, SHA256: hash,
	}
	// A name we would refuse from our own users is dropped, not stored.
	if !utf8.ValidString(rec.Filename) || strings.ContainsRune(rec.Filename, 0) || len(rec.Filename) > maxFilenameBytes {
		rec.Filename = ""
	}
	inserted, err := m.insert(ctx, rec)
	if err != nil {
		return nil, err
	}
	if inserted {
		return rec, nil
	}
	if rec, err = m.lookup(ctx, server, id); err == nil && rec == nil {
		err = notFound()
	}
	return rec, err
}
