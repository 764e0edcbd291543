package media

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

const (
	// seqMapSize is how many recently sent packets a DownTrack can map
	// back to their source for a NACK: a few seconds of video.
	seqMapSize = 1024
	// nackInterval throttles resending the same packet: a second NACK
	// within about one round trip asks for a resend already on its way.
	nackInterval = 100 * time.Millisecond
	// maxResends bounds how often one packet is resent, as
	// livekit-server's sequencer does (maxAck = 3): a resend lost three
	// times will not arrive in time to be played, and without a bound a
	// subscriber NACKing everything every 100 ms would make the SFU send
	// each packet up to 20 times over its 2 s cache.
	maxResends = 3
)

// ErrReceiverClosed is returned by NewDownTrack for a closed Receiver.
var ErrReceiverClosed = errors.New("media: receiver closed")

// DownTrackConfig configures a DownTrack.
type DownTrackConfig struct {
	SubscriberID string // opaque, for logs
	StreamID     string // msid stream ID the subscriber sees
	TrackID      string // track ID in the subscriber's SDP
	Logger       *slog.Logger
}

// DownTrackStats are one subscriber's counters for one track.
type DownTrackStats struct {
	Packets, Bytes uint64 // sent, retransmissions included
	NACKs          uint64 // sequence numbers the subscriber asked for
	NACKsAnswered  uint64 // of those, resent from the cache
	PLIs           uint64 // PLI and FIR received
	Switches       uint64 // layer switches (and resumptions)
	FractionLost   float64
	PacketsLost    int64         // cumulative, from the last receiver report
	Jitter         time.Duration // from the last receiver report
	Layer          Layer         // layer being forwarded
}

// binding is what Bind learned from the subscriber's negotiation.
type binding struct {
	w       webrtc.TrackLocalWriter
	ssrc    uint32
	pt      uint8
	levelID uint8 // subscriber's audio-level extension ID, 0 = none
	red     bool  // source is RED, subscriber takes plain Opus
}

// sentEntry maps one output sequence number back to its source packet.
type sentEntry struct {
	valid  bool
	out    uint16
	src    uint16
	layer  Layer
	off    offsets
	nackAt int64 // last resend, unix nanoseconds
	resent uint8 // resends so far, at most maxResends
}

// DownTrack is one subscriber's copy of a Receiver's track: a
// webrtc.TrackLocal that forwards the chosen layer with rewritten
// numbering. Create it with NewDownTrack, add it to the subscriber's peer
// connection, then call Start with the RTPSender.
type DownTrack struct {
	r   *Receiver
	cfg DownTrackConfig
	log *slog.Logger

	packets, bytes       atomic.Uint64
	nacks, nacksAnswered atomic.Uint64
	plis, switches       atomic.Uint64
	connected            atomic.Bool // a packet has gone out: SRTP is up
	closeOnce            sync.Once
	wg                   sync.WaitGroup // the RTCP reader

	mu        sync.Mutex // guards the fields below
	bound     bool
	closed    bool
	started   bool
	b         binding
	bindID    string
	sender    *webrtc.RTPSender
	current   Layer // layer being forwarded
	target    Layer // layer to switch to at its next key frame
	desired   Layer // layer wanted regardless of availability (dynacast)
	reqW      uint32
	reqH      uint32
	quality   Layer
	bandwidth Layer
	subMuted  bool
	m         munger
	sent      [seqMapSize]sentEntry
	rrLost    uint8
	rrTotal   int32
	rrJitter  uint32
}

// NewDownTrack makes a DownTrack fed from r. It registers with r when the
// subscriber's peer connection binds it.
func NewDownTrack(r *Receiver, cfg DownTrackConfig) (*DownTrack, error) {
	if r == nil {
		return nil, errors.New("media: nil receiver")
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, ErrReceiverClosed
	}
	if cfg.Logger == nil {
		cfg.Logger = r.cfg.Logger
	}
	return &DownTrack{
		r:         r,
		cfg:       cfg,
		log:       cfg.Logger.With("track", r.cfg.TrackID, "subscriber", cfg.SubscriberID),
		current:   LayerNone,
		target:    LayerNone,
		desired:   LayerNone,
		quality:   maxLayers - 1,
		bandwidth: maxLayers - 1,
	}, nil
}

