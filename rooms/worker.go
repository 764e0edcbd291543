package rooms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
)

type requestKind uint8

const (
	reqCreate requestKind = iota + 1
	reqLocal
	reqRemote
)

type request struct {
	kind   requestKind
	local  *LocalEvent
	create *createRequest
	remote [][]byte
	reply  chan *result
}

type result struct {
	stored   *Stored
	admitted *Admitted
	many     []AdmitResult
	err      error
}

// worker is the serial owner of one room: every read-modify-write of the
// room's graph happens on its goroutine, so no locks guard roomState.
type worker struct {
	s      *Service
	roomID RoomID
	log    *slog.Logger
	reqs   chan *request
	stop   chan struct{}

	// pending counts requests promised to this worker; guarded by s.mu.
	pending int

	// tx is the batch in progress while a request batch is processed.
	tx *txn

	// st is the in-memory room, nil until loaded (or after a failed commit,
	// which forces a reload from storage).
	st *roomState
}

func newWorker(s *Service, roomID RoomID) *worker {
	return &worker{
		s:      s,
		roomID: roomID,
		log:    s.log.With("room", roomID),
		reqs:   make(chan *request, s.cfg.MaxBatch),
		stop:   make(chan struct{}),
	}
}

func (w *worker) run() {
	defer w.s.wg.Done()
	idle := time.NewTimer(w.s.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		select {
		case req := <-w.reqs:
			batch := w.drain(req)
			w.process(batch)
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(w.s.cfg.IdleTimeout)
		case <-idle.C:
			if w.idle() {
				return
			}
			idle.Reset(w.s.cfg.IdleTimeout)
		case <-w.stop:
			// Finish what was already handed over, then exit.
			for {
				select {
				case req := <-w.reqs:
					w.process(w.drain(req))
				default:
					return
				}
			}
		}
	}
}

// drain collects req and whatever else is queued, up to MaxBatch, so one
// transaction commits them all.
func (w *worker) drain(first *request) []*request {
	batch := []*request{first}
	for len(batch) < w.s.cfg.MaxBatch {
		select {
		case r := <-w.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// idle removes the worker if nothing is on its way to it.
func (w *worker) idle() bool {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.pending > 0 || len(w.reqs) > 0 {
		return false
	}
	delete(w.s.workers, w.roomID)
	return true
}

// process runs a batch of requests against the room and commits every
// resulting change in one transaction. A failed commit fails the whole
// batch and drops the in-memory state, which is then reloaded.
func (w *worker) process(reqs []*request) {
	w.s.mu.Lock()
	w.pending -= len(reqs)
	w.s.mu.Unlock()

	ctx := context.Background()
	tx := newTxn(w)
	w.tx = tx
	results := make([]*result, len(reqs))
	failed := false
	for i, req := range reqs {
		r := w.handle(ctx, tx, req)
		results[i] = r
		if r.err != nil && isFatal(r.err) {
			// Storage failed mid-batch: what is in memory may not match
			// what is stored. Fail the rest and start afresh.
			w.failAll(results[:i], r.err)
			for j := i + 1; j < len(reqs); j++ {
				results[j] = &result{err: r.err}
			}
			failed = true
			break
		}
	}
	if !failed {
		if err := tx.commit(ctx); err != nil {
			w.failAll(results, err)
		}
	}
	w.tx = nil
	for i, req := range reqs {
		req.reply <- results[i]
	}
}

func (w *worker) failAll(results []*result, err error) {
	w.log.Error("commit failed; reloading room", "err", err)
	w.st = nil
	for i, r := range results {
		if r == nil || r.err != nil {
			continue
		}
		if uncommitted(r.stored) {
			results[i] = &result{err: err}
		}
		for j, a := range r.many {
			if a.Err == nil && a.Admitted != nil && !a.Duplicate && uncommitted(a.Stored) {
				r.many[j] = AdmitResult{Err: err}
			}
		}
	}
}

func uncommitted(s *Stored) bool { return s != nil && s.StreamPos == 0 }

func (w *worker) handle(ctx context.Context, tx *txn, req *request) *result {
	switch req.kind {
	case reqCreate:
		return w.create(ctx, tx, req.create)
	case reqLocal:
		if err := w.load(ctx); err != nil {
			return &result{err: err}
		}
		return w.appendLocal(ctx, tx, req.local)
	case reqRemote:
		if err := w.load(ctx); err != nil {
			return &result{err: err}
		}
		many := make([]AdmitResult, len(req.remote))
		for i, data := range req.remote {
			r := w.admit(ctx, tx, data)
			if r.err != nil && isFatal(r.err) {
				return r
			}
			many[i] = AdmitResult{Admitted: r.admitted, Err: r.err}
		}
		return &result{many: many}
	}
	return &result{err: fmt.Errorf("rooms: unknown request kind %d", req.kind)}
}

// fatalError marks storage failures that poison the batch.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

func fatal(err error) error {
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return &fatalError{err: err}
}
