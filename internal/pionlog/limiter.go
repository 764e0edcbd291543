package pionlog

import (
	"sync"
	"time"
)

// Limiter allows at most Burst events per Interval for each key; the
// events past that are counted and the count handed to the next event
// allowed, so a log line can say "and 1,234 like it". The zero value is
// not usable; build one with NewLimiter.
type Limiter struct {
	interval time.Duration
	burst    int
	now      func() time.Time

	mu sync.Mutex
	// mu guards the following fields.
	windows map[string]*window
	sweep   time.Time // when windows was last swept of idle keys
}

type window struct {
	start      time.Time
	n          int
	suppressed uint64
}

// maxKeys bounds the keys remembered: keys are message formats and event
// kinds, a small set, but a bug passing data as a key must not grow memory.
const maxKeys = 1024

// NewLimiter returns a limiter; now is its clock (nil: time.Now).
func NewLimiter(burst int, interval time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{interval: interval, burst: burst, now: now, windows: map[string]*window{}}
}

// Allow reports whether an event of kind key may be logged now and, if so,
// how many were suppressed since the last one allowed.
func (l *Limiter) Allow(key string) (ok bool, suppressed uint64) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > 10*l.interval || len(l.windows) >= maxKeys {
		for k, w := range l.windows {
			if now.Sub(w.start) > l.interval && w.suppressed == 0 || len(l.windows) >= maxKeys {
				delete(l.windows, k)
			}
		}
		l.sweep = now
	}
	w := l.windows[key]
	if w == nil {
		w = &window{start: now}
		l.windows[key] = w
	}
	if now.Sub(w.start) >= l.interval {
		w.start, w.n = now, 0
	}
	if w.n >= l.burst {
		w.suppressed++
		return false, 0
	}
	w.n++
	suppressed, w.suppressed = w.suppressed, 0
	return true, suppressed
}