// ID is the track ID in the subscriber's SDP.
func (d *DownTrack) ID() string { return d.cfg.TrackID }

// RID is empty: a subscriber gets one stream, never simulcast.
func (d *DownTrack) RID() string { return "" }

// StreamID is the msid stream ID.
func (d *DownTrack) StreamID() string { return d.cfg.StreamID }

// Kind is the Receiver's kind.
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.r.kind }

// Bind implements webrtc.TrackLocal: it picks the subscriber's payload type
// for the publisher's codec and starts forwarding. A subscriber that
// accepted Opus but not RED gets RED's primary Opus payload.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, red, err := matchCodec(d.r.cfg.Codec, ctx.CodecParameters())
	if err != nil {
		return webrtc.RTPCodecParameters{}, err
	}
	var levelID uint8
	for _, e := range ctx.HeaderExtensions() {
		if e.URI == sdp.AudioLevelURI && e.ID > 0 && e.ID < 15 {
			levelID = uint8(e.ID)
		}
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return webrtc.RTPCodecParameters{}, ErrReceiverClosed
	}
	d.bound = true
	d.bindID = ctx.ID()
	d.b = binding{
		w:       ctx.WriteStream(),
		ssrc:    uint32(ctx.SSRC()),
		pt:      uint8(codec.PayloadType),
		levelID: levelID,
		red:     red,
	}
	d.mu.Unlock()
	if !d.r.addDownTrack(d) {
		return webrtc.RTPCodecParameters{}, ErrReceiverClosed
	}
	d.updateTarget()
	return codec, nil
}

// Unbind implements webrtc.TrackLocal.
func (d *DownTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	d.mu.Lock()
	if !d.bound || d.bindID != ctx.ID() {
		d.mu.Unlock()
		return nil
	}
	d.bound = false
	d.current = LayerNone
	d.mu.Unlock()
	d.r.removeDownTrack(d)
	d.r.poke()
	return nil
}

// matchCodec finds the subscriber's codec for the publisher's src: same
// MIME type, preferring identical fmtp (H.264 profile and packetization
// mode), then the same H.264 packetization mode, then any. For a RED source
// a subscriber without RED but with Opus gets Opus (red=true).
func matchCodec(src webrtc.RTPCodecParameters, have []webrtc.RTPCodecParameters) (c webrtc.RTPCodecParameters, red bool, err error) {
	find := func(mime string) (webrtc.RTPCodecParameters, bool) {
		var fallback *webrtc.RTPCodecParameters
		for i := range have {
			h := &have[i]
			if !strings.EqualFold(h.MimeType, mime) || h.ClockRate != src.ClockRate {
				continue
			}
			if h.SDPFmtpLine == src.SDPFmtpLine {
				return *h, true
			}
			if fallback == nil || (codecKindOf(mime) == codecH264 &&
				fmtpParam(h.SDPFmtpLine, "packetization-mode") == fmtpParam(src.SDPFmtpLine, "packetization-mode") &&
				fmtpParam(fallback.SDPFmtpLine, "packetization-mode") != fmtpParam(src.SDPFmtpLine, "packetization-mode")) {
				fallback = h
			}
		}
		if fallback != nil {
			return *fallback, true
		}
		return webrtc.RTPCodecParameters{}, false
	}
	if c, ok := find(src.MimeType); ok {
		return c, false, nil
	}
	if codecKindOf(src.MimeType) == codecRED {
		if c, ok := find(webrtc.MimeTypeOpus); ok {
			return c, true, nil
		}
	}
	return webrtc.RTPCodecParameters{}, false, fmt.Errorf("media: subscriber did not accept %s: %w", src.MimeType, webrtc.ErrUnsupportedCodec)
}

