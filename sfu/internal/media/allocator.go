package media

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

const (
	// allocFitsIsh lets a track keep layer 0 when the estimate covers at
	// least this share of its bitrate: LiveKit keeps the low layer going
	// unless the link is badly congested, since a frozen video is worse
	// than a briefly overshooting one.
	allocFitsIsh = 0.5
	// allocUpHeadroom is the margin a higher layer needs over its bitrate
	// before the allocator moves a track up, so an estimate wobbling
	// around a layer's bitrate does not switch (and request a key frame)
	// back and forth.
	allocUpHeadroom = 1.15
)

// Probing. pion's GCC (like libwebrtc's) never estimates more than 1.5
// times the rate it sees received, so a subscriber on a layer whose next
// step is more than half again as expensive would stay there forever.
// LiveKit probes with padding; this allocator probes with media instead:
// while the estimate covers what is being sent, it moves one track up one
// layer beyond the estimate and watches for a probeWindow. If the estimate
// falls below where it was, the probe failed: the track goes back and the
// next probe waits twice as long (up to probeMaxBackoff).
const (
	probeWindow     = 4 * time.Second
	probeMinBackoff = 3 * time.Second
	probeMaxBackoff = time.Minute
	probeFailShare  = 0.85 // estimate below this share of the pre-probe one = congestion
)

// Allocator shares one subscriber's downlink estimate among its video
// DownTracks: each gets the highest layer that fits, in the order added.
type Allocator struct {
	log *slog.Logger
	now func() time.Time

	mu        sync.Mutex // guards the fields below
	tracks    []*DownTrack
	estimate  int // bits per second, 0 = unknown (no limit)
	given     map[*DownTrack]Layer
	probe     *DownTrack // track moved up beyond the estimate, nil = none
	probeL    Layer      // the layer it was moved to
	probeEst  int        // estimate when the probe started
	probeEnd  time.Time
	nextProbe time.Time
	backoff   time.Duration
}

// NewAllocator makes an Allocator.
func NewAllocator(log *slog.Logger) *Allocator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Allocator{log: log, now: time.Now, given: map[*DownTrack]Layer{}, backoff: probeMinBackoff}
}

// Add includes a video DownTrack; audio tracks are ignored (they are small
// and never paused for bandwidth).
func (a *Allocator) Add(d *DownTrack) {
	if d == nil || d.Kind() != webrtc.RTPCodecTypeVideo {
		return
	}
	a.mu.Lock()
	if !slices.Contains(a.tracks, d) {
		a.tracks = append(a.tracks, d)
	}
	a.mu.Unlock()
	a.allocate()
}

// Remove drops d; the others share what it used.
func (a *Allocator) Remove(d *DownTrack) {
	a.mu.Lock()
	a.tracks = slices.DeleteFunc(a.tracks, func(x *DownTrack) bool { return x == d })
	delete(a.given, d)
	if a.probe == d {
		a.probe = nil
	}
	a.mu.Unlock()
	a.allocate()
}

// SetEstimate sets the downlink estimate in bits per second (from GCC) and
// reallocates. 0 means unknown: no limit.
func (a *Allocator) SetEstimate(bps int) {
	a.mu.Lock()
	a.estimate = max(bps, 0)
	a.mu.Unlock()
	a.allocate()
}

// allocation is one track's share.
type allocation struct {
	d     *DownTrack
	layer Layer
}

