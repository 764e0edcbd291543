package queue

import (
	"context"
	"database/sql"
	"fmt"
	"sort"

	"github.com/plexus-chat/plexus/internal/storage"
)

// Destination is what the queue knows of one destination, for the
// operator page: its backlog and its backoff.
type Destination struct {
	Name string
	// PDUs and EDUs count the queued rows, those of the transaction in
	// flight included.
	PDUs, EDUs int
	// InFlight is the transaction being delivered ("" if none): sent and
	// not yet answered, or waiting to be resent after a failure.
	InFlight string
	// Failures counts the failed attempts in a row; RetryAtMS (Unix ms)
	// is when the next attempt may go, 0 if no backoff holds it.
	Failures  int64
	RetryAtMS int64
	// CatchingUp: it failed since its backlog was last empty, so a long
	// backlog is cut to the newest PDU per room.
	CatchingUp bool
	// Running: a worker is delivering to it now.
	Running bool
}

// Destinations lists every destination with queued rows or a stored
// state (one that ever had a transaction), sorted by name. It reads one
// snapshot of the database.
func (q *Queue) Destinations(ctx context.Context) ([]Destination, error) {
	byName := map[string]*Destination{}
	get := func(name string) *Destination {
		d := byName[name]
		if d == nil {
			d = &Destination{Name: name}
			byName[name] = d
		}
		return d
	}
	err := q.db.View(ctx, func(t *storage.Tx) error {
		count := func(table string, set func(d *Destination, n int)) error {
			return scanRows(ctx, t, `SELECT destination, COUNT(*) FROM `+table+` GROUP BY destination`, nil,
				func(rows *sql.Rows) error {
					var name string
					var n int
					if err := rows.Scan(&name, &n); err != nil {
						return err
					}
					set(get(name), n)
					return nil
				})
		}
		if err := count("federation_queue_pdus", func(d *Destination, n int) { d.PDUs = n }); err != nil {
			return err
		}
		if err := count("federation_queue_edus", func(d *Destination, n int) { d.EDUs = n }); err != nil {
			return err
		}
		return scanRows(ctx, t, `SELECT destination, txn_id, failures, retry_at, catch_up FROM federation_destinations`, nil,
			func(rows *sql.Rows) error {
				var name, txn string
				var failures, retryAt int64
				var catchUp bool
				if err := rows.Scan(&name, &txn, &failures, &retryAt, &catchUp); err != nil {
					return err
				}
				d := get(name)
				d.InFlight, d.Failures, d.RetryAtMS, d.CatchingUp = txn, failures, retryAt, catchUp
				return nil
			})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: destinations: %w", err)
	}
	q.mu.Lock()
	for name := range q.workers {
		get(name).Running = true
	}
	q.mu.Unlock()
	out := make([]Destination, 0, len(byName))
	for _, d := range byName {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
