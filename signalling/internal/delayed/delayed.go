package delayed

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
)

// Defaults of Config.
const (
	// DefaultMaxDelay is Synapse's usual max_event_delay_duration for
	// Element Call deployments.
	DefaultMaxDelay = 24 * time.Hour
	// DefaultMaxPerUser is Synapse's max_delayed_events_per_user default.
	DefaultMaxPerUser = 100
)

// CodeMaxDelayExceeded is the error of a delay over the maximum (MSC4140,
// "Scheduling a delayed event"); the body carries max_delay in ms.
const CodeMaxDelayExceeded = "M_MAX_DELAY_EXCEEDED"

// Event is what a delayed event will send: its room, type, state key (nil
// for a message event) and content, as UserID on DeviceID.
type Event struct {
	UserID   string
	DeviceID string
	RoomID   string
	Type     string
	StateKey *string
	Content  json.RawMessage
}

// Sender appends an event through the normal room send path.
type Sender interface {
	// Send appends ev as its user and device and returns the event ID.
	// delayID is unique to the delayed event: a message event sent twice
	// with one delayID must be appended once (a transaction ID).
	Send(ctx context.Context, delayID string, ev Event) (eventID string, err error)
}

// Config configures the Service.
type Config struct {
	// MaxDelay is the longest delay a client may ask for; 0 means
	// DefaultMaxDelay.
	MaxDelay time.Duration
	// MaxPerUser bounds a user's scheduled events; 0 means
	// DefaultMaxPerUser.
	MaxPerUser int
	// ManageRate limits the management and listing requests per user (per
	// client address without an access token); the zero value disables
	// the limit.
	ManageRate ratelimit.Config
}

// Deps are the Service's collaborators.
type Deps struct {
	DB     *storage.DB
	Sender Sender
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service schedules, manages and sends delayed events.
type Service struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	limiter *ratelimit.Limiter

	mu sync.Mutex // guards the fields below
	// byState indexes the scheduled state events by what they would
	// overwrite: delay ID -> owner.
	byState map[stateKey]map[string]string
	// cancels lists the delay IDs that stored state superseded, for the
	// loop to delete.
	cancels []string
	// started and closed record Start and Close.
	started, closed bool

	// nextAt is the send time (Unix ms) the loop waits for; 0 for none.
	// Tests read it to know the loop has settled.
	nextAt atomic.Int64
	// rounds counts the loop's passes, for tests to wait on.
	rounds atomic.Int64

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

type stateKey struct{ room, typ, key string }

// New builds the Service. Start starts its timer.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.DB == nil || deps.Sender == nil {
		return nil, errors.New("delayed: DB and Sender are required")
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.MaxPerUser <= 0 {
		cfg.MaxPerUser = DefaultMaxPerUser
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Service{
		cfg: cfg, deps: deps, log: deps.Logger,
		limiter: ratelimit.New(cfg.ManageRate, deps.Now),
		byState: map[stateKey]map[string]string{},
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

// Start releases the claims a stopped process left (events it was
// sending when it stopped are sent again), loads the index of scheduled
// state events and starts the timer, which sends the overdue events at
// once. It is called once.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("delayed: Start after Start or Close")
	}
	s.started = true
	s.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			close(s.done) // Close must not wait for a loop that never ran
		}
	}()
	// FEDERATION/multi-process: with several processes on one database
	// this would release another live process's claims too (a double
	// send at worst); a claim owner column would tell them apart.
	if err := s.deps.DB.Exec(ctx, `UPDATE delayed_events SET claimed_ts = 0 WHERE claimed_ts <> 0`); err != nil {
		return fmt.Errorf("delayed: release claims: %w", err)
	}
	idx := map[stateKey]map[string]string{}
	err := s.deps.DB.View(ctx, func(tx *storage.Tx) error {
		rows, err := tx.Query(ctx, `SELECT delay_id, user_id, room_id, event_type, state_key
			FROM delayed_events WHERE state_key IS NOT NULL`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, user string
			var k stateKey
			if err := rows.Scan(&id, &user, &k.room, &k.typ, &k.key); err != nil {
				return err
			}
			if idx[k] == nil {
				idx[k] = map[string]string{}
			}
			idx[k][id] = user
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("delayed: load state index: %w", err)
	}
	s.mu.Lock()
	for k, m := range idx {
		if s.byState[k] == nil {
			s.byState[k] = map[string]string{}
		}
		for id, u := range m {
			s.byState[k][id] = u
		}
	}
	s.mu.Unlock()
	ok = true
	go s.run()
	return nil
}

// Close stops the timer and waits for a send in progress. It is
// idempotent.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	close(s.stop)
	if started {
		<-s.done
	}
	return nil
}

