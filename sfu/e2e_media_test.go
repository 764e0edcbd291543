package sfu_test

// End-to-end tests, with lksdk clients over loopback, of media behaviours
// the packages below sfu/ prove only with unit tests: dynacast reaching
// the publisher, the downlink estimate picking a subscriber's layer, and
// H.264 negotiated and forwarded intact. The harness is lksdk_test.go's.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/plexus-chat/plexus/sfu"
	"github.com/plexus-chat/plexus/sfu/internal/sfutest"
)

// frameProvider is an lksdk.SampleProvider: lksdk's own writer (StartWrite)
// asks it for frame(i, key) every d and packetizes what it gets, skipping
// the write while the track is muted or disabled by dynacast (a
// SubscribedQualityUpdate). It answers PLI/FIR like an encoder: the next
// frame is a key frame.
type frameProvider struct {
	d     time.Duration
	frame func(i int, key bool) []byte
	i     int // only NextSample uses it; lksdk calls that from one goroutine

	track       *lksdk.LocalTrack
	keyWanted   atomic.Bool
	keyRequests atomic.Int64
	offered     atomic.Int64 // frames handed to lksdk, written or not
	stop        chan struct{}
	done        chan struct{} // closed by lksdk's writer when it returns
}

func newFrameProvider(d time.Duration, frame func(i int, key bool) []byte) *frameProvider {
	return &frameProvider{d: d, frame: frame, stop: make(chan struct{}), done: make(chan struct{})}
}

// rtcpHandler is given to the track as lksdk.WithRTCPHandler.
func (p *frameProvider) rtcpHandler(pkt rtcp.Packet) {
	if p.track == nil {
		return
	}
	if sfutest.AsksKeyFrame(pkt, uint32(p.track.SSRC())) {
		p.keyRequests.Add(1)
		p.keyWanted.Store(true)
	}
}

func (p *frameProvider) NextSample(context.Context) (media.Sample, error) {
	select {
	case <-p.stop:
		return media.Sample{}, io.EOF
	default:
	}
	data := p.frame(p.i, p.keyWanted.Swap(false))
	p.i++
	p.offered.Add(1)
	return media.Sample{Data: data, Duration: p.d}, nil
}

func (p *frameProvider) OnBind() error   { return nil }
func (p *frameProvider) OnUnbind() error { return nil }
func (p *frameProvider) Close() error    { return nil }

// start makes track's lksdk writer use p until the test ends. Call it
// before publishing: p.track is read by lksdk's RTCP reader.
func (p *frameProvider) start(tb testing.TB, track *lksdk.LocalTrack) {
	tb.Helper()
	p.track = track
	if err := track.StartWrite(p, func() { close(p.done) }); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		close(p.stop)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			if track.IsBound() {
				tb.Errorf("lksdk's writer for %s did not stop", track.ID())
			}
		}
	})
}

// publishSimulcastSamples publishes the fixture clip as a three-layer VP8
// simulcast track written by lksdk itself, so that dynacast pauses layers
// as it would for any lksdk publisher (sfutest.Publisher writes RTP
// directly, which lksdk does not pause).
func publishSimulcastSamples(tb testing.TB, room *lksdk.Room, fx *sfutest.Fixtures) (tracks [3]*lksdk.LocalTrack, provs [3]*frameProvider) {
	tb.Helper()
	quality := [3]livekit.VideoQuality{livekit.VideoQuality_LOW, livekit.VideoQuality_MEDIUM, livekit.VideoQuality_HIGH}
	bitrate := [3]uint32{150_000, 500_000, 1_500_000}
	for l, clip := range fx.Video {
		provs[l] = newFrameProvider(clip.FrameDuration, func(i int, key bool) []byte {
			if key {
				return clip.Key[i%len(clip.Key)]
			}
			return clip.Frames[i%len(clip.Frames)]
		})
		t, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			lksdk.WithSimulcast("camera", &livekit.VideoLayer{
				Quality: quality[l], Width: uint32(clip.Width), Height: uint32(clip.Height), Bitrate: bitrate[l],
			}),
			lksdk.WithRTCPHandler(provs[l].rtcpHandler))
		if err != nil {
			tb.Fatal(err)
		}
		tracks[l] = t
		provs[l].start(tb, t)
	}
	if _, err := room.LocalParticipant.PublishSimulcastTrack(tracks[:], &lksdk.TrackPublicationOptions{
		Name: "camera", Source: livekit.TrackSource_CAMERA, VideoWidth: fx.Video[2].Width, VideoHeight: fx.Video[2].Height,
	}); err != nil {
		tb.Fatal(err)
	}
	return tracks, provs
}

