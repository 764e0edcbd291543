package media

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// maxFilenameBytes bounds the filename query parameter. The spec sets no
// limit; this one only keeps junk out of the database.
const maxFilenameBytes = 1024

// maxContentTypeBytes bounds a stored Content-Type; longer ones are not
// real media types.
const maxContentTypeBytes = 255

// uploadParams are the client-supplied facts about an upload.
type uploadParams struct {
	contentType string
	filename    string
}

// parseUploadParams reads the Content-Type header and the filename query
// parameter (POST /_matrix/media/v3/upload).
func parseUploadParams(r *http.Request) (uploadParams, error) {
	var p uploadParams
	p.filename = r.URL.Query().Get("filename")
	if !utf8.ValidString(p.filename) || strings.ContainsRune(p.filename, 0) {
		return p, mxerr.InvalidParam("filename must be valid UTF-8 text")
	}
	if len(p.filename) > maxFilenameBytes {
		return p, mxerr.InvalidParam(fmt.Sprintf("filename is longer than %d bytes", maxFilenameBytes))
	}
	p.contentType = normalizeContentType(r.Header.Get("Content-Type"))
	return p, nil
}

// normalizeContentType returns ct as the client sent it, or
// application/octet-stream when it is absent (the spec's default) or is no
// media type at all, which the spec counts as "reasonably close" to
// what was uploaded (GET .../download, Content-Type).
func normalizeContentType(ct string) string {
	ct = strings.TrimSpace(ct)
	if ct == "" || len(ct) > maxContentTypeBytes || !utf8.ValidString(ct) {
		return "application/octet-stream"
	}
	if _, _, ok := parseType(ct); !ok {
		return "application/octet-stream"
	}
	return ct
}

// checkLength refuses a body announced as over the limit before reading
// it; one sent without a length is cut off by ingest instead.
func (m *Media) checkLength(r *http.Request) error {
	if r.ContentLength > m.cfg.MaxUploadBytes {
		return m.tooLarge()
	}
	return nil
}

func (m *Media) tooLarge() error {
	return mxerr.TooLarge(fmt.Sprintf("Cannot upload files larger than %d bytes", m.cfg.MaxUploadBytes))
}

// store writes the request body to disk: its SHA-256 and size, or the
// error to answer with.
func (m *Media) store(r *http.Request) (hash string, size int64, err error) {
	hash, size, err = m.files.ingest(r.Body, m.cfg.MaxUploadBytes)
	var re *readError
	switch {
	case errors.Is(err, errTooLarge):
		return "", 0, m.tooLarge()
	case errors.As(err, &re):
		return "", 0, mxerr.New(http.StatusBadRequest, mxerr.CodeUnknown, "Could not read the uploaded content")
	case err != nil:
		return "", 0, err
	}
	return hash, size, nil
}

// handleUpload is POST /_matrix/media/v3/upload.
func (m *Media) handleUpload(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	p, err := parseUploadParams(r)
	if err == nil {
		err = m.checkLength(r)
	}
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	hash, size, err := m.store(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	rec := &record{
		Server: m.cfg.ServerName, ID: newMediaID(), Uploader: s.UserID,
		CreatedTS:   m.now().UnixMilli(),
		ContentType: p.contentType, Filename: p.filename, Size: size, SHA256: hash,
	}
	// The file stays if this fails: other rows may share it, and an
	// unreferenced file is only wasted space.
	if _, err := m.insert(r.Context(), rec); err != nil {
		endpoint.Fail(w, err)
		return
	}
	m.log.Debug("media: uploaded", "media_id", rec.ID, "user", s.UserID, "size", size)
	endpoint.Write(w, map[string]string{"content_uri": mxc(rec.Server, rec.ID)})
}

// handleCreate is POST /_matrix/media/v1/create: an mxc:// URI whose
// content comes later through PUT /_matrix/media/v3/upload/{serverName}/{mediaId}.
func (m *Media) handleCreate(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	now := m.now().UnixMilli()
	expires := now + m.cfg.UnusedExpiry.Milliseconds()
	id := newMediaID()
	err := m.createPending(r.Context(), id, s.UserID, now, expires, m.cfg.MaxPendingUploads)
	var tm *tooManyPendingError
	if errors.As(err, &tm) {
		// "the server should limit the number of concurrent pending media
		// uploads ... respond with an HTTP 429 error with an errcode of
		// M_LIMIT_EXCEEDED" (POST /_matrix/media/v1/create).
		endpoint.Fail(w, mxerr.LimitExceeded(max(tm.FirstExpiry-now, 0)))
		return
	}
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string]any{
		"content_uri":       mxc(m.cfg.ServerName, id),
		"unused_expires_at": expires,
	})
}

// checkUploadTarget says whether user may upload to the row cur (nil: no
// such row) at nowMS, with the errors PUT /_matrix/media/v3/upload/{serverName}/{mediaId}
// lists, in the order Synapse checks them.
func checkUploadTarget(cur *record, user string, nowMS int64) error {
	switch {
	case cur == nil:
		return mxerr.NotFound("Unknown media ID")
	case cur.Uploader != user:
		return mxerr.Forbidden("You may only upload to media IDs that you created")
	case !cur.pending():
		return mxerr.New(http.StatusConflict, CodeCannotOverwrite, "Media ID already has content")
	case cur.expired(nowMS):
		return mxerr.NotFound("Media ID has expired")
	}
	return nil
}

// handleUploadTo is PUT /_matrix/media/v3/upload/{serverName}/{mediaId}.
func (m *Media) handleUploadTo(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	server, id := r.PathValue("serverName"), r.PathValue("mediaId")
	if server != m.cfg.ServerName || !validMediaID(id) {
		endpoint.Fail(w, mxerr.NotFound("Unknown media ID"))
		return
	}
	p, err := parseUploadParams(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	// Check before reading what may be a large body for nothing;
	// complete checks again under the write lock.
	cur, err := m.lookup(r.Context(), server, id)
	if err == nil {
		err = checkUploadTarget(cur, s.UserID, m.now().UnixMilli())
	}
	if err == nil {
		err = m.checkLength(r)
	}
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	hash, size, err := m.store(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	rec := &record{Server: server, ID: id, ContentType: p.contentType, Filename: p.filename, Size: size, SHA256: hash}
	if err := m.complete(r.Context(), rec, s.UserID, m.now().UnixMilli()); err != nil {
		endpoint.Fail(w, err)
		return
	}
	m.uploaded.wake(server + "/" + id)
	endpoint.Write(w, struct{}{})
}
