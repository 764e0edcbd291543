package signalling_test

import (
	"testing"
	"time"

	"github.com/plexus-chat/plexus/signalling"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
)

// TestSendLimitCarriesACall replays what one Element Call device sends
// through the rate-limited send endpoints (PUT /send, PUT /state,
// redactions) during a busy call, against DefaultRateLimits' send limit
// on a hand-moved clock, and checks none of it is refused; and that the
// limit is on, refusing a flood.
func TestSendLimitCarriesACall(t *testing.T) {
	cfg := signalling.DefaultRateLimits().Send
	type burst struct {
		at     time.Duration
		events int
		what   string
	}
	var call []burst
	// Joining: the call.member state event, the delayed leave (a state
	// event sent with a delay), and the encryption keys room event.
	call = append(call, burst{0, 3, "join"})
	// Twenty others join within ten seconds; each makes this device
	// resend its current key.
	for i := range 20 {
		call = append(call, burst{time.Duration(i) * 500 * time.Millisecond, 1, "key resend"})
	}
	// An hour of the call: the delayed leave restarted every 5 s (counted
	// here although it does not go through /send, to be safe), chat and
	// reactions at a message every 2 s, a key rotation when someone
	// leaves every 30 s.
	for s := 10 * time.Second; s < time.Hour; s += time.Second {
		n := 0
		if s%(5*time.Second) == 0 {
			n++
		}
		if s%(2*time.Second) == 0 {
			n++
		}
		if s%(30*time.Second) == 0 {
			n++
		}
		if n > 0 {
			call = append(call, burst{s, n, "in call"})
		}
	}
	// A reconnect after a network drop: membership, keys and the
	// messages queued while offline, all at once.
	call = append(call, burst{time.Hour, 12, "reconnect"})
	// Leaving: the call.member state event and a key rotation.
	call = append(call, burst{time.Hour + time.Second, 2, "leave"})

	now := time.Unix(0, 0)
	l := ratelimit.New(cfg, func() time.Time { return now })
	last := time.Duration(-1)
	for _, b := range call {
		if b.at > last {
			now = time.Unix(0, 0).Add(b.at)
			last = b.at
		}
		for i := range b.events {
			if ok, wait := l.Allow("@alice:hs1|DEV"); !ok {
				t.Fatalf("%s at %v: event %d refused (retry after %v) by the send limit %+v", b.what, b.at, i, wait, cfg)
			}
		}
	}

	// The limit is on: a flood from one device is refused once the burst
	// is spent, while another device of the same user is not held back.
	flood := ratelimit.New(cfg, func() time.Time { return now })
	refused := 0
	for range cfg.Burst + 10 {
		if ok, _ := flood.Allow("@bob:hs1|DEV"); !ok {
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("%d events at one instant all allowed: the send limit %+v is off", cfg.Burst+10, cfg)
	}
	if ok, _ := flood.Allow("@bob:hs1|OTHER"); !ok {
		t.Fatalf("another device was refused with %+v", cfg)
	}
}