// sendMeter is an interceptor.Factory for a publishing client: it counts
// the RTP packets the client puts on the wire per SSRC, and when the last
// one left. Registered before lksdk's own interceptors it is the one
// closest to the network, so it also sees NACK retransmissions.
type sendMeter struct {
	mu   sync.Mutex // guards sent
	sent map[uint32]*meterCount
}

type meterCount struct {
	packets int64
	last    time.Time
}

func newSendMeter() *sendMeter { return &sendMeter{sent: map[uint32]*meterCount{}} }

func (m *sendMeter) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &sendMeterInterceptor{m: m}, nil
}

// packets is what left on ssrc so far.
func (m *sendMeter) packets(ssrc uint32) (n int64, last time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.sent[ssrc]; c != nil {
		return c.packets, c.last
	}
	return 0, time.Time{}
}

type sendMeterInterceptor struct {
	interceptor.NoOp
	m *sendMeter
}

func (i *sendMeterInterceptor) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		i.m.mu.Lock()
		c := i.m.sent[h.SSRC]
		if c == nil {
			c = &meterCount{}
			i.m.sent[h.SSRC] = c
		}
		c.packets++
		c.last = time.Now()
		i.m.mu.Unlock()
		return w.Write(h, payload, a)
	})
}

// withInterceptors are the connect options that add fs to a client's
// peer connections, ahead of lksdk's defaults (NACK, TWCC, reports).
func withInterceptors(fs ...interceptor.Factory) []lksdk.ConnectOption {
	return []lksdk.ConnectOption{lksdk.WithInterceptors(fs), lksdk.WithIncludeDefaultInterceptors(true)}
}

// TestDynacastPausesPublisherLayers: the SFU tells the publisher which
// simulcast layers anybody watches (SubscribedQualityUpdate), and lksdk
// stops sending the others. What is checked is the effect on the wire at
// the publisher: per layer, whether its packets keep leaving alice's peer
// connection, while lksdk's writer keeps being offered frames of all three.
func TestDynacastPausesPublisherLayers(t *testing.T) {
	h := newHarness(t, sfu.Config{}, sfu.Deps{})
	meter := newSendMeter()
	alice, err := dial(t, h.url, "dynacast", "alice", dialOpts{connOpts: withInterceptors(meter)})
	if err != nil {
		t.Fatal(err)
	}
	tracks, provs := publishSimulcastSamples(t, alice.room, h.fx)
	bob := h.connect("dynacast", "bob", nil)

	// awaitLayers waits until each layer l is flowing (on[l]: 20 more
	// packets and one within 300 ms) or paused (nothing for 700 ms: a
	// frame is 33 ms, and retransmissions of a paused layer stop once
	// its last packets are acknowledged).
	awaitLayers := func(t *testing.T, what string, on [3]bool) {
		t.Helper()
		var mark [3]int64
		for l := range tracks {
			mark[l], _ = meter.packets(uint32(tracks[l].SSRC()))
		}
		state := func() (ok bool, desc [3]string) {
			ok = true
			for l := range tracks {
				n, last := meter.packets(uint32(tracks[l].SSRC()))
				idle := time.Since(last)
				flowing := n >= mark[l]+20 && idle < 300*time.Millisecond
				paused := idle >= 700*time.Millisecond
				if (on[l] && !flowing) || (!on[l] && !paused) {
					ok = false
				}
				desc[l] = fmt.Sprintf("%v idle, %d new packets, %d frames offered",
					idle.Round(time.Millisecond), n-mark[l], provs[l].offered.Load())
			}
			return ok, desc
		}
		if err := sfutest.AwaitErr(10*time.Second, func() bool { ok, _ := state(); return ok }); err != nil {
			_, desc := state()
			t.Fatalf("%s: %v; want flowing %v; low: %s; medium: %s; high: %s", what, err, on, desc[0], desc[1], desc[2])
		}
	}
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("a subscriber watching the top layer keeps all three going", func(t *testing.T) {
		bob.awaitWidth(t, "alice", 1280, 20*time.Second)
		awaitLayers(t, "all layers sent", [3]bool{true, true, true})
	})
	step("only the low layer watched: medium and high paused", func(t *testing.T) {
		if err := bob.publication("alice", lksdk.TrackKindVideo).SetVideoQuality(livekit.VideoQuality_LOW); err != nil {
			t.Fatal(err)
		}
		bob.awaitWidth(t, "alice", 320, 10*time.Second)
		awaitLayers(t, "upper layers paused", [3]bool{true, false, false})
	})
	step("high asked again: layers re-enabled and forwarded", func(t *testing.T) {
		before := provs[2].keyRequests.Load()
		if err := bob.publication("alice", lksdk.TrackKindVideo).SetVideoQuality(livekit.VideoQuality_HIGH); err != nil {
			t.Fatal(err)
		}
		awaitLayers(t, "all layers sent again", [3]bool{true, true, true})
		// The resumed layer starts mid-stream: the switch needs the key
		// frame the SFU asks for.
		bob.awaitWidth(t, "alice", 1280, 10*time.Second)
		if provs[2].keyRequests.Load() == before {
			t.Error("the SFU did not ask for a key frame of the resumed high layer")
		}
	})
	step("nobody subscribed: every layer paused", func(t *testing.T) {
		if err := bob.publication("alice", lksdk.TrackKindVideo).SetSubscribed(false); err != nil {
			t.Fatal(err)
		}
		offered := provs[0].offered.Load()
		awaitLayers(t, "all layers paused", [3]bool{false, false, false})
		// lksdk's writer is still being offered frames: the silence is
		// dynacast, not a stopped source.
		if provs[0].offered.Load() < offered+20 {
			t.Errorf("the source stalled: %d frames offered since unsubscribing", provs[0].offered.Load()-offered)
		}
	})
}

// shaper is an interceptor.Factory for a subscribing client: a policed
// downlink. Arriving RTP packets take their size from a token bucket
// refilled at rate bytes per second and holding at most burst bytes; a
// packet the bucket cannot pay for is dropped before the client's own
// interceptors see it, so its NACK generator asks for it and its TWCC
// feedback reports it lost, as behind a congested link.
type shaper struct {
	rate, burst float64

	mu     sync.Mutex // guards tokens and at
	tokens float64
	at     time.Time

	passed, dropped atomic.Int64
}

func newShaper(bitsPerSecond int, burst time.Duration) *shaper {
	rate := float64(bitsPerSecond) / 8
	b := rate * burst.Seconds()
	return &shaper{rate: rate, burst: b, tokens: b}
}

func (s *shaper) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &shaperInterceptor{s: s}, nil
}

// admit takes n bytes from the bucket if it holds them.
func (s *shaper) admit(n int, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.at.IsZero() {
		s.tokens = min(s.burst, s.tokens+now.Sub(s.at).Seconds()*s.rate)
	}
	s.at = now
	if s.tokens < float64(n) {
		return false
	}
	s.tokens -= float64(n)
	return true
}

type shaperInterceptor struct {
	interceptor.NoOp
	s *shaper
}

