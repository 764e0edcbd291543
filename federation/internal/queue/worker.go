package queue

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"
)

// run is w's goroutine: it delivers the destination's queue one
// transaction at a time until the queue is empty or ctx ends.
func (q *Queue) run(ctx context.Context, w *worker) {
	defer q.wg.Done()
	log := q.log.With("destination", w.dest)
	cur := &current{}
	st, err := q.loadState(ctx, w.dest)
	for err != nil {
		log.Warn("federation queue: storage error", "err", err)
		if !q.pause(ctx, w, q.cfg.MinBackoff) {
			return
		}
		st, err = q.loadState(ctx, w.dest)
	}
	for {
		// Everything enqueued before this point is visible to step; a
		// wake-up after it stays for retire to see.
		select {
		case <-w.wake:
		default:
		}
		more, err := q.step(ctx, w, &st, cur, log)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Warn("federation queue: storage error", "err", err)
			if !q.pause(ctx, w, q.cfg.MinBackoff) {
				return
			}
			// A failed write may have committed all the same: start again
			// from what is stored.
			if s, err := q.loadState(ctx, w.dest); err == nil {
				st = s
			}
			continue
		}
		if !more && q.retire(w) {
			return
		}
	}
}

// current caches the assembled transaction in flight, so a retry does not
// read it back from the database. Only the worker's goroutine uses it.
type current struct {
	txnID string
	txn   *Transaction
}

// step makes at most one delivery attempt. It reports false when there
// is nothing to send.
func (q *Queue) step(ctx context.Context, w *worker, st *destState, cur *current, log *slog.Logger) (bool, error) {
	reset := q.takeReset(w)
	now := q.cfg.Now()
	if wait := time.Duration(st.retryAt-now.UnixMilli()) * time.Millisecond; wait > 0 {
		if !reset {
			q.pause(ctx, w, wait)
			return true, nil
		}
		log.Debug("federation queue: destination is back, retrying now")
	}
	if reset {
		st.failures, st.retryAt = 0, 0
	}

	if st.txnID == "" || st.sent {
		rows, err := q.nextTxn(ctx, w.dest, st, now.UnixMilli())
		if err != nil || rows == nil {
			return false, err
		}
		cur.txnID, cur.txn = st.txnID, q.assemble(ctx, st, rows, log)
	} else if cur.txnID != st.txnID {
		rows, err := q.inFlight(ctx, w.dest, st)
		if err != nil {
			return false, err
		}
		cur.txnID, cur.txn = st.txnID, q.assemble(ctx, st, rows, log)
	}
	txn := cur.txn
	if txn == nil {
		cur.txnID = ""
		return false, errors.New("reading the transaction's events failed")
	}

	var sendErr error
	if len(txn.PDUs) > 0 || len(txn.EDUs) > 0 {
		select {
		case q.sem <- struct{}{}:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		sendErr = q.send.Send(ctx, w.dest, st.txnID, txn)
		<-q.sem
	}
	// else every PDU of it was gone from storage: there is nothing to
	// send, so it counts as delivered.

	if sendErr == nil {
		// The next step deletes its rows, together with taking the next
		// transaction; from now on the destination is not backing off.
		// Should the queue close first, the transaction is sent again
		// after the restart, and the receiver ignores the repeat.
		st.sent, st.failures, st.retryAt = true, 0, 0
		cur.txnID, cur.txn = "", nil
		return true, nil
	}
	if ctx.Err() != nil {
		// Closing: not the destination's fault. The transaction stays
		// recorded and is resent, same ID, after a restart.
		return false, ctx.Err()
	}
	if err := q.failed(ctx, w.dest, st, now.UnixMilli()); err != nil {
		return false, err
	}
	log.Info("federation queue: transaction not accepted", "txn", st.txnID, "err", sendErr,
		"failures", st.failures, "retry_in", time.Duration(st.retryAt-now.UnixMilli())*time.Millisecond)
	return true, nil
}

// assemble builds the transaction for rows, reading the PDUs from
// storage. A queued event no longer stored is left out (and logged): there
// is nothing to send for it. It returns nil if storage cannot be read.
func (q *Queue) assemble(ctx context.Context, st *destState, rows *txnRows, log *slog.Logger) *Transaction {
	txn := &Transaction{
		Origin:         q.cfg.ServerName,
		OriginServerTS: st.txnTS,
		PDUs:           make([]json.RawMessage, 0, len(rows.pdus)),
	}
	if len(rows.pdus) > 0 {
		ids := make([]string, len(rows.pdus))
		for i, p := range rows.pdus {
			ids[i] = p.eventID
		}
		events, err := q.db.Events(ctx, ids)
		if err != nil {
			log.Warn("federation queue: read events", "err", err)
			return nil
		}
		for _, p := range rows.pdus {
			ev := events[p.eventID]
			if ev == nil {
				log.Warn("federation queue: queued event is not stored; skipped", "event", p.eventID)
				continue
			}
			pdu, err := federationPDU(ev.JSON)
			if err != nil {
				log.Warn("federation queue: stored event unreadable; skipped", "event", p.eventID, "err", err)
				continue
			}
			txn.PDUs = append(txn.PDUs, pdu)
		}
	}
	for _, e := range rows.edus {
		txn.EDUs = append(txn.EDUs, EDU{Type: e.typ, Content: json.RawMessage(e.content)})
	}
	return txn
}

// pause waits for d, a wake-up of w, or the end of ctx; it reports false
// if ctx ended.
func (q *Queue) pause(ctx context.Context, w *worker, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-w.wake:
	}
	return true
}
