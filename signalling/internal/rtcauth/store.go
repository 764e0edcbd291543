package rtcauth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
)

// Store remembers which Matrix room a LiveKit room name was minted for,
// and which Matrix user each identity in it is (tables rtc_rooms and
// rtc_identities): the SFU only knows the opaque names, and the world
// snapshot of its room must be written into the Matrix room by one of
// its users.
type Store struct{ db *storage.DB }

// NewStore returns a Store on db.
func NewStore(db *storage.DB) *Store { return &Store{db: db} }

// maxIdentitiesPerUser bounds the identities remembered for one user.
// Every get_token call with a new member ID or slot (both chosen by the
// client) adds a row, so without a bound a joined user could grow the
// tables without end; the oldest are forgotten first, and a user in
// more than this many calls at once is not a real client.
const maxIdentitiesPerUser = 100

// Grant is one minted token's names.
type Grant struct {
	LKRoom, RoomID, SlotID     string
	Identity, UserID, DeviceID string
}

// Record stores g at time now.
func (s *Store) Record(ctx context.Context, g Grant, now time.Time) error {
	ts := now.UnixMilli()
	err := s.db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO rtc_rooms (lk_room, room_id, slot_id, created_ts) VALUES (?, ?, ?, ?)
			ON CONFLICT (lk_room) DO NOTHING`, g.LKRoom, g.RoomID, g.SlotID, ts); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rtc_identities (lk_room, identity, user_id, device_id, ts) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (lk_room, identity) DO UPDATE SET user_id = excluded.user_id, device_id = excluded.device_id, ts = excluded.ts`,
			g.LKRoom, g.Identity, g.UserID, g.DeviceID, ts); err != nil {
			return err
		}
		return pruneTx(ctx, tx, g.UserID)
	})
	if err != nil {
		return fmt.Errorf("rtcauth: record token for %s: %w", g.LKRoom, err)
	}
	return nil
}

// pruneTx forgets userID's identities beyond the newest
// maxIdentitiesPerUser, and the LiveKit rooms no identity is left in.
func pruneTx(ctx context.Context, tx *storage.Tx, userID string) error {
	var n int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM rtc_identities WHERE user_id = ?`, userID).Scan(&n); err != nil {
		return err
	}
	if n <= maxIdentitiesPerUser {
		return nil
	}
	// Row values ((a, b) IN (SELECT ...)) work in both SQLite and
	// PostgreSQL.
	if _, err := tx.Exec(ctx, `DELETE FROM rtc_identities WHERE (lk_room, identity) IN
		(SELECT lk_room, identity FROM rtc_identities WHERE user_id = ? ORDER BY ts, lk_room, identity LIMIT ?)`,
		userID, n-maxIdentitiesPerUser); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM rtc_rooms WHERE NOT EXISTS
		(SELECT 1 FROM rtc_identities i WHERE i.lk_room = rtc_rooms.lk_room)`)
	return err
}

// Room returns the Matrix room a LiveKit room name was minted for, ""
// if this server never minted a token for it.
func (s *Store) Room(ctx context.Context, lkRoom string) (string, error) {
	var roomID string
	err := s.db.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT room_id FROM rtc_rooms WHERE lk_room = ?`, lkRoom).Scan(&roomID)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("rtcauth: look up room %s: %w", lkRoom, err)
	}
	return roomID, nil
}

// User returns the Matrix user a token for identity in lkRoom was minted
// for, "" if none was.
func (s *Store) User(ctx context.Context, lkRoom, identity string) (string, error) {
	var userID string
	err := s.db.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT user_id FROM rtc_identities WHERE lk_room = ? AND identity = ?`,
			lkRoom, identity).Scan(&userID)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("rtcauth: look up identity in %s: %w", lkRoom, err)
	}
	return userID, nil
}
