package roomapi

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// Typing timeouts, as Synapse applies them: a missing timeout means 30
// seconds and none lasts longer than 2 minutes.
const (
	defaultTypingTimeout = 30 * time.Second
	maxTypingTimeout     = 2 * time.Minute
)

// typingState holds who is typing where, in memory only (typing
// notifications are ephemeral: Client-Server API, "Typing
// Notifications"). Every change, expiry included, moves the typing
// position on and wakes the room.
type typingState struct {
	now func() time.Time
	hub *stream.Hub
	// local tells local users, whose changes onChange hears; both are
	// set once before use, onChange may be nil.
	local    func(user string) bool
	onChange func(room, user string, typing bool)

	mu sync.Mutex // guards the fields below
	// rooms maps room -> user -> when their typing expires.
	rooms map[string]map[string]time.Time
	// roomPos is the typing position of each room's last change.
	roomPos map[string]int64
	pos     int64
	// timer fires at the earliest expiry, to tell waiting /sync requests.
	timer  *time.Timer
	closed bool
	// stopped are the local typists whose typing expired and whom
	// onChange has not heard of yet.
	stopped []typist

	wg sync.WaitGroup // a pending or running timer callback
}

// typist is a user typing in a room.
type typist struct{ room, user string }

func newTypingState(now func() time.Time, hub *stream.Hub) *typingState {
	return &typingState{now: now, hub: hub, rooms: map[string]map[string]time.Time{}, roomPos: map[string]int64{},
		local: func(string) bool { return false }}
}

// set records that user started (typing) or stopped typing in room.
func (t *typingState) set(room, user string, typing bool, timeout time.Duration) {
	t.mu.Lock()
	changed := t.sweepLocked()
	m := t.rooms[room]
	_, was := m[user]
	if typing {
		if m == nil {
			m = map[string]time.Time{}
			t.rooms[room] = m
		}
		m[user] = t.now().Add(timeout)
		if !was {
			changed = append(changed, room)
			t.bumpLocked(room)
		}
	} else if was {
		delete(m, user)
		if len(m) == 0 {
			delete(t.rooms, room)
		}
		changed = append(changed, room)
		t.bumpLocked(room)
	}
	t.armLocked()
	t.mu.Unlock()
	t.wake(changed)
	// Every explicit change of a local user goes to the other servers,
	// refreshes included: their copy expires on its own timer.
	if t.onChange != nil && t.local(user) && (typing || was) {
		t.onChange(room, user, typing)
	}
}

func (t *typingState) bumpLocked(room string) {
	t.pos++
	t.roomPos[room] = t.pos
}

// sweepLocked drops expired entries and returns the rooms that changed.
func (t *typingState) sweepLocked() []string {
	now := t.now()
	var changed []string
	for room, m := range t.rooms {
		n := len(m)
		for u, exp := range m {
			if !now.Before(exp) {
				delete(m, u)
				if t.onChange != nil && t.local(u) {
					t.stopped = append(t.stopped, typist{room, u})
				}
			}
		}
		if len(m) != n {
			changed = append(changed, room)
			t.bumpLocked(room)
		}
		if len(m) == 0 {
			delete(t.rooms, room)
		}
	}
	return changed
}

// armLocked sets the timer for the earliest expiry.
func (t *typingState) armLocked() {
	if t.closed {
		return
	}
	var first time.Time
	for _, m := range t.rooms {
		for _, exp := range m {
			if first.IsZero() || exp.Before(first) {
				first = exp
			}
		}
	}
	t.stopLocked()
	if first.IsZero() {
		return
	}
	t.wg.Add(1)
	t.timer = time.AfterFunc(max(first.Sub(t.now()), time.Millisecond), func() {
		defer t.wg.Done()
		t.expire()
	})
}

// stopLocked stops the timer; a callback it prevents no longer counts.
func (t *typingState) stopLocked() {
	if t.timer != nil && t.timer.Stop() {
		t.wg.Done()
	}
	t.timer = nil
}

// expire runs on the timer: it sweeps and wakes the rooms that changed.
func (t *typingState) expire() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	changed := t.sweepLocked()
	t.armLocked()
	t.mu.Unlock()
	t.wake(changed)
}

// wake wakes the rooms that changed and tells onChange of the local
// typists that expired; callers hold no lock.
func (t *typingState) wake(rooms []string) {
	for _, r := range rooms {
		t.hub.WakeRoom(r)
	}
	if len(rooms) == 0 || t.onChange == nil {
		return
	}
	t.mu.Lock()
	stopped := t.stopped
	t.stopped = nil
	t.mu.Unlock()
	for _, s := range stopped {
		t.onChange(s.room, s.user, false)
	}
}

// close stops the timer and waits for a running callback. It is
// idempotent.
func (t *typingState) close() {
	t.mu.Lock()
	t.closed = true
	t.stopLocked()
	t.mu.Unlock()
	t.wg.Wait()
}

// Typing lists the users typing in roomID now, sorted: the content of
// the room's m.typing event for /sync.
func (a *API) Typing(roomID string) []string {
	t := a.typing
	t.mu.Lock()
	changed := t.sweepLocked()
	out := make([]string, 0, len(t.rooms[roomID]))
	for u := range t.rooms[roomID] {
		out = append(out, u)
	}
	t.mu.Unlock()
	t.wake(changed)
	sort.Strings(out)
	return out
}

// TypingPos is the typing stream position (stream.Token.Typing): it
// moves on with every change, expiries included.
func (a *API) TypingPos() int64 {
	t := a.typing
	t.mu.Lock()
	changed := t.sweepLocked()
	pos := t.pos
	t.mu.Unlock()
	t.wake(changed)
	return pos
}

// TypingRoomPos is the typing position of roomID's last change (0:
// none since start), so /sync can send m.typing only for rooms that
// changed since its token.
func (a *API) TypingRoomPos(roomID string) int64 {
	t := a.typing
	t.mu.Lock()
	changed := t.sweepLocked()
	pos := t.roomPos[roomID]
	t.mu.Unlock()
	t.wake(changed)
	return pos
}

func (a *API) putTyping(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID, userID := r.PathValue("roomId"), r.PathValue("userId")
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := endpoint.Decode(r, 0, &body); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if body.Typing == nil {
		endpoint.Fail(w, mxerr.MissingParam("Missing typing"))
		return
	}
	if userID != s.UserID {
		endpoint.Fail(w, mxerr.Forbidden(fmt.Sprintf("Cannot set the typing state of %s", userID)))
		return
	}
	if err := a.setTyping(ctx, s, roomID, *body.Typing, body.Timeout); err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, struct{}{})
}

// setTyping is PUT /rooms/{roomId}/typing/{userId} for the caller's own
// typing state; timeoutMS nil means the default.
func (a *API) setTyping(ctx context.Context, s *endpoint.Session, roomID string, typing bool, timeoutMS *int64) error {
	if err := a.requireJoined(ctx, roomID, s.UserID); err != nil {
		return err
	}
	timeout := defaultTypingTimeout
	if timeoutMS != nil {
		if *timeoutMS < 0 {
			return mxerr.InvalidParam("timeout must not be negative")
		}
		timeout = time.Duration(min(*timeoutMS, maxTypingTimeout.Milliseconds())) * time.Millisecond
	}
	a.typing.set(roomID, s.UserID, typing, timeout)
	return nil
}
