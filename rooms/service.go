package rooms

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plexus-chat/plexus/internal/storage"
)

// Store is what the room workers need from storage; *storage.DB provides it.
type Store interface {
	Room(ctx context.Context, roomID string) (*storage.RoomInfo, error)
	Events(ctx context.Context, eventIDs []string) (map[string]*storage.EventRecord, error)
	AuthChain(ctx context.Context, eventIDs []string) ([]string, error)
	StateAfter(ctx context.Context, eventID string) (storage.StateMap, error)
	MissingPrevs(ctx context.Context, roomID string) ([]storage.MissingPrev, error)
	PartialStateRoom(ctx context.Context, roomID string) (*storage.PartialStateRoom, error)
	Commit(ctx context.Context, b *storage.Batch) error
}

// Listener hears about events once they are durably stored, in stream
// order per room. It is called from the room's worker goroutine and must
// not block; later issues hang /sync wake-ups and federation senders here.
type Listener interface {
	EventsStored(roomID RoomID, events []*Stored)
}

// Stored is an event with the outcome of its checks and its stream position.
type Stored struct {
	Event      *Event
	StreamPos  int64
	Rejected   string
	SoftFailed bool
	Outlier    bool
}

type noopListener struct{}

func (noopListener) EventsStored(RoomID, []*Stored) {}

// Config is the Service's configuration.
type Config struct {
	// Signer is this server's identity: events it creates are signed with it.
	Signer Signer
	// IdleTimeout is how long a room's worker lives without requests before
	// it exits and frees its in-memory state. Default 2 minutes.
	IdleTimeout time.Duration
	// MaxBatch bounds how many queued requests one worker commits in one
	// transaction. Default 256.
	MaxBatch int
}

// Deps are the Service's collaborators.
type Deps struct {
	Store Store
	// Keys finds remote servers' verify keys for signature checks; nil
	// means only our own key is known. It is called from many goroutines.
	Keys     KeyFinder
	Listener Listener
	Logger   *slog.Logger
	// Metrics, if set, receives the service's Prometheus instruments.
	Metrics prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service owns the room workers.
type Service struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics

	mu sync.Mutex // guards the fields below
	// workers holds the running worker of each active room.
	workers map[RoomID]*worker
	closed  bool

	wg sync.WaitGroup // running workers

	// versions caches each known room's version (RoomID -> *pdu.Version)
	// so remote events can be checked before they reach the worker.
	versions sync.Map

	// partial records which rooms are partial-state (partial.go).
	partial partialRooms
}

// ErrClosed is returned for requests after Close.
var ErrClosed = errors.New("rooms: service closed")

// ErrUnknownRoom is returned when a room is not stored here.
var ErrUnknownRoom = errors.New("rooms: unknown room")

// New makes a Service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Store == nil {
		return nil, errors.New("rooms: a Store is required")
	}
	if cfg.Signer.Key == nil || cfg.Signer.KeyID == "" || cfg.Signer.Server == "" {
		return nil, errors.New("rooms: a Signer with server, key ID and key is required")
	}
	if _, err := ParseServerName(string(cfg.Signer.Server)); err != nil {
		return nil, fmt.Errorf("rooms: %w", err)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if deps.Listener == nil {
		deps.Listener = noopListener{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	own := cfg.Signer
	ownPub, ok := own.Key.Public().(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("rooms: signer key is not ed25519")
	}
	remote := deps.Keys
	deps.Keys = func(server ServerName, keyID string) (VerifyKey, bool) {
		if server == own.Server && keyID == own.KeyID {
			return VerifyKey{Key: ownPub, ValidUntilTS: 1<<53 - 1}, true
		}
		if remote == nil {
			return VerifyKey{}, false
		}
		return remote(server, keyID)
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("rooms: metrics: %w", err)
	}
	return &Service{cfg: cfg, deps: deps, log: deps.Logger, metrics: m, workers: map[RoomID]*worker{}}, nil
}

// Close stops every worker after it finishes the requests it holds. It is
// idempotent.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	for _, w := range s.workers {
		close(w.stop)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// ActiveRooms is the number of rooms with a running worker.
func (s *Service) ActiveRooms() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.workers)
}

// do hands req to the room's worker, starting one if needed, and waits
// for the answer.
func (s *Service) do(ctx context.Context, roomID RoomID, req *request) (*result, error) {
	req.reply = make(chan *result, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	w := s.workers[roomID]
	if w == nil {
		w = newWorker(s, roomID)
		s.workers[roomID] = w
		s.wg.Add(1)
		go w.run()
	}
	// Counted under s.mu so an idle worker never exits with a request on
	// its way (see worker.idle).
	w.pending++
	s.mu.Unlock()

	select {
	case w.reqs <- req:
	case <-w.done:
		// Closed between our check and now; nothing took the request.
		s.mu.Lock()
		w.pending--
		s.mu.Unlock()
		return nil, ErrClosed
	case <-ctx.Done():
		s.mu.Lock()
		w.pending--
		s.mu.Unlock()
		return nil, ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r, r.err
	case <-w.done:
		// The worker exited: either it answered first, or it never took
		// the request (Close raced with us).
		select {
		case r := <-req.reply:
			return r, r.err
		default:
			return nil, ErrClosed
		}
	case <-ctx.Done():
		// The worker still completes the request; only the wait is cut.
		return nil, ctx.Err()
	}
}
