package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Server-side key backups (Client-Server API, "Server-side key backups").
// Versions are per user, numbered from 1 and never reused; keys can only
// be written to the current (latest undeleted) version.

// maxBackupBody bounds PUT /room_keys/keys: clients upload keys in
// batches, each key a few hundred bytes.
const maxBackupBody = 16 << 20

// backupInfo is one row of e2e_backup_versions.
type backupInfo struct {
	version   int64
	algorithm string
	authData  []byte
	etag      int64
	deleted   bool
}

func unknownVersion() *mxerr.MatrixError { return mxerr.NotFound("Unknown backup version") }

// parseVersion parses a version we issued; anything else names no
// backup.
func parseVersion(s string) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}

// currentBackup returns the user's latest undeleted backup, or nil.
func currentBackup(ctx context.Context, tx *storage.Tx, user string) (*backupInfo, error) {
	var v sql.NullInt64
	if err := tx.QueryRow(ctx, `SELECT MAX(version) FROM e2e_backup_versions WHERE user_id = ? AND deleted = FALSE`,
		user).Scan(&v); err != nil {
		return nil, fmt.Errorf("keys: read backup versions: %w", err)
	}
	if !v.Valid {
		return nil, nil
	}
	return backupVersion(ctx, tx, user, v.Int64)
}

// backupVersion returns one version, deleted or not, or nil.
func backupVersion(ctx context.Context, tx *storage.Tx, user string, version int64) (*backupInfo, error) {
	b := &backupInfo{version: version}
	err := tx.QueryRow(ctx, `SELECT algorithm, auth_data, etag, deleted FROM e2e_backup_versions WHERE user_id = ? AND version = ?`,
		user, version).Scan(&b.algorithm, &b.authData, &b.etag, &b.deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: read backup version: %w", err)
	}
	return b, nil
}

// liveVersion returns the undeleted version named by s, or 404.
func liveVersion(ctx context.Context, tx *storage.Tx, user, s string) (*backupInfo, error) {
	v, ok := parseVersion(s)
	if !ok {
		return nil, unknownVersion()
	}
	b, err := backupVersion(ctx, tx, user, v)
	if err != nil {
		return nil, err
	}
	if b == nil || b.deleted {
		return nil, unknownVersion()
	}
	return b, nil
}

func backupCount(ctx context.Context, tx *storage.Tx, user string, version int64) (int64, error) {
	var n int64
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM e2e_backup_keys WHERE user_id = ? AND version = ?`,
		user, version).Scan(&n); err != nil {
		return 0, fmt.Errorf("keys: count backup keys: %w", err)
	}
	return n, nil
}

// backupBody is the body of POST and PUT /room_keys/version.
type backupBody struct {
	Algorithm *string         `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   *string         `json:"version"`
}

func (b *backupBody) check() error {
	if b.Algorithm == nil {
		return mxerr.MissingParam("Missing parameter: algorithm")
	}
	if b.AuthData == nil {
		return mxerr.MissingParam("Missing parameter: auth_data")
	}
	if !isObject(b.AuthData) {
		return badJSON("auth_data must be an object")
	}
	return nil
}

