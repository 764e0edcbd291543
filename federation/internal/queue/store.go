package queue

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/plexus-chat/plexus/internal/storage"
)

// destState is a destination's row of federation_destinations. The
// destination's worker is its only writer once running.
type destState struct {
	txnID    string // the transaction in flight, "" if none
	txnTS    int64  // its origin_server_ts
	pduLast  int64  // it holds the PDU rows with IDs up to this (0: none)
	eduLast  int64  // and the EDU rows up to this
	failures int64  // failed attempts in a row
	retryAt  int64  // unix ms; no attempt before
	catchUp  bool   // failed since the backlog was last empty

	// sent (never stored) means txnID was accepted and its rows are
	// still to be deleted. Until they are, a restart resends it, which
	// the receiver ignores as a repeat.
	sent bool
}

// pduRow and eduRow are queue rows put in one transaction.
type pduRow struct {
	id              int64
	roomID, eventID string
}

type eduRow struct {
	id      int64
	typ     string
	content []byte
}

// txnRows is what one transaction holds, in queue order.
type txnRows struct {
	pdus []pduRow
	edus []eduRow
}

func (r *txnRows) empty() bool { return len(r.pdus) == 0 && len(r.edus) == 0 }

// insertRows is how many rows one INSERT carries: well under both
// backends' bind parameter limits at six parameters a row.
const insertRows = 500

