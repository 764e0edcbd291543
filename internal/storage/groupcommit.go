package storage

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// maxGroup bounds how many batches share one transaction.
const maxGroup = 64

// grouper merges Commits that arrive while another is writing into one
// transaction (group commit), writing each table once for the whole group
// where it can (commitMerged) and batch by batch in savepoints otherwise
// (commitMany). Each room's worker commits its own batches,
// one at a time; with many active rooms most of the cost of a commit is
// the transaction itself (for PostgreSQL a round trip and a WAL flush, for
// SQLite the WAL frame writes), so sharing one among rooms multiplies
// throughput. Each batch still succeeds or fails on its own: it runs inside
// a savepoint, and a failed batch is rolled back to it while the others
// commit.
//
// The first Commit to find no leader leads: it writes everything pending,
// then hands leadership to the oldest waiter, if any, and returns.
type grouper struct {
	db *DB

	mu sync.Mutex // guards the fields below
	// pending are the batches waiting for a leader.
	pending []*pendingCommit
	leading bool
}

type pendingCommit struct {
	ctx  context.Context
	b    *Batch
	err  error
	done chan struct{} // closed when err is final
	lead chan struct{} // signalled when this waiter becomes the leader
}

func (g *grouper) commit(ctx context.Context, b *Batch) error {
	p := &pendingCommit{ctx: ctx, b: b, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, p)
	if !g.leading {
		g.leading = true
		g.mu.Unlock()
		g.leadOnce()
	} else {
		g.mu.Unlock()
	}
	for {
		select {
		case <-p.done:
			return p.err
		case <-p.lead:
			g.leadOnce()
		}
	}
}

// leadOnce writes one group, then passes leadership on.
func (g *grouper) leadOnce() {
	g.mu.Lock()
	var group []*pendingCommit
	var rest []*pendingCommit
	rooms := map[string]bool{}
	for _, p := range g.pending {
		// One batch per room per group: a room's batches build on each
		// other's committed facts, which a group publishes only at its end.
		if len(group) < maxGroup && !rooms[p.b.RoomID] {
			rooms[p.b.RoomID] = true
			group = append(group, p)
		} else {
			rest = append(rest, p)
		}
	}
	g.pending = rest
	g.mu.Unlock()

	g.db.writeGroup(group)

	g.mu.Lock()
	if len(g.pending) > 0 {
		g.pending[0].lead <- struct{}{}
	} else {
		g.leading = false
	}
	g.mu.Unlock()
}

