package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"

	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/fedlocal"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/servername"
)

// maxMediaMetadata bounds the JSON part of a media answer ("Currently,
// this will always be an empty object").
const maxMediaMetadata = 64 << 10

// FetchMedia downloads the media mxc://server/mediaID from its origin
// server for our clients, or a thumbnail of it when thumb is set
// (Server-Server API, "Content Repository": servers "MUST download the
// media from ServerName"). It asks GET /_matrix/federation/v1/media/
// download/{mediaId} (or /thumbnail/{mediaId}), signed, reads the
// multipart/mixed answer and follows a Location part without
// authentication; an origin answering 404 M_UNRECOGNIZED (older software)
// is asked the deprecated /_matrix/media/v3 endpoint with
// allow_remote=false, as the spec requires of the fallback.
//
// The returned Body yields at most maxBytes+1 bytes, so a caller reading
// maxBytes+1 learns the content is too large; an answer announcing more
// than that fails early with 502 M_TOO_LARGE. The caller closes Body.
// The origin's 404 is 404 M_NOT_FOUND, and its 504 M_NOT_YET_UPLOADED
// and M_TOO_LARGE pass through as *mxerr.MatrixError; anything else
// (unreachable, malformed answer) is a plain error.
func (f *Federation) FetchMedia(ctx context.Context, server, mediaID string, thumb *fedlocal.ThumbnailSize, maxBytes int64) (*fedlocal.MediaFile, error) {
	if server == f.cfg.ServerName || servername.Check(server) != nil || !validMediaID(mediaID) {
		return nil, mxerr.NotFound("Media not found")
	}
	if maxBytes <= 0 {
		return nil, errors.New("federation: FetchMedia needs a positive maxBytes")
	}
	path := "/_matrix/federation/v1/media/download/" + mediaID
	if thumb != nil {
		path = "/_matrix/federation/v1/media/thumbnail/" + mediaID + "?" + thumbQuery(thumb).Encode()
	}
	res, err := f.client.DoRaw(ctx, server, http.MethodGet, path, nil)
	var re *transport.RemoteError
	if errors.As(err, &re) && re.Status == http.StatusNotFound && re.ErrCode == mxerr.CodeUnrecognized {
		return f.fetchLegacyMedia(ctx, server, mediaID, thumb, maxBytes)
	}
	if err != nil {
		return nil, mediaError(err)
	}
	if tooLong(res, maxBytes+2*maxMediaMetadata) {
		res.Body.Close()
		return nil, errRemoteTooLarge
	}
	file, location, err := readMultipart(res, maxBytes)
	if err != nil {
		res.Body.Close()
		return nil, fmt.Errorf("federation: media %s/%s: %w", server, mediaID, err)
	}
	if location == "" {
		return file, nil
	}
	// "The URL at Location SHOULD have appropriate Content-Type and
	// Content-Disposition headers"; it is not ours to cache, and we never
	// send it our signature.
	res.Body.Close()
	loc, err := f.client.GetURL(ctx, location)
	if err != nil {
		return nil, mediaError(err)
	}
	return plainMedia(loc, maxBytes)
}

// fetchLegacyMedia asks an origin without the federation media endpoints
// for its deprecated client endpoint, where the content is the body.
func (f *Federation) fetchLegacyMedia(ctx context.Context, server, mediaID string, thumb *fedlocal.ThumbnailSize, maxBytes int64) (*fedlocal.MediaFile, error) {
	q := url.Values{}
	kind := "download"
	if thumb != nil {
		q, kind = thumbQuery(thumb), "thumbnail"
	}
	// "When falling back, servers MUST be sure to set allow_remote to
	// false" (no routing loops through a third server).
	q.Set("allow_remote", "false")
	path := "/_matrix/media/v3/" + kind + "/" + url.PathEscape(server) + "/" + mediaID + "?" + q.Encode()
	res, err := f.client.DoRaw(ctx, server, http.MethodGet, path, nil)
	if err != nil {
		return nil, mediaError(err)
	}
	return plainMedia(res, maxBytes)
}

func thumbQuery(t *fedlocal.ThumbnailSize) url.Values {
	q := url.Values{"width": {strconv.Itoa(t.Width)}, "height": {strconv.Itoa(t.Height)}, "method": {"scale"}}
	if t.Crop {
		q.Set("method", "crop")
	}
	if t.Animated {
		q.Set("animated", "true")
	}
	return q
}