// allocIDs returns the first of n new row IDs. Row IDs are allocated only
// inside DB.Update functions, which storage runs one at a time, so IDs
// increase in commit order and lastID needs no lock of its own. A
// transaction that rolls back leaves a gap, which is harmless.
func (q *Queue) allocIDs(ctx context.Context, t *storage.Tx, n int) (int64, error) {
	if q.lastID == 0 {
		var maxID int64
		err := t.QueryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM (
			SELECT MAX(id) AS id FROM federation_queue_pdus
			UNION ALL SELECT MAX(id) AS id FROM federation_queue_edus
			UNION ALL SELECT MAX(pdu_last) AS id FROM federation_destinations
			UNION ALL SELECT MAX(edu_last) AS id FROM federation_destinations) m`).Scan(&maxID)
		if err != nil {
			return 0, fmt.Errorf("read queue position: %w", err)
		}
		q.lastID = maxID
	}
	first := q.lastID + 1
	q.lastID += int64(n)
	return first, nil
}

// enqueueReq is one EnqueuePDU or EnqueueEDU call.
type enqueueReq struct {
	dests           []string
	roomID, eventID string // a PDU, or
	edu             *EDU   // an EDU
	nowMS           int64
}

// insert writes r's rows.
func (q *Queue) insert(ctx context.Context, t *storage.Tx, r *enqueueReq) error {
	id, err := q.allocIDs(ctx, t, len(r.dests))
	if err != nil {
		return err
	}
	if r.edu != nil {
		args := make([]any, 0, 5*len(r.dests))
		for _, d := range r.dests {
			args = append(args, id, d, r.edu.Type, []byte(r.edu.Content), r.nowMS)
			id++
		}
		if err := insertChunks(ctx, t, `INSERT INTO federation_queue_edus (id, destination, edu_type, content, enqueued_ts) VALUES `, args, 5); err != nil {
			return fmt.Errorf("queue edu: %w", err)
		}
		return nil
	}
	args := make([]any, 0, 4*len(r.dests))
	for _, d := range r.dests {
		args = append(args, id, d, r.roomID, r.eventID)
		id++
	}
	if err := insertChunks(ctx, t, `INSERT INTO federation_queue_pdus (id, destination, room_id, event_id) VALUES `, args, 4); err != nil {
		return fmt.Errorf("queue pdu: %w", err)
	}
	return nil
}

// insertChunks runs prefix with multi-row VALUES over args, cols a row,
// insertRows rows a statement.
func insertChunks(ctx context.Context, t *storage.Tx, prefix string, args []any, cols int) error {
	for len(args) > 0 {
		n := min(len(args)/cols, insertRows)
		if _, err := t.Exec(ctx, prefix+placeholders(n, cols), args[:n*cols]...); err != nil {
			return err
		}
		args = args[n*cols:]
	}
	return nil
}

// placeholders returns "(?,?,...),(...)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + strings.Repeat("?,", cols-1) + "?)"
	return strings.Repeat(one+",", rows-1) + one
}

// loadState reads dest's row; a destination without one has a zero state.
func (q *Queue) loadState(ctx context.Context, dest string) (destState, error) {
	var st destState
	err := q.db.View(ctx, func(t *storage.Tx) error {
		err := t.QueryRow(ctx, `SELECT txn_id, txn_ts, pdu_last, edu_last, failures, retry_at, catch_up
			FROM federation_destinations WHERE destination = ?`, dest).
			Scan(&st.txnID, &st.txnTS, &st.pduLast, &st.eduLast, &st.failures, &st.retryAt, &st.catchUp)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return destState{}, fmt.Errorf("load destination %s: %w", dest, err)
	}
	return st, nil
}

// saveState writes dest's row.
func saveState(ctx context.Context, t *storage.Tx, dest string, st *destState) error {
	_, err := t.Exec(ctx, `INSERT INTO federation_destinations
			(destination, txn_id, txn_ts, pdu_last, edu_last, failures, retry_at, catch_up)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (destination) DO UPDATE SET txn_id = excluded.txn_id, txn_ts = excluded.txn_ts,
			pdu_last = excluded.pdu_last, edu_last = excluded.edu_last,
			failures = excluded.failures, retry_at = excluded.retry_at, catch_up = excluded.catch_up`,
		dest, st.txnID, st.txnTS, st.pduLast, st.eduLast, st.failures, st.retryAt, st.catchUp)
	if err != nil {
		return fmt.Errorf("save destination %s: %w", dest, err)
	}
	return nil
}

// nextTxn records dest's transaction st.txnID as accepted if st.sent,
// deleting its rows, and puts the oldest waiting rows in a new
// transaction; one database transaction does both. It returns nil rows
// when nothing waits. st is updated only if the write commits.
func (q *Queue) nextTxn(ctx context.Context, dest string, st *destState, nowMS int64) (*txnRows, error) {
	var (
		rows *txnRows
		next destState
	)
	err := q.update(ctx, func(ctx context.Context, t *storage.Tx) error {
		rows, next = nil, *st
		if st.sent {
			if err := deleteUpTo(ctx, t, "federation_queue_pdus", dest, st.pduLast); err != nil {
				return err
			}
			if err := deleteUpTo(ctx, t, "federation_queue_edus", dest, st.eduLast); err != nil {
				return err
			}
			next = destState{catchUp: st.catchUp}
		}
		if next.catchUp {
			if err := q.collapse(ctx, t, dest, next.pduLast); err != nil {
				return err
			}
		}
		r, stale, err := q.waiting(ctx, t, dest, &next, nowMS)
		if err != nil {
			return err
		}
		if len(stale) > 0 {
			if _, err := t.Exec(ctx, `DELETE FROM federation_queue_edus WHERE id IN (`+
				strings.TrimSuffix(strings.Repeat("?,", len(stale)), ",")+`)`, stale...); err != nil {
				return fmt.Errorf("drop stale typing: %w", err)
			}
		}
		if r.empty() {
			// Nothing waits: the backlog is drained, so catch-up ends.
			if !st.sent && !next.catchUp {
				return nil // nothing to record
			}
			next.catchUp = false
			return saveState(ctx, t, dest, &next)
		}
		// The rows are the oldest of dest (all older ones were
		// delivered), and every row enqueued later gets a higher ID: the
		// transaction is "dest's rows up to these IDs".
		next.txnID, next.txnTS, next.pduLast, next.eduLast = newTxnID(), nowMS, 0, 0
		if len(r.pdus) > 0 {
			next.pduLast = r.pdus[len(r.pdus)-1].id
		}
		if len(r.edus) > 0 {
			next.eduLast = r.edus[len(r.edus)-1].id
		}
		rows = r
		return saveState(ctx, t, dest, &next)
	})
	if err != nil {
		return nil, fmt.Errorf("next transaction for %s: %w", dest, err)
	}
	*st = next
	return rows, nil
}

// waiting reads the oldest rows of dest not yet in a transaction, within
// the transaction limits, and lists the IDs of the stale typing EDUs
// among them, which are left out (see the package documentation).
func (q *Queue) waiting(ctx context.Context, t *storage.Tx, dest string, st *destState, nowMS int64) (*txnRows, []any, error) {
	r := &txnRows{}
	err := scanRows(ctx, t, `SELECT id, room_id, event_id FROM federation_queue_pdus
		WHERE destination = ? AND id > ? ORDER BY id LIMIT ?`, []any{dest, st.pduLast, q.cfg.MaxPDUs},
		func(rows *sql.Rows) error {
			var p pduRow
			if err := rows.Scan(&p.id, &p.roomID, &p.eventID); err != nil {
				return err
			}
			r.pdus = append(r.pdus, p)
			return nil
		})
	if err != nil {
		return nil, nil, fmt.Errorf("read waiting pdus: %w", err)
	}
	var (
		stale     []any
		size      int
		staleTime = nowMS - StaleTyping.Milliseconds()
	)
	err = scanRows(ctx, t, `SELECT id, edu_type, content, enqueued_ts FROM federation_queue_edus
		WHERE destination = ? AND id > ? ORDER BY id LIMIT ?`, []any{dest, st.eduLast, q.cfg.MaxEDUs},
		func(rows *sql.Rows) error {
			var (
				e  eduRow
				ts int64
			)
			if err := rows.Scan(&e.id, &e.typ, &e.content, &ts); err != nil {
				return err
			}
			if e.typ == "m.typing" && ts < staleTime {
				stale = append(stale, e.id)
				return nil
			}
			// Keep the body well under what receivers accept; the rest
			// goes in the next transaction, in order.
			if size += len(e.content); size > maxTxnEDUBytes && len(r.edus) > 0 {
				return errStopScan
			}
			r.edus = append(r.edus, e)
			return nil
		})
	if err != nil {
		return nil, nil, fmt.Errorf("read waiting edus: %w", err)
	}
	return r, stale, nil
}

// inFlight reads the rows of dest's recorded transaction.
func (q *Queue) inFlight(ctx context.Context, dest string, st *destState) (*txnRows, error) {
	r := &txnRows{}
	err := q.db.View(ctx, func(t *storage.Tx) error {
		err := scanRows(ctx, t, `SELECT id, room_id, event_id FROM federation_queue_pdus
			WHERE destination = ? AND id <= ? ORDER BY id`, []any{dest, st.pduLast},
			func(rows *sql.Rows) error {
				var p pduRow
				if err := rows.Scan(&p.id, &p.roomID, &p.eventID); err != nil {
					return err
				}
				r.pdus = append(r.pdus, p)
				return nil
			})
		if err != nil {
			return err
		}
		return scanRows(ctx, t, `SELECT id, edu_type, content FROM federation_queue_edus
			WHERE destination = ? AND id <= ? ORDER BY id`, []any{dest, st.eduLast},
			func(rows *sql.Rows) error {
				var e eduRow
				if err := rows.Scan(&e.id, &e.typ, &e.content); err != nil {
					return err
				}
				r.edus = append(r.edus, e)
				return nil
			})
	})
	if err != nil {
		return nil, fmt.Errorf("read transaction %s for %s: %w", st.txnID, dest, err)
	}
	return r, nil
}

// failed records a failed attempt: the backoff, and catch-up mode, which
// at once cuts a long backlog down (so a long outage does not grow the
// queue without bound either).
func (q *Queue) failed(ctx context.Context, dest string, st *destState, nowMS int64) error {
	next := *st
	next.failures++
	next.retryAt = nowMS + q.backoff(next.failures).Milliseconds()
	next.catchUp = true
	err := q.update(ctx, func(ctx context.Context, t *storage.Tx) error {
		if err := q.collapse(ctx, t, dest, next.pduLast); err != nil {
			return err
		}
		return saveState(ctx, t, dest, &next)
	})
	if err != nil {
		return fmt.Errorf("record failure of %s: %w", dest, err)
	}
	*st = next
	return nil
}

// collapse keeps only the newest waiting PDU of each room when more than
// CatchUpAfter wait. Rows of the transaction in flight (up to inFlight)
// are untouched: it must be retried as it was.
func (q *Queue) collapse(ctx context.Context, t *storage.Tx, dest string, inFlight int64) error {
	var n int
	if err := t.QueryRow(ctx, `SELECT COUNT(*) FROM federation_queue_pdus
		WHERE destination = ? AND id > ?`, dest, inFlight).Scan(&n); err != nil {
		return fmt.Errorf("count backlog: %w", err)
	}
	if n <= q.cfg.CatchUpAfter {
		return nil
	}
	res, err := t.Exec(ctx, `DELETE FROM federation_queue_pdus
		WHERE destination = ? AND id > ? AND id NOT IN (
			SELECT MAX(id) FROM federation_queue_pdus
			WHERE destination = ? AND id > ? GROUP BY room_id)`, dest, inFlight, dest, inFlight)
	if err != nil {
		return fmt.Errorf("collapse backlog: %w", err)
	}
	dropped, _ := res.RowsAffected()
	q.log.Info("federation destination catching up: kept the newest event per room",
		"destination", dest, "backlog", n, "dropped", dropped)
	return nil
}

// backlog counts dest's rows, in flight or waiting.
func (q *Queue) backlog(ctx context.Context, dest string) (pdus, edus int, err error) {
	err = q.db.View(ctx, func(t *storage.Tx) error {
		if err := t.QueryRow(ctx, `SELECT COUNT(*) FROM federation_queue_pdus WHERE destination = ?`,
			dest).Scan(&pdus); err != nil {
			return err
		}
		return t.QueryRow(ctx, `SELECT COUNT(*) FROM federation_queue_edus WHERE destination = ?`,
			dest).Scan(&edus)
	})
	return pdus, edus, err
}

// pendingDestinations lists every destination with queued rows.
func (q *Queue) pendingDestinations(ctx context.Context) ([]string, error) {
	var dests []string
	err := q.db.View(ctx, func(t *storage.Tx) error {
		var err error
		dests, err = t.Strings(ctx, `SELECT destination FROM federation_queue_pdus
			UNION SELECT destination FROM federation_queue_edus`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list pending destinations: %w", err)
	}
	return dests, nil
}

// deleteUpTo deletes dest's rows of table with IDs up to last.
func deleteUpTo(ctx context.Context, t *storage.Tx, table, dest string, last int64) error {
	if last == 0 {
		return nil
	}
	if _, err := t.Exec(ctx, `DELETE FROM `+table+` WHERE destination = ? AND id <= ?`, dest, last); err != nil {
		return fmt.Errorf("delete delivered rows: %w", err)
	}
	return nil
}

// errStopScan ends scanRows early without an error.
var errStopScan = errors.New("stop")

// scanRows runs query and calls scan for each row until it returns
// errStopScan or an error.
func scanRows(ctx context.Context, t *storage.Tx, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := t.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			if errors.Is(err, errStopScan) {
				return nil
			}
			return err
		}
	}
	return rows.Err()
}

// newTxnID returns a fresh transaction ID. The receiver deduplicates by
// (origin, txnId) (Server-Server API, PUT /send/{txnId}), so an ID must
// never repeat for a destination; 96 random bits make that certain
// without keeping a counter, and the URL-safe alphabet needs no escaping
// in the path.
func newTxnID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}
