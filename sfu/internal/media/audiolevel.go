package media

import (
	"math"
	"sync"
	"time"
)

// Active-speaker parameters, LiveKit's defaults: a packet is voice when its
// level is at least -35 dBov, and a speaker is active when at least 40 % of
// a window's expected packets (one per 20 ms) are voice.
const (
	audioWindow       = 500 * time.Millisecond
	audioActiveDBov   = 35
	audioMinPercent   = 40
	audioFrame        = 20 * time.Millisecond
	audioStaleWindows = 2 // a result older than this many windows is silence (DTX)
)

// audioLevel turns per-packet RFC 6464 levels into a speaking level per
// window. observe runs on the receive path; level may run anywhere.
type audioLevel struct {
	mu          sync.Mutex // guards the fields below
	windowStart time.Time
	sum         float64 // linear levels of this window's voice packets
	voiced      int
	level       float32 // result of the last complete window
	active      bool
	resultAt    time.Time
}

// dBovToLinear maps an RFC 6464 level (0 = loudest, 127 = silence, in -dBov)
// to 0..1.
func dBovToLinear(dBov uint8) float64 {
	return math.Pow(10, -float64(dBov)/20)
}

func (a *audioLevel) observe(dBov uint8, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.windowStart.IsZero() {
		a.windowStart = now
	}
	if d := now.Sub(a.windowStart); d >= audioWindow {
		a.finishLocked(now, d)
	}
	if dBov <= audioActiveDBov {
		a.sum += dBovToLinear(dBov)
		a.voiced++
	}
}

// finishLocked closes the current window of length d.
func (a *audioLevel) finishLocked(now time.Time, d time.Duration) {
	expected := int(d / audioFrame)
	if d > 2*audioWindow { // packets resumed after DTX: judge one window
		expected = int(audioWindow / audioFrame)
	}
	a.active = expected > 0 && a.voiced*100 >= expected*audioMinPercent
	a.level = 0
	if a.active {
		a.level = float32(a.sum / float64(a.voiced))
	}
	a.resultAt = now
	a.windowStart, a.sum, a.voiced = now, 0, 0
}

// get returns the last window's level, or silence if packets stopped (DTX,
// mute) and no window completed recently.
func (a *audioLevel) get(now time.Time) (float32, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.resultAt.IsZero() || now.Sub(a.resultAt) > audioStaleWindows*audioWindow {
		return 0, false
	}
	return a.level, a.active
}
