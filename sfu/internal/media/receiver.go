package media

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const (
	// keyFrameInterval throttles key-frame requests per layer: a publisher
	// needs a round trip and an encode to answer, and every request costs
	// it a large frame.
	keyFrameInterval = 500 * time.Millisecond
	// layerTimeout is how long a layer may go without packets before it
	// counts as paused by the publisher.
	layerTimeout = 1500 * time.Millisecond
	// tickInterval paces the Receiver's housekeeping (availability,
	// bitrates, pending switches, dynacast).
	tickInterval = 200 * time.Millisecond
	// dynacastDownDelay: a lower maximum layer is reported only after it
	// held this long, so a subscriber flapping between sizes does not make
	// the publisher stop and restart (with a key frame) a layer each time.
	// A higher maximum is reported at once.
	dynacastDownDelay = 2 * time.Second
	// receiveMTU bounds an incoming RTP packet.
	receiveMTU = 1500
)

// ReceiverConfig configures a Receiver.
type ReceiverConfig struct {
	TrackID string                    // opaque track ID (LiveKit "TR_...")
	Codec   webrtc.RTPCodecParameters // as negotiated on the publisher PC
	Layers  []LayerInfo               // simulcast layers announced by the publisher (may be empty)
	// RequestKeyFrame asks the publisher for a key frame on ssrc. The
	// Receiver calls it at most once per layer per 500 ms, never under a
	// lock.
	RequestKeyFrame func(ssrc uint32)
	AudioLevelExtID int // RFC 6464 header extension ID, 0 if not negotiated
	Logger          *slog.Logger
	Now             func() time.Time // nil = time.Now
}

// LayerStats are one layer's receive counters.
type LayerStats struct {
	Packets, Bytes uint64
	Lost           uint64 // sequence-number gaps
	Bitrate        int    // bits per second over the last second
	Active         bool   // packets arrived within the last 1.5 s
	// Width and Height are the size of the layer's last key frame as
	// received, 0 where unknown (codecs other than VP8, or no key frame
	// yet): what the publisher really sends, not what it announced.
	Width, Height int
}

// ReceiverStats are a Receiver's counters, summed over layers and per layer.
type ReceiverStats struct {
	Packets, Bytes uint64
	Lost           uint64
	Layers         [maxLayers]LayerStats
	DownTracks     int
}

// Receiver reads one published track and fans its packets out to
// DownTracks. See the package documentation.
type Receiver struct {
	cfg   ReceiverConfig
	log   *slog.Logger
	now   func() time.Time
	kind  webrtc.RTPCodecType
	codec codecKind
	clock uint32

	layers [maxLayers]layerState
	downs  atomic.Pointer[[]*DownTrack] // copy-on-write; replaced under mu
	// tickMu makes ticks one at a time, each reading the clock once it
	// runs: a tick that read the time and then waited could otherwise
	// record a stale time after a later tick (tests tick by hand beside
	// the tick goroutine).
	tickMu sync.Mutex
	muted  atomic.Bool
	audio  audioLevel

	mu sync.Mutex // guards the fields below
	// reading is the track each layer is read from. One per layer: a
	// publisher offering many RIDs that map to one layer (or a new SSRC
	// for a layer) replaces the layer's track, so a Receiver never runs
	// more than maxLayers read loops whatever the client sends.
	reading   [maxLayers]*webrtc.TrackRemote
	loops     int // running read loops, replaced ones still ending included
	closed    bool
	onMax     func(Layer)
	kfLast    [maxLayers]time.Time
	available [maxLayers]bool
	reported  Layer     // last maximum layer given to onMax (or assumed)
	lowerAt   time.Time // when the wanted maximum first fell below reported
	rateAt    time.Time // last bitrate sample
	rateBytes [maxLayers]uint64

	wake      chan struct{} // nudges the tick goroutine; capacity 1
	quit      chan struct{}
	done      chan struct{}
	doneOnce  sync.Once
	closeOnce sync.Once
	loopsWG   sync.WaitGroup
	tickWG    sync.WaitGroup
}

// layerState is one layer's packet cache and counters.
type layerState struct {
	cache   packetCache
	ssrc    atomic.Uint32
	last    atomic.Int64 // arrival of the last packet, unix nanoseconds
	packets atomic.Uint64
	bytes   atomic.Uint64
	lost    atomic.Uint64
	bitrate atomic.Int64
	size    atomic.Uint32 // last key frame's width<<16 | height, 0 = unknown
}

