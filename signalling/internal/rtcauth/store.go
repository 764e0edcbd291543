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
		_, err := tx.Exec(ctx, `INSERT INTO rtc_identities (lk_room, identity, user_id, device_id, ts) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (lk_room, identity) DO UPDATE SET user_id = excluded.user_id, device_id = excluded.device_id, ts = excluded.ts`,
			g.LKRoom, g.Identity, g.UserID, g.DeviceID, ts)
		return err
	})
	if err != nil {
		return fmt.Errorf("rtcauth: record token for %s: %w", g.LKRoom, err)
	}
	return nil
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
