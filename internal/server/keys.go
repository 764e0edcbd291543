package server

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
)

// DefaultKeyValidity is how far into the future valid_until_ts points when
// KeysConfig.Validity is zero.
//
// One day, as Synapse's default key_refresh_interval. The spec (Server
// Keys, valid_until_ts) has receivers cap validity at 7 days; notaries
// cache a response for half its lifetime and originating servers "should
// avoid returning responses that expire in less than an hour". A day keeps
// key fetches rare while a rotated or compromised key stops being trusted
// within a day of our dropping it. The response is signed afresh on every
// request, so it is always valid a full day from when it was fetched.
const DefaultKeyValidity = 24 * time.Hour

// SigningKey is what Keys needs from the keyring.
type SigningKey interface {
	KeyID() string
	PublicKey() ed25519.PublicKey
	PrivateKey() ed25519.PrivateKey
}

// KeysConfig configures Keys.
type KeysConfig struct {
	// ServerName is this server's name: the response's server_name and
	// the entity that signs it.
	ServerName string
	// Validity is how long a response stays valid; zero means
	// DefaultKeyValidity.
	Validity time.Duration
}

// KeysDeps are Keys's dependencies.
type KeysDeps struct {
	Key SigningKey
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Keys serves GET /_matrix/key/v2/server (Server-Server API, "Publishing
// Keys"): this server's verify keys, self-signed.
//
// TODO(federation): move into the federation package with old_verify_keys
// from key rotation.
type Keys struct {
	serverName string
	validity   time.Duration
	key        SigningKey
	now        func() time.Time
}

// NewKeys returns the key publishing endpoint.
func NewKeys(cfg KeysConfig, deps KeysDeps) (*Keys, error) {
	if cfg.ServerName == "" {
		return nil, errors.New("server: keys: server name not set")
	}
	if deps.Key == nil {
		return nil, errors.New("server: keys: signing key not set")
	}
	if cfg.Validity == 0 {
		cfg.Validity = DefaultKeyValidity
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Keys{serverName: cfg.ServerName, validity: cfg.Validity, key: deps.Key, now: deps.Now}, nil
}

// Register adds the endpoint to r. Early revisions of the Server-Server API
// had a deprecated trailing {keyId} segment that servers ignore; it is gone
// from the spec, but Synapse still answers it and old servers may still ask
// for it, so it gets the same answer.
func (k *Keys) Register(r Router) {
	r.Handle("GET /_matrix/key/v2/server", k)
	r.Handle("GET /_matrix/key/v2/server/{keyID}", k)
}

// ServeHTTP implements http.Handler.
func (k *Keys) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	body, err := k.Response()
	if err != nil {
		WriteError(w, err)
		return
	}
	WriteRawJSON(w, http.StatusOK, body)
}

// Response returns the signed key response in canonical JSON.
func (k *Keys) Response() ([]byte, error) {
	keyID := k.key.KeyID()
	obj, err := cjson.FromGo(map[string]any{
		"server_name": k.serverName,
		"verify_keys": map[string]any{
			keyID: map[string]any{"key": base64.RawStdEncoding.EncodeToString(k.key.PublicKey())},
		},
		"old_verify_keys": map[string]any{},
		"valid_until_ts":  k.now().Add(k.validity).UnixMilli(),
	})
	if err != nil {
		return nil, fmt.Errorf("server: keys: %w", err)
	}
	signed, err := signing.Sign(obj, k.serverName, keyID, k.key.PrivateKey())
	if err != nil {
		return nil, fmt.Errorf("server: keys: %w", err)
	}
	return cjson.Marshal(signed), nil
}
