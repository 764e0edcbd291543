package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// StateDelta is one change to a room's current state, as a committed
// Batch's CurrentDelta made it.
type StateDelta struct {
	// StreamPos is the position of the batch's last event: the change is
	// part of the stream up to it.
	StreamPos int64
	Key       StateKey
	// EventID is the event now current for Key; "" when Key left the
	// state.
	EventID string
}

// StateDeltas returns the changes to roomID's current state recorded at
// stream positions in (after, upto], in stream order. A state key that
// changed more than once appears once per change. Rooms stored before
// the changes were recorded start with their current state as it then
// was, each key at its event's position.
func (db *DB) StateDeltas(ctx context.Context, roomID string, after, upto int64) ([]StateDelta, error) {
	tx, err := db.read.BeginTx(ctx, &db.d.readTx)
	if err != nil {
		return nil, fmt.Errorf("storage: state deltas %s: %w", roomID, err)
	}
	defer db.rstmts.warm(ctx)
	defer tx.Rollback() //nolint:errcheck // read-only; nothing to keep
	s, err := db.rstmts.fixed(ctx, tx, `SELECT stream_pos, type, state_key, event_id FROM current_state_deltas
		WHERE room_id = ? AND stream_pos > ? AND stream_pos <= ? ORDER BY stream_pos`)
	if err != nil {
		return nil, fmt.Errorf("storage: state deltas %s: %w", roomID, err)
	}
	rows, err := s.QueryContext(ctx, roomID, after, upto)
	if err != nil {
		return nil, fmt.Errorf("storage: state deltas %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []StateDelta
	for rows.Next() {
		var d StateDelta
		var id sql.NullString
		if err := rows.Scan(&d.StreamPos, &d.Key.Type, &d.Key.StateKey, &id); err != nil {
			return nil, fmt.Errorf("storage: state deltas %s: %w", roomID, err)
		}
		d.EventID = id.String
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: state deltas %s: %w", roomID, err)
	}
	return out, nil
}
