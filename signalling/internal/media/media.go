package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/servername"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Defaults for the zero values of Config.
const (
	// DefaultMaxUploadBytes is Synapse's default max_upload_size (50M).
	DefaultMaxUploadBytes = 50 << 20
	// DefaultMaxImagePixels is Synapse's default max_image_pixels (32M):
	// decoding such an image takes about 128 MB.
	DefaultMaxImagePixels = 32 << 20
	// DefaultMaxPendingUploads is Synapse's default
	// max_pending_media_uploads: /create IDs a user may hold unused.
	DefaultMaxPendingUploads = 5
	// DefaultUnusedExpiry is how long a /create ID waits for its upload;
	// the spec recommends 24 hours (POST /_matrix/media/v1/create).
	DefaultUnusedExpiry = 24 * time.Hour
)

// Error codes specific to the content repository (Client-Server API,
// "Content repository").
const (
	CodeCannotOverwrite = "M_CANNOT_OVERWRITE_MEDIA"
	CodeNotYetUploaded  = "M_NOT_YET_UPLOADED"
)

// Config configures the content repository.
type Config struct {
	// ServerName is our server name, the authority of the mxc:// URIs we
	// issue.
	ServerName string
	// Dir is the folder the files are kept in (created if missing).
	Dir string
	// MaxUploadBytes bounds one upload; 0 means DefaultMaxUploadBytes.
	MaxUploadBytes int64
	// MaxImagePixels bounds the width×height of an image we decode to
	// thumbnail it; 0 means DefaultMaxImagePixels.
	MaxImagePixels int64
	// MaxPendingUploads bounds the unused /create IDs per user; 0 means
	// DefaultMaxPendingUploads.
	MaxPendingUploads int
	// UnusedExpiry is the lifetime of an unused /create ID; 0 means
	// DefaultUnusedExpiry.
	UnusedExpiry time.Duration
}

// Remote fetches media held by another homeserver. Content is always
// downloaded from the client's own homeserver, "which must first transfer
// the content from the origin homeserver" (Client-Server API, "Content
// repository"): federation implements this, and the repository caches what
// it returns like a local upload.
type Remote interface {
	// Fetch returns the content of mxc://server/mediaID. A
	// *mxerr.MatrixError reaches the client unchanged; any other error is
	// a 502. The repository closes Body and stops reading it after
	// maxBytes (answering 502 M_TOO_LARGE).
	Fetch(ctx context.Context, server, mediaID string, maxBytes int64) (*RemoteMedia, error)
}

// RemoteMedia is what a Remote fetched.
type RemoteMedia struct {
	Body        io.ReadCloser
	ContentType string
	Filename    string // from the origin's Content-Disposition; "" if none
}

// Deps are the repository's dependencies.
type Deps struct {
	DB     *storage.DB
	Logger *slog.Logger     // nil discards
	Now    func() time.Time // nil means time.Now
	// Remote fetches other servers' media. Nil (until federation exists):
	// every remote mxc:// URI answers 404 M_NOT_FOUND.
	Remote Remote
}

// Media is the content repository.
type Media struct {
	cfg    Config
	db     *storage.DB
	log    *slog.Logger
	now    func() time.Time
	remote Remote
	files  *fileStore

	// uploaded wakes downloads waiting for an asynchronous upload.
	uploaded *waiters
	// thumbs bounds and de-duplicates thumbnail generation.
	thumbs *thumbnailer
}

