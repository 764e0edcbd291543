package ratelimit

import (
	"math"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
)

// Config is one limit: Rate tokens per second refill a bucket of Burst.
// A zero Rate disables the limit.
type Config struct {
	Rate  float64
	Burst int
}

// Limiter keeps one bucket per key (a user ID, a device, an IP address).
// Buckets that have refilled completely are forgotten, so memory follows
// the number of recently active keys.
type Limiter struct {
	cfg Config
	now func() time.Time

	mu sync.Mutex // guards the fields below
	// buckets holds the keys with a partly drained bucket.
	buckets map[string]*bucket
	// sweep is when buckets was last swept of full buckets.
	sweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a Limiter; now is the clock (nil: time.Now).
func New(cfg Config, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{cfg: cfg, now: now, buckets: map[string]*bucket{}, sweep: now()}
}

// Allow takes a token from key's bucket. When there is none it reports
// how long until there will be.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	return l.take(key, true)
}

// take looks at key's bucket and, with consume, takes a token from it.
func (l *Limiter) take(key string, consume bool) (ok bool, retryAfter time.Duration) {
	if l == nil || l.cfg.Rate <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := float64(max(l.cfg.Burst, 1))
	if now.Sub(l.sweep) > time.Minute {
		l.sweepLocked(now, burst)
	}
	b := l.buckets[key]
	if b == nil {
		if !consume {
			return true, 0 // a full bucket, not worth keeping
		}
		b = &bucket{tokens: burst, at: now}
		l.buckets[key] = b
	} else {
		b.tokens = math.Min(burst, b.tokens+now.Sub(b.at).Seconds()*l.cfg.Rate)
		b.at = now
	}
	if b.tokens >= 1 {
		if consume {
			b.tokens--
		}
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.cfg.Rate * float64(time.Second))
	return false, wait
}

// Check is Allow as an error: nil, or 429 M_LIMIT_EXCEEDED with
// retry_after_ms.
func (l *Limiter) Check(key string) error {
	return limitError(l.Allow(key))
}

// Peek is Check without taking a token: whether an action counted by
// the limiter would be allowed now. It lets the steps that lead up to
// the action be refused early without each costing a token.
func (l *Limiter) Peek(key string) error {
	return limitError(l.take(key, false))
}

func limitError(ok bool, wait time.Duration) error {
	if ok {
		return nil
	}
	return mxerr.LimitExceeded(max(wait.Milliseconds(), 1))
}

func (l *Limiter) sweepLocked(now time.Time, burst float64) {
	l.sweep = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.cfg.Rate >= burst {
			delete(l.buckets, k)
		}
	}
}
