package rtcauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
)

// OpenID tokens (Client-Server API, "OpenID"): a user asks for one and
// hands it to a third party, which exchanges it for the user's ID at
// GET /_matrix/federation/v1/openid/userinfo.
const (
	// OpenIDLifetime is the tokens' expires_in; Synapse's is an hour too.
	OpenIDLifetime = time.Hour
	// maxOpenIDPerUser bounds the live tokens of one user; asking for
	// more retires the oldest.
	maxOpenIDPerUser = 20
)

// OpenIDStore keeps OpenID tokens in the database (table openid_tokens)
// as SHA-256 digests, so that they survive a restart.
type OpenIDStore struct {
	db  *storage.DB
	now func() time.Time
}

// NewOpenIDStore returns a store on db; now is the clock (time.Now if
// nil).
func NewOpenIDStore(db *storage.DB, now func() time.Time) *OpenIDStore {
	if now == nil {
		now = time.Now
	}
	return &OpenIDStore{db: db, now: now}
}

func digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Issue makes a token for userID, valid for OpenIDLifetime. Expired
// tokens (anyone's) are deleted on the way.
func (o *OpenIDStore) Issue(ctx context.Context, userID string) (string, error) {
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand never fails (Go 1.24+)
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	now := o.now().UnixMilli()
	err := o.db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM openid_tokens WHERE expires_ts <= ?`, now); err != nil {
			return err
		}
		var live int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM openid_tokens WHERE user_id = ?`, userID).Scan(&live); err != nil {
			return err
		}
		if over := live - maxOpenIDPerUser + 1; over > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM openid_tokens WHERE token_hash IN
				(SELECT token_hash FROM openid_tokens WHERE user_id = ? ORDER BY expires_ts LIMIT ?)`, userID, over); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)`,
			digest(tok), userID, now+OpenIDLifetime.Milliseconds())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("rtcauth: issue OpenID token: %w", err)
	}
	return tok, nil
}

// User returns the owner of a live token, or 401 M_UNKNOWN_TOKEN (the
// answer of GET /openid/userinfo for an unknown or expired token).
func (o *OpenIDStore) User(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", mxerr.UnknownToken("Access token unknown or expired")
	}
	var userID string
	var expires int64
	err := o.db.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT user_id, expires_ts FROM openid_tokens WHERE token_hash = ?`, digest(token)).
			Scan(&userID, &expires)
	})
	if errors.Is(err, sql.ErrNoRows) || err == nil && o.now().UnixMilli() >= expires {
		return "", mxerr.UnknownToken("Access token unknown or expired")
	}
	if err != nil {
		return "", fmt.Errorf("rtcauth: look up OpenID token: %w", err)
	}
	return userID, nil
}
