package media

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
)

// LocalFile is our media (or a thumbnail of it) opened for another
// server (Server-Server API, "Content Repository").
type LocalFile struct {
	Body        io.ReadCloser
	ContentType string
	Disposition string
}

// Thumbnail is the size a thumbnail request asks for.
type Thumbnail struct {
	Width, Height  int
	Crop, Animated bool
}

// OpenLocal opens our media mediaID, or its thumbnail when thumb is set,
// waiting up to wait for a pending asynchronous upload. The errors are
// those of the client endpoints: 404 M_NOT_FOUND, 504
// M_NOT_YET_UPLOADED, 400 for content that cannot be thumbnailed and 413
// for an image too large to decode. The caller closes Body.
func (m *Media) OpenLocal(ctx context.Context, mediaID string, wait time.Duration, thumb *Thumbnail) (*LocalFile, error) {
	if !validMediaID(mediaID) {
		return nil, notFound()
	}
	rec, err := m.waitLocal(ctx, m.cfg.ServerName, mediaID, wait)
	if err != nil {
		return nil, err
	}
	path := m.files.contentPath(rec.SHA256)
	ct, disposition := servedContentType(rec.ContentType), contentDisposition(rec.ContentType, rec.Filename)
	if thumb != nil {
		if thumb.Width <= 0 || thumb.Height <= 0 {
			return nil, mxerr.InvalidParam("width and height must be positive")
		}
		cannot := mxerr.New(http.StatusBadRequest, mxerr.CodeUnknown, "Cannot generate thumbnails for the requested content")
		if !thumbnailTypes[baseType(rec.ContentType)] {
			return nil, cannot
		}
		tf, err := m.thumbnail(ctx, rec, thumbRequest{
			w: roundUpSize(thumb.Width), h: roundUpSize(thumb.Height), crop: thumb.Crop, animated: thumb.Animated,
		})
		switch {
		case errors.Is(err, errUnthumbnailable):
			return nil, cannot
		case errors.Is(err, errTooManyPixels):
			return nil, mxerr.New(http.StatusRequestEntityTooLarge, mxerr.CodeTooLarge, "Content is too large to thumbnail")
		case err != nil:
			return nil, err
		}
		path, ct, disposition = tf.path, tf.contentType, "inline"
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		m.log.Error("media: file missing", "media_id", rec.ID, "path", path)
		return nil, notFound()
	}
	if err != nil {
		return nil, err
	}
	return &LocalFile{Body: f, ContentType: ct, Disposition: disposition}, nil
}