func (i *shaperInterceptor) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attrs, err := r.Read(b, a)
			if err != nil {
				return n, attrs, err
			}
			if i.s.admit(n, time.Now()) {
				i.s.passed.Add(1)
				return n, attrs, nil
			}
			i.s.dropped.Add(1)
			// The attributes may cache the dropped packet's parsed
			// header: start the next read clean.
			clear(attrs)
			a = attrs
		}
	})
}

// TestBandwidthPicksLayer: a subscriber behind a 300 kbit/s downlink gets
// the low layer (150 kbit/s; the middle one is 500) without asking, from
// the SFU's GCC estimate of its link, while an unconstrained subscriber of
// the same track keeps 720p. The SFU starts each subscriber at a 2.5 Mbit/s
// estimate, so bob's first video is the top layer; GCC's loss controller
// then cuts the estimate by half the loss ratio (about 80 %) every 200 ms,
// which reaches the low layer within seconds. The deadline is generous for
// a loaded machine under -race.
func TestBandwidthPicksLayer(t *testing.T) {
	h := newHarness(t, sfu.Config{}, sfu.Deps{})
	alice := h.connect("bwe", "alice", nil)
	p, err := sfutest.Publish(alice.room, h.fx, sfutest.PublisherOptions{Video: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	link := newShaper(300_000, 400*time.Millisecond)
	bob, err := dial(t, h.url, "bwe", "bob", dialOpts{connOpts: withInterceptors(link)})
	if err != nil {
		t.Fatal(err)
	}
	carol := h.connect("bwe", "carol", nil)

	start := time.Now()
	bob.awaitWidth(t, "alice", 320, 30*time.Second)
	t.Logf("bob on the low layer after %v; shaper passed %d packets, dropped %d",
		time.Since(start).Round(time.Millisecond), link.passed.Load(), link.dropped.Load())
	if link.dropped.Load() == 0 {
		t.Fatal("the shaper dropped nothing: bob's link was not constrained")
	}
	carol.awaitWidth(t, "alice", 1280, 20*time.Second)
	// Not a start-low policy nor a passing state: two more key frames
	// later (4 s, the clip's GOP) carol is still on 720p and bob is not.
	// The allocator may be probing bob one layer up (640) by then.
	b0, c0 := bob.stats("alice", lksdk.TrackKindVideo).KeyFrames, carol.stats("alice", lksdk.TrackKindVideo).KeyFrames
	sfutest.Await(t, 15*time.Second, "two more key frames reach bob and carol", func() bool {
		return bob.stats("alice", lksdk.TrackKindVideo).KeyFrames >= b0+2 && carol.stats("alice", lksdk.TrackKindVideo).KeyFrames >= c0+2
	})
	if w := bob.stats("alice", lksdk.TrackKindVideo).Width; w >= 1280 {
		t.Errorf("bob's video went back to %d px behind a 300 kbit/s link", w)
	}
	if w := carol.stats("alice", lksdk.TrackKindVideo).Width; w != 1280 {
		t.Errorf("carol's video is %d px wide, want 1280: bob's link affected her", w)
	}
}

// The synthetic H.264 stream: NAL units (ITU-T H.264 7.3.1, 7.4.1) in
// Annex B byte stream form (Annex B.1: a 00 00 00 01 start code before
// each), which lksdk's H.264 payloader splits and packs into RTP as RFC
// 6184 describes: SPS and PPS aggregated in a STAP-A, a large IDR slice
// fragmented in FU-As. Nothing decodes it; the SFU only looks at NAL
// headers for key frames.
const (
	nalSlice = 1 // coded slice of a non-IDR picture
	nalIDR   = 5
	nalSPS   = 7
	nalPPS   = 8
	nalSTAPA = 24 // RFC 6184 5.7.1
	nalFUA   = 28 // RFC 6184 5.8
)

var (
	// Constrained Baseline level 3.1, as the negotiated profile-level-id
	// 42e01f says; the rest is filler without 00 00 runs.
	h264SPS = []byte{0x67, 0x42, 0xe0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8, 0x06, 0xd0, 0xa1, 0x35}
	h264PPS = []byte{0x68, 0xce, 0x06, 0xe2}
)

const h264Fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"

// h264Slice is frame i's slice: IDR (4000 bytes, more than one RTP packet)
// or not (300 to 900 bytes). After the NAL header come i in four 7-bit
// groups with the high bit set, then bytes of a generator seeded by i and
// never zero, so no start code can occur inside and a receiver can rebuild
// the exact unit from its first five bytes.
func h264Slice(i int, idr bool) []byte {
	hdr, size := byte(0x41), 300+(i*37)%600 // nal_ref_idc 2, non-IDR
	if idr {
		hdr, size = 0x65, 4000 // nal_ref_idc 3, IDR
	}
	b := make([]byte, size)
	b[0] = hdr
	fillFrame(b[1:], i)
	return b
}

// fillFrame writes frame i's number in four 7-bit groups with the high
// bit set, then bytes of a generator seeded by i and never zero: a
// receiver can rebuild the whole from the first four bytes.
func fillFrame(b []byte, i int) {
	for k := range 4 {
		b[k] = 0x80 | byte(i>>(7*(3-k)))&0x7f
	}
	x := uint32(i)*2654435761 | 1 // xorshift32 must not start at 0
	for k := 4; k < len(b); k++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[k] = byte(x%255) + 1
	}
}

// frameNumber reads back the number fillFrame wrote at the start of b.
func frameNumber(b []byte) (int, bool) {
	if len(b) < 4 {
		return 0, false
	}
	i := 0
	for k := range 4 {
		if b[k]&0x80 == 0 {
			return 0, false
		}
		i = i<<7 | int(b[k]&0x7f)
	}
	return i, true
}

// h264AccessUnit is frame i in Annex B form: SPS, PPS and an IDR slice
// for a key frame, a non-IDR slice otherwise.
func h264AccessUnit(i int, key bool) []byte {
	start := []byte{0, 0, 0, 1}
	var b []byte
	if key {
		b = append(append(append(b, start...), h264SPS...), start...)
		b = append(b, h264PPS...)
	}
	return append(append(b, start...), h264Slice(i, key)...)
}

// h264Reader reads a subscribed H.264 track, reassembles its NAL units
// (single, STAP-A, FU-A) and checks each against what the publisher
// built.
type h264Reader struct {
	wg sync.WaitGroup

	mu         sync.Mutex // guards the fields below
	codec      webrtc.RTPCodecParameters
	packets    int
	firstKey   bool   // the first packet received started a key frame
	firstFrame []byte // NAL unit types of the first access unit, in order
	frames     int    // access units completed
	units      [32]int
	bad        []string // the first few units that did not match
	// Depacketizer state.
	started bool
	nextSeq uint16
	fua     []byte // FU-A unit being rebuilt, nil if none
	au      []byte // NAL unit types of the current access unit
}

func (r *h264Reader) run(track *webrtc.TrackRemote) {
	readPackets(track, &r.mu, func(c webrtc.RTPCodecParameters) { r.codec = c }, r.noteLocked)
}

// readPackets reads track until it ends: start gets its codec, then note
// each packet, both with mu held.
func readPackets(track *webrtc.TrackRemote, mu *sync.Mutex, start func(webrtc.RTPCodecParameters), note func(*rtp.Packet)) {
	mu.Lock()
	start(track.Codec())
	mu.Unlock()
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		mu.Lock()
		note(pkt)
		mu.Unlock()
	}
}

func (r *h264Reader) noteLocked(pkt *rtp.Packet) {
	p := pkt.Payload
	if len(p) == 0 {
		return
	}
	if !r.started {
		r.started, r.firstKey = true, h264StartsKeyFrame(p)
	} else if d := int16(pkt.SequenceNumber - r.nextSeq); d < 0 {
		return // a late duplicate
	} else if d > 0 {
		r.fua = nil // a gap: drop the unit being rebuilt
	}
	r.nextSeq = pkt.SequenceNumber + 1
	r.packets++
	switch t := p[0] & 0x1f; {
	case t >= 1 && t <= 23:
		r.unitLocked(p)
	case t == nalSTAPA:
		for i := 1; i+2 <= len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n == 0 || i+n > len(p) {
				r.badLocked("malformed STAP-A")
				break
			}
			r.unitLocked(p[i : i+n])
			i += n
		}
	case t == nalFUA && len(p) > 2:
		if p[1]&0x80 != 0 { // S: the first fragment carries the type
			r.fua = append([]byte{p[0]&0xe0 | p[1]&0x1f}, p[2:]...)
		} else if r.fua != nil {
			r.fua = append(r.fua, p[2:]...)
		}
		if p[1]&0x40 != 0 && r.fua != nil { // E
			r.unitLocked(r.fua)
			r.fua = nil
		}
	default:
		r.badLocked(fmt.Sprintf("packet of NAL type %d", t))
	}
	if pkt.Marker {
		if r.firstFrame == nil {
			r.firstFrame = append([]byte{}, r.au...)
		}
		r.frames++
		r.au = r.au[:0]
	}
}

// unitLocked checks one reassembled NAL unit against its original.
func (r *h264Reader) unitLocked(u []byte) {
	t := u[0] & 0x1f
	r.au = append(r.au, t)
	var want []byte
	switch t {
	case nalSPS:
		want = h264SPS
	case nalPPS:
		want = h264PPS
	case nalSlice, nalIDR:
		if len(u) >= 5 {
			i := 0
			for _, c := range u[1:5] {
				i = i<<7 | int(c&0x7f)
			}
			want = h264Slice(i, t == nalIDR)
		}
	}
	if !bytes.Equal(u, want) {
		r.badLocked(fmt.Sprintf("NAL type %d, %d bytes, differs from what was sent", t, len(u)))
		return
	}
	r.units[t]++
}

func (r *h264Reader) badLocked(what string) {
	if len(r.bad) < 5 {
		r.bad = append(r.bad, what)
	}
}

// h264StartsKeyFrame reports whether an RTP payload begins with an SPS or
// an IDR slice (alone, first in a STAP-A, or a first FU-A fragment).
func h264StartsKeyFrame(p []byte) bool {
	switch t := p[0] & 0x1f; t {
	case nalSPS, nalIDR:
		return true
	case nalSTAPA:
		return len(p) > 3 && (p[3]&0x1f == nalSPS || p[3]&0x1f == nalIDR)
	case nalFUA:
		return len(p) > 1 && p[1]&0x80 != 0 && p[1]&0x1f == nalIDR
	}
	return false
}

// h264State is a snapshot of what the reader saw.
type h264State struct {
	codec                 webrtc.RTPCodecParameters
	packets, frames       int
	sps, pps, idr, slices int
	firstKey              bool
	firstFrame            []byte
	bad                   []string
}

func (r *h264Reader) state() h264State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return h264State{
		codec: r.codec, packets: r.packets, frames: r.frames,
		sps: r.units[nalSPS], pps: r.units[nalPPS], idr: r.units[nalIDR], slices: r.units[nalSlice],
		firstKey: r.firstKey, firstFrame: append([]byte(nil), r.firstFrame...), bad: append([]string(nil), r.bad...),
	}
}

// dialVideo joins room as identity and runs read, in a goroutine of wg,
// on every video track it is given; the test's end disconnects and waits
// for the readers, whose tracks then end.
func (h *harness) dialVideo(t *testing.T, room, identity string, wg *sync.WaitGroup, read func(*webrtc.TrackRemote)) {
	t.Helper()
	cb := lksdk.NewRoomCallback()
	cb.OnTrackSubscribed = func(track *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication, _ *lksdk.RemoteParticipant) {
		if track.Kind() == webrtc.RTPCodecTypeVideo {
			wg.Go(func() { read(track) })
		}
	}
	tok, err := sfutest.Token(testAPIKey, testAPISecret, room, identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	rm, err := lksdk.ConnectToRoomWithToken(h.url, tok, cb,
		lksdk.WithAutoSubscribe(true), lksdk.WithLogger(lkLogger()), lksdk.WithConnectTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("%s joins %s: %v", identity, room, err)
	}
	t.Cleanup(func() {
		rm.Disconnect()
		wg.Wait()
	})
}

// dialH264 joins room as identity, reading every video track it is given
// with an h264Reader.
func (h *harness) dialH264(t *testing.T, room, identity string) *h264Reader {
	t.Helper()
	r := &h264Reader{}
	h.dialVideo(t, room, identity, &r.wg, r.run)
	return r
}

// TestH264 publishes an H.264 track (Constrained Baseline, packetization
// mode 1) from lksdk with a hand-built stream: an IDR frame first and then
// only when asked (PLI), non-IDR frames otherwise. A subscriber must get
// it as H.264 with every NAL unit byte for byte as sent; one who joins
// mid-stream must start at a key frame (SPS, PPS, IDR), which only exists
// because the SFU asked the publisher for it.
func TestH264(t *testing.T) {
	h := newHarness(t, sfu.Config{}, sfu.Deps{})
	alice := h.connect("h264", "alice", nil)
	prov := newFrameProvider(time.Second/30, func(i int, key bool) []byte { return h264AccessUnit(i, i == 0 || key) })
	track, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: h264Fmtp,
	}, lksdk.WithRTCPHandler(prov.rtcpHandler))
	if err != nil {
		t.Fatal(err)
	}
	prov.start(t, track)
	if _, err := alice.room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{
		Name: "camera", Source: livekit.TrackSource_CAMERA, VideoWidth: 640, VideoHeight: 480,
	}); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, who string, st h264State) {
		t.Helper()
		if !strings.EqualFold(st.codec.MimeType, webrtc.MimeTypeH264) ||
			!strings.Contains(st.codec.SDPFmtpLine, "packetization-mode=1") ||
			!strings.Contains(st.codec.SDPFmtpLine, "profile-level-id=42e01f") {
			t.Errorf("%s's track is %s %q, want H.264 %s", who, st.codec.MimeType, st.codec.SDPFmtpLine, h264Fmtp)
		}
		if len(st.bad) > 0 {
			t.Errorf("%s got altered media: %v", who, st.bad)
		}
		if !st.firstKey || !bytes.Equal(st.firstFrame, []byte{nalSPS, nalPPS, nalIDR}) {
			t.Errorf("%s's first frame: key %v, NAL types %v; want SPS, PPS, IDR", who, st.firstKey, st.firstFrame)
		}
	}
	bob := h.dialH264(t, "h264", "bob")
	if err := sfutest.AwaitErr(20*time.Second, func() bool {
		st := bob.state()
		return st.idr >= 1 && st.sps >= 1 && st.pps >= 1 && st.slices >= 60
	}); err != nil {
		t.Fatalf("bob receives alice's H.264 frames: %v; %+v", err, bob.state())
	}
	st := bob.state()
	t.Logf("bob: %d packets, %d frames, %d IDR, %d non-IDR slices, codec %s %s", st.packets, st.frames, st.idr, st.slices, st.codec.MimeType, st.codec.SDPFmtpLine)
	check(t, "bob", st)

	// Alice has sent 60 non-IDR frames since her last IDR: carol must
	// not be given any of them before a key frame.
	requests := prov.keyRequests.Load()
	carol := h.dialH264(t, "h264", "carol")
	if err := sfutest.AwaitErr(10*time.Second, func() bool { return carol.state().slices >= 30 }); err != nil {
		t.Fatalf("carol receives alice's H.264 frames: %v; %+v", err, carol.state())
	}
	check(t, "carol", carol.state())
	if prov.keyRequests.Load() == requests {
		t.Error("carol got a key frame without the SFU asking alice for one")
	}
}
