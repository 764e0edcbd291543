package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Commit writes b in one transaction: all of it or none of it.
//
// Events are inserted in order. An event that is already stored is an error
// wrapping ErrDuplicateEvent, unless the stored copy is an outlier and the
// new one is not: then the stored row is de-outliered in place (it takes the
// new state, rejection and soft-fail flags and a new stream position; its
// JSON and edges are kept).
//
// On success Commit fills Record.StreamPos and Record.StateGroup of every
// b.Events[i]; on failure it leaves them zero. It also deletes the
// missing_prevs rows of the room whose event is now stored.
func (db *DB) Commit(ctx context.Context, b *Batch) error {
	if err := validateBatch(b); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: commit %s: %w", b.RoomID, err)
	}
	return db.group.commit(ctx, b)
}

// commitOne writes one batch in its own transaction. The caller holds
// writeSem.
func (db *DB) commitOne(ctx context.Context, b *Batch) error {
	w := &commitTx{db: db, b: b, src: &overlay{shared: db.groups}}
	savedPos, savedGroup := db.lastPos, db.lastGroup
	attempted, err := w.run(ctx)
	// The writer connection is free again: prepare statements that missed.
	db.wstmts.warm(ctx)
	if err != nil {
		db.forget(b, !attempted, savedPos, savedGroup)
		return fmt.Errorf("storage: commit %s: %w", b.RoomID, err)
	}
	w.publish()
	db.maxPos.Store(db.lastPos)
	return nil
}

// forget undoes what a failed batch left in memory. Numbers are handed
// out again only when the transaction certainly rolled back: a failed
// COMMIT may still have reached the disk.
func (db *DB) forget(b *Batch, rolledBack bool, savedPos, savedGroup int64) {
	// Whatever the failure, the room is re-read next time.
	delete(db.rooms, b.RoomID)
	for i := range b.Events {
		b.Events[i].Record.StreamPos = 0
		b.Events[i].Record.StateGroup = 0
	}
	if rolledBack {
		db.lastPos, db.lastGroup = savedPos, savedGroup
	}
}

// publish makes a committed batch's facts visible to later batches.
func (w *commitTx) publish() {
	w.src.publish()
	if w.staleFrom != 0 {
		w.db.groups.invalidate(w.staleFrom)
	}
	w.db.rooms[w.b.RoomID] = w.meta
	for i := range w.b.Events {
		w.db.recent.add(w.b.Events[i].Record.EventID, w.groups[w.b.Events[i].Record.EventID])
	}
}

// validateBatch rejects malformed batches before any I/O.
func validateBatch(b *Batch) error {
	if b.RoomID == "" {
		return errors.New("storage: commit: batch has no room ID")
	}
	if b.Backfill && (b.Extremities != nil || len(b.CurrentDelta) > 0 || b.CreateVersion != "") {
		return fmt.Errorf("storage: commit %s: a backfill batch changes the room's extremities or state", b.RoomID)
	}
	seen := make(map[string]struct{}, len(b.Events))
	for i := range b.Events {
		ev := &b.Events[i]
		r := &ev.Record
		switch {
		case r.EventID == "":
			return fmt.Errorf("storage: commit %s: event %d has no ID", b.RoomID, i)
		case r.RoomID != b.RoomID:
			return fmt.Errorf("storage: commit %s: event %s is in room %q", b.RoomID, r.EventID, r.RoomID)
		case len(r.JSON) == 0:
			return fmt.Errorf("storage: commit %s: event %s has no JSON", b.RoomID, r.EventID)
		case r.Outlier && ev.State != nil:
			return fmt.Errorf("storage: commit %s: outlier %s has state", b.RoomID, r.EventID)
		case !r.Outlier && r.Rejected == "" && ev.State == nil:
			return fmt.Errorf("storage: commit %s: event %s needs state", b.RoomID, r.EventID)
		case r.Rejected != "" && ev.State != nil && namesEvent(ev.State.Delta, r.EventID):
			return fmt.Errorf("storage: commit %s: rejected event %s is in its own state", b.RoomID, r.EventID)
		}
		if _, dup := seen[r.EventID]; dup {
			return fmt.Errorf("storage: commit %s: event %s twice in one batch", b.RoomID, r.EventID)
		}
		seen[r.EventID] = struct{}{}
	}
	for _, m := range b.MissingPrevs {
		if m.RoomID != b.RoomID && m.RoomID != "" {
			return fmt.Errorf("storage: commit %s: missing prev %s is in room %q", b.RoomID, m.EventID, m.RoomID)
		}
	}
	return nil
}

func namesEvent(m StateMap, eventID string) bool {
	for _, id := range m {
		if id == eventID {
			return true
		}
	}
	return false
}

