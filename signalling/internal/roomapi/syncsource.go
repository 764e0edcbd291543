package roomapi

import (
	"context"
	"database/sql"
	"errors"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// What the /sync engine reads from this API beyond receipts.

// TypingSince returns the rooms whose typing set changed after the typing
// position since, each with its current typing users (empty when the last
// typist stopped).
func (a *API) TypingSince(since int64) map[string][]string {
	t := a.typing
	t.mu.Lock()
	changed := t.sweepLocked()
	if t.pos <= since {
		// Nothing changed since the token: the common case for every
		// sync that a message woke.
		t.mu.Unlock()
		t.wake(changed)
		return nil
	}
	out := map[string][]string{}
	for room, pos := range t.roomPos {
		if pos <= since {
			continue
		}
		users := make([]string, 0, len(t.rooms[room]))
		for u := range t.rooms[room] {
			users = append(users, u)
		}
		out[room] = users
	}
	t.mu.Unlock()
	t.wake(changed)
	return out
}

// TxnID is the transaction ID with which deviceID of userID sent eventID,
// or "" (Client-Server API, "Transaction identifiers": the sending device
// gets it back in unsigned.transaction_id).
func (a *API) TxnID(ctx context.Context, userID, deviceID, eventID string) string {
	var txn string
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT txn_id FROM room_txns
			WHERE user_id = ? AND device_id = ? AND event_id = ? AND endpoint = 'send'`, userID, deviceID, eventID).Scan(&txn)
	})
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		a.log.Warn("looking up a transaction ID failed", "event", eventID, "err", err)
	}
	return txn
}

// RedactedBecause finds, for each of evs that an accepted redaction
// targets, that redaction in client form.
func (a *API) RedactedBecause(ctx context.Context, roomID string, evs []*rooms.Event) (map[string][]byte, error) {
	return a.redactedBecause(ctx, roomID, evs)
}
