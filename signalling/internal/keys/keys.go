package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// Error codes specific to this module's endpoints.
const (
	// CodeInvalidSignature: a signature does not verify (cross-signing
	// upload, signatures upload failures).
	CodeInvalidSignature = "M_INVALID_SIGNATURE"
	// CodeWrongRoomKeysVersion: a backup write names a version that is not
	// the current one (Server-side key backups); the body carries
	// current_version.
	CodeWrongRoomKeysVersion = "M_WRONG_ROOM_KEYS_VERSION"
)

// Config is the static configuration.
type Config struct {
	// ServerName is this homeserver's name: users on it are local.
	ServerName string
}

// Deps are the collaborators.
type Deps struct {
	DB *storage.DB
	// Hub wakes /sync waiters; nil uses a private Hub nobody listens to.
	Hub    *stream.Hub
	Logger *slog.Logger
	Now    func() time.Time
	// CheckPassword verifies a user's password for the user-interactive
	// authentication that replacing cross-signing keys needs. It returns
	// nil for the right password. Nil refuses every replacement.
	CheckPassword func(ctx context.Context, userID, password string) error
	// SharedUsers lists the users who share a room with userID, userID
	// included. Nil means only userID.
	SharedUsers func(ctx context.Context, userID string) ([]string, error)
	// KnownDevices lists a local user's device IDs (for "*" in
	// sendToDevice and for /keys/query). Nil trusts the key tables alone.
	KnownDevices func(ctx context.Context, userID string) ([]string, error)
	// Remote, if set, reaches other servers: their users' keys, and our
	// users' device list updates and to-device messages (edu.go).
	Remote Remote
}

// Keys serves the end-to-end encryption and send-to-device endpoints.
type Keys struct {
	cfg  Config
	db   *storage.DB
	hub  *stream.Hub
	log  *slog.Logger
	now  func() time.Time
	deps Deps
	// counts caches one-time key counts and fallback key types for /sync.
	counts *keyCounts
	// outboxMu serialises FlushOutbox, so no message is queued twice by
	// two flushes at once.
	outboxMu sync.Mutex
}

// New returns a Keys.
func New(cfg Config, deps Deps) (*Keys, error) {
	if cfg.ServerName == "" {
		return nil, errors.New("keys: Config.ServerName is required")
	}
	if deps.DB == nil {
		return nil, errors.New("keys: Deps.DB is required")
	}
	k := &Keys{cfg: cfg, db: deps.DB, hub: deps.Hub, log: deps.Logger, now: deps.Now, deps: deps, counts: newKeyCounts()}
	if k.hub == nil {
		k.hub = stream.NewHub()
	}
	if k.log == nil {
		k.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if k.now == nil {
		k.now = time.Now
	}
	return k, nil
}

const v3 = "/_matrix/client/v3"

// Register adds the endpoints to rt.
func (k *Keys) Register(rt *endpoint.Router) {
	rt.Authed("POST "+v3+"/keys/upload", k.handleUpload)
	rt.Authed("POST "+v3+"/keys/query", k.handleQuery)
	rt.Authed("POST "+v3+"/keys/claim", k.handleClaim)
	rt.Authed("GET "+v3+"/keys/changes", k.handleChanges)
	rt.Authed("POST "+v3+"/keys/device_signing/upload", k.handleDeviceSigningUpload)
	rt.Authed("POST "+v3+"/keys/signatures/upload", k.handleSignaturesUpload)

	rt.Authed("POST "+v3+"/room_keys/version", k.handleCreateBackup)
	rt.Authed("GET "+v3+"/room_keys/version", k.handleGetBackup)
	rt.Authed("GET "+v3+"/room_keys/version/{version}", k.handleGetBackup)
	rt.Authed("PUT "+v3+"/room_keys/version/{version}", k.handleUpdateBackup)
	rt.Authed("DELETE "+v3+"/room_keys/version/{version}", k.handleDeleteBackup)
	for _, p := range []string{"/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"} {
		rt.Authed("GET "+v3+p, k.handleGetBackupKeys)
		rt.Authed("PUT "+v3+p, k.handlePutBackupKeys)
		rt.Authed("DELETE "+v3+p, k.handleDeleteBackupKeys)
	}

	rt.Authed("PUT "+v3+"/sendToDevice/{eventType}/{txnId}", k.handleSendToDevice)
}

// serverOf returns the server name of a user ID, or "" if userID is not
// of the form @localpart:server (appendices, "User Identifiers").
func serverOf(userID string) string {
	if len(userID) < 4 || userID[0] != '@' {
		return ""
	}
	_, srv, ok := strings.Cut(userID[1:], ":")
	if !ok || srv == "" || userID[1] == ':' {
		return ""
	}
	return srv
}

func (k *Keys) isLocal(userID string) bool { return serverOf(userID) == k.cfg.ServerName }

// writeJSON answers 200 with v, leaving '<', '>' and '&' unescaped so that
// raw values pass through as stored.
func writeJSON(w http.ResponseWriter, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		endpoint.Fail(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, bytes.TrimRight(b.Bytes(), "\n"))
}

// knownDevices returns the user's devices as a set, or nil when
// Deps.KnownDevices is nil.
func (k *Keys) knownDevices(ctx context.Context, userID string) (map[string]bool, error) {
	if k.deps.KnownDevices == nil {
		return nil, nil
	}
	ids, err := k.deps.KnownDevices(ctx, userID)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set, nil
}

// sharedUsers returns the users sharing a room with userID, userID
// included.
func (k *Keys) sharedUsers(ctx context.Context, userID string) ([]string, error) {
	if k.deps.SharedUsers == nil {
		return []string{userID}, nil
	}
	users, err := k.deps.SharedUsers(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		if u == userID {
			return users, nil
		}
	}
	return append(users, userID), nil
}

// wakeSharing wakes every local user who shares a room with one of
// owners, after their device lists changed. Failing to list them only
// delays delivery to the next wake-up, so it is logged, not returned.
func (k *Keys) wakeSharing(ctx context.Context, owners ...string) {
	for _, o := range owners {
		users, err := k.sharedUsers(ctx, o)
		if err != nil {
			k.log.Warn("keys: listing users to wake", "user", o, "err", err)
			users = []string{o}
		}
		k.hub.Wake(users...)
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for key := range m {
		out = append(out, key)
	}
	sort.Strings(out)
	return out
}

// isObject reports whether raw is a JSON object.
func isObject(raw []byte) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '{'
}

// badJSON is M_BAD_JSON with a formatted message.
func badJSON(format string, args ...any) *mxerr.MatrixError {
	return mxerr.Newf(http.StatusBadRequest, mxerr.CodeBadJSON, format, args...)
}
