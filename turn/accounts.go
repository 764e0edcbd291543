package turn

import (
	"sync"
	"time"
)

// accounts counts allocations per user and in total for the quotas (RFC
// 8656 section 7.2 rule 7: "SHOULD define it based on the username").
//
// pion asks for quota (QuotaHandler) before it creates an allocation and
// reports the creation (OnAllocationCreated) after, and more than one
// request can be between the two at once (each TCP connection has its own
// goroutine). So reserve books a pending slot that counts against the
// quotas at once; created turns it into a live one; abandon, or the
// pendingTTL, frees a slot whose allocation failed.
type accounts struct {
	userMax, totalMax int
	now               func() time.Time

	mu sync.Mutex
	// mu guards the following fields.
	users   map[string]int // live and pending, per user
	pending map[string]pendingSlot
	live    int
}

type pendingSlot struct {
	user string
	at   time.Time
}

// pendingTTL is how long a reservation waits for its allocation; pion
// creates it within the same request, so this only frees slots whose
// allocation failed unreported.
const pendingTTL = 5 * time.Second

func newAccounts(userMax, totalMax int, now func() time.Time) *accounts {
	return &accounts{
		userMax: userMax, totalMax: totalMax, now: now,
		users: map[string]int{}, pending: map[string]pendingSlot{},
	}
}

// reserve books a slot for user's allocation from src, or says which quota
// is full.
func (a *accounts) reserve(user, src string) (ok bool, full string) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, p := range a.pending {
		if now.Sub(p.at) > pendingTTL {
			a.dropPendingLocked(k, p)
		}
	}
	if old, dup := a.pending[src]; dup {
		// A retransmission, or a new attempt after a failure: one slot.
		a.dropPendingLocked(src, old)
	}
	if a.totalMax > 0 && a.live+len(a.pending) >= a.totalMax {
		return false, "total_quota"
	}
	if a.userMax > 0 && a.users[user] >= a.userMax {
		return false, "user_quota"
	}
	a.users[user]++
	a.pending[src] = pendingSlot{user: user, at: now}
	return true, ""
}

// created records the allocation that src's reservation was for. An
// allocation without a reservation (none is made when the quota hook is
// bypassed) is counted all the same.
func (a *accounts) created(user, src string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.pending[src]; ok {
		delete(a.pending, src)
		if p.user != user { // cannot happen with pion; keep counts right anyway
			a.decUserLocked(p.user)
			a.users[user]++
		}
	} else {
		a.users[user]++
	}
	a.live++
}

// deleted records the end of one of user's allocations.
func (a *accounts) deleted(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.decUserLocked(user)
	if a.live > 0 {
		a.live--
	}
}

// abandon frees src's reservation, if any: its request failed.
func (a *accounts) abandon(src string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.pending[src]; ok {
		a.dropPendingLocked(src, p)
	}
}

func (a *accounts) liveCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.live
}

func (a *accounts) dropPendingLocked(src string, p pendingSlot) {
	delete(a.pending, src)
	a.decUserLocked(p.user)
}

func (a *accounts) decUserLocked(user string) {
	if a.users[user] <= 1 {
		delete(a.users, user)
		return
	}
	a.users[user]--
}
