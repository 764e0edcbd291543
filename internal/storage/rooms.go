package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
)

// Room returns the room's version, forward extremities, current state and
// max depth, all from one consistent snapshot. It returns ErrNotFound if the
// room is not stored.
func (db *DB) Room(ctx context.Context, roomID string) (*RoomInfo, error) {
	tx, err := db.read.BeginTx(ctx, &db.d.readTx)
	if err != nil {
		return nil, fmt.Errorf("storage: room %s: %w", roomID, err)
	}
	defer db.rstmts.warm(ctx)
	defer tx.Rollback() //nolint:errcheck // read-only; nothing to keep
	info, err := db.roomTx(ctx, tx, roomID)
	if err != nil {
		return nil, fmt.Errorf("storage: room %s: %w", roomID, err)
	}
	return info, nil
}

func (db *DB) roomTx(ctx context.Context, tx *sql.Tx, roomID string) (*RoomInfo, error) {
	info := &RoomInfo{RoomID: roomID, Current: StateMap{}}
	s, err := db.rstmts.fixed(ctx, tx, `SELECT version, max_depth FROM rooms WHERE room_id = ?`)
	if err != nil {
		return nil, err
	}
	err = s.QueryRowContext(ctx, roomID).Scan(&info.Version, &info.MaxDepth)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}

	if s, err = db.rstmts.fixed(ctx, tx, `SELECT event_id FROM room_extremities WHERE room_id = ?`); err != nil {
		return nil, err
	}
	if info.Extremities, err = queryStrings(ctx, s, roomID); err != nil {
		return nil, err
	}
	// Sorted here rather than by ORDER BY: PostgreSQL would sort by the
	// database's collation, SQLite bytewise.
	sort.Strings(info.Extremities)

	if s, err = db.rstmts.fixed(ctx, tx, `SELECT type, state_key, event_id FROM current_state WHERE room_id = ?`); err != nil {
		return nil, err
	}
	rows, err := s.QueryContext(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k StateKey
		var id string
		if err := rows.Scan(&k.Type, &k.StateKey, &id); err != nil {
			return nil, err
		}
		info.Current[k] = id
	}
	return info, rows.Err()
}

// RoomIDs lists every stored room, sorted.
func (db *DB) RoomIDs(ctx context.Context) ([]string, error) {
	s, err := db.rstmts.fixed(ctx, nil, `SELECT room_id FROM rooms`)
	if err != nil {
		return nil, err
	}
	ids, err := queryStrings(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("storage: room IDs: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// MissingPrevs lists the prev events the room references but that are not
// stored, sorted by EventID then ReferencedBy.
func (db *DB) MissingPrevs(ctx context.Context, roomID string) ([]MissingPrev, error) {
	s, err := db.rstmts.fixed(ctx, nil, `SELECT event_id, referenced_by FROM missing_prevs WHERE room_id = ?`)
	if err != nil {
		return nil, err
	}
	rows, err := s.QueryContext(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("storage: missing prevs of %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []MissingPrev
	for rows.Next() {
		m := MissingPrev{RoomID: roomID}
		if err := rows.Scan(&m.EventID, &m.ReferencedBy); err != nil {
			return nil, fmt.Errorf("storage: missing prevs of %s: %w", roomID, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: missing prevs of %s: %w", roomID, err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].EventID != out[j].EventID {
			return out[i].EventID < out[j].EventID
		}
		return out[i].ReferencedBy < out[j].ReferencedBy
	})
	return out, nil
}

// queryStrings runs a one-column query and collects the column.
func queryStrings(ctx context.Context, s *sql.Stmt, args ...any) ([]string, error) {
	rows, err := s.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
