package storage

import (
	"context"
	"fmt"
	"sync"
)

// maxGroup bounds how many batches share one transaction.
const maxGroup = 64

// grouper merges Commits that arrive while another is writing into one
// transaction (group commit). Each room's worker commits its own batches,
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
	errs := db.commitMany(ctx, live)
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
	db.wstmts.warm(ctx)
	for _, w := range done {
		if w != nil {
			w.publish()
		}
	}
	db.maxPos.Store(db.lastPos)
	return errs
}

// forgetAll undoes a whole group's in-memory changes after the shared
// transaction failed.
func (db *DB) forgetAll(group []*pendingCommit, done []*commitTx, rolledBack bool, startPos, startGroup int64) {
	for i, p := range group {
		if done[i] != nil || rolledBack {
			db.forget(p.b, false, 0, 0)
		}
	}
	if rolledBack {
		db.lastPos, db.lastGroup = startPos, startGroup
	}
	db.wstmts.warm(context.Background())
}
