package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
)

// maxUserIDLen is the limit on a whole user ID (Appendices, "User
// Identifiers": "The length of a user ID, including the @ sigil and the
// domain, MUST NOT exceed 255 bytes").
const maxUserIDLen = 255

// errUserInUse is M_USER_IN_USE (Client-Server API, POST /register).
func errUserInUse() *mxerr.MatrixError {
	return mxerr.New(http.StatusBadRequest, mxerr.CodeUserInUse, "User ID already taken.")
}

func invalidUsername(msg string) *mxerr.MatrixError {
	return mxerr.New(http.StatusBadRequest, mxerr.CodeInvalidUsername, msg)
}

// checkLocalpart validates a new user's localpart, already lower-cased,
// against the user ID grammar (Appendices, "User Identifiers":
// a-z 0-9 - . = _ / +), with Synapse's extra rule that localparts starting
// with '_' are reserved (for application services).
func (a *Accounts) checkLocalpart(localpart string) error {
	if localpart == "" {
		return invalidUsername("User ID cannot be empty")
	}
	for i := 0; i < len(localpart); i++ {
		c := localpart[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-.=_/+", c) >= 0) {
			return invalidUsername("User ID can only contain characters a-z, 0-9, or '=_-./+'")
		}
	}
	if localpart[0] == '_' {
		return invalidUsername("User ID may not begin with '_'")
	}
	if len(a.userID(localpart)) > maxUserIDLen {
		return invalidUsername(fmt.Sprintf("User ID may not be longer than %d characters", maxUserIDLen))
	}
	return nil
}

// userID is the local user ID of localpart.
func (a *Accounts) userID(localpart string) string {
	return "@" + localpart + ":" + a.cfg.ServerName
}

// localpart returns the localpart of a local user ID.
func (a *Accounts) localpart(userID string) (string, bool) {
	rest, ok := strings.CutPrefix(userID, "@")
	if !ok {
		return "", false
	}
	local, server, ok := strings.Cut(rest, ":")
	if !ok || server != a.cfg.ServerName {
		return "", false
	}
	return local, true
}

// insertUser creates the user row. The display name starts as the
// localpart, as Synapse's does.
func (a *Accounts) insertUser(ctx context.Context, tx *storage.Tx, userID, passwordHash string, admin bool, displayName string) error {
	res, err := tx.Exec(ctx, `INSERT INTO users (user_id, password_hash, is_admin, created_ts, displayname)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING`,
		userID, passwordHash, admin, a.nowMS(), displayName)
	if err != nil {
		return fmt.Errorf("accounts: insert user: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("accounts: insert user: %w", err)
	} else if n == 0 {
		return errUserInUse()
	}
	return nil
}

// CreateUser creates a local account. localpart is lower-cased, then must
// follow the user ID grammar (400 M_INVALID_USERNAME) and be free
// (400 M_USER_IN_USE); both errors are *mxerr.MatrixError. An empty
// password makes an account that cannot log in with a password.
func (a *Accounts) CreateUser(ctx context.Context, localpart, password string, admin bool) (string, error) {
	localpart = strings.ToLower(localpart)
	if err := a.checkLocalpart(localpart); err != nil {
		return "", err
	}
	if len(password) > maxPasswordLen {
		return "", mxerr.InvalidParam("Password too long")
	}
	hash := ""
	if password != "" {
		var err error
		if hash, err = hashPassword(password); err != nil {
			return "", err
		}
	}
	userID := a.userID(localpart)
	err := a.db.Update(ctx, func(tx *storage.Tx) error {
		return a.insertUser(ctx, tx, userID, hash, admin, localpart)
	})
	if err != nil {
		return "", err
	}
	return userID, nil
}

// UserExists reports whether userID is a local account (deactivated ones
// included: their IDs stay taken).
func (a *Accounts) UserExists(ctx context.Context, userID string) (bool, error) {
	var n int
	err := a.db.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT COUNT(*) FROM users WHERE user_id = ?`, userID).Scan(&n)
	})
	if err != nil {
		return false, fmt.Errorf("accounts: user exists: %w", err)
	}
	return n > 0, nil
}

// DeviceIDs lists the user's devices, sorted.
func (a *Accounts) DeviceIDs(ctx context.Context, userID string) ([]string, error) {
	var ids []string
	err := a.db.View(ctx, func(tx *storage.Tx) error {
		var err error
		ids, err = tx.Strings(ctx, `SELECT device_id FROM devices WHERE user_id = ? ORDER BY device_id`, userID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("accounts: device IDs: %w", err)
	}
	return ids, nil
}

// userRow is what login needs of a user.
type userRow struct {
	passwordHash string
	deactivated  bool
	admin        bool
}

// lookupUser reads a user; ok is false if there is none.
func lookupUser(ctx context.Context, tx *storage.Tx, userID string) (u userRow, ok bool, err error) {
	err = tx.QueryRow(ctx, `SELECT password_hash, deactivated, is_admin FROM users WHERE user_id = ?`, userID).
		Scan(&u.passwordHash, &u.deactivated, &u.admin)
	if errors.Is(err, sql.ErrNoRows) {
		return userRow{}, false, nil
	}
	if err != nil {
		return userRow{}, false, fmt.Errorf("accounts: read user: %w", err)
	}
	return u, true, nil
}
