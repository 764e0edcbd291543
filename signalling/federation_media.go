package signalling

import (
	"context"
	"mime"

	"github.com/plexus-chat/plexus/signalling/internal/media"
)

// mediaRemote is federation as the content repository sees it; nil
// without federation, which leaves other servers' media 404.
func mediaRemote(f Federation) media.Remote {
	if f == nil {
		return nil
	}
	return fedMedia{f}
}

// fedMedia fetches other servers' media through federation; the
// repository caches what it returns.
type fedMedia struct{ f Federation }

func (m fedMedia) Fetch(ctx context.Context, server, mediaID string, maxBytes int64) (*media.RemoteMedia, error) {
	file, err := m.f.FetchMedia(ctx, server, mediaID, nil, maxBytes)
	if err != nil {
		return nil, err
	}
	return &media.RemoteMedia{Body: file.Body, ContentType: file.ContentType, Filename: dispositionFilename(file.Disposition)}, nil
}

// dispositionFilename is the filename of a Content-Disposition header,
// "" if it names none or does not parse; RFC 6266's filename* form is
// decoded.
func dispositionFilename(d string) string {
	if d == "" {
		return ""
	}
	_, params, err := mime.ParseMediaType(d)
	if err != nil {
		return ""
	}
	return params["filename"]
}