// fmtpParam returns key's value in an fmtp line ("a=1;b=2"), "" if absent.
func fmtpParam(line, key string) string {
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// Start reads the subscriber's RTCP for this track from sender: NACKs are
// answered from the Receiver's cache, PLI and FIR become key-frame requests
// to the publisher, receiver reports feed Stats. Close stops sender.
func (d *DownTrack) Start(sender *webrtc.RTPSender) {
	d.mu.Lock()
	if d.started || d.closed || sender == nil {
		d.mu.Unlock()
		return
	}
	d.started = true
	d.sender = sender
	d.wg.Add(1)
	d.mu.Unlock()
	go d.rtcpLoop(sender)
}

// SetMuted records that the subscriber disabled (or re-enabled) the track.
func (d *DownTrack) SetMuted(muted bool) {
	d.mu.Lock()
	d.subMuted = muted
	d.mu.Unlock()
	d.updateTarget()
}

// SetRequestedDimensions sets the subscriber's video element size; the
// track forwards the smallest layer at least that large. 0x0 = no limit.
func (d *DownTrack) SetRequestedDimensions(w, h uint32) {
	d.mu.Lock()
	d.reqW, d.reqH = w, h
	d.mu.Unlock()
	d.updateTarget()
}

// SetRequestedQuality caps the layer at q (LiveKit LOW/MEDIUM/HIGH = 0/1/2;
// LayerNone = off).
func (d *DownTrack) SetRequestedQuality(q Layer) {
	d.mu.Lock()
	d.quality = clampLayer(q)
	d.mu.Unlock()
	d.updateTarget()
}

// SetMaxLayerByBandwidth caps the layer at what the subscriber's downlink
// carries; the Allocator calls it.
func (d *DownTrack) SetMaxLayerByBandwidth(l Layer) {
	d.mu.Lock()
	changed := d.bandwidth != clampLayer(l)
	d.bandwidth = clampLayer(l)
	d.mu.Unlock()
	if changed {
		d.updateTarget()
	}
}

func clampLayer(l Layer) Layer {
	return max(LayerNone, min(l, maxLayers-1))
}

// TargetLayer is the layer the track is switching to (or forwarding).
func (d *DownTrack) TargetLayer() Layer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.target
}

// CurrentLayer is the layer being forwarded.
func (d *DownTrack) CurrentLayer() Layer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current
}

func (d *DownTrack) layerState() (target, current, desired Layer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.bound {
		return LayerNone, LayerNone, LayerNone
	}
	return d.target, d.current, d.desired
}

// Stats returns the track's counters.
func (d *DownTrack) Stats() DownTrackStats {
	s := DownTrackStats{
		Packets:       d.packets.Load(),
		Bytes:         d.bytes.Load(),
		NACKs:         d.nacks.Load(),
		NACKsAnswered: d.nacksAnswered.Load(),
		PLIs:          d.plis.Load(),
		Switches:      d.switches.Load(),
	}
	d.mu.Lock()
	s.FractionLost = float64(d.rrLost) / 256
	s.PacketsLost = int64(d.rrTotal)
	s.Jitter = time.Duration(float64(d.rrJitter) / float64(d.r.clock) * float64(time.Second))
	s.Layer = d.current
	d.mu.Unlock()
	return s
}

// Close stops forwarding, unregisters from the Receiver, stops the
// RTPSender given to Start (which ends its RTCP reader) and waits for that
// reader. It is idempotent.
func (d *DownTrack) Close() {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.bound = false
		d.current = LayerNone
		sender := d.sender
		d.mu.Unlock()
		d.r.removeDownTrack(d)
		if sender != nil {
			if err := sender.Stop(); err != nil {
				d.log.Debug("media: stopping sender", "err", err)
			}
		}
		d.wg.Wait()
		d.r.poke()
	})
}

// updateTarget recomputes the layers from the subscriber's and publisher's
// state. Key-frame requests for a pending switch and dynacast reports are
// left to the Receiver's tick goroutine, which it nudges: updateTarget may
// run inside pion's Bind and must not call out.
func (d *DownTrack) updateTarget() {
	s := d.r.selectionBase()
	d.mu.Lock()
	s.reqW, s.reqH = d.reqW, d.reqH
	s.quality, s.bandwidth, s.subMuted = d.quality, d.bandwidth, d.subMuted
	t, want := selectLayer(&s), s.desired()
	changed := t != d.target || want != d.desired
	d.target, d.desired = t, want
	if t == LayerNone || !d.bound {
		d.current = LayerNone
	}
	d.mu.Unlock()
	if changed {
		d.r.poke()
	}
}

