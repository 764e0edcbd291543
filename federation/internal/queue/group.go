package queue

import (
	"context"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
)

// groupTimeout bounds the write of one group of updates.
const groupTimeout = 30 * time.Second

// op is one update waiting to be written with its group.
type op struct {
	fn   func(ctx context.Context, t *storage.Tx) error
	done chan error    // the group's result, if another caller wrote it
	lead chan struct{} // this caller is to write the next group
}

// update runs fn in a database write transaction together with every
// update that arrives while a previous group is being written: one
// commit per group instead of one per call. Enqueues from many rooms and
// the bookkeeping of many destinations' workers all write, each write
// waits for the one before it, and a commit (an fsync) costs far more
// than the statements in it, so under load this is the difference
// between a commit per event per destination and a commit per burst.
//
// The functions of a group run in arrival order; fn must leave its
// results unused unless update returns nil, and must return an error
// only when the database fails, because any error rolls back the whole
// group and is returned to every caller in it.
//
// The first caller to find no writer becomes the writer. When its group
// is written it hands the role to the oldest caller still waiting, if
// any, and returns: no caller writes more than one group.
func (q *Queue) update(ctx context.Context, fn func(ctx context.Context, t *storage.Tx) error) error {
	o := &op{fn: fn, done: make(chan error, 1), lead: make(chan struct{}, 1)}
	q.wmu.Lock()
	q.wpending = append(q.wpending, o)
	lead := !q.wbusy
	q.wbusy = true
	q.wmu.Unlock()
	if !lead {
		// No return on ctx: a waiter may be handed the writer's role,
		// and a group's write is bounded by groupTimeout.
		select {
		case err := <-o.done:
			return err
		case <-o.lead:
		}
	}

	q.wmu.Lock()
	group := q.wpending
	q.wpending = nil
	q.wmu.Unlock()

	// The group is written even if this caller gives up: it carries the
	// other callers' work too.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupTimeout)
	err := q.db.Update(wctx, func(t *storage.Tx) error {
		for _, g := range group {
			if err := g.fn(wctx, t); err != nil {
				return err
			}
		}
		return nil
	})
	cancel()
	for _, g := range group {
		if g != o {
			g.done <- err
		}
	}

	q.wmu.Lock()
	if len(q.wpending) > 0 {
		q.wpending[0].lead <- struct{}{}
	} else {
		q.wbusy = false
	}
	q.wmu.Unlock()
	return err
}
