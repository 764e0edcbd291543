package relay

import (
	"sync"
	"time"
)

// bucket is a token bucket of bytes: rate bytes a second, up to burst
// saved. One per allocation, shared by both directions.
type bucket struct {
	rate  float64 // bytes per nanosecond
	burst float64

	mu sync.Mutex
	// mu guards the following fields.
	tokens float64
	last   time.Time
}

func newBucket(bytesPerSecond int64, now time.Time) *bucket {
	// A quarter second of traffic, and at least a few video frames' worth,
	// so that a key frame fits through at once.
	burst := max(float64(bytesPerSecond)/4, 64<<10)
	return &bucket{rate: float64(bytesPerSecond) / 1e9, burst: burst, tokens: burst, last: now}
}

// take spends n bytes if the bucket holds them.
func (b *bucket) take(n int, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+float64(d)*b.rate)
		b.last = now
	}
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
