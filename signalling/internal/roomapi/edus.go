package roomapi

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
)

// Typing notifications and receipts of users on other servers
// (Server-Server API, "Typing Notifications", "Receipts"): they reach
// /sync through the same typing state and receipts table as local ones.

// remoteTypingTimeout is how long a remote user's typing lasts without
// news from their server. The EDU carries no timeout; Synapse keeps a
// remote typist for 60 seconds and its senders repeat the notification
// while the user still types.
const remoteTypingTimeout = 60 * time.Second

// RemoteTyping records that userID, a user of another server, started or
// stopped typing in roomID. The user must be joined to the room; an
// error otherwise, and nothing changes.
func (a *API) RemoteTyping(ctx context.Context, roomID, userID string, typing bool) error {
	if a.isLocal(userID) {
		return fmt.Errorf("roomapi: %s is a local user", userID)
	}
	if err := a.requireJoined(ctx, roomID, userID); err != nil {
		return err
	}
	a.typing.set(roomID, userID, typing, remoteTypingTimeout)
	return nil
}

// RemoteReceipt stores an m.read receipt of userID, a user of another
// server joined to roomID, for eventID at ts (milliseconds). The event
// may not have reached us yet: its receipt is stored all the same, as
// Synapse does. A receipt for an event we know to be earlier than the
// user's current one is ignored, as for local receipts; one for an event
// of another room is an error.
func (a *API) RemoteReceipt(ctx context.Context, roomID, userID, threadID, eventID string, ts int64) error {
	if a.isLocal(userID) {
		return fmt.Errorf("roomapi: %s is a local user", userID)
	}
	if err := a.requireJoined(ctx, roomID, userID); err != nil {
		return err
	}
	recs, err := a.deps.DB.Events(ctx, []string{eventID})
	if err != nil {
		return err
	}
	known := recs[eventID] != nil
	if known && recs[eventID].RoomID != roomID {
		return fmt.Errorf("roomapi: event %s is not in room %s", eventID, roomID)
	}
	stored := false
	err = a.deps.DB.Update(ctx, func(tx *storage.Tx) error {
		if known {
			var oldPos int64
			err := tx.QueryRow(ctx, `SELECT e.stream_pos FROM receipts r JOIN events e ON e.event_id = r.event_id
				WHERE r.room_id = ? AND r.receipt_type = ? AND r.user_id = ? AND r.thread_id = ?`,
				roomID, receiptRead, userID, threadID).Scan(&oldPos)
			if err == nil && oldPos >= recs[eventID].StreamPos {
				return nil
			}
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, pos)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (room_id, receipt_type, user_id, thread_id)
			DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos`,
			roomID, receiptRead, userID, threadID, eventID, ts, tx.NextPos())
		stored = err == nil
		return err
	})
	if err != nil || !stored {
		return err
	}
	a.deps.Hub.WakeRoom(roomID)
	return nil
}