// NewReceiver makes a Receiver; add the incoming tracks with AddLayer.
func NewReceiver(cfg ReceiverConfig) *Receiver {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Receiver{
		cfg:   cfg,
		log:   cfg.Logger.With("track", cfg.TrackID),
		now:   cfg.Now,
		codec: codecKindOf(cfg.Codec.MimeType),
		clock: cfg.Codec.ClockRate,
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if r.clock == 0 {
		r.clock = 90000
	}
	r.kind = webrtc.RTPCodecTypeVideo
	if strings.HasPrefix(strings.ToLower(cfg.Codec.MimeType), "audio/") {
		r.kind = webrtc.RTPCodecTypeAudio
	}
	r.reported = r.highestLayer()
	r.downs.Store(&[]*DownTrack{})
	r.tickWG.Add(1)
	go r.tickLoop()
	return r
}

func (r *Receiver) highestLayer() Layer {
	s := selection{layers: r.cfg.Layers}
	return s.highestLayer()
}

// AddLayer starts reading track, one simulcast layer (or the only layer),
// until the track ends or the Receiver closes.
func (r *Receiver) AddLayer(layer Layer, track *webrtc.TrackRemote) {
	if !layer.valid() || track == nil {
		r.log.Warn("media: ignoring invalid layer", "layer", int(layer))
		return
	}
	r.mu.Lock()
	old := r.reading[layer]
	if r.closed || old == track {
		r.mu.Unlock()
		return
	}
	r.reading[layer] = track
	r.loops++
	r.loopsWG.Add(1)
	r.mu.Unlock()
	if old != nil {
		// Counted the new loop first, so the old one ending does not
		// mark the Receiver done.
		r.log.Info("media: a new track replaces a layer's track", "layer", layer.String())
		_ = old.SetReadDeadline(time.Now())
	}
	r.layers[layer].ssrc.Store(uint32(track.SSRC()))
	go r.readLoop(layer, track)
}

// TrackID returns the configured track ID.
func (r *Receiver) TrackID() string { return r.cfg.TrackID }

// Kind is audio or video, from the codec's MIME type.
func (r *Receiver) Kind() webrtc.RTPCodecType { return r.kind }

// Codec returns the publisher's negotiated codec.
func (r *Receiver) Codec() webrtc.RTPCodecParameters { return r.cfg.Codec }

// AudioLevel is the speaking level over the last window (~500 ms) in 0..1,
// 1 loudest, and whether the publisher counts as speaking.
func (r *Receiver) AudioLevel() (level float32, active bool) {
	if r.muted.Load() {
		return 0, false
	}
	return r.audio.get(r.now())
}

// SetMuted records that the publisher muted (or unmuted) the track. Down
// tracks stop forwarding; on unmute video resumes at a key frame.
func (r *Receiver) SetMuted(muted bool) {
	if r.muted.Swap(muted) == muted {
		return
	}
	r.updateDownTracks()
	r.poke()
}

// OnMaxLayerChanged sets f to be called, from the Receiver's own goroutine
// and never under a lock, whenever the highest layer any down track wants
// changes; LayerNone means nobody watches. A rise is reported at once, a
// fall after it held for 2 s. Video only. Until the first call the
// publisher is assumed to send every announced layer.
func (r *Receiver) OnMaxLayerChanged(f func(Layer)) {
	r.mu.Lock()
	r.onMax = f
	r.reported = r.highestLayer()
	r.lowerAt = time.Time{}
	r.mu.Unlock()
	r.poke()
}

// Stats returns the receive counters.
func (r *Receiver) Stats() ReceiverStats {
	var s ReceiverStats
	now := r.now().UnixNano()
	for i := range r.layers {
		ls := &r.layers[i]
		l := LayerStats{
			Packets: ls.packets.Load(),
			Bytes:   ls.bytes.Load(),
			Lost:    ls.lost.Load(),
			Bitrate: int(ls.bitrate.Load()),
		}
		size := ls.size.Load()
		l.Width, l.Height = int(size>>16), int(size&0xffff)
		last := ls.last.Load()
		l.Active = last != 0 && now-last < int64(layerTimeout)
		s.Layers[i] = l
		s.Packets += l.Packets
		s.Bytes += l.Bytes
		s.Lost += l.Lost
	}
	s.DownTracks = len(*r.downs.Load())
	return s
}

// Close stops reading, closes every down track and waits for the
// Receiver's goroutines. It is idempotent.
func (r *Receiver) Close() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		tracks := r.reading
		r.mu.Unlock()
		// A read deadline in the past is the only way to unblock
		// TrackRemote.Read without closing the peer connection, which
		// belongs to the caller.
		for _, t := range tracks {
			if t != nil {
				_ = t.SetReadDeadline(time.Now())
			}
		}
		r.loopsWG.Wait()
		close(r.quit)
		r.tickWG.Wait()
		for _, d := range *r.downs.Load() {
			d.Close()
		}
		r.markDone()
	})
}

