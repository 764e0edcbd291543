package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// eventCols is the column list every event read selects, in scanEvent order.
const eventCols = `event_id, room_id, type, state_key, depth, origin_server_ts, json,
	prev_events, auth_events, rejected, soft_failed, outlier, stream_pos, state_group, replaces_state`

func scanEvent(rows *sql.Rows) (*EventRecord, error) {
	var (
		e          EventRecord
		stateKey   sql.NullString
		replaces   sql.NullString
		prev, auth string
	)
	if err := rows.Scan(&e.EventID, &e.RoomID, &e.Type, &stateKey, &e.Depth, &e.OriginServerTS, &e.JSON,
		&prev, &auth, &e.Rejected, &e.SoftFailed, &e.Outlier, &e.StreamPos, &e.StateGroup, &replaces); err != nil {
		return nil, fmt.Errorf("storage: scan event: %w", err)
	}
	if stateKey.Valid {
		e.StateKey = &stateKey.String
	}
	if replaces.Valid {
		e.ReplacesState = &replaces.String
	}
	var err error
	if e.PrevEvents, err = decodeIDs(prev); err != nil {
		return nil, fmt.Errorf("storage: event %s prev_events: %w", e.EventID, err)
	}
	if e.AuthEvents, err = decodeIDs(auth); err != nil {
		return nil, fmt.Errorf("storage: event %s auth_events: %w", e.EventID, err)
	}
	return &e, nil
}

// encodeIDs stores an ID list as a JSON array. This is storage's own column
// format, never hashed or signed, so encoding/json is fine here.
func encodeIDs(ids []string) string {
	if len(ids) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(ids) // cannot fail for []string
	return string(b)
}

// decodeIDs is the inverse of encodeIDs; an empty list decodes to nil.
func decodeIDs(s string) ([]string, error) {
	if s == "[]" || s == "" {
		return nil, nil
	}
	var ids []string
	if err := json.Unmarshal([]byte(s), &ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// eachIn runs query (with one "%s" for an IN list) over ids in chunks on the
// read pool, calling scan for every row.
func (db *DB) eachIn(ctx context.Context, query string, ids []string, scan func(*sql.Rows) error) error {
	if err := eachChunk(ctx, db.rstmts, nil, query, ids, scan); err != nil {
		return fmt.Errorf("storage: query: %w", err)
	}
	return nil
}

// Events loads the stored events among eventIDs; IDs not stored are simply
// absent from the result.
func (db *DB) Events(ctx context.Context, eventIDs []string) (map[string]*EventRecord, error) {
	out := make(map[string]*EventRecord, len(eventIDs))
	err := db.eachIn(ctx, `SELECT `+eventCols+` FROM events WHERE event_id IN (%s)`, dedupe(eventIDs),
		func(rows *sql.Rows) error {
			e, err := scanEvent(rows)
			if err != nil {
				return err
			}
			out[e.EventID] = e
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// HaveEvents reports for each of eventIDs whether it is stored (outliers
// included).
func (db *DB) HaveEvents(ctx context.Context, eventIDs []string) (map[string]bool, error) {
	out := make(map[string]bool, len(eventIDs))
	for _, id := range eventIDs {
		out[id] = false
	}
	err := db.eachIn(ctx, `SELECT event_id FROM events WHERE event_id IN (%s)`, dedupe(eventIDs),
		func(rows *sql.Rows) error {
			var id string
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("storage: scan: %w", err)
			}
			out[id] = true
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// authChainQuery walks event_auth_edges from the input IDs (one "%%s" for
// the IN list). UNION (not UNION ALL) drops rows already produced, so each
// event is expanded once and a malformed cycle still terminates. Every step
// is a primary-key lookup on event_auth_edges (see dialect.authStep), so the
// cost is the size of the chain, not of the room.
func authChainQuery(d *dialect) string {
	return `WITH RECURSIVE chain(id) AS (
	SELECT auth_id FROM event_auth_edges WHERE event_id IN (%s)
	UNION
	` + d.authStep + `
)
SELECT id FROM chain`
}

// AuthChain returns, sorted, every event ID reachable from eventIDs through
// auth_events edges. An input appears only if it is reachable from another
// input. IDs are returned whether or not the event itself is stored (an
// unstored auth event is a leaf); use HaveEvents to tell.
func (db *DB) AuthChain(ctx context.Context, eventIDs []string) ([]string, error) {
	seen := map[string]struct{}{}
	err := db.eachIn(ctx, authChainQuery(db.d), dedupe(eventIDs), func(rows *sql.Rows) error {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("storage: scan: %w", err)
		}
		seen[id] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

// EventsSince returns up to limit events with StreamPos > afterPos in
// ascending StreamPos order. Outliers are included (check Outlier); an
// outlier that is later de-outliered moves to a new, higher position.
func (db *DB) EventsSince(ctx context.Context, afterPos int64, limit int) ([]*EventRecord, error) {
	if limit <= 0 {
		return nil, errors.New("storage: EventsSince: limit must be positive")
	}
	s, err := db.rstmts.fixed(ctx, nil, `SELECT `+eventCols+` FROM events WHERE stream_pos > ? ORDER BY stream_pos LIMIT ?`)
	if err != nil {
		return nil, err
	}
	rows, err := s.QueryContext(ctx, afterPos, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: events since %d: %w", afterPos, err)
	}
	defer rows.Close()
	var out []*EventRecord
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: events since %d: %w", afterPos, err)
	}
	return out, nil
}

// MaxStreamPos returns the highest committed stream position (0 if none).
func (db *DB) MaxStreamPos(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return db.maxPos.Load(), nil
}

// dedupe returns ids without repeats, keeping first occurrences in order.
func dedupe(ids []string) []string {
	if len(ids) < 2 {
		return ids
	}
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}
