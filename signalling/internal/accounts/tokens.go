package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// tokenPrefix marks Plexus access tokens, as "syt_" marks Synapse's, so
// that a leaked token is recognisable to secret scanners.
const tokenPrefix = "syt_"

// newAccessToken returns a fresh token and its digest.
func newAccessToken() (token, digest string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("accounts: token: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, tokenDigest(token), nil
}

// tokenDigest is the key access tokens are stored and cached under.
func tokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// randomString returns n characters drawn uniformly from alphabet.
func randomString(n int, alphabet string) (string, error) {
	out := make([]byte, n)
	buf := make([]byte, n*2)
	// Rejection sampling keeps the draw uniform for any alphabet size.
	limit := 256 - 256%len(alphabet)
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("accounts: random: %w", err)
		}
		for _, c := range buf {
			if int(c) >= limit {
				continue
			}
			out[i] = alphabet[int(c)%len(alphabet)]
			i++
			if i == n {
				break
			}
		}
	}
	return string(out), nil
}

// newDeviceID returns a device ID in Synapse's style: ten capital letters.
func newDeviceID() (string, error) {
	return randomString(10, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
}

// unknownToken is the answer to a token that is not, or no longer, valid:
// soft_logout false tells the client its session is gone for good
// (Client-Server API, "Soft logout").
func unknownToken() error {
	return mxerr.UnknownToken("Unknown access token").With("soft_logout", false)
}

// Authenticate resolves an access token to its session; it implements
// endpoint.Authenticator. Unknown or revoked tokens get 401 M_UNKNOWN_TOKEN.
func (a *Accounts) Authenticate(ctx context.Context, token string) (*endpoint.Session, error) {
	digest := tokenDigest(token)
	if s, ok := a.sessions.get(digest); ok {
		return &s, nil
	}
	gen := a.sessions.generation()
	var s endpoint.Session
	var deactivated bool
	err := a.db.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT t.user_id, t.device_id, u.is_admin, u.deactivated
			FROM access_tokens t JOIN users u ON u.user_id = t.user_id
			WHERE t.token_hash = ?`, digest).Scan(&s.UserID, &s.DeviceID, &s.Admin, &deactivated)
	})
	if errors.Is(err, sql.ErrNoRows) || err == nil && deactivated {
		return nil, unknownToken()
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: authenticate: %w", err)
	}
	s.TokenHash = digest
	a.sessions.put(digest, s, gen)
	return &s, nil
}

// sessionCache maps token digests to sessions. Its size is bounded; when
// full, an arbitrary entry makes room (Go's map iteration order), which is
// cheap and good enough: a miss costs one indexed read.
type sessionCache struct {
	max int

	mu sync.Mutex // guards the fields below
	// byDigest holds the cached sessions.
	byDigest map[string]endpoint.Session
	// byUser indexes byDigest's keys by user, for invalidation.
	byUser map[string]map[string]struct{}
	// gen counts invalidations: a fill that read the database before an
	// invalidation must not store what it read.
	gen uint64
}

func newSessionCache(max int) *sessionCache {
	return &sessionCache{max: max, byDigest: map[string]endpoint.Session{}, byUser: map[string]map[string]struct{}{}}
}

func (c *sessionCache) get(digest string) (endpoint.Session, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.byDigest[digest]
	return s, ok
}

func (c *sessionCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches s unless an invalidation happened since gen was read.
func (c *sessionCache) put(digest string, s endpoint.Session, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if _, ok := c.byDigest[digest]; !ok && len(c.byDigest) >= c.max {
		for d := range c.byDigest {
			c.removeLocked(d)
			break
		}
	}
	c.byDigest[digest] = s
	m := c.byUser[s.UserID]
	if m == nil {
		m = map[string]struct{}{}
		c.byUser[s.UserID] = m
	}
	m[digest] = struct{}{}
}

func (c *sessionCache) removeLocked(digest string) {
	s, ok := c.byDigest[digest]
	if !ok {
		return
	}
	delete(c.byDigest, digest)
	if m := c.byUser[s.UserID]; m != nil {
		delete(m, digest)
		if len(m) == 0 {
			delete(c.byUser, s.UserID)
		}
	}
}

// invalidate drops the user's cached sessions for which drop returns true
// (nil: all of them). Call it after the revoking transaction committed.
func (c *sessionCache) invalidate(userID string, drop func(endpoint.Session) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for d := range c.byUser[userID] {
		if drop == nil || drop(c.byDigest[d]) {
			c.removeLocked(d)
		}
	}
}

// issueToken creates the device (if new) and a fresh access token for it.
// If the device existed, its previous tokens are revoked (Client-Server
// API, "Relationship between access tokens and devices"); the caller
// invalidates the cache for the user after commit.
func (a *Accounts) issueToken(ctx context.Context, tx *storage.Tx, userID, deviceID string, displayName *string, ip string) (string, error) {
	now := a.nowMS()
	res, err := tx.Exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO NOTHING`,
		userID, deviceID, displayName, now, now, ip)
	if err != nil {
		return "", fmt.Errorf("accounts: insert device: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?`, userID, deviceID); err != nil {
			return "", fmt.Errorf("accounts: revoke device tokens: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE devices SET last_seen_ts = ?, last_seen_ip = ? WHERE user_id = ? AND device_id = ?`,
			now, ip, userID, deviceID); err != nil {
			return "", fmt.Errorf("accounts: update device: %w", err)
		}
	}
	token, digest, err := newAccessToken()
	if err != nil {
		return "", err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)`,
		digest, userID, deviceID, now); err != nil {
		return "", fmt.Errorf("accounts: insert token: %w", err)
	}
	return token, nil
}

// deleteDevicesTx deletes the user's devices (all of them when all is set,
// else those listed) with their tokens, and returns the IDs that existed.
func deleteDevicesTx(ctx context.Context, tx *storage.Tx, userID string, ids []string, all bool) ([]string, error) {
	if all {
		var err error
		if ids, err = tx.Strings(ctx, `SELECT device_id FROM devices WHERE user_id = ? ORDER BY device_id`, userID); err != nil {
			return nil, fmt.Errorf("accounts: list devices: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE user_id = ?`, userID); err != nil {
			return nil, fmt.Errorf("accounts: revoke tokens: %w", err)
		}
	}
	var deleted []string
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?`, userID, id); err != nil {
			return nil, fmt.Errorf("accounts: revoke tokens: %w", err)
		}
		res, err := tx.Exec(ctx, `DELETE FROM devices WHERE user_id = ? AND device_id = ?`, userID, id)
		if err != nil {
			return nil, fmt.Errorf("accounts: delete device: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			deleted = append(deleted, id)
		}
	}
	return deleted, nil
}

// deleteDevices deletes devices and their tokens, then invalidates the
// cache and runs the OnDeviceDeleted hook for each device that existed.
func (a *Accounts) deleteDevices(ctx context.Context, userID string, ids []string, all bool) error {
	var deleted []string
	err := a.db.Update(ctx, func(tx *storage.Tx) error {
		var err error
		deleted, err = deleteDevicesTx(ctx, tx, userID, ids, all)
		return err
	})
	if err != nil {
		return err
	}
	a.afterDevicesDeleted(ctx, userID, deleted, all)
	return nil
}

// afterDevicesDeleted invalidates cached sessions of the deleted devices
// (every session of the user when all is set) and runs the hook.
func (a *Accounts) afterDevicesDeleted(ctx context.Context, userID string, deleted []string, all bool) {
	gone := make(map[string]bool, len(deleted))
	for _, d := range deleted {
		gone[d] = true
	}
	a.sessions.invalidate(userID, func(s endpoint.Session) bool { return all || gone[s.DeviceID] })
	if a.onDeviceDeleted != nil {
		for _, d := range deleted {
			a.onDeviceDeleted(ctx, userID, d)
		}
	}
}