// Poke makes the timer look at the schedule and the clock again now (a
// clock that tests move, a schedule changed behind its back).
func (s *Service) Poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// NextSendAt is the send time the timer waits for, zero if none.
func (s *Service) NextSendAt() time.Time {
	if ms := s.nextAt.Load(); ms > 0 {
		return time.UnixMilli(ms)
	}
	return time.Time{}
}

// Schedule stores ev to be sent after delay and returns its delay ID. A
// delay over the maximum is 400 M_MAX_DELAY_EXCEEDED with max_delay; a
// user at their limit of scheduled events gets 429 M_LIMIT_EXCEEDED
// until their next one is due (MSC4140, "Scheduling a delayed event").
func (s *Service) Schedule(ctx context.Context, ev Event, delay time.Duration) (string, error) {
	if delay <= 0 {
		return "", mxerr.InvalidParam("The delay must be a positive number of milliseconds")
	}
	if delay > s.cfg.MaxDelay {
		return "", mxerr.New(http.StatusBadRequest, CodeMaxDelayExceeded,
			fmt.Sprintf("The requested delay (%dms) exceeds the allowed maximum (%dms)", delay.Milliseconds(), s.cfg.MaxDelay.Milliseconds())).
			With("max_delay", s.cfg.MaxDelay.Milliseconds())
	}
	if !json.Valid(ev.Content) {
		return "", mxerr.BadJSON("Content is not JSON")
	}
	id, err := newDelayID()
	if err != nil {
		return "", err
	}
	now := s.deps.Now().UnixMilli()
	err = s.deps.DB.Update(ctx, func(tx *storage.Tx) error {
		var n int
		var next *int64
		if err := tx.QueryRow(ctx, `SELECT COUNT(*), MIN(send_at) FROM delayed_events WHERE user_id = ?`, ev.UserID).Scan(&n, &next); err != nil {
			return err
		}
		if n >= s.cfg.MaxPerUser {
			wait := int64(1)
			if next != nil {
				wait = max(*next-now, 1)
			}
			return mxerr.LimitExceeded(wait)
		}
		_, err := tx.Exec(ctx, `INSERT INTO delayed_events
			(delay_id, user_id, device_id, room_id, event_type, state_key, content, delay_ms, send_at, claimed_ts, created_ts)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
			id, ev.UserID, ev.DeviceID, ev.RoomID, ev.Type, ev.StateKey, string(ev.Content),
			delay.Milliseconds(), now+delay.Milliseconds(), now)
		return err
	})
	if err != nil {
		var me *mxerr.MatrixError
		if errors.As(err, &me) {
			return "", err
		}
		return "", fmt.Errorf("delayed: schedule: %w", err)
	}
	if ev.StateKey != nil {
		k := stateKey{ev.RoomID, ev.Type, *ev.StateKey}
		s.mu.Lock()
		if s.byState[k] == nil {
			s.byState[k] = map[string]string{}
		}
		s.byState[k][id] = ev.UserID
		s.mu.Unlock()
	}
	// The new event may be due before the one the timer waits for.
	s.Poke()
	return id, nil
}

// CurrentStateChanged is the room service's CurrentStateListener hook:
// when a room's current state for a type and state key changes to
// another user's event, the scheduled state events for that key are
// cancelled, as Synapse does on its current state deltas: sent later,
// they would overwrite newer state. Only a change of current state
// counts: an accepted event that loses state resolution changes nothing
// and cancels nothing. The owner's own state leaves theirs alone: Element
// Call schedules its leave before it sends the membership it
// overwrites. A key that left the state cancels nothing (Synapse skips
// deleted state). It does no I/O: the loop deletes.
func (s *Service) CurrentStateChanged(room rooms.RoomID, changes []rooms.StateChange) {
	found := false
	s.mu.Lock()
	for _, c := range changes {
		if c.EventID == "" {
			continue
		}
		k := stateKey{string(room), c.Type, c.StateKey}
		m := s.byState[k]
		if m == nil {
			continue
		}
		// An event the room service could not hand over has an unknown
		// sender: every scheduled event of the key is older than it.
		sender := ""
		if c.Event != nil {
			sender = string(c.Event.Sender())
		}
		for id, owner := range m {
			if owner != sender {
				s.cancels = append(s.cancels, id)
				delete(m, id)
				found = true
			}
		}
		if len(m) == 0 {
			delete(s.byState, k)
		}
	}
	s.mu.Unlock()
	if found {
		s.Poke()
	}
}

// forget drops a delay ID from the state index.
func (s *Service) forget(r *record) {
	if r.stateKey == nil {
		return
	}
	k := stateKey{r.roomID, r.typ, *r.stateKey}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.byState[k]; m != nil {
		delete(m, r.id)
		if len(m) == 0 {
			delete(s.byState, k)
		}
	}
}

// newDelayID returns 128 random bits: the ID is a capability, so it must
// be unguessable (MSC4140: "SHOULD be cryptographically secure").
func newDelayID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("delayed: random ID: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