// New returns the content repository, creating Config.Dir's folders and
// removing temporary files a previous run left behind.
func New(cfg Config, deps Deps) (*Media, error) {
	if err := servername.Check(cfg.ServerName); err != nil {
		return nil, fmt.Errorf("media: server name %q: %w", cfg.ServerName, err)
	}
	if cfg.Dir == "" {
		return nil, errors.New("media: Config.Dir is required")
	}
	if deps.DB == nil {
		return nil, errors.New("media: Deps.DB is required")
	}
	if cfg.MaxUploadBytes < 0 || cfg.MaxImagePixels < 0 || cfg.MaxPendingUploads < 0 || cfg.UnusedExpiry < 0 {
		return nil, errors.New("media: negative limit in Config")
	}
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if cfg.MaxImagePixels == 0 {
		cfg.MaxImagePixels = DefaultMaxImagePixels
	}
	if cfg.MaxPendingUploads == 0 {
		cfg.MaxPendingUploads = DefaultMaxPendingUploads
	}
	if cfg.UnusedExpiry == 0 {
		cfg.UnusedExpiry = DefaultUnusedExpiry
	}
	files, err := openFileStore(filepath.Clean(cfg.Dir))
	if err != nil {
		return nil, err
	}
	m := &Media{
		cfg:      cfg,
		db:       deps.DB,
		log:      deps.Logger,
		now:      deps.Now,
		remote:   deps.Remote,
		files:    files,
		uploaded: newWaiters(),
		// Decoding is CPU- and memory-heavy (up to 4 bytes a pixel): at
		// most one image per core at a time.
		thumbs: newThumbnailer(runtime.GOMAXPROCS(0), cfg.MaxImagePixels),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// Register adds the repository's endpoints to rt. Upload, create, config
// and the /_matrix/client/v1/media endpoints need an access token; the
// deprecated /_matrix/media/v3 download and thumbnail endpoints do not
// (Client-Server API, "Content repository": servers may freeze them, which
// we do not yet do, as Synapse still serves them).
func (m *Media) Register(rt *endpoint.Router) {
	rt.Authed("POST /_matrix/media/v3/upload", m.handleUpload)
	rt.Authed("POST /_matrix/media/v1/create", m.handleCreate)
	rt.Authed("PUT /_matrix/media/v3/upload/{serverName}/{mediaId}", m.handleUploadTo)

	rt.Authed("GET /_matrix/client/v1/media/download/{serverName}/{mediaId}", m.authed(m.handleDownload))
	rt.Authed("GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}", m.authed(m.handleDownload))
	rt.Authed("GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}", m.authed(m.handleThumbnail))
	rt.Public("GET /_matrix/media/v3/download/{serverName}/{mediaId}", m.legacy(m.handleDownload))
	rt.Public("GET /_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}", m.legacy(m.handleDownload))
	rt.Public("GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}", m.legacy(m.handleThumbnail))

	rt.Authed("GET /_matrix/client/v1/media/config", m.handleConfig)
	rt.Authed("GET /_matrix/media/v3/config", m.handleConfig)
	rt.Authed("GET /_matrix/client/v1/media/preview_url", m.handlePreview)
	rt.Authed("GET /_matrix/media/v3/preview_url", m.handlePreview)
}

// access says how a read request arrived.
type access struct {
	// authed: through /_matrix/client/v1/media, with an access token.
	authed bool
}

type readHandler func(w http.ResponseWriter, r *http.Request, a access)

func (m *Media) authed(h readHandler) endpoint.Handler {
	return func(w http.ResponseWriter, r *http.Request, _ *endpoint.Session) { h(w, r, access{authed: true}) }
}

func (m *Media) legacy(h readHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { h(w, r, access{}) }
}

// handleConfig is GET /_matrix/client/v1/media/config (and the deprecated
// /_matrix/media/v3/config).
func (m *Media) handleConfig(w http.ResponseWriter, _ *http.Request, _ *endpoint.Session) {
	endpoint.Write(w, map[string]int64{"m.upload.size": m.cfg.MaxUploadBytes})
}

// handlePreview is GET /_matrix/client/v1/media/preview_url. URL previews
// make the server fetch arbitrary URLs for clients, which needs an
// SSRF-proof fetcher (IP blacklists, size and time limits) that we do not
// have yet; until then they are off, with the answer Synapse gives when an
// operator has not allowed the IP ranges it needs.
func (m *Media) handlePreview(w http.ResponseWriter, _ *http.Request, _ *endpoint.Session) {
	endpoint.Fail(w, mxerr.Forbidden("URL previews are disabled"))
}