// desiredLayer is the layer the subscriber wants ignoring bandwidth: what
// the Allocator tries to give it.
func (d *DownTrack) desiredLayer() Layer {
	s := d.r.selectionBase()
	d.mu.Lock()
	s.reqW, s.reqH = d.reqW, d.reqH
	s.quality, s.subMuted = d.quality, d.subMuted
	bound := d.bound
	d.mu.Unlock()
	s.bandwidth = maxLayers - 1
	if !bound {
		return LayerNone
	}
	return s.desired()
}

// forward writes one received packet if this track forwards its layer, or
// switches to its layer at a key frame. Called from the Receiver's read
// loop; sc is that loop's scratch space.
func (d *DownTrack) forward(pi *packetInfo, sc *scratch, now time.Time) {
	var vp8 *vp8Desc
	if pi.hasVP8 {
		vp8 = &pi.vp8
	}
	d.mu.Lock()
	if !d.bound {
		d.mu.Unlock()
		return
	}
	if d.current != pi.layer {
		if d.target != pi.layer || !pi.key {
			d.mu.Unlock()
			return
		}
		d.current = pi.layer
		d.m.begin(pi.hdr.SequenceNumber, pi.hdr.Timestamp, now, d.r.clock, vp8)
		d.switches.Add(1)
	}
	out, off, ok := d.m.munge(pi.hdr.SequenceNumber, pi.hdr.Timestamp, now, vp8, len(pi.payload) == 0)
	if !ok {
		d.mu.Unlock()
		return
	}
	e := &d.sent[out.seq%seqMapSize]
	*e = sentEntry{valid: true, out: out.seq, src: pi.hdr.SequenceNumber, layer: pi.layer, off: off}
	b := d.b
	d.mu.Unlock()
	d.write(&b, pi, out, sc)
}

// write sends one packet with the subscriber's SSRC, payload type and
// numbering. The header, extension and payload buffers are sc's, so the
// steady state does not allocate.
func (d *DownTrack) write(b *binding, pi *packetInfo, out munged, sc *scratch) {
	src := pi.hdr
	h := &sc.hdr
	*h = rtp.Header{
		Version:        2,
		Marker:         src.Marker,
		PayloadType:    b.pt,
		SequenceNumber: out.seq,
		Timestamp:      out.ts,
		SSRC:           b.ssrc,
		CSRC:           src.CSRC,
		Extensions:     sc.exts[:0],
	}
	if b.levelID != 0 && pi.hasLevel {
		// One-byte header (RFC 8285); appends into sc.exts, no allocation.
		sc.level[0] = pi.level
		_ = h.SetExtension(b.levelID, sc.level[:])
	}
	payload := pi.payload
	if b.red && len(payload) > 0 {
		p, ok := redPrimary(payload)
		if !ok {
			return
		}
		payload = p
	}
	if pi.hasVP8 && (out.pic != pi.vp8.picID || out.tl0 != pi.vp8.tl0 || out.keyIdx != pi.vp8.keyIdx) {
		sc.payload = append(sc.payload[:0], payload...)
		pi.vp8.rewrite(sc.payload, out.pic, out.tl0, out.keyIdx)
		payload = sc.payload
	}
	n, err := b.w.WriteRTP(h, payload)
	if err != nil {
		return // the subscriber's transport is closing or congested; RTP is lossy
	}
	if n == 0 {
		// pion drops packets silently (0, nil) until DTLS has set up
		// SRTP. A stream that started on a key frame nobody received
		// would leave the subscriber waiting for the next one, so until
		// the first packet goes out, start over at the next key frame.
		if !d.connected.Load() {
			d.mu.Lock()
			d.current = LayerNone
			d.mu.Unlock()
		}
		return
	}
	if !d.connected.Load() {
		d.connected.Store(true)
	}
	d.packets.Add(1)
	d.bytes.Add(uint64(n))
}

