package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// PartialStateRoom is a room joined with a partial state: the resident
// server's send_join answer left the m.room.member events out of the state
// before the join (Server-Server API, PUT /send_join v2, omit_members).
type PartialStateRoom struct {
	RoomID string
	// JoinEvent is the join whose state before it lacks the members.
	JoinEvent string
	// Servers are the servers_in_room of the send_join answer.
	Servers []string
}

// StateCompletion adds to a partial-state room the state entries its
// send_join answer left out, once the full state before the join is known
// (Batch.CompleteState).
type StateCompletion struct {
	// JoinEvent is the partial-state join (PartialStateRoom.JoinEvent).
	JoinEvent string
	// Entries are the entries of the full state before the join whose
	// keys the state after the join lacks.
	Entries StateMap
}

// PartialStateRoom returns the room's partial-state record, or ErrNotFound
// when the room's state is complete (or the room is not stored).
func (db *DB) PartialStateRoom(ctx context.Context, roomID string) (*PartialStateRoom, error) {
	s, err := db.rstmts.fixed(ctx, nil, `SELECT join_event, servers FROM partial_state_rooms WHERE room_id = ?`)
	if err != nil {
		return nil, err
	}
	p := &PartialStateRoom{RoomID: roomID}
	var servers string
	err = s.QueryRowContext(ctx, roomID).Scan(&p.JoinEvent, &servers)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("storage: partial state of %s: %w", roomID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: partial state of %s: %w", roomID, err)
	}
	if p.Servers, err = decodeIDs(servers); err != nil {
		return nil, fmt.Errorf("storage: partial state of %s: %w", roomID, err)
	}
	return p, nil
}

// PartialStateRooms lists every partial-state room, by room ID.
func (db *DB) PartialStateRooms(ctx context.Context) ([]PartialStateRoom, error) {
	s, err := db.rstmts.fixed(ctx, nil, `SELECT room_id, join_event, servers FROM partial_state_rooms`)
	if err != nil {
		return nil, err
	}
	rows, err := s.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: partial-state rooms: %w", err)
	}
	defer rows.Close()
	var out []PartialStateRoom
	for rows.Next() {
		var p PartialStateRoom
		var servers string
		if err := rows.Scan(&p.RoomID, &p.JoinEvent, &servers); err != nil {
			return nil, err
		}
		if p.Servers, err = decodeIDs(servers); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

var (
	// The heads differ from insertStateEntries' and upsertCurrentState's
	// (by the comment) because the statement cache is keyed by head.
	insertMissingEntries = &bulkInsert{
		head: `INSERT /* completion */ INTO state_group_entries (group_id, type, state_key, event_id) VALUES `,
		tail: ` ON CONFLICT DO NOTHING`,
		cols: 4,
	}
	insertMissingCurrent = &bulkInsert{
		head: `INSERT /* completion */ INTO current_state (room_id, type, state_key, event_id) VALUES `,
		tail: ` ON CONFLICT DO NOTHING`,
		cols: 4,
	}
)

// partialState writes the batch's PartialState and CompleteState. It
// writes straight to the transaction, not to a group commit's sink: it
// reads only rows of earlier commits, and the sink's upsert of the
// current state, which comes after it, must win over what it adds.
func (w *commitTx) partialState(ctx context.Context) error {
	if p := w.b.PartialState; p != nil {
		s, err := w.stmt(ctx, `INSERT INTO partial_state_rooms (room_id, join_event, servers) VALUES (?, ?, ?)
			ON CONFLICT (room_id) DO UPDATE SET join_event = excluded.join_event, servers = excluded.servers`)
		if err != nil {
			return err
		}
		if _, err := s.ExecContext(ctx, w.b.RoomID, p.JoinEvent, encodeIDs(p.Servers)); err != nil {
			return fmt.Errorf("partial state: %w", err)
		}
	}
	if c := w.b.CompleteState; c != nil {
		if err := w.completeState(ctx, c); err != nil {
			return fmt.Errorf("complete state: %w", err)
		}
	}
	return nil
}

// completeState adds c's entries, where their key is absent, to every
// state snapshot written since the partial-state join, and to the current
// state, then forgets that the room is partial.
//
// Why the snapshots suffice: every state group after the join is either a
// snapshot or a delta on an earlier group, and the chain of every group
// placed since the join leads back to the join's own group, a snapshot (the
// join is placed on the given state), or to a later snapshot taken from
// such a chain (maxDeltaChain) or from a state reported by another server
// (a gap). A key absent from a snapshot was absent from the partial state
// it copied, so adding it there makes every group on top inherit it, while
// a delta that set the key since (a membership change after the join) still
// overrides it. Snapshots of backfilled history, older than the join, are
// left alone. Present keys are kept: they are newer than the join's state.
func (w *commitTx) completeState(ctx context.Context, c *StateCompletion) error {
	var joinGroup int64
	s, err := w.stmt(ctx, `SELECT state_group FROM events WHERE event_id = ? AND room_id = ?`)
	if err != nil {
		return err
	}
	err = s.QueryRowContext(ctx, c.JoinEvent, w.b.RoomID).Scan(&joinGroup)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && joinGroup == 0) {
		return fmt.Errorf("join %s has no state: %w", c.JoinEvent, ErrNotFound)
	}
	if err != nil {
		return err
	}
	history := map[int64]bool{}
	if s, err = w.stmt(ctx, `SELECT DISTINCT state_group FROM events WHERE room_id = ? AND stream_pos < 0`); err != nil {
		return err
	}
	if err := scanInt64s(ctx, s, func(g int64) { history[g] = true }, w.b.RoomID); err != nil {
		return err
	}
	var snapshots []int64
	if s, err = w.stmt(ctx, `SELECT id FROM state_groups WHERE id >= ? AND room_id = ? AND prev_group IS NULL`); err != nil {
		return err
	}
	err = scanInt64s(ctx, s, func(g int64) {
		if !history[g] {
			snapshots = append(snapshots, g)
		}
	}, joinGroup, w.b.RoomID)
	if err != nil {
		return err
	}
	var entries, current []any
	for k, id := range c.Entries {
		if id == "" {
			continue
		}
		for _, g := range snapshots {
			entries = append(entries, g, k.Type, k.StateKey, id)
		}
		current = append(current, w.b.RoomID, k.Type, k.StateKey, id)
	}
	if err := insertMissingEntries.exec(ctx, w.db.wstmts, w.tx, entries); err != nil {
		return err
	}
	if err := insertMissingCurrent.exec(ctx, w.db.wstmts, w.tx, current); err != nil {
		return err
	}
	if s, err = w.stmt(ctx, `DELETE FROM partial_state_rooms WHERE room_id = ?`); err != nil {
		return err
	}
	if _, err := s.ExecContext(ctx, w.b.RoomID); err != nil {
		return err
	}
	// Cached decodings of these groups, and of every group on top of
	// them, are stale once this commits (publish drops them).
	w.staleFrom = joinGroup
	return nil
}

func scanInt64s(ctx context.Context, s *sql.Stmt, each func(int64), args ...any) error {
	rows, err := s.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return err
		}
		each(v)
	}
	return rows.Err()
}
