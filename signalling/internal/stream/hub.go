package stream

import "sync"

// Hub wakes the waiters of users: long-polling /sync requests and
// realtime connections. Producers call Wake with the users an update
// concerns, or WakeRoom for everyone joined to a room; the membership the
// latter needs is kept current by the sync engine through SetJoined.
//
// A wake-up carries no data: a woken waiter reads from its last token.
// Each Sub's channel holds one pending wake-up, so a burst of updates
// costs a slow waiter one wake-up, never a blocked producer.
type Hub struct {
	mu sync.Mutex // guards the fields below
	// subs holds each user's live subscriptions.
	subs map[string]map[*Sub]struct{}
	// rooms maps a room to its joined (and invited) local users.
	rooms map[string]map[string]struct{}
}

// NewHub returns an empty Hub.
func NewHub() *Hub {
	return &Hub{subs: map[string]map[*Sub]struct{}{}, rooms: map[string]map[string]struct{}{}}
}

// Sub is one waiter's subscription.
type Sub struct {
	hub  *Hub
	user string
	c    chan struct{}
}

// C is signalled (at most one pending signal) when something for the
// user may have been stored.
func (s *Sub) C() <-chan struct{} { return s.c }

// Close ends the subscription. It is idempotent.
func (s *Sub) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.subs[s.user]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(h.subs, s.user)
		}
	}
}

// Subscribe starts a subscription for user. Subscribe before reading the
// current token: a wake-up between the two then cannot be lost.
func (h *Hub) Subscribe(user string) *Sub {
	s := &Sub{hub: h, user: user, c: make(chan struct{}, 1)}
	h.mu.Lock()
	m := h.subs[user]
	if m == nil {
		m = map[*Sub]struct{}{}
		h.subs[user] = m
	}
	m[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Wake signals every subscription of the given users.
func (h *Hub) Wake(users ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range users {
		h.wakeLocked(u)
	}
}

func (h *Hub) wakeLocked(user string) {
	for s := range h.subs[user] {
		select {
		case s.c <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// WakeRoom signals every subscription of the room's members.
func (h *Hub) WakeRoom(room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for u := range h.rooms[room] {
		h.wakeLocked(u)
	}
}

// SetMember records whether a local user is to be woken for a room's
// updates (joined or invited).
func (h *Hub) SetMember(room, user string, member bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.rooms[room]
	if member {
		if m == nil {
			m = map[string]struct{}{}
			h.rooms[room] = m
		}
		m[user] = struct{}{}
		return
	}
	if m != nil {
		delete(m, user)
		if len(m) == 0 {
			delete(h.rooms, room)
		}
	}
}

// Members lists the users SetMember recorded for a room.
func (h *Hub) Members(room string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.rooms[room]))
	for u := range h.rooms[room] {
		out = append(out, u)
	}
	return out
}