// allocate computes every track's bandwidth layer and applies it outside
// the lock (SetMaxLayerByBandwidth takes the track's lock and nudges the
// Receiver).
func (a *Allocator) allocate() {
	a.mu.Lock()
	in := make([]allocInput, len(a.tracks))
	for i, d := range a.tracks {
		prev, ok := a.given[d]
		if !ok {
			prev = LayerNone
		}
		in[i] = allocInput{desired: d.desiredLayer(), previous: prev}
		for l := range in[i].bitrate {
			in[i].bitrate[l] = d.r.layerBitrate(Layer(l))
		}
	}
	out := allocateLayers(a.estimate, in)
	if a.estimate > 0 {
		a.probeLocked(in, out)
	}
	plan := make([]allocation, len(a.tracks))
	for i, d := range a.tracks {
		plan[i] = allocation{d, out[i]}
		a.given[d] = out[i]
	}
	a.mu.Unlock()
	for _, p := range plan {
		p.d.SetMaxLayerByBandwidth(p.layer)
	}
}

// probeLocked runs the probe state machine over a fresh allocation out,
// adjusting it in place.
func (a *Allocator) probeLocked(in []allocInput, out []Layer) {
	now := a.now()
	idx := slices.Index(a.tracks, a.probe)
	if a.probe != nil && idx < 0 {
		a.probe = nil
	}
	if a.probe != nil {
		switch {
		case float64(a.estimate) < float64(a.probeEst)*probeFailShare:
			a.failProbeLocked(now)
		case now.Before(a.probeEnd):
			out[idx] = max(out[idx], min(a.probeL, in[idx].desired))
			return
		case out[idx] < a.probeL:
			// The window passed and the estimate did not grow into
			// the new layer: the link cannot carry it.
			a.failProbeLocked(now)
		default:
			a.probe = nil
			a.backoff = probeMinBackoff
		}
	}
	if a.probe != nil || now.Before(a.nextProbe) {
		return
	}
	usage := 0
	for i, l := range out {
		if l = min(l, in[i].desired); l >= 0 {
			usage += in[i].bitrate[l]
		}
	}
	if a.estimate < usage {
		return // congested: no probing
	}
	for i, l := range out {
		if l >= 0 && l < in[i].desired {
			out[i] = l + 1
			a.probe, a.probeL, a.probeEst = a.tracks[i], l+1, a.estimate
			a.probeEnd = now.Add(probeWindow)
			return
		}
	}
}

func (a *Allocator) failProbeLocked(now time.Time) {
	a.probe = nil
	a.nextProbe = now.Add(a.backoff)
	a.backoff = min(2*a.backoff, probeMaxBackoff)
}

// allocInput is one track as allocateLayers sees it.
type allocInput struct {
	desired  Layer // what the subscriber asked for, LayerNone = nothing
	previous Layer // last allocation, LayerNone if none
	bitrate  [maxLayers]int
}

// allocateLayers is the allocation policy, a pure function: first every
// track that wants video gets layer 0 while the estimate (fits-ish) allows,
// then tracks are upgraded in order, each to the highest layer up to its
// desired one whose extra cost fits what is left. Moving above a track's
// previous layer needs allocUpHeadroom. An unknown estimate (0) allows
// everything.
func allocateLayers(estimate int, in []allocInput) []Layer {
	out := make([]Layer, len(in))
	if estimate <= 0 {
		for i := range in {
			out[i] = maxLayers - 1
		}
		return out
	}
	left := float64(estimate)
	for i, t := range in {
		out[i] = LayerNone
		if t.desired == LayerNone {
			continue
		}
		if b := float64(t.bitrate[0]); left >= b*allocFitsIsh {
			out[i] = 0
			left -= b
		}
	}
	for i, t := range in {
		if out[i] != 0 {
			continue
		}
		base := float64(t.bitrate[0])
		for l := t.desired; l > 0; l-- {
			extra := float64(t.bitrate[l]) - base
			need := extra
			if l > t.previous {
				need = float64(t.bitrate[l])*allocUpHeadroom - base
			}
			if need <= left {
				out[i] = l
				left -= extra
				break
			}
		}
	}
	// A track that wants nothing now (disabled) costs nothing; its cap is
	// left open so re-enabling it is not held back until the next
	// estimate.
	for i, t := range in {
		if t.desired == LayerNone {
			out[i] = maxLayers - 1
		}
	}
	return out
}
