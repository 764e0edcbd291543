package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
)

// Transaction limits (Server-Server API, "Transactions": "at most 50 PDUs
// and 100 EDUs").
const (
	MaxPDUsPerTxn = 50
	MaxEDUsPerTxn = 100
)

// StaleTyping is the age past which a waiting m.typing EDU is dropped
// instead of sent. Clients time typing out after at most 30 s by default
// (Client-Server API, PUT /rooms/{roomId}/typing/{userId}), so an older
// notification is no longer true.
const StaleTyping = 30 * time.Second

// maxTxnEDUBytes bounds the EDU content of one transaction, and so the
// size of any one EDU. With 50 PDUs of at most 64 KiB it keeps a body far
// below the 16 MiB that fedhttp (and receivers like it) accept.
const maxTxnEDUBytes = 4 << 20

// ErrClosed is returned by calls on a closed Queue.
var ErrClosed = errors.New("queue: closed")

// Config tunes the queue. Zero fields take the defaults noted.
type Config struct {
	// ServerName is this server: never a destination, and the origin of
	// every transaction. Required.
	ServerName string
	// MaxPDUs and MaxEDUs bound one transaction: 50 and 100, which are
	// also the largest values allowed.
	MaxPDUs, MaxEDUs int
	// MinBackoff is the wait after a first failure (default 5 s); each
	// further failure in a row doubles it, up to MaxBackoff (default 1 h).
	MinBackoff, MaxBackoff time.Duration
	// CatchUpAfter is the waiting-PDU count beyond which a destination
	// that failed keeps only the newest PDU per room (default 200).
	CatchUpAfter int
	// MaxInFlight bounds the transactions in flight across all
	// destinations (default 64). The Sender's timeouts decide how long a
	// dead destination can hold one of them.
	MaxInFlight int
	// Now is the clock (default time.Now); backoff and typing staleness
	// are measured with it.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.ServerName == "" {
		return errors.New("queue: Config.ServerName is required")
	}
	switch {
	case c.MaxPDUs == 0:
		c.MaxPDUs = MaxPDUsPerTxn
	case c.MaxPDUs < 0 || c.MaxPDUs > MaxPDUsPerTxn:
		return fmt.Errorf("queue: MaxPDUs %d out of range 1..%d", c.MaxPDUs, MaxPDUsPerTxn)
	}
	switch {
	case c.MaxEDUs == 0:
		c.MaxEDUs = MaxEDUsPerTxn
	case c.MaxEDUs < 0 || c.MaxEDUs > MaxEDUsPerTxn:
		return fmt.Errorf("queue: MaxEDUs %d out of range 1..%d", c.MaxEDUs, MaxEDUsPerTxn)
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 5 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Hour
	}
	if c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("queue: MaxBackoff %v is below MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	}
	if c.CatchUpAfter <= 0 {
		c.CatchUpAfter = 200
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Queue is the federation outbound queue. It is safe for concurrent use.
type Queue struct {
	cfg  Config
	db   *storage.DB
	send Sender
	log  *slog.Logger
	sem  chan struct{} // a token per transaction in flight

	// lastID is the last queue row ID handed out; see allocIDs.
	lastID int64

	// wmu guards the following fields: the updates waiting to be
	// written, and whether one of their callers is writing (see update).
	wmu      sync.Mutex
	wpending []*op
	wbusy    bool

	// mu guards the following fields.
	mu      sync.Mutex
	workers map[string]*worker // destinations with a running worker
	started bool
	closed  bool

	wg sync.WaitGroup // running workers
}

// worker is one destination's goroutine, as the Queue sees it.
type worker struct {
	dest   string
	wake   chan struct{} // capacity 1: "look at the queue again"
	cancel context.CancelFunc
	// reset asks the worker to end its backoff; guarded by Queue.mu.
	reset bool
}

// New returns a queue over db that delivers with send. No worker runs
// until Start.
func New(cfg Config, db *storage.DB, send Sender, log *slog.Logger) (*Queue, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if db == nil || send == nil {
		return nil, errors.New("queue: a database and a Sender are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Queue{
		cfg:     cfg,
		db:      db,
		send:    send,
		log:     log,
		sem:     make(chan struct{}, cfg.MaxInFlight),
		workers: map[string]*worker{},
	}, nil
}

// Start starts a worker for every destination with persisted work, and
// lets later enqueues start theirs. Calling it again does nothing.
func (q *Queue) Start(ctx context.Context) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	again := q.started
	q.started = true
	q.mu.Unlock()
	if again {
		return nil
	}
	dests, err := q.pendingDestinations(ctx)
	if err != nil {
		return fmt.Errorf("queue: start: %w", err)
	}
	q.wakeAll(dests)
	return nil
}

// Close stops every worker, cancelling the sends in flight, and waits for
// them. Work not yet accepted stays queued for the next Start; a
// transaction cut short is resent with the same ID. Calling it again
// returns nil.
func (q *Queue) Close() error {
	q.mu.Lock()
	q.closed = true
	for _, w := range q.workers {
		w.cancel()
	}
	q.mu.Unlock()
	q.wg.Wait()
	return nil
}

// EnqueuePDU queues the stored event eventID of roomID for each
// destination. It returns once the queue rows are committed; delivery
// happens in the background. This server and duplicate names are skipped.
func (q *Queue) EnqueuePDU(ctx context.Context, destinations []string, roomID, eventID string) error {
	if roomID == "" || eventID == "" {
		return errors.New("queue: enqueue pdu: room and event IDs are required")
	}
	dests := q.targets(destinations)
	if len(dests) == 0 {
		return nil
	}
	if q.isClosed() {
		return ErrClosed
	}
	r := &enqueueReq{dests: dests, roomID: roomID, eventID: eventID}
	if err := q.update(ctx, func(ctx context.Context, t *storage.Tx) error { return q.insert(ctx, t, r) }); err != nil {
		return fmt.Errorf("queue: enqueue %s: %w", eventID, err)
	}
	q.wakeAll(dests)
	return nil
}

// EnqueueEDU queues edu for each destination, after the EDUs already
// queued for it: EDUs reach a destination in the order they were queued.
// Its content must be a JSON object of at most 4 MiB.
func (q *Queue) EnqueueEDU(ctx context.Context, destinations []string, edu EDU) error {
	switch {
	case edu.Type == "":
		return errors.New("queue: enqueue edu: no edu_type")
	case len(edu.Content) > maxTxnEDUBytes:
		return fmt.Errorf("queue: enqueue %s edu: content of %d bytes is over %d", edu.Type, len(edu.Content), maxTxnEDUBytes)
	case !isObject(edu.Content):
		// A malformed EDU would fail every attempt and block the
		// destination's queue behind it.
		return fmt.Errorf("queue: enqueue %s edu: content is not a JSON object", edu.Type)
	}
	dests := q.targets(destinations)
	if len(dests) == 0 {
		return nil
	}
	if q.isClosed() {
		return ErrClosed
	}
	r := &enqueueReq{dests: dests, edu: &edu, nowMS: q.cfg.Now().UnixMilli()}
	if err := q.update(ctx, func(ctx context.Context, t *storage.Tx) error { return q.insert(ctx, t, r) }); err != nil {
		return fmt.Errorf("queue: enqueue %s edu: %w", edu.Type, err)
	}
	q.wakeAll(dests)
	return nil
}

func isObject(b json.RawMessage) bool {
	if !json.Valid(b) {
		return false
	}
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// Reset ends destination's backoff: it has just contacted us, so it is
// up, and waiting work is tried at once. It does no I/O, so it is cheap
// enough to call on every inbound request.
func (q *Queue) Reset(destination string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w := q.workers[destination]; w != nil {
		w.reset = true
		signal(w.wake)
	}
}

// Backlog counts destination's queued PDUs and EDUs, including those in
// the transaction in flight. It reads the database; on error it logs and
// reports zeros.
func (q *Queue) Backlog(destination string) (pdus, edus int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pdus, edus, err := q.backlog(ctx, destination)
	if err != nil {
		q.log.Warn("federation queue: backlog", "destination", destination, "err", err)
		return 0, 0
	}
	return pdus, edus
}

// targets drops this server, empty names and duplicates.
func (q *Queue) targets(destinations []string) []string {
	out := make([]string, 0, len(destinations))
	seen := make(map[string]struct{}, len(destinations))
	for _, d := range destinations {
		if d == "" || d == q.cfg.ServerName {
			continue
		}
		if _, dup := seen[d]; dup {
			continue
		}
		seen[d] = struct{}{}
		out = append(out, d)
	}
	return out
}

func (q *Queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// wakeAll makes each destination's worker look at its queue, starting
// one where none runs. Before Start it does nothing: Start finds the work.
func (q *Queue) wakeAll(dests []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.started || q.closed {
		return
	}
	for _, d := range dests {
		if w := q.workers[d]; w != nil {
			signal(w.wake)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		w := &worker{dest: d, wake: make(chan struct{}, 1), cancel: cancel}
		q.workers[d] = w
		q.wg.Add(1)
		go q.run(ctx, w)
	}
}

// retire removes w once it found nothing to do, unless it was woken
// since it looked: then it must look again and retire reports false.
func (q *Queue) retire(w *worker) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case <-w.wake:
		return false
	default:
	}
	delete(q.workers, w.dest)
	w.cancel()
	return true
}

// takeReset reports and clears a pending Reset of w.
func (q *Queue) takeReset(w *worker) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := w.reset
	w.reset = false
	return r
}

// backoff is the wait after the n-th failure in a row (n >= 1).
func (q *Queue) backoff(n int64) time.Duration {
	d := q.cfg.MinBackoff
	for i := int64(1); i < n && d < q.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, q.cfg.MaxBackoff)
}

// signal sends on a capacity-1 channel without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