// writeGroup commits a group and settles every batch in it.
func (db *DB) writeGroup(group []*pendingCommit) {
	finish := func(p *pendingCommit, err error) {
		p.err = err
		close(p.done)
	}
	// Batches whose caller gave up before anything was written are not
	// written at all.
	live := group[:0]
	for _, p := range group {
		if err := p.ctx.Err(); err != nil {
			finish(p, fmt.Errorf("storage: commit %s: %w", p.b.RoomID, err))
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	db.writeSem <- struct{}{}
	defer func() { <-db.writeSem }()
	if db.closed {
		for _, p := range live {
			finish(p, errClosed)
		}
		return
	}
	if len(live) == 1 {
		finish(live[0], db.commitOne(live[0].ctx, live[0].b))
		return
	}
	// The shared transaction must not die with one caller's context; each
	// caller's own cancellation was checked above.
	ctx := context.WithoutCancel(live[0].ctx)
	errs, ok := db.commitMerged(ctx, live)
	if !ok {
		errs = db.commitMany(ctx, live)
	}
	// Every transaction is over: the writer connection can prepare the
	// statements that were first met inside one.
	db.wstmts.warm(ctx)
	for i, p := range live {
		finish(p, errs[i])
	}
}

// commitMany writes several rooms' batches in one transaction, each in a
// savepoint of its own.
func (db *DB) commitMany(ctx context.Context, group []*pendingCommit) []error {
	errs := make([]error, len(group))
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	startPos, startGroup := db.lastPos, db.lastGroup
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fail(fmt.Errorf("storage: commit: begin: %w", err))
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	done := make([]*commitTx, len(group))
	for i, p := range group {
		w := &commitTx{db: db, b: p.b, src: &overlay{shared: db.groups}, tx: tx}
		savedPos, savedGroup := db.lastPos, db.lastGroup
		if _, err := tx.ExecContext(ctx, "SAVEPOINT batch"); err != nil {
			db.forgetAll(group, done, true, startPos, startGroup)
			return fail(fmt.Errorf("storage: commit: savepoint: %w", err))
		}
		if err := w.steps(ctx); err != nil {
			errs[i] = fmt.Errorf("storage: commit %s: %w", p.b.RoomID, err)
			db.forget(p.b, true, savedPos, savedGroup)
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT batch"); rerr != nil {
				db.forgetAll(group, done, true, startPos, startGroup)
				return fail(fmt.Errorf("storage: commit: rollback to savepoint: %w", rerr))
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT batch"); err != nil {
			db.forgetAll(group, done, true, startPos, startGroup)
			return fail(fmt.Errorf("storage: commit: release savepoint: %w", err))
		}
		if errs[i] == nil {
			done[i] = w
		}
	}
	if err := tx.Commit(); err != nil {
		db.forgetAll(group, done, false, startPos, startGroup)
		return fail(fmt.Errorf("storage: commit: %w", err))
	}
	for _, w := range done {
		if w != nil {
			w.publish()
		}
	}
	db.maxPos.Store(db.lastPos)
	return errs
}

// forgetAll undoes a whole group's in-memory changes after the shared
// transaction failed: every batch's when it certainly rolled back (done may
// then be nil), otherwise those of the batches that had written (done).
func (db *DB) forgetAll(group []*pendingCommit, done []*commitTx, rolledBack bool, startPos, startGroup int64) {
	for i, p := range group {
		if rolledBack || done[i] != nil {
			db.forget(p.b, false, 0, 0)
		}
	}
	if rolledBack {
		db.lastPos, db.lastGroup = startPos, startGroup
	}
}

// sink collects the bulk writes of a group's batches so that each table is
// written with as few statements as the group needs, not as many as it has
// batches: with PostgreSQL every statement is a round trip.
type sink struct {
	groups, entries      []any
	events, authEdges    []any
	extremRooms          []string
	extremities, current []any
	deltas               []any
}

func (k *sink) exec(ctx context.Context, db *DB, tx *sql.Tx) error {
	c := db.wstmts
	if err := insertStateGroups.exec(ctx, c, tx, k.groups); err != nil {
		return err
	}
	if err := insertStateEntries.exec(ctx, c, tx, k.entries); err != nil {
		return err
	}
	if err := insertEvents.exec(ctx, c, tx, k.events); err != nil {
		return err
	}
	if err := insertAuthEdges.exec(ctx, c, tx, k.authEdges); err != nil {
		return err
	}
	const del = `DELETE FROM room_extremities WHERE room_id IN (%s)`
	for off := 0; off < len(k.extremRooms); {
		args, take := inArgs(k.extremRooms, off)
		s, err := c.in(ctx, tx, del, len(args))
		if err != nil {
			return err
		}
		if _, err := s.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("clear extremities: %w", err)
		}
		off += take
	}
	if err := insertExtremities.exec(ctx, c, tx, k.extremities); err != nil {
		return err
	}
	if err := upsertCurrentState.exec(ctx, c, tx, k.current); err != nil {
		return err
	}
	return upsertStateDeltas.exec(ctx, c, tx, k.deltas)
}

// commitMerged writes a group of batches with shared statements. It
// reports ok=false, with nothing written and nothing in memory changed,
// when a batch fails in a way it cannot pin on that batch alone; the
// caller then writes the group batch by batch in savepoints.
func (db *DB) commitMerged(ctx context.Context, group []*pendingCommit) (errs []error, ok bool) {
	errs = make([]error, len(group))
	startPos, startGroup := db.lastPos, db.lastGroup
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, false
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// One duplicate check for the whole group. A batch that would insert
	// an event already stored fails alone, before anything is written.
	var ids []string
	for _, p := range group {
		for i := range p.b.Events {
			ids = append(ids, p.b.Events[i].Record.EventID)
		}
	}
	stored := map[string]bool{} // event ID -> stored as an outlier
	err = eachChunk(ctx, db.wstmts, tx, `SELECT event_id, outlier FROM events WHERE event_id IN (%s)`, ids,
		func(rows *sql.Rows) error {
			var id string
			var outlier bool
			err := rows.Scan(&id, &outlier)
			stored[id] = outlier
			return err
		})
	if err != nil {
		return nil, false
	}
	k := &sink{}
	ws := make([]*commitTx, len(group))
	for i, p := range group {
		w := &commitTx{db: db, b: p.b, src: &overlay{shared: db.groups}, tx: tx, sink: k, prechecked: true}
		w.deoutlier = make([]bool, len(p.b.Events))
		for j := range p.b.Events {
			r := &p.b.Events[j].Record
			outlier, found := stored[r.EventID]
			if !found {
				continue
			}
			if !outlier || r.Outlier {
				errs[i] = fmt.Errorf("storage: commit %s: event %s: %w", p.b.RoomID, r.EventID, ErrDuplicateEvent)
				break
			}
			w.deoutlier[j] = true
		}
		if errs[i] != nil {
			continue
		}
		if err := w.steps(ctx); err != nil {
			db.forgetAll(group, nil, true, startPos, startGroup)
			return nil, false
		}
		ws[i] = w
	}
	if err := k.exec(ctx, db, tx); err != nil {
		db.forgetAll(group, nil, true, startPos, startGroup)
		return nil, false
	}
	if err := tx.Commit(); err != nil {
		// It may have reached the disk: fail everything, hand no numbers
		// out again.
		for i, p := range group {
			if errs[i] == nil {
				db.forget(p.b, false, 0, 0)
				errs[i] = fmt.Errorf("storage: commit %s: commit: %w", p.b.RoomID, err)
			}
		}
		return errs, true
	}
	for _, w := range ws {
		if w != nil {
			w.publish()
		}
	}
	db.maxPos.Store(db.lastPos)
	return errs, true
}
