package media

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/plexus-chat/plexus/internal/storage"
)

// record is one row of the media table.
type record struct {
	Server      string
	ID          string
	Uploader    string // "" for remote media
	CreatedTS   int64
	ContentType string
	Filename    string // "" when uploaded without one
	Size        int64
	SHA256      string // hex; "" while an asynchronous upload is pending
	// UnusedExpiresAt is when a pending ID lapses (ms); 0 once uploaded.
	UnusedExpiresAt int64
}

// pending reports whether the row awaits its content (POST /create).
func (r *record) pending() bool { return r.SHA256 == "" }

// expired reports whether a pending ID has lapsed at nowMS.
func (r *record) expired(nowMS int64) bool {
	return r.pending() && r.UnusedExpiresAt != 0 && r.UnusedExpiresAt <= nowMS
}

// lookup returns the row for mxc://server/id, or nil when there is none.
func (m *Media) lookup(ctx context.Context, server, id string) (*record, error) {
	var rec *record
	err := m.db.View(ctx, func(tx *storage.Tx) error {
		var err error
		rec, err = lookupTx(ctx, tx, server, id)
		return err
	})
	return rec, err
}

func lookupTx(ctx context.Context, tx *storage.Tx, server, id string) (*record, error) {
	rec := &record{Server: server, ID: id}
	var filename sql.NullString
	var expires sql.NullInt64
	err := tx.QueryRow(ctx, `SELECT uploader, created_ts, content_type, filename, size, sha256, unused_expires_at
		FROM media WHERE server_name = ? AND media_id = ?`, server, id).
		Scan(&rec.Uploader, &rec.CreatedTS, &rec.ContentType, &filename, &rec.Size, &rec.SHA256, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("media: look up %s/%s: %w", server, id, err)
	}
	rec.Filename, rec.UnusedExpiresAt = filename.String, expires.Int64
	return rec, nil
}

// insert adds rec, whose file is already durable. It reports false when
// the row exists already (two fetches of the same remote media).
func (m *Media) insert(ctx context.Context, rec *record) (bool, error) {
	var inserted bool
	err := m.db.Update(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO media
			(server_name, media_id, uploader, created_ts, content_type, filename, size, sha256)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (server_name, media_id) DO NOTHING`,
			rec.Server, rec.ID, rec.Uploader, rec.CreatedTS, rec.ContentType, nullString(rec.Filename), rec.Size, rec.SHA256)
		if err != nil {
			return fmt.Errorf("media: insert %s/%s: %w", rec.Server, rec.ID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("media: insert %s/%s: %w", rec.Server, rec.ID, err)
		}
		inserted = n == 1
		return nil
	})
	return inserted, err
}

// tooManyPendingError is returned by createPending when the user holds
// the maximum of unused IDs.
type tooManyPendingError struct {
	// FirstExpiry is when the first of them lapses (ms).
	FirstExpiry int64
}

func (e *tooManyPendingError) Error() string { return "media: too many pending uploads" }

// createPending reserves mxc://<us>/id for user until expiresMS, unless
// the user already holds max unused, unexpired IDs. Lapsed IDs of the user
// are deleted on the way: nothing else refers to them.
func (m *Media) createPending(ctx context.Context, id, user string, nowMS, expiresMS int64, max int) error {
	return m.db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM media WHERE uploader = ? AND sha256 = '' AND unused_expires_at <= ?`,
			user, nowMS); err != nil {
			return fmt.Errorf("media: delete lapsed IDs: %w", err)
		}
		var n int
		var first sql.NullInt64
		if err := tx.QueryRow(ctx, `SELECT COUNT(*), MIN(unused_expires_at) FROM media
			WHERE uploader = ? AND sha256 = '' AND unused_expires_at > ?`,
			user, nowMS).Scan(&n, &first); err != nil {
			return fmt.Errorf("media: count pending uploads: %w", err)
		}
		if n >= max {
			return &tooManyPendingError{FirstExpiry: first.Int64}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO media (server_name, media_id, uploader, created_ts, unused_expires_at)
			VALUES (?, ?, ?, ?, ?)`, m.cfg.ServerName, id, user, nowMS, expiresMS); err != nil {
			return fmt.Errorf("media: insert pending %s: %w", id, err)
		}
		return nil
	})
}

// complete fills the pending row rec (content fields set) in one
// transaction, re-checking what the handler checked before reading the
// body, since another upload to the same ID may have finished meanwhile.
func (m *Media) complete(ctx context.Context, rec *record, user string, nowMS int64) error {
	return m.db.Update(ctx, func(tx *storage.Tx) error {
		cur, err := lookupTx(ctx, tx, rec.Server, rec.ID)
		if err != nil {
			return err
		}
		if err := checkUploadTarget(cur, user, nowMS); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE media SET content_type = ?, filename = ?, size = ?, sha256 = ?, unused_expires_at = NULL
			WHERE server_name = ? AND media_id = ?`,
			rec.ContentType, nullString(rec.Filename), rec.Size, rec.SHA256, rec.Server, rec.ID)
		if err != nil {
			return fmt.Errorf("media: complete %s: %w", rec.ID, err)
		}
		return nil
	})
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }
