package storage

import (
	"context"
	"fmt"
	"sort"
)

var insertBackward = &bulkInsert{
	head: `INSERT INTO backward_extremities (room_id, event_id) VALUES `,
	tail: ` ON CONFLICT DO NOTHING`,
	cols: 2,
}

// backward records the batch's backward extremities and deletes those it
// places or drops. Batches that name none and are not backfill skip it: a
// live event is never one of the room's backward extremities, which are
// older than the join that found them.
func (w *commitTx) backward(ctx context.Context) error {
	b := w.b
	if !b.Backfill && len(b.BackwardExtremities) == 0 && len(b.DropBackward) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(b.BackwardExtremities))
	for _, id := range dedupe(b.BackwardExtremities) {
		args = append(args, b.RoomID, id)
	}
	if err := insertBackward.exec(ctx, w.db.wstmts, w.tx, args); err != nil {
		return fmt.Errorf("backward extremities: %w", err)
	}
	done := append([]string(nil), b.DropBackward...)
	for i := range b.Events {
		if r := &b.Events[i].Record; !r.Outlier {
			done = append(done, r.EventID)
		}
	}
	done = dedupe(done)
	const q = `DELETE FROM backward_extremities WHERE room_id = ? AND event_id IN (%s)`
	for off := 0; off < len(done); {
		ids, take := inArgs(done, off)
		s, err := w.db.wstmts.in(ctx, w.tx, q, len(ids))
		if err != nil {
			return err
		}
		if _, err := s.ExecContext(ctx, append([]any{b.RoomID}, ids...)...); err != nil {
			return fmt.Errorf("clear backward extremities: %w", err)
		}
		off += take
	}
	return nil
}

// BackwardExtremities returns, sorted, the events roomID's placed events
// cite as prev events that are not placed here: where backfilling goes on
// from. None means this server holds the room's history back to its
// creation, or to where it could not be fetched.
func (db *DB) BackwardExtremities(ctx context.Context, roomID string) ([]string, error) {
	s, err := db.rstmts.fixed(ctx, nil, `SELECT event_id FROM backward_extremities WHERE room_id = ?`)
	if err != nil {
		return nil, err
	}
	rows, err := s.QueryContext(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("storage: backward extremities of %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("storage: scan: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: backward extremities of %s: %w", roomID, err)
	}
	sort.Strings(out)
	return out, nil
}