// scratch is one goroutine's reusable space for writing packets.
type scratch struct {
	info    packetInfo
	hdr     rtp.Header
	exts    [4]rtp.Extension // room for interceptors' extensions (TWCC)
	level   [1]byte
	payload []byte
}

func newScratch() *scratch {
	return &scratch{payload: make([]byte, 0, receiveMTU)}
}

// rtcpLoop reads the subscriber's RTCP for this track until the sender
// stops.
func (d *DownTrack) rtcpLoop(sender *webrtc.RTPSender) {
	defer d.wg.Done()
	buf := make([]byte, receiveMTU)
	nb := &nackBuf{sc: newScratch(), raw: make([]byte, 0, receiveMTU)}
	for {
		n, _, err := sender.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		d.handleRTCP(pkts, nb)
	}
}

// nackBuf is the RTCP reader's space for resending packets.
type nackBuf struct {
	sc  *scratch
	raw []byte
	pkt rtp.Packet
}

func (d *DownTrack) handleRTCP(pkts []rtcp.Packet, nb *nackBuf) {
	d.mu.Lock()
	ssrc := d.b.ssrc
	d.mu.Unlock()
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.TransportLayerNack:
			if p.MediaSSRC != ssrc {
				continue
			}
			for _, pair := range p.Nacks {
				pair.Range(func(seq uint16) bool {
					d.nacks.Add(1)
					if d.resend(seq, nb) {
						d.nacksAnswered.Add(1)
					}
					return true
				})
			}
		case *rtcp.PictureLossIndication:
			if p.MediaSSRC == ssrc {
				d.keyFrameRequested()
			}
		case *rtcp.FullIntraRequest:
			for _, e := range p.FIR {
				if e.SSRC == ssrc {
					d.keyFrameRequested()
					break
				}
			}
		case *rtcp.ReceiverReport:
			d.receiverReport(p.Reports, ssrc)
		case *rtcp.SenderReport:
			d.receiverReport(p.Reports, ssrc)
		}
	}
}

func (d *DownTrack) receiverReport(rs []rtcp.ReceptionReport, ssrc uint32) {
	for _, rr := range rs {
		if rr.SSRC != ssrc {
			continue
		}
		d.mu.Lock()
		d.rrLost, d.rrTotal, d.rrJitter = rr.FractionLost, int32(rr.TotalLost), rr.Jitter
		d.mu.Unlock()
	}
}

// keyFrameRequested passes a subscriber's PLI or FIR to the publisher for
// the layer it is watching (or about to), throttled by the Receiver.
func (d *DownTrack) keyFrameRequested() {
	d.plis.Add(1)
	d.mu.Lock()
	l := d.current
	if l == LayerNone {
		l = d.target
	}
	d.mu.Unlock()
	d.r.requestKeyFrame(l)
}

// resend answers a NACK for output sequence number seq from the Receiver's
// cache, rewritten exactly as it was first sent. Unknown, overwritten or
// too-old packets are ignored, as is a repeat within nackInterval.
func (d *DownTrack) resend(seq uint16, nb *nackBuf) bool {
	now := d.r.now()
	d.mu.Lock()
	e := &d.sent[seq%seqMapSize]
	if !d.bound || !e.valid || e.out != seq || e.resent >= maxResends || now.UnixNano()-e.nackAt < int64(nackInterval) {
		d.mu.Unlock()
		return false
	}
	e.nackAt = now.UnixNano()
	e.resent++
	layer, src, off, b := e.layer, e.src, e.off, d.b
	d.mu.Unlock()
	raw, ok := d.r.layers[layer].cache.get(src, nb.raw, now)
	if !ok {
		return false
	}
	nb.raw = raw
	if err := nb.pkt.Unmarshal(raw); err != nil {
		return false
	}
	pi := &nb.sc.info
	if !d.r.inspect(layer, &nb.pkt, pi) {
		return false
	}
	var vp8 *vp8Desc
	if pi.hasVP8 {
		vp8 = &pi.vp8
	}
	d.write(&b, pi, off.apply(src, nb.pkt.Timestamp, vp8), nb.sc)
	return true
}