// handleCreateBackup is POST /room_keys/version.
func (k *Keys) handleCreateBackup(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var req backupBody
	if err := endpoint.Decode(r, 0, &req); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := req.check(); err != nil {
		endpoint.Fail(w, err)
		return
	}
	var version int64
	err := k.db.Update(r.Context(), func(tx *storage.Tx) error {
		if err := tx.QueryRow(r.Context(), `SELECT COALESCE(MAX(version), 0) + 1 FROM e2e_backup_versions WHERE user_id = ?`,
			s.UserID).Scan(&version); err != nil {
			return fmt.Errorf("keys: next backup version: %w", err)
		}
		_, err := tx.Exec(r.Context(), `INSERT INTO e2e_backup_versions (user_id, version, algorithm, auth_data, etag, deleted)
			VALUES (?, ?, ?, ?, 0, FALSE)`, s.UserID, version, *req.Algorithm, []byte(req.AuthData))
		if err != nil {
			return fmt.Errorf("keys: create backup: %w", err)
		}
		return nil
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	writeJSON(w, map[string]string{"version": strconv.FormatInt(version, 10)})
}

// handleGetBackup is GET /room_keys/version and
// GET /room_keys/version/{version}.
func (k *Keys) handleGetBackup(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var b *backupInfo
	var count int64
	err := k.db.View(r.Context(), func(tx *storage.Tx) error {
		var err error
		if v := r.PathValue("version"); v != "" {
			b, err = liveVersion(r.Context(), tx, s.UserID, v)
		} else if b, err = currentBackup(r.Context(), tx, s.UserID); err == nil && b == nil {
			err = mxerr.NotFound("No current backup version")
		}
		if err != nil {
			return err
		}
		count, err = backupCount(r.Context(), tx, s.UserID, b.version)
		return err
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	// auth_data is served as stored: it carries signatures.
	server.WriteRawJSON(w, http.StatusOK, rawObject(map[string][]byte{
		"algorithm": cjson.AppendString(nil, b.algorithm),
		"auth_data": b.authData,
		"count":     strconv.AppendInt(nil, count, 10),
		"etag":      cjson.AppendString(nil, strconv.FormatInt(b.etag, 10)),
		"version":   cjson.AppendString(nil, strconv.FormatInt(b.version, 10)),
	}))
}

// handleUpdateBackup is PUT /room_keys/version/{version}: only auth_data
// can change.
func (k *Keys) handleUpdateBackup(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var req backupBody
	if err := endpoint.Decode(r, 0, &req); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := req.check(); err != nil {
		endpoint.Fail(w, err)
		return
	}
	path := r.PathValue("version")
	if req.Version != nil && *req.Version != path {
		endpoint.Fail(w, mxerr.InvalidParam("Version in body does not match"))
		return
	}
	err := k.db.Update(r.Context(), func(tx *storage.Tx) error {
		b, err := liveVersion(r.Context(), tx, s.UserID, path)
		if err != nil {
			return err
		}
		if b.algorithm != *req.Algorithm {
			return mxerr.InvalidParam("Algorithm does not match")
		}
		if _, err := tx.Exec(r.Context(), `UPDATE e2e_backup_versions SET auth_data = ? WHERE user_id = ? AND version = ?`,
			[]byte(req.AuthData), s.UserID, b.version); err != nil {
			return fmt.Errorf("keys: update backup: %w", err)
		}
		return nil
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

// handleDeleteBackup is DELETE /room_keys/version/{version}: the version
// and its keys go; deleting it again succeeds (key_backup.yaml, 200: "or
// the specified backup was previously deleted").
func (k *Keys) handleDeleteBackup(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	err := k.db.Update(r.Context(), func(tx *storage.Tx) error {
		v, ok := parseVersion(r.PathValue("version"))
		if !ok {
			return unknownVersion()
		}
		b, err := backupVersion(r.Context(), tx, s.UserID, v)
		if err != nil {
			return err
		}
		if b == nil {
			return unknownVersion()
		}
		if _, err := tx.Exec(r.Context(), `UPDATE e2e_backup_versions SET deleted = TRUE WHERE user_id = ? AND version = ?`,
			s.UserID, v); err != nil {
			return fmt.Errorf("keys: delete backup: %w", err)
		}
		if _, err := tx.Exec(r.Context(), `DELETE FROM e2e_backup_keys WHERE user_id = ? AND version = ?`, s.UserID, v); err != nil {
			return fmt.Errorf("keys: delete backup keys: %w", err)
		}
		return nil
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

// keyData is one session's backed-up key (definitions/key_backup_data.yaml).
type keyData struct {
	FirstMessageIndex *int64          `json:"first_message_index"`
	ForwardedCount    *int64          `json:"forwarded_count"`
	IsVerified        *bool           `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

func (d *keyData) check() error {
	switch {
	case d.FirstMessageIndex == nil:
		return mxerr.MissingParam("Missing parameter: first_message_index")
	case d.ForwardedCount == nil:
		return mxerr.MissingParam("Missing parameter: forwarded_count")
	case d.IsVerified == nil:
		return mxerr.MissingParam("Missing parameter: is_verified")
	case d.SessionData == nil:
		return mxerr.MissingParam("Missing parameter: session_data")
	case !isObject(d.SessionData):
		return badJSON("session_data must be an object")
	}
	return nil
}

// backupKey is a key addressed by room and session.
type backupKey struct {
	room, session string
	data          keyData
}

// versionParam is the required ?version= of the /room_keys/keys
// endpoints.
func versionParam(r *http.Request) (string, error) {
	if !r.URL.Query().Has("version") {
		return "", mxerr.MissingParam("Missing string query parameter 'version'")
	}
	return r.URL.Query().Get("version"), nil
}

// parseBackupKeys reads the body of PUT /room_keys/keys[/{roomId}[/{sessionId}]].
func parseBackupKeys(r *http.Request) ([]backupKey, error) {
	body, err := endpoint.ReadBody(r, maxBackupBody)
	if err != nil {
		return nil, err
	}
	room, session := r.PathValue("roomId"), r.PathValue("sessionId")
	var out []backupKey
	addRoom := func(room string, sessions map[string]keyData) error {
		for _, sid := range sortedKeys(sessions) {
			d := sessions[sid]
			if err := d.check(); err != nil {
				return err
			}
			out = append(out, backupKey{room: room, session: sid, data: d})
		}
		return nil
	}
	type roomBody struct {
		Sessions map[string]keyData `json:"sessions"`
	}
	switch {
	case session != "":
		var d keyData
		if err := endpoint.Unmarshal(body, &d); err != nil {
			return nil, err
		}
		return out, addRoom(room, map[string]keyData{session: d})
	case room != "":
		var rb roomBody
		if err := endpoint.Unmarshal(body, &rb); err != nil {
			return nil, err
		}
		if rb.Sessions == nil {
			return nil, mxerr.MissingParam("Missing parameter: sessions")
		}
		return out, addRoom(room, rb.Sessions)
	default:
		var all struct {
			Rooms map[string]roomBody `json:"rooms"`
		}
		if err := endpoint.Unmarshal(body, &all); err != nil {
			return nil, err
		}
		if all.Rooms == nil {
			return nil, mxerr.MissingParam("Missing parameter: rooms")
		}
		for _, id := range sortedKeys(all.Rooms) {
			if all.Rooms[id].Sessions == nil {
				return nil, mxerr.MissingParam("Missing parameter: sessions")
			}
			if err := addRoom(id, all.Rooms[id].Sessions); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
}

// handlePutBackupKeys stores keys in the current backup version.
func (k *Keys) handlePutBackupKeys(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	vs, err := versionParam(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	keys, err := parseBackupKeys(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	var etag, count int64
	err = k.db.Update(r.Context(), func(tx *storage.Tx) error {
		cur, err := currentBackup(r.Context(), tx, s.UserID)
		if err != nil {
			return err
		}
		if cur == nil || strconv.FormatInt(cur.version, 10) != vs {
			// Synapse: a version that exists but is not current is 403
			// M_WRONG_ROOM_KEYS_VERSION; one that does not exist is 404.
			if _, err := liveVersion(r.Context(), tx, s.UserID, vs); err != nil || cur == nil {
				if err == nil {
					err = unknownVersion()
				}
				return err
			}
			return mxerr.New(http.StatusForbidden, CodeWrongRoomKeysVersion, "Wrong backup version.").
				With("current_version", strconv.FormatInt(cur.version, 10))
		}
		changed := false
		for _, bk := range keys {
			c, err := putBackupKey(r.Context(), tx, s.UserID, cur.version, bk)
			if err != nil {
				return err
			}
			changed = changed || c
		}
		etag = cur.etag
		if changed {
			etag++
			if _, err := tx.Exec(r.Context(), `UPDATE e2e_backup_versions SET etag = ? WHERE user_id = ? AND version = ?`,
				etag, s.UserID, cur.version); err != nil {
				return fmt.Errorf("keys: update backup etag: %w", err)
			}
		}
		count, err = backupCount(r.Context(), tx, s.UserID, cur.version)
		return err
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	writeJSON(w, map[string]any{"etag": strconv.FormatInt(etag, 10), "count": count})
}

// putBackupKey stores one key unless the stored one is better
// ("Server-side key backups"): a verified key beats an unverified one,
// then the lower first_message_index wins, then the lower
// forwarded_count; on a tie the stored key stays.
func putBackupKey(ctx context.Context, tx *storage.Tx, user string, version int64, bk backupKey) (bool, error) {
	var fmi, fc int64
	var verified bool
	err := tx.QueryRow(ctx, `SELECT first_message_index, forwarded_count, is_verified FROM e2e_backup_keys
		WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?`,
		user, version, bk.room, bk.session).Scan(&fmi, &fc, &verified)
	d := bk.data
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return false, fmt.Errorf("keys: read backup key: %w", err)
	case verified != *d.IsVerified:
		if !*d.IsVerified {
			return false, nil
		}
	case fmi != *d.FirstMessageIndex:
		if *d.FirstMessageIndex > fmi {
			return false, nil
		}
	case *d.ForwardedCount >= fc:
		return false, nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO e2e_backup_keys
		(user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
		first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count,
		is_verified = excluded.is_verified, session_data = excluded.session_data`,
		user, version, bk.room, bk.session, *d.FirstMessageIndex, *d.ForwardedCount, *d.IsVerified, []byte(d.SessionData)); err != nil {
		return false, fmt.Errorf("keys: store backup key: %w", err)
	}
	return true, nil
}

// keyFilter is the WHERE clause and arguments selecting the keys an
// endpoint addresses by path.
func keyFilter(r *http.Request, user string, version int64) (string, []any) {
	where, args := `user_id = ? AND version = ?`, []any{user, version}
	if room := r.PathValue("roomId"); room != "" {
		where, args = where+` AND room_id = ?`, append(args, room)
		if session := r.PathValue("sessionId"); session != "" {
			where, args = where+` AND session_id = ?`, append(args, session)
		}
	}
	return where, args
}

// handleGetBackupKeys is GET /room_keys/keys[/{roomId}[/{sessionId}]].
func (k *Keys) handleGetBackupKeys(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	vs, err := versionParam(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	rooms := map[string]map[string][]byte{}
	err = k.db.View(r.Context(), func(tx *storage.Tx) error {
		b, err := liveVersion(r.Context(), tx, s.UserID, vs)
		if err != nil {
			return err
		}
		where, args := keyFilter(r, s.UserID, b.version)
		rows, err := tx.Query(r.Context(), `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
			FROM e2e_backup_keys WHERE `+where, args...)
		if err != nil {
			return fmt.Errorf("keys: read backup keys: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var room, session string
			var fmi, fc int64
			var verified bool
			var data []byte
			if err := rows.Scan(&room, &session, &fmi, &fc, &verified, &data); err != nil {
				return fmt.Errorf("keys: read backup keys: %w", err)
			}
			if rooms[room] == nil {
				rooms[room] = map[string][]byte{}
			}
			rooms[room][session] = rawObject(map[string][]byte{
				"first_message_index": strconv.AppendInt(nil, fmi, 10),
				"forwarded_count":     strconv.AppendInt(nil, fc, 10),
				"is_verified":         strconv.AppendBool(nil, verified),
				"session_data":        data,
			})
		}
		return rows.Err()
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	room, session := r.PathValue("roomId"), r.PathValue("sessionId")
	var body []byte
	switch {
	case session != "":
		d, ok := rooms[room][session]
		if !ok {
			endpoint.Fail(w, mxerr.NotFound("No room_keys found"))
			return
		}
		body = d
	case room != "":
		body = rawObject(map[string][]byte{"sessions": rawObject(rooms[room])})
	default:
		all := make(map[string][]byte, len(rooms))
		for id, sessions := range rooms {
			all[id] = rawObject(map[string][]byte{"sessions": rawObject(sessions)})
		}
		body = rawObject(map[string][]byte{"rooms": rawObject(all)})
	}
	server.WriteRawJSON(w, http.StatusOK, body)
}

// handleDeleteBackupKeys is DELETE /room_keys/keys[/{roomId}[/{sessionId}]].
func (k *Keys) handleDeleteBackupKeys(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	vs, err := versionParam(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	var etag, count int64
	err = k.db.Update(r.Context(), func(tx *storage.Tx) error {
		b, err := liveVersion(r.Context(), tx, s.UserID, vs)
		if err != nil {
			return err
		}
		where, args := keyFilter(r, s.UserID, b.version)
		if _, err := tx.Exec(r.Context(), `DELETE FROM e2e_backup_keys WHERE `+where, args...); err != nil {
			return fmt.Errorf("keys: delete backup keys: %w", err)
		}
		// As Synapse: every delete moves the etag on.
		etag = b.etag + 1
		if _, err := tx.Exec(r.Context(), `UPDATE e2e_backup_versions SET etag = ? WHERE user_id = ? AND version = ?`,
			etag, s.UserID, b.version); err != nil {
			return fmt.Errorf("keys: update backup etag: %w", err)
		}
		count, err = backupCount(r.Context(), tx, s.UserID, b.version)
		return err
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	writeJSON(w, map[string]any{"etag": strconv.FormatInt(etag, 10), "count": count})
}