// commitTx is the state of one Commit.
type commitTx struct {
	db  *DB
	b   *Batch
	tx  *sql.Tx
	src *overlay

	meta      roomMeta // the room after this batch, if it commits
	deoutlier []bool   // per b.Events index: update an outlier row instead of inserting
	// prechecked: deoutlier was filled by a group-level query.
	prechecked bool
	// sink, if set, collects the batch's bulk writes so a group of batches
	// writes each table with one statement (see groupcommit.go).
	sink   *sink
	groups map[string]groupRef // event ID in this batch -> the group after it

	// Buffered state group rows, flushed before anything reads groups back
	// and before the events that reference them.
	groupArgs []any
	entryArgs []any

	// staleFrom, if non-zero, is the first state group that a
	// CompleteState changed in place: cached decodings from it on are
	// dropped when the batch commits.
	staleFrom int64
}

// groupRef is a state group and its distance from its snapshot.
type groupRef struct {
	id       int64 // 0: the event has no state
	chainLen int64
}

func (w *commitTx) run(ctx context.Context) (attempted bool, err error) {
	tx, err := w.db.write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	w.tx = tx
	if err := w.steps(ctx); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return true, fmt.Errorf("commit: %w", err)
	}
	return true, nil
}

// steps writes the batch inside w.tx.
func (w *commitTx) steps(ctx context.Context) error {
	steps := []func(context.Context) error{
		w.room,
		w.precheck,
		w.states,
		w.events,
		w.missingPrevs,
		w.backward,
		w.partialState,
		w.extremities,
		w.currentState,
		w.maxDepth,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if afterStepsHook != nil {
		return afterStepsHook(w.b)
	}
	return nil
}

// afterStepsHook, set only by tests, can fail a batch after all its rows
// are written, to prove that the failure takes them all back.
var afterStepsHook func(*Batch) error

func (w *commitTx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	return w.db.wstmts.fixed(ctx, w.tx, query)
}

// room creates the room row, or checks that it exists and learns its depth
// and whether it has missing prevs.
func (w *commitTx) room(ctx context.Context) error {
	if w.b.CreateVersion != "" {
		s, err := w.stmt(ctx, `INSERT INTO rooms (room_id, version, max_depth) VALUES (?, ?, 0) ON CONFLICT DO NOTHING`)
		if err != nil {
			return err
		}
		res, err := s.ExecContext(ctx, w.b.RoomID, w.b.CreateVersion)
		if err != nil {
			return fmt.Errorf("create room: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("create room: %w", err)
		}
		if n != 1 {
			return errors.New("create room: room already exists")
		}
		w.meta = roomMeta{}
		return nil
	}
	if m, ok := w.db.rooms[w.b.RoomID]; ok {
		w.meta = m
		return nil
	}
	s, err := w.stmt(ctx, `SELECT max_depth, EXISTS (SELECT 1 FROM missing_prevs WHERE room_id = ?)
		FROM rooms WHERE room_id = ?`)
	if err != nil {
		return err
	}
	err = s.QueryRowContext(ctx, w.b.RoomID, w.b.RoomID).Scan(&w.meta.maxDepth, &w.meta.hasMissing)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("room: %w", ErrNotFound)
	}
	return err
}

// precheck finds which batch events are already stored, in one query per
// chunk instead of one per event.
func (w *commitTx) precheck(ctx context.Context) error {
	if len(w.b.Events) == 0 || w.prechecked {
		return nil
	}
	ids := make([]string, len(w.b.Events))
	index := make(map[string]int, len(w.b.Events))
	for i := range w.b.Events {
		ids[i] = w.b.Events[i].Record.EventID
		index[ids[i]] = i
	}
	w.deoutlier = make([]bool, len(ids))
	return eachChunk(ctx, w.db.wstmts, w.tx, `SELECT event_id, outlier FROM events WHERE event_id IN (%s)`, ids,
		func(rows *sql.Rows) error {
			var id string
			var outlier bool
			if err := rows.Scan(&id, &outlier); err != nil {
				return err
			}
			i := index[id]
			if !outlier || w.b.Events[i].Record.Outlier {
				return fmt.Errorf("event %s: %w", id, ErrDuplicateEvent)
			}
			w.deoutlier[i] = true
			return nil
		})
}

// events inserts new event rows and their auth edges, and de-outliers stored
// outliers, assigning stream positions in batch order.
func (w *commitTx) events(ctx context.Context) error {
	var eventArgs, authArgs []any
	var nextBack int64
	if w.b.Backfill {
		// Below everything stored, ascending in batch order. A failed
		// batch's numbers are not handed out again, like lastPos's.
		nextBack = w.db.firstPos - int64(len(w.b.Events))
		w.db.firstPos = nextBack
	}
	for i := range w.b.Events {
		r := &w.b.Events[i].Record
		if w.b.Backfill {
			r.StreamPos = nextBack
			nextBack++
		} else {
			w.db.lastPos++
			r.StreamPos = w.db.lastPos
		}
		if w.deoutlier[i] {
			if err := w.deoutlierRow(ctx, r); err != nil {
				return err
			}
			continue
		}
		var stateKey any
		if r.StateKey != nil {
			stateKey = *r.StateKey
		}
		eventArgs = append(eventArgs, r.StreamPos, r.EventID, r.RoomID, r.Type, stateKey, r.Depth, r.OriginServerTS,
			r.JSON, encodeIDs(r.PrevEvents), encodeIDs(r.AuthEvents), r.Rejected, r.SoftFailed, r.Outlier, r.StateGroup,
			nullable(r.ReplacesState))
		for _, a := range r.AuthEvents {
			authArgs = append(authArgs, r.EventID, a)
		}
	}
	if w.sink != nil {
		w.sink.events = append(w.sink.events, eventArgs...)
		w.sink.authEdges = append(w.sink.authEdges, authArgs...)
		return nil
	}
	c := w.db.wstmts
	if err := insertEvents.exec(ctx, c, w.tx, eventArgs); err != nil {
		return err
	}
	return insertAuthEdges.exec(ctx, c, w.tx, authArgs)
}

var (
	insertEvents = &bulkInsert{
		head: `INSERT INTO events (stream_pos, event_id, room_id, type, state_key, depth, origin_server_ts,
			json, prev_events, auth_events, rejected, soft_failed, outlier, state_group, replaces_state) VALUES `,
		cols: 15,
	}
	// DO NOTHING: a PDU may list the same auth event twice.
	insertAuthEdges = &bulkInsert{
		head: `INSERT INTO event_auth_edges (event_id, auth_id) VALUES `,
		tail: ` ON CONFLICT DO NOTHING`,
		cols: 2,
	}
	insertMissingPrevs = &bulkInsert{
		head: `INSERT INTO missing_prevs (room_id, event_id, referenced_by) VALUES `,
		tail: ` ON CONFLICT DO NOTHING`,
		cols: 3,
	}
	insertExtremities = &bulkInsert{
		head: `INSERT INTO room_extremities (room_id, event_id) VALUES `,
		tail: ` ON CONFLICT DO NOTHING`,
		cols: 2,
	}
	upsertCurrentState = &bulkInsert{
		head: `INSERT INTO current_state (room_id, type, state_key, event_id) VALUES `,
		tail: ` ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id`,
		cols: 4,
	}
	// DO UPDATE: a batch without events shares its position with the
	// batch before it.
	upsertStateDeltas = &bulkInsert{
		head: `INSERT INTO current_state_deltas (room_id, stream_pos, type, state_key, event_id) VALUES `,
		tail: ` ON CONFLICT (room_id, stream_pos, type, state_key) DO UPDATE SET event_id = excluded.event_id`,
		cols: 5,
	}
)

// nullable maps a nil string to SQL NULL.
func nullable(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// deoutlierRow turns a stored outlier into a full event. Its edges were
// written when it was stored as an outlier.
func (w *commitTx) deoutlierRow(ctx context.Context, r *EventRecord) error {
	s, err := w.stmt(ctx, `UPDATE events SET outlier = ?, stream_pos = ?, state_group = ?, rejected = ?, soft_failed = ?,
		replaces_state = ? WHERE event_id = ?`)
	if err != nil {
		return err
	}
	if _, err := s.ExecContext(ctx, false, r.StreamPos, r.StateGroup, r.Rejected, r.SoftFailed, nullable(r.ReplacesState), r.EventID); err != nil {
		return fmt.Errorf("de-outlier %s: %w", r.EventID, err)
	}
	return nil
}

// missingPrevs records the batch's missing prevs, then deletes the room's
// missing prevs that are stored now: the batch's own events, and any new
// "missing" prev that was in fact already stored. Only those IDs can have
// changed, so the delete touches the batch, not the room; and a room known
// to have no missing prevs skips it. It also deletes the rows of
// b.FilledGaps.
func (w *commitTx) missingPrevs(ctx context.Context) error {
	if len(w.b.MissingPrevs) == 0 && !w.meta.hasMissing {
		return nil
	}
	args := make([]any, 0, 3*len(w.b.MissingPrevs))
	var prevIDs []string
	for _, m := range w.b.MissingPrevs {
		args = append(args, w.b.RoomID, m.EventID, m.ReferencedBy)
		prevIDs = append(prevIDs, m.EventID)
	}
	if err := insertMissingPrevs.exec(ctx, w.db.wstmts, w.tx, args); err != nil {
		return err
	}
	stored := make([]string, 0, len(w.b.Events))
	for i := range w.b.Events {
		stored = append(stored, w.b.Events[i].Record.EventID)
	}
	err := eachChunk(ctx, w.db.wstmts, w.tx, `SELECT event_id FROM events WHERE event_id IN (%s)`, dedupe(prevIDs),
		func(rows *sql.Rows) error {
			var id string
			err := rows.Scan(&id)
			stored = append(stored, id)
			return err
		})
	if err != nil {
		return fmt.Errorf("missing prevs already stored: %w", err)
	}
	stored = dedupe(stored)
	const q = `DELETE FROM missing_prevs WHERE room_id = ? AND event_id IN (%s)`
	for off := 0; off < len(stored); {
		ids, take := inArgs(stored, off)
		s, err := w.db.wstmts.in(ctx, w.tx, q, len(ids))
		if err != nil {
			return err
		}
		if _, err := s.ExecContext(ctx, append([]any{w.b.RoomID}, ids...)...); err != nil {
			return fmt.Errorf("clear missing prevs: %w", err)
		}
		off += take
	}
	const qFilled = `DELETE FROM missing_prevs WHERE room_id = ? AND referenced_by IN (%s)`
	filled := dedupe(w.b.FilledGaps)
	for off := 0; off < len(filled); {
		ids, take := inArgs(filled, off)
		s, err := w.db.wstmts.in(ctx, w.tx, qFilled, len(ids))
		if err != nil {
			return err
		}
		if _, err := s.ExecContext(ctx, append([]any{w.b.RoomID}, ids...)...); err != nil {
			return fmt.Errorf("clear filled gaps: %w", err)
		}
		off += take
	}
	s, err := w.stmt(ctx, `SELECT EXISTS (SELECT 1 FROM missing_prevs WHERE room_id = ?)`)
	if err != nil {
		return err
	}
	if err := s.QueryRowContext(ctx, w.b.RoomID).Scan(&w.meta.hasMissing); err != nil {
		return fmt.Errorf("missing prevs left: %w", err)
	}
	return nil
}

func (w *commitTx) extremities(ctx context.Context) error {
	if w.b.Extremities == nil {
		return nil
	}
	if w.sink != nil {
		w.sink.extremRooms = append(w.sink.extremRooms, w.b.RoomID)
		for _, id := range w.b.Extremities {
			w.sink.extremities = append(w.sink.extremities, w.b.RoomID, id)
		}
		return nil
	}
	s, err := w.stmt(ctx, `DELETE FROM room_extremities WHERE room_id = ?`)
	if err != nil {
		return err
	}
	if _, err := s.ExecContext(ctx, w.b.RoomID); err != nil {
		return fmt.Errorf("clear extremities: %w", err)
	}
	args := make([]any, 0, 2*len(w.b.Extremities))
	for _, id := range w.b.Extremities {
		args = append(args, w.b.RoomID, id)
	}
	return insertExtremities.exec(ctx, w.db.wstmts, w.tx, args)
}

func (w *commitTx) currentState(ctx context.Context) error {
	var set, deltas []any
	var del *sql.Stmt
	// The change is recorded at the batch's last position (the events
	// step has numbered them): a reader of the stream up to it has read
	// the events that caused it.
	pos := w.db.lastPos
	for k, id := range w.b.CurrentDelta {
		deltas = append(deltas, w.b.RoomID, pos, k.Type, k.StateKey, nullable(nonEmpty(id)))
		if id != "" {
			set = append(set, w.b.RoomID, k.Type, k.StateKey, id)
			continue
		}
		if del == nil {
			var err error
			if del, err = w.stmt(ctx, `DELETE FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?`); err != nil {
				return err
			}
		}
		if _, err := del.ExecContext(ctx, w.b.RoomID, k.Type, k.StateKey); err != nil {
			return fmt.Errorf("current state: %w", err)
		}
	}
	if w.sink != nil {
		w.sink.current = append(w.sink.current, set...)
		w.sink.deltas = append(w.sink.deltas, deltas...)
		return nil
	}
	if err := upsertCurrentState.exec(ctx, w.db.wstmts, w.tx, set); err != nil {
		return err
	}
	return upsertStateDeltas.exec(ctx, w.db.wstmts, w.tx, deltas)
}

// nonEmpty is s, or nil for "".
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (w *commitTx) maxDepth(ctx context.Context) error {
	if w.b.MaxDepth <= w.meta.maxDepth {
		return nil
	}
	// The guard keeps the stored depth from going down should the cached
	// one ever lag behind it.
	s, err := w.stmt(ctx, `UPDATE rooms SET max_depth = ? WHERE room_id = ? AND max_depth < ?`)
	if err != nil {
		return err
	}
	if _, err := s.ExecContext(ctx, w.b.MaxDepth, w.b.RoomID, w.b.MaxDepth); err != nil {
		return fmt.Errorf("max depth: %w", err)
	}
	w.meta.maxDepth = w.b.MaxDepth
	return nil
}