// errRemoteTooLarge is the Client-Server API's answer for remote content
// over our limit ("Content repository", "Security considerations").
var errRemoteTooLarge = mxerr.New(http.StatusBadGateway, mxerr.CodeTooLarge, "Content is too large to serve")

// tooLong reports whether res announces a body longer than limit.
func tooLong(res *http.Response, limit int64) bool { return res.ContentLength > limit }

// plainMedia is an answer whose body is the content.
func plainMedia(res *http.Response, maxBytes int64) (*fedlocal.MediaFile, error) {
	if tooLong(res, maxBytes) {
		res.Body.Close()
		return nil, errRemoteTooLarge
	}
	return &fedlocal.MediaFile{
		Body:        limitBody(res.Body, res.Body, maxBytes),
		ContentType: contentTypeOr(res.Header.Get("Content-Type")),
		Disposition: res.Header.Get("Content-Disposition"),
	}, nil
}

// readMultipart reads the multipart/mixed answer of the federation media
// endpoints: a JSON metadata part, then either the content (returned,
// reading from res.Body) or a Location to fetch it from.
func readMultipart(res *http.Response, maxBytes int64) (file *fedlocal.MediaFile, location string, err error) {
	mt, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, "", fmt.Errorf("answer is %q, not multipart/mixed with a boundary", res.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(res.Body, params["boundary"])
	// Raw parts: the bytes are the content, whatever transfer encoding a
	// part might claim.
	meta, err := mr.NextRawPart()
	if err != nil {
		return nil, "", fmt.Errorf("metadata part: %w", err)
	}
	if mt, _, err := mime.ParseMediaType(meta.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, "", fmt.Errorf("metadata part is %q, not application/json", meta.Header.Get("Content-Type"))
	}
	b, err := io.ReadAll(io.LimitReader(meta, maxMediaMetadata+1))
	if err != nil {
		return nil, "", fmt.Errorf("metadata part: %w", err)
	}
	var obj map[string]json.RawMessage
	if len(b) > maxMediaMetadata || json.Unmarshal(b, &obj) != nil || obj == nil {
		return nil, "", errors.New("metadata part is not a JSON object")
	}
	content, err := mr.NextRawPart()
	if err != nil {
		return nil, "", fmt.Errorf("content part: %w", err)
	}
	if loc := content.Header.Get("Location"); loc != "" {
		return nil, loc, nil
	}
	return &fedlocal.MediaFile{
		Body:        limitBody(content, res.Body, maxBytes),
		ContentType: contentTypeOr(content.Header.Get("Content-Type")),
		Disposition: content.Header.Get("Content-Disposition"),
	}, "", nil
}

func contentTypeOr(ct string) string {
	if ct == "" {
		return "application/octet-stream"
	}
	return ct
}

// limitBody reads at most maxBytes+1 bytes of r and closes c.
func limitBody(r io.Reader, c io.Closer, maxBytes int64) io.ReadCloser {
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(r, maxBytes+1), c}
}

// mediaError maps a failed media request to what our client sees.
func mediaError(err error) error {
	var re *transport.RemoteError
	if !errors.As(err, &re) {
		return err
	}
	switch {
	case re.Status == http.StatusNotFound:
		return mxerr.NotFound("Media not found on its server")
	case re.ErrCode == mxerr.CodeTooLarge:
		return errRemoteTooLarge
	case re.Status == http.StatusGatewayTimeout && re.ErrCode == "M_NOT_YET_UPLOADED":
		return mxerr.New(re.Status, re.ErrCode, "Content has not yet been uploaded")
	case re.Status == http.StatusBadRequest && re.ErrCode != "":
		// A thumbnail the origin cannot make (Server-Server API, GET
		// /media/thumbnail: 400).
		return mxerr.New(re.Status, re.ErrCode, re.Message)
	}
	return err
}

// validMediaID: media IDs are [A-Za-z0-9_-] (Client-Server API, "Content
// repository", "Security considerations"), so one is a path segment as
// it is.
func validMediaID(id string) bool {
	if id == "" || len(id) > 255 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