// Done is closed when every layer's track has ended, or on Close.
func (r *Receiver) Done() <-chan struct{} { return r.done }

func (r *Receiver) markDone() { r.doneOnce.Do(func() { close(r.done) }) }

// poke makes the tick goroutine run soon without waiting for its ticker.
func (r *Receiver) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Receiver) addDownTrack(d *DownTrack) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	old := *r.downs.Load()
	for _, x := range old {
		if x == d {
			return true
		}
	}
	n := make([]*DownTrack, len(old), len(old)+1)
	copy(n, old)
	n = append(n, d)
	r.downs.Store(&n)
	return true
}

func (r *Receiver) removeDownTrack(d *DownTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.downs.Load()
	n := make([]*DownTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			n = append(n, x)
		}
	}
	r.downs.Store(&n)
}

// readLoop reads one layer's track until it ends or Close sets a deadline.
// The buffer, the parsed packet and the write scratch are reused for every
// packet.
func (r *Receiver) readLoop(layer Layer, track *webrtc.TrackRemote) {
	defer func() {
		r.mu.Lock()
		if r.reading[layer] == track {
			r.reading[layer] = nil
		}
		r.loops--
		last := r.loops == 0
		r.mu.Unlock()
		if last {
			r.markDone()
		}
		r.loopsWG.Done()
	}()
	buf := make([]byte, receiveMTU)
	var pkt rtp.Packet
	sc := newScratch()
	var maxSeq uint16
	seqInit := false
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		// Loss: forward gaps in the sequence numbers. Late packets
		// (reordered or retransmitted after a NACK) are not subtracted.
		if !seqInit {
			seqInit, maxSeq = true, pkt.SequenceNumber
		} else if d := int16(pkt.SequenceNumber - maxSeq); d > 0 {
			if d > 1 {
				r.layers[layer].lost.Add(uint64(d - 1))
			}
			maxSeq = pkt.SequenceNumber
		}
		r.handle(layer, buf[:n], &pkt, sc)
	}
}

// packetInfo is what the receive path learned about one packet, computed
// once and shared by every down track.
type packetInfo struct {
	layer    Layer
	hdr      *rtp.Header
	payload  []byte
	key      bool // first packet of a key frame (any audio packet)
	hasVP8   bool
	vp8      vp8Desc
	hasLevel bool
	level    byte // raw RFC 6464 byte, V bit included
}

// inspect fills pi from a parsed packet. ok is false for a packet the
// engine cannot forward (a VP8 payload without a valid descriptor).
func (r *Receiver) inspect(layer Layer, p *rtp.Packet, pi *packetInfo) (ok bool) {
	*pi = packetInfo{layer: layer, hdr: &p.Header, payload: p.Payload}
	if r.cfg.AudioLevelExtID != 0 {
		if b := p.Header.GetExtension(uint8(r.cfg.AudioLevelExtID)); len(b) > 0 {
			pi.hasLevel, pi.level = true, b[0]
		}
	}
	if len(p.Payload) == 0 {
		// Padding only (bandwidth probing without RTX): never a switch
		// point; the munger drops it and closes the gap.
		return true
	}
	if r.codec == codecVP8 {
		d, err := parseVP8(p.Payload)
		if err != nil {
			return false
		}
		pi.hasVP8, pi.vp8, pi.key = true, d, d.keyFrame
		return true
	}
	pi.key = keyFrameStart(r.codec, p.Payload)
	return true
}

// handle processes one received packet: counters, cache, audio level, and
// the fan-out to every down track.
func (r *Receiver) handle(layer Layer, raw []byte, p *rtp.Packet, sc *scratch) {
	now := r.now()
	ls := &r.layers[layer]
	ls.packets.Add(1)
	ls.bytes.Add(uint64(len(raw)))
	if prev := ls.last.Swap(now.UnixNano()); now.UnixNano()-prev > int64(layerTimeout) {
		r.poke() // the layer (re)appeared: reselect layers now
	}
	ls.cache.put(p.SequenceNumber, raw, now)
	pi := &sc.info
	if !r.inspect(layer, p, pi) {
		return
	}
	if pi.key && pi.hasVP8 {
		if w, h, ok := vp8FrameSize(pi.payload[pi.vp8.hdrLen:]); ok {
			ls.size.Store(uint32(w)<<16 | uint32(h))
		}
	}
	if pi.hasLevel {
		r.audio.observe(pi.level&0x7f, now)
	}
	if r.muted.Load() {
		return
	}
	for _, d := range *r.downs.Load() {
		d.forward(pi, sc, now)
	}
}

