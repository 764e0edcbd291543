package accounts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Profile limits (Client-Server API, PUT /profile/{userId}/{keyName}: the
// whole profile under 64 KiB, keys at most 255 bytes) and Synapse's
// per-field limits.
const (
	maxProfileSize      = 64 << 10
	maxProfileKeyLen    = 255
	maxDisplayNameLen   = 256  // MAX_DISPLAYNAME_LEN
	maxAvatarURLLen     = 1000 // MAX_AVATAR_URL_LEN
	fieldDisplayName    = "displayname"
	fieldAvatarURL      = "avatar_url"
	codeProfileTooLarge = "M_PROFILE_TOO_LARGE"
	codeKeyTooLarge     = "M_KEY_TOO_LARGE"
)

// profileKey is the keyName grammar of the spec's OpenAPI: the two
// historical keys, m.tz, or a namespaced custom key.
var profileKey = regexp.MustCompile(`^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$`)

// ErrUnknownUser is returned by Profile for a user that is not a local
// account; it answers 404 M_NOT_FOUND.
var ErrUnknownUser = mxerr.NotFound("Profile not found")

// Profile returns a local user's display name and avatar URL ("" when
// unset), or ErrUnknownUser.
func (a *Accounts) Profile(ctx context.Context, userID string) (displayname, avatarURL string, err error) {
	var dn, av sql.NullString
	err = a.db.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT displayname, avatar_url FROM users WHERE user_id = ?`, userID).Scan(&dn, &av)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrUnknownUser
	}
	if err != nil {
		return "", "", fmt.Errorf("accounts: read profile: %w", err)
	}
	return dn.String, av.String, nil
}

// readProfile reads every field of a user's profile.
func readProfile(ctx context.Context, tx *storage.Tx, userID string) (map[string]json.RawMessage, error) {
	var dn, av sql.NullString
	err := tx.QueryRow(ctx, `SELECT displayname, avatar_url FROM users WHERE user_id = ?`, userID).Scan(&dn, &av)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrUnknownUser
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: read profile: %w", err)
	}
	p := map[string]json.RawMessage{}
	if dn.Valid {
		p[fieldDisplayName], _ = json.Marshal(dn.String)
	}
	if av.Valid {
		p[fieldAvatarURL], _ = json.Marshal(av.String)
	}
	rows, err := tx.Query(ctx, `SELECT field, value FROM profile_fields WHERE user_id = ?`, userID)
	if err != nil {
		return nil, fmt.Errorf("accounts: read profile: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("accounts: read profile: %w", err)
		}
		p[k] = json.RawMessage(v)
	}
	return p, rows.Err()
}

func (a *Accounts) profile(ctx context.Context, userID string) (map[string]json.RawMessage, error) {
	var p map[string]json.RawMessage
	err := a.db.View(ctx, func(tx *storage.Tx) error {
		var err error
		p, err = readProfile(ctx, tx, userID)
		return err
	})
	return p, err
}

// anyProfile is the profile of a local user, or of a user on another
// server through RemoteProfile (server-server API, "Querying for
// information", query/profile).
func (a *Accounts) anyProfile(ctx context.Context, userID string) (map[string]json.RawMessage, error) {
	if a.remoteProfile != nil && !strings.HasSuffix(userID, ":"+a.cfg.ServerName) {
		return a.remoteProfile(ctx, userID)
	}
	return a.profile(ctx, userID)
}

// handleGetProfile is GET /profile/{userId}. Profiles of local users are
// public, as Synapse's are by default; those of users on other servers
// are fetched over federation when there is federation, else 404.
func (a *Accounts) handleGetProfile(w http.ResponseWriter, r *http.Request) {
	p, err := a.anyProfile(r.Context(), r.PathValue("userId"))
	if err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, p)
}

// handleGetProfileField is GET /profile/{userId}/{keyName}.
func (a *Accounts) handleGetProfileField(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("keyName")
	p, err := a.anyProfile(r.Context(), r.PathValue("userId"))
	if err != nil {
		fail(w, err)
		return
	}
	v, ok := p[key]
	if !ok {
		fail(w, mxerr.NotFound("Profile field not found"))
		return
	}
	endpoint.Write(w, map[string]json.RawMessage{key: v})
}

// checkProfileWrite checks that s may change userId's field keyName.
func checkProfileWrite(r *http.Request, s *endpoint.Session) (string, error) {
	if r.PathValue("userId") != s.UserID {
		return "", mxerr.Forbidden("Cannot change another user's profile")
	}
	key := r.PathValue("keyName")
	if len(key) > maxProfileKeyLen {
		return "", mxerr.New(http.StatusBadRequest, codeKeyTooLarge, fmt.Sprintf("Profile keys may be at most %d bytes", maxProfileKeyLen))
	}
	if !profileKey.MatchString(key) {
		return "", mxerr.InvalidParam("Invalid profile key")
	}
	return key, nil
}

// checkProfileValue validates the value of a field with a defined format;
// for displayname and avatar_url it returns the column value (nil clears
// it, as an empty string does in Synapse).
func checkProfileValue(key string, v json.RawMessage) (*string, error) {
	var limit int
	switch key {
	case fieldDisplayName:
		limit = maxDisplayNameLen
	case fieldAvatarURL:
		limit = maxAvatarURLLen
	case "m.tz":
		var s string
		if json.Unmarshal(v, &s) != nil {
			return nil, mxerr.InvalidParam("m.tz must be a string")
		}
		return nil, nil
	default:
		return nil, nil // custom keys take any JSON value
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, mxerr.InvalidParam(key + " must be a string")
	}
	if utf8.RuneCountInString(s) > limit {
		return nil, mxerr.InvalidParam(fmt.Sprintf("%s is too long (max %d)", key, limit))
	}
	if s == "" {
		return nil, nil
	}
	if key == fieldAvatarURL && !strings.HasPrefix(s, "mxc://") {
		return nil, mxerr.InvalidParam("avatar_url must be an mxc:// URI")
	}
	return &s, nil
}

// handlePutProfileField is PUT /profile/{userId}/{keyName}.
func (a *Accounts) handlePutProfileField(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	key, err := checkProfileWrite(r, s)
	if err != nil {
		fail(w, err)
		return
	}
	var body map[string]json.RawMessage
	if err := endpoint.Decode(r, 0, &body); err != nil {
		fail(w, err)
		return
	}
	v, ok := body[key]
	if !ok {
		fail(w, mxerr.MissingParam("Missing key '"+key+"'"))
		return
	}
	column, err := checkProfileValue(key, v)
	if err != nil {
		fail(w, err)
		return
	}
	a.writeProfile(w, r, s.UserID, key, v, column, false)
}

// handleDeleteProfileField is DELETE /profile/{userId}/{keyName}; deleting
// a field that is not set succeeds.
func (a *Accounts) handleDeleteProfileField(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	key, err := checkProfileWrite(r, s)
	if err != nil {
		fail(w, err)
		return
	}
	a.writeProfile(w, r, s.UserID, key, nil, nil, true)
}

func (a *Accounts) writeProfile(w http.ResponseWriter, r *http.Request, userID, key string, v json.RawMessage, column *string, del bool) {
	ctx := r.Context()
	changed := false
	err := a.db.Update(ctx, func(tx *storage.Tx) error {
		p, err := readProfile(ctx, tx, userID)
		if err != nil {
			return err
		}
		old, had := p[key]
		if del {
			delete(p, key)
		} else {
			var compact []byte
			if compact, err = compactJSON(v); err != nil {
				return err
			}
			v = compact
			if column == nil && (key == fieldDisplayName || key == fieldAvatarURL) {
				delete(p, key)
			} else {
				p[key] = v
			}
			if b, _ := json.Marshal(p); len(b) > maxProfileSize {
				return mxerr.New(http.StatusBadRequest, codeProfileTooLarge, "Profile would exceed 64 KiB")
			}
		}
		switch key {
		case fieldDisplayName, fieldAvatarURL:
			now, has := p[key]
			changed = had != has || string(old) != string(now)
			_, err = tx.Exec(ctx, `UPDATE users SET `+key+` = ? WHERE user_id = ?`, column, userID)
		default:
			if del {
				_, err = tx.Exec(ctx, `DELETE FROM profile_fields WHERE user_id = ? AND field = ?`, userID, key)
			} else {
				_, err = tx.Exec(ctx, `INSERT INTO profile_fields (user_id, field, value) VALUES (?, ?, ?)
					ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value`, userID, key, string(v))
			}
		}
		if err != nil {
			return fmt.Errorf("accounts: write profile: %w", err)
		}
		return nil
	})
	if err != nil {
		fail(w, err)
		return
	}
	if changed && a.onProfileChanged != nil {
		a.onProfileChanged(ctx, userID)
	}
	endpoint.Write(w, empty)
}
