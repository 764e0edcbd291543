package rooms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
)

type requestKind uint8

const (
	reqCreate requestKind = iota + 1
	reqLocal
	reqRemote
	reqGiven
	reqTemplate
	reqBackfill
	reqComplete
)

type request struct {
	kind   requestKind
	local  *LocalEvent
	create *createRequest
	remote []*incoming
	given  *givenRequest
	// backfill is a Backfill (backfill.go).
	backfill *backfillRequest
	// complete is a CompleteState (partial.go).
	complete *completeRequest
	reply    chan *result
}

type result struct {
	stored   *Stored
	admitted *Admitted
	many     []AdmitResult
	proto    []byte // Template's answer, and the room version
	version  string
	// backfilled is Backfill's answer.
	backfilled []*Stored
	err        error
}

// worker is the serial owner of one room: every read-modify-write of the
// room's graph happens on its goroutine, so no locks guard roomState.
type worker struct {
	s      *Service
	roomID RoomID
	log    *slog.Logger
	reqs   chan *request
	stop   chan struct{}
	// done is closed when the worker has exited and answered everything
	// it took.
	done chan struct{}

	// pending counts requests promised to this worker; guarded by s.mu.
	pending int

	// jobs carries processed batches to the commit loop; one may wait
	// while another commits.
	jobs chan *job
	// gen counts reloads of st; failedGen is the generation whose commit
	// failed, set by the commit loop.
	gen       uint64
	failedGen atomic.Uint64

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
		done:   make(chan struct{}),
		jobs:   make(chan *job, 1),
		gen:    1,
	}
}

func (w *worker) run() {
	defer w.s.wg.Done()
	committed := make(chan struct{})
	go w.commitLoop(committed)
	defer func() {
		close(w.jobs)
		<-committed
		close(w.done)
	}()
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
			// Let the last commit land before the room can be reloaded by
			// a new worker.
			w.barrier()
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

// job is a processed batch on its way to storage.
type job struct {
	tx      *txn
	reqs    []*request
	results []*result
	// done, if set, is closed after the job (a flush barrier).
	done chan struct{}
}

// process runs a batch of requests against the in-memory room and hands
// the resulting storage batch to the commit loop. Building the next batch
// overlaps with committing this one; replies go out only after commit.
// A failed commit fails its batch and every later batch built on it, and
// the worker reloads the room from storage.
func (w *worker) process(reqs []*request) {
	w.s.mu.Lock()
	w.pending -= len(reqs)
	w.s.mu.Unlock()

	if w.failedGen.Load() == w.gen {
		w.st = nil
		w.gen++
	}
	ctx := context.Background()
	tx := newTxn(w)
	results := make([]*result, len(reqs))
	for i, req := range reqs {
		r := w.handle(ctx, tx, req)
		results[i] = r
		if r.err != nil && isFatal(r.err) {
			// Storage failed mid-batch: what is in memory may not match
			// what is stored. Fail the rest and start afresh.
			w.log.Error("storage failed; reloading room", "err", r.err)
			for j := i + 1; j < len(reqs); j++ {
				results[j] = &result{err: r.err}
			}
			w.failedGen.Store(w.gen)
			failAll(results[:i], r.err)
			tx = newTxn(w) // nothing of this batch is committed
			w.st = nil
			w.gen++
			break
		}
	}
	tx.seal()
	w.jobs <- &job{tx: tx, reqs: reqs, results: results}
	if w.st != nil && len(w.st.events) > len(w.st.current)+len(w.st.extrem)+maxCachedEvents {
		// Evicted events are re-read from storage, so they must be there.
		w.barrier()
		w.trimCache()
	}
}

// commitLoop commits jobs in order and answers their requests.
func (w *worker) commitLoop(done chan<- struct{}) {
	defer close(done)
	ctx := context.Background()
	for j := range w.jobs {
		if j.tx != nil {
			if w.failedGen.Load() == j.tx.gen {
				// Built on a batch that failed: even its duplicate answers
				// may name events that were never stored.
				failAll(j.results, errors.New("rooms: an earlier commit of this room failed"))
			} else if err := j.tx.write(ctx); err != nil {
				w.log.Error("commit failed; the room will be reloaded", "err", err)
				w.failedGen.Store(j.tx.gen)
				failAll(j.results, err)
			}
		}
		for i, req := range j.reqs {
			req.reply <- j.results[i]
		}
		// Let the callers just answered run before the next commit takes
		// this P: they are who brings the next batch to the worker.
		runtime.Gosched()
		if j.done != nil {
			close(j.done)
		}
	}
}

// barrier waits until every job handed to the commit loop is written.
func (w *worker) barrier() {
	done := make(chan struct{})
	w.jobs <- &job{done: done}
	<-done
}

// failAll turns every result whose event is not certainly stored into
// err. A duplicate answer is failed too: the event it names may belong to
// the batch that failed. A genuine duplicate is answered again on retry.
func failAll(results []*result, err error) {
	for i, r := range results {
		if r == nil || r.err != nil {
			continue
		}
		if uncommitted(r.stored) {
			results[i] = &result{err: err}
		}
		for j, a := range r.many {
			if a.Err == nil && a.Admitted != nil && (a.Duplicate || uncommitted(a.Stored)) {
				r.many[j] = AdmitResult{Err: err}
			}
		}
	}
}

func uncommitted(s *Stored) bool { return s != nil && s.StreamPos == 0 }

func (w *worker) handle(ctx context.Context, tx *txn, req *request) (res *result) {
	defer func() {
		// A bug must not take the server down with it: fail the request,
		// drop the room's memory (it is reloaded), and keep serving.
		if p := recover(); p != nil {
			w.log.Error("room worker panicked", "panic", p, "stack", string(debug.Stack()))
			res = &result{err: fatal(fmt.Errorf("rooms: internal error: %v", p))}
		}
	}()
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
		w.prefetch(ctx, req.remote)
		many := make([]AdmitResult, len(req.remote))
		for i, x := range req.remote {
			r := w.admit(ctx, tx, x)
			if r.err != nil && isFatal(r.err) {
				return r
			}
			many[i] = AdmitResult{Admitted: r.admitted, Err: r.err}
		}
		return &result{many: many}
	case reqGiven:
		return w.given(ctx, tx, req.given)
	case reqBackfill:
		return w.backfill(ctx, tx, req.backfill)
	case reqComplete:
		return w.complete(ctx, tx, req.complete)
	case reqTemplate:
		if err := w.load(ctx); err != nil {
			return &result{err: err}
		}
		return w.template(req.local)
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