// requestKeyFrame asks the publisher for a key frame on layer, at most once
// per keyFrameInterval per layer.
func (r *Receiver) requestKeyFrame(layer Layer) {
	if !layer.valid() || r.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	now := r.now()
	ssrc := r.layers[layer].ssrc.Load()
	r.mu.Lock()
	if r.closed || ssrc == 0 || now.Sub(r.kfLast[layer]) < keyFrameInterval {
		r.mu.Unlock()
		return
	}
	r.kfLast[layer] = now
	f := r.cfg.RequestKeyFrame
	r.mu.Unlock()
	if f != nil {
		f(ssrc)
	}
}

// selectionBase is the publisher side of a layer selection.
func (r *Receiver) selectionBase() selection {
	s := selection{
		layers:   r.cfg.Layers,
		pubMuted: r.muted.Load(),
		audio:    r.kind == webrtc.RTPCodecTypeAudio,
	}
	r.mu.Lock()
	s.available = r.available
	r.mu.Unlock()
	return s
}

func (r *Receiver) updateDownTracks() {
	for _, d := range *r.downs.Load() {
		d.updateTarget()
	}
}

// layerBitrate is the bitrate the allocator assumes for layer: measured
// while the publisher sends it (an announced maximum overstates a static
// scene several times, and the downlink estimate follows what is actually
// received), else announced, else a typical figure for a 720p simulcast
// ladder.
func (r *Receiver) layerBitrate(l Layer) int {
	if b := r.layers[l].bitrate.Load(); b > 0 {
		return int(b)
	}
	for _, li := range r.cfg.Layers {
		if li.Layer == l && li.Bitrate > 0 {
			return li.Bitrate
		}
	}
	return [maxLayers]int{150_000, 500_000, 1_500_000}[l]
}

func (r *Receiver) tickLoop() {
	defer r.tickWG.Done()
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-r.quit:
			return
		case <-t.C:
		case <-r.wake:
		}
		r.tickMu.Lock()
		r.tickLocked(r.now())
		r.tickMu.Unlock()
	}
}

// tick is the Receiver's housekeeping: layer availability and bitrates,
// key-frame requests for down tracks waiting to switch, and dynacast.
func (r *Receiver) tick(now time.Time) {
	r.tickMu.Lock()
	defer r.tickMu.Unlock()
	r.tickLocked(now)
}

func (r *Receiver) tickLocked(now time.Time) {
	var avail [maxLayers]bool
	for l := range r.layers {
		last := r.layers[l].last.Load()
		avail[l] = last != 0 && now.UnixNano()-last < int64(layerTimeout)
	}
	r.mu.Lock()
	changed := avail != r.available
	r.available = avail
	if r.rateAt.IsZero() || now.Sub(r.rateAt) >= time.Second {
		el := now.Sub(r.rateAt)
		for l := range r.layers {
			b := r.layers[l].bytes.Load()
			if !r.rateAt.IsZero() && el > 0 {
				// Half-and-half smoothing: a key frame makes one
				// second's sample jump.
				rate := int64(float64(b-r.rateBytes[l]) * 8 / el.Seconds())
				if old := r.layers[l].bitrate.Load(); old > 0 && rate > 0 {
					rate = (old + rate) / 2
				}
				r.layers[l].bitrate.Store(rate)
			}
			r.rateBytes[l] = b
		}
		r.rateAt = now
	}
	r.mu.Unlock()

	downs := *r.downs.Load()
	if changed {
		for _, d := range downs {
			d.updateTarget()
		}
	}
	want := LayerNone
	var pending [maxLayers]bool
	for _, d := range downs {
		target, current, desired := d.layerState()
		if target != LayerNone && target != current {
			pending[target] = true
		}
		want = max(want, desired)
	}
	for l, p := range pending {
		if p {
			r.requestKeyFrame(Layer(l))
		}
	}
	if r.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	r.mu.Lock()
	report := false
	switch {
	case r.closed:
	case want > r.reported:
		r.reported, r.lowerAt, report = want, time.Time{}, true
	case want < r.reported:
		if r.lowerAt.IsZero() {
			r.lowerAt = now
		} else if now.Sub(r.lowerAt) >= dynacastDownDelay {
			r.reported, r.lowerAt, report = want, time.Time{}, true
		}
	default:
		r.lowerAt = time.Time{}
	}
	f := r.onMax
	r.mu.Unlock()
	if report && f != nil {
		f(want)
	}
}
