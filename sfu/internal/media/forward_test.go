package media

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// vp8Source generates one simulcast layer's packets: frames of n packets
// with the publisher's own sequence numbers, timestamps and PictureIDs.
type vp8Source struct {
	ssrc   uint32
	seq    uint16
	ts     uint32
	pic    uint16
	tl0    uint8
	keyIdx uint8
	tsStep uint32 // per frame; 0 = 3000 (30 fps)
	marker byte   // last payload byte, to tell layers apart downstream
}

// packets makes the next frame's packets.
func (s *vp8Source) packets(key bool, n int) []rtp.Packet {
	var out []rtp.Packet
	s.pic = (s.pic + 1) & 0x7fff
	s.tl0++
	if key {
		s.keyIdx++
	}
	if s.tsStep == 0 {
		s.tsStep = 3000
	}
	s.ts += s.tsStep
	for i := 0; i < n; i++ {
		p := vp8Payload(s.pic, s.tl0, s.keyIdx, i == 0, key, 200)
		p[len(p)-1] = s.marker
		out = append(out, rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: s.seq, Timestamp: s.ts, SSRC: s.ssrc, Marker: i == n-1},
			Payload: p,
		})
		s.seq++
	}
	return out
}

func (s *vp8Source) frame(t testing.TB, key bool, n int) [][]byte {
	var out [][]byte
	for _, p := range s.packets(key, n) {
		out = append(out, rtpRaw(t, p.Header, p.Payload))
	}
	return out
}

// keyRequests records RequestKeyFrame calls.
type keyRequests struct {
	mu    sync.Mutex // guards ssrcs
	ssrcs []uint32
}

func (k *keyRequests) request(ssrc uint32) {
	k.mu.Lock()
	k.ssrcs = append(k.ssrcs, ssrc)
	k.mu.Unlock()
}

func (k *keyRequests) count(ssrc uint32) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, s := range k.ssrcs {
		if s == ssrc {
			n++
		}
	}
	return n
}

type simulcastRig struct {
	t     *testing.T
	clock *fakeClock
	kf    *keyRequests
	r     *Receiver
	f     *feeder
	src   [3]*vp8Source
}

func newSimulcastRig(t *testing.T) *simulcastRig {
	rig := &simulcastRig{t: t, clock: newFakeClock(), kf: &keyRequests{}}
	rig.r = NewReceiver(ReceiverConfig{
		TrackID: "TR_v", Codec: vp8Codec, Layers: testLayers,
		RequestKeyFrame: rig.kf.request, Now: rig.clock.Now,
	})
	t.Cleanup(rig.r.Close)
	rig.f = newFeeder(t, rig.r, 111, 222, 333)
	for l := range rig.src {
		rig.src[l] = &vp8Source{ssrc: uint32(111 * (l + 1)), seq: uint16(1000 * (l + 1) * 21), ts: uint32(l) * 1e9, pic: uint16(100 * l)}
	}
	return rig
}

// send feeds one frame of layer l.
func (rig *simulcastRig) send(l Layer, key bool) {
	for _, raw := range rig.src[l].frame(rig.t, key, 3) {
		rig.f.feed(l, raw)
	}
}

// all sends one frame on every layer, 33 ms apart, and runs housekeeping.
func (rig *simulcastRig) all(key bool) {
	for l := Layer(0); l < 3; l++ {
		rig.send(l, key)
	}
	rig.clock.Advance(33 * time.Millisecond)
	rig.r.tick(rig.clock.Now())
}

// checkStream asserts that what a subscriber got is one continuous stream:
// consecutive sequence numbers, PictureID +1 per frame, non-decreasing
// timestamps, the subscriber's SSRC and payload type.
func checkStream(t *testing.T, pkts []sentPacket) {
	t.Helper()
	for i := 1; i < len(pkts); i++ {
		a, b := pkts[i-1], pkts[i]
		if b.hdr.SequenceNumber != a.hdr.SequenceNumber+1 {
			t.Fatalf("packet %d: seq %d after %d", i, b.hdr.SequenceNumber, a.hdr.SequenceNumber)
		}
		if b.hdr.SSRC != 5000 || b.hdr.PayloadType != 96 {
			t.Fatalf("packet %d: ssrc %d pt %d", i, b.hdr.SSRC, b.hdr.PayloadType)
		}
		da, _ := parseVP8(a.payload)
		db, _ := parseVP8(b.payload)
		if b.hdr.Timestamp == a.hdr.Timestamp {
			if da.picID != db.picID || db.start {
				t.Fatalf("packet %d: same frame, PictureID %d after %d", i, db.picID, da.picID)
			}
			continue
		}
		if int32(b.hdr.Timestamp-a.hdr.Timestamp) <= 0 {
			t.Fatalf("packet %d: timestamp %d after %d", i, b.hdr.Timestamp, a.hdr.Timestamp)
		}
		if db.picID != (da.picID+1)&0x7fff || db.tl0 != da.tl0+1 || !db.start {
			t.Fatalf("packet %d: new frame PictureID %d TL0 %d after %d %d", i, db.picID, db.tl0, da.picID, da.tl0)
		}
	}
}

func TestSwitchLayersOnlyAtKeyFrames(t *testing.T) {
	rig := newSimulcastRig(t)
	rig.all(false) // every layer becomes available
	d, w := bindDownTrack(t, rig.r, "sub1")
	d.SetRequestedQuality(0)
	if d.TargetLayer() != 0 || d.CurrentLayer() != LayerNone {
		t.Fatalf("target %v current %v", d.TargetLayer(), d.CurrentLayer())
	}

	// Delta frames are not forwarded before a key frame; a key frame is
	// requested for the target layer.
	rig.all(false)
	if n := len(w.sent()); n != 0 {
		t.Fatalf("%d packets forwarded before a key frame", n)
	}
	if rig.kf.count(111) == 0 {
		t.Fatal("no key frame requested for layer q")
	}
	rig.send(0, true)
	for range 5 {
		rig.all(false)
	}
	if d.CurrentLayer() != 0 || len(w.sent()) != 3*6 {
		t.Fatalf("current %v, %d packets", d.CurrentLayer(), len(w.sent()))
	}

	// Ask for HIGH: keep forwarding q until f has a key frame.
	d.SetRequestedQuality(2)
	rig.clock.Advance(keyFrameInterval)
	for range 3 {
		rig.all(false)
	}
	if d.CurrentLayer() != 0 || d.TargetLayer() != 2 || rig.kf.count(333) == 0 {
		t.Fatalf("current %v target %v, key frame requests on f: %d", d.CurrentLayer(), d.TargetLayer(), rig.kf.count(333))
	}
	before := len(w.sent())
	rig.send(1, true) // a key frame on another layer changes nothing
	rig.send(2, true)
	if d.CurrentLayer() != 2 {
		t.Fatalf("current %v after f key frame", d.CurrentLayer())
	}
	pkts := w.sent()
	if len(pkts) != before+3 {
		t.Fatalf("%d packets, want %d", len(pkts), before+3)
	}
	if k, _ := parseVP8(pkts[before].payload); !k.keyFrame {
		t.Fatal("first packet after the switch is not a key frame")
	}
	for range 5 {
		rig.all(false)
	}
	// Down to LOW again: switch at q's key frame.
	d.SetRequestedQuality(0)
	rig.all(false)
	rig.send(0, true)
	rig.all(false)
	if d.CurrentLayer() != 0 {
		t.Fatalf("current %v after q key frame", d.CurrentLayer())
	}
	checkStream(t, w.sent())
	if s := d.Stats(); s.Switches != 3 || s.Packets != uint64(len(w.sent())) {
		t.Fatalf("stats %+v, %d sent", s, len(w.sent()))
	}
}

func TestNACKResendsFromCache(t *testing.T) {
	rig := newSimulcastRig(t)
	rig.all(false)
	d, w := bindDownTrack(t, rig.r, "sub1")
	d.SetRequestedQuality(0)
	rig.send(0, true)
	rig.all(false)
	d.SetRequestedQuality(1)
	rig.send(1, true)
	rig.all(false)
	pkts := w.sent()
	if len(pkts) != 12 || d.CurrentLayer() != 1 {
		t.Fatalf("%d packets, layer %v", len(pkts), d.CurrentLayer())
	}
	w.reset()
	nb := &nackBuf{sc: newScratch()}
	nack := func(seqs ...uint16) {
		d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{
			MediaSSRC: 5000, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs),
		}}, nb)
	}
	// One packet from before the switch (layer q), one after (layer h,
	// PictureID rewritten), one never sent.
	want := []sentPacket{pkts[1], pkts[7]}
	nack(pkts[1].hdr.SequenceNumber, pkts[7].hdr.SequenceNumber, pkts[11].hdr.SequenceNumber+50)
	got := w.sent()
	if len(got) != 2 {
		t.Fatalf("%d resends, want 2", len(got))
	}
	for i := range want {
		if got[i].hdr.SequenceNumber != want[i].hdr.SequenceNumber || got[i].hdr.Timestamp != want[i].hdr.Timestamp ||
			got[i].hdr.SSRC != 5000 || string(got[i].payload) != string(want[i].payload) {
			t.Fatalf("resend %d: %+v, want %+v", i, got[i].hdr, want[i].hdr)
		}
	}
	// A repeat within a round trip is ignored, a later one answered.
	nack(pkts[1].hdr.SequenceNumber)
	if len(w.sent()) != 2 {
		t.Fatal("repeated NACK answered at once")
	}
	rig.clock.Advance(nackInterval)
	nack(pkts[1].hdr.SequenceNumber)
	if len(w.sent()) != 3 {
		t.Fatal("NACK after the interval not answered")
	}
	// Too old for the cache: ignored.
	rig.clock.Advance(cacheMaxAge)
	nack(pkts[2].hdr.SequenceNumber)
	if len(w.sent()) != 3 {
		t.Fatal("stale packet resent")
	}
	// A NACK for another SSRC is not ours.
	d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{pkts[3].hdr.SequenceNumber})}}, nb)
	if s := d.Stats(); s.NACKs != 6 || s.NACKsAnswered != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPLIForwardedThrottled(t *testing.T) {
	rig := newSimulcastRig(t)
	rig.all(false)
	d, _ := bindDownTrack(t, rig.r, "sub1")
	d2, _ := bindDownTrack(t, rig.r, "sub2")
	rig.send(2, true)
	rig.clock.Advance(keyFrameInterval)
	base := rig.kf.count(333)
	nb := &nackBuf{sc: newScratch()}
	for range 5 {
		d.handleRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 5000}}, nb)
		d2.handleRTCP([]rtcp.Packet{&rtcp.FullIntraRequest{FIR: []rtcp.FIREntry{{SSRC: 5000}}}}, nb)
	}
	if got := rig.kf.count(333) - base; got != 1 {
		t.Fatalf("%d key frame requests for 10 PLI/FIR, want 1", got)
	}
	rig.clock.Advance(keyFrameInterval)
	d.handleRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 5000}}, nb)
	if got := rig.kf.count(333) - base; got != 2 {
		t.Fatalf("%d key frame requests after the interval, want 2", got)
	}
	if d.Stats().PLIs != 6 || d2.Stats().PLIs != 5 {
		t.Fatalf("PLIs %d %d", d.Stats().PLIs, d2.Stats().PLIs)
	}
}

func TestPausedLayerAndMute(t *testing.T) {
	rig := newSimulcastRig(t)
	rig.all(false)
	d, w := bindDownTrack(t, rig.r, "sub1")
	rig.send(2, true)
	rig.all(false)
	if d.CurrentLayer() != 2 {
		t.Fatalf("current %v", d.CurrentLayer())
	}
	// The publisher stops f (dynacast or CPU): the track moves to h at
	// h's key frame.
	for range 50 {
		rig.send(0, false)
		rig.send(1, false)
		rig.clock.Advance(33 * time.Millisecond)
		rig.r.tick(rig.clock.Now())
	}
	if d.TargetLayer() != 1 {
		t.Fatalf("target %v with f paused", d.TargetLayer())
	}
	rig.send(1, true)
	if d.CurrentLayer() != 1 {
		t.Fatalf("current %v", d.CurrentLayer())
	}
	// Publisher mute: nothing forwarded; after unmute only from a key frame.
	rig.r.SetMuted(true)
	n := len(w.sent())
	rig.send(1, true)
	if len(w.sent()) != n || d.CurrentLayer() != LayerNone {
		t.Fatal("forwarded while muted")
	}
	rig.r.SetMuted(false)
	rig.send(1, false)
	if len(w.sent()) != n {
		t.Fatal("delta frame forwarded after unmute")
	}
	rig.clock.Advance(time.Second)
	rig.send(1, true)
	// Subscriber disable works the same way.
	d.SetMuted(true)
	rig.send(1, true)
	d.SetMuted(false)
	rig.send(1, false)
	rig.send(1, true)
	pkts := w.sent()
	if len(pkts) != n+6 {
		t.Fatalf("%d packets, want %d", len(pkts), n+6)
	}
	checkStream(t, pkts)
	// The resume after a 1 s mute advanced the timestamp by about 1 s.
	if gap := pkts[n].hdr.Timestamp - pkts[n-1].hdr.Timestamp; gap < 90000 || gap > 90000+3*3000 {
		t.Fatalf("timestamp gap after 1 s mute: %d", gap)
	}
}

func TestBindCodecs(t *testing.T) {
	h264 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102}
	h264pm0 := h264
	h264pm0.SDPFmtpLine = "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f"
	h264pm0.PayloadType = 103
	h264other := h264
	h264other.SDPFmtpLine = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f"
	h264other.PayloadType = 104
	tests := []struct {
		name   string
		src    webrtc.RTPCodecParameters
		offers []webrtc.RTPCodecParameters
		wantPT webrtc.PayloadType
		red    bool
	}{
		{"vp8", vp8Codec, []webrtc.RTPCodecParameters{opusCodec, vp8Codec}, 96, false},
		{"h264 exact fmtp", h264, []webrtc.RTPCodecParameters{h264pm0, h264other, h264}, 102, false},
		{"h264 same packetization mode", h264, []webrtc.RTPCodecParameters{h264pm0, h264other}, 104, false},
		{"red kept", redCodec, []webrtc.RTPCodecParameters{opusCodec, redCodec}, 63, false},
		{"red to opus", redCodec, []webrtc.RTPCodecParameters{opusCodec}, 111, true},
		{"unsupported", vp8Codec, []webrtc.RTPCodecParameters{h264}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, red, err := matchCodec(tt.src, tt.offers)
			if tt.wantPT == 0 {
				if !errors.Is(err, webrtc.ErrUnsupportedCodec) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || c.PayloadType != tt.wantPT || red != tt.red {
				t.Fatalf("got %d %v %v", c.PayloadType, red, err)
			}
		})
	}
}

func TestAudioREDAndLevels(t *testing.T) {
	clock := newFakeClock()
	r := NewReceiver(ReceiverConfig{TrackID: "TR_a", Codec: redCodec, AudioLevelExtID: 1, Now: clock.Now})
	t.Cleanup(r.Close)
	if r.Kind() != webrtc.RTPCodecTypeAudio {
		t.Fatal("RED track is not audio")
	}
	f := newFeeder(t, r, 42)
	dRED, wRED := bindDownTrack(t, r, "red", opusCodec, redCodec)
	dOpus, wOpus := bindDownTrack(t, r, "opus", opusCodec)
	_, _ = dRED, dOpus
	payload := []byte{0x80 | 111, 0x03, 0xc0, 0x02, 111, 0xaa, 0xbb, 0x01, 0x02, 0x03}
	for i := range 60 {
		h := rtp.Header{PayloadType: 63, SequenceNumber: uint16(60000 + i), Timestamp: uint32(960 * i), SSRC: 42}
		level := byte(20)
		if i >= 30 {
			level = 127 // silence
		}
		if err := h.SetExtension(1, []byte{0x80 | level}); err != nil {
			t.Fatal(err)
		}
		f.feed(0, rtpRaw(t, h, payload))
		clock.Advance(20 * time.Millisecond)
		if i == 28 {
			lvl, active := r.AudioLevel()
			if !active || lvl < 0.09 || lvl > 0.11 {
				t.Fatalf("speaking at -20 dBov: level %v active %v", lvl, active)
			}
		}
	}
	if _, active := r.AudioLevel(); active {
		t.Fatal("active after silence")
	}
	clock.Advance(2 * time.Second) // DTX: no packets at all
	if lvl, active := r.AudioLevel(); active || lvl != 0 {
		t.Fatal("active during DTX")
	}
	red, opus := wRED.sent(), wOpus.sent()
	if len(red) != 60 || len(opus) != 60 {
		t.Fatalf("%d RED, %d Opus packets", len(red), len(opus))
	}
	if red[0].hdr.PayloadType != 63 || string(red[0].payload) != string(payload) {
		t.Fatalf("RED subscriber got pt %d %x", red[0].hdr.PayloadType, red[0].payload)
	}
	if opus[0].hdr.PayloadType != 111 || string(opus[0].payload) != string(payload[7:]) {
		t.Fatalf("Opus subscriber got pt %d %x", opus[0].hdr.PayloadType, opus[0].payload)
	}
	if b := opus[0].hdr.GetExtension(testLevelID); len(b) != 1 || b[0] != 0x80|20 {
		t.Fatalf("audio level extension %x", b)
	}
	for i := 1; i < 60; i++ {
		if opus[i].hdr.SequenceNumber != opus[i-1].hdr.SequenceNumber+1 || opus[i].hdr.Timestamp-opus[i-1].hdr.Timestamp != 960 {
			t.Fatalf("audio packet %d not continuous", i)
		}
	}
}

func TestDynacast(t *testing.T) {
	rig := newSimulcastRig(t)
	var mu sync.Mutex
	var got []Layer
	rig.r.OnMaxLayerChanged(func(l Layer) {
		mu.Lock()
		got = append(got, l)
		mu.Unlock()
	})
	reports := func() []Layer {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	rig.all(false)
	d1, _ := bindDownTrack(t, rig.r, "sub1")
	d2, _ := bindDownTrack(t, rig.r, "sub2")
	d1.SetRequestedQuality(0)
	d2.SetRequestedDimensions(640, 360)
	step := func(d time.Duration) {
		rig.clock.Advance(d)
		rig.r.tick(rig.clock.Now())
	}
	step(0)
	step(time.Second)
	if r := reports(); len(r) != 0 {
		t.Fatalf("reported %v before the down delay", r)
	}
	step(dynacastDownDelay)
	if r := reports(); !slices.Equal(r, []Layer{1}) {
		t.Fatalf("reports %v, want [h]", r)
	}
	// A rise is reported at once.
	d1.SetRequestedQuality(2)
	step(0)
	if r := reports(); !slices.Equal(r, []Layer{1, 2}) {
		t.Fatalf("reports %v, want [h f]", r)
	}
	// A short dip is not.
	d1.SetRequestedQuality(0)
	step(time.Second)
	d1.SetRequestedQuality(2)
	step(0)
	step(dynacastDownDelay)
	if r := reports(); len(r) != 2 {
		t.Fatalf("reports %v after a dip", r)
	}
	// Nobody watching: LayerNone.
	d1.Close()
	d2.SetMuted(true)
	step(0)
	step(dynacastDownDelay)
	if r := reports(); r[len(r)-1] != LayerNone {
		t.Fatalf("reports %v, want none last", r)
	}
}

func TestAllocateLayers(t *testing.T) {
	br := [3]int{100, 300, 1000}
	tr := func(desired, prev Layer) allocInput { return allocInput{desired: desired, previous: prev, bitrate: br} }
	tests := []struct {
		name     string
		estimate int
		in       []allocInput
		want     []Layer
	}{
		{"unknown estimate", 0, []allocInput{tr(2, 2), tr(0, 0)}, []Layer{2, 2}},
		{"plenty", 5000, []allocInput{tr(2, 2), tr(2, 2)}, []Layer{2, 2}},
		{"first gets more", 1400, []allocInput{tr(2, 2), tr(2, 2)}, []Layer{2, 1}},
		{"second stays low", 1300, []allocInput{tr(2, 2), tr(2, 0)}, []Layer{2, 0}},
		{"both mid", 700, []allocInput{tr(2, 1), tr(2, 1)}, []Layer{1, 1}},
		{"desired caps", 5000, []allocInput{tr(1, 1), tr(0, 0)}, []Layer{1, 0}},
		{"headroom to move up", 1100, []allocInput{tr(2, 1)}, []Layer{1}},
		{"no headroom needed to stay", 1000, []allocInput{tr(2, 2)}, []Layer{2}},
		{"low layer fits-ish", 60, []allocInput{tr(2, 2)}, []Layer{0}},
		{"badly congested pauses", 40, []allocInput{tr(2, 2)}, []Layer{LayerNone}},
		{"second track paused when congested", 120, []allocInput{tr(2, 2), tr(2, 2)}, []Layer{0, LayerNone}},
		{"unwanted track uncapped", 100, []allocInput{tr(LayerNone, LayerNone), tr(2, 0)}, []Layer{2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := allocateLayers(tt.estimate, tt.in); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAllocatorDrivesDownTracksAndProbes(t *testing.T) {
	rig := newSimulcastRig(t)
	rig.all(false)
	d1, _ := bindDownTrack(t, rig.r, "sub1")
	d2, _ := bindDownTrack(t, rig.r, "sub2")
	clock := newFakeClock()
	a := NewAllocator(nil)
	a.now = clock.Now
	a.Add(d1)
	a.Add(d2)
	check := func(step string, want1, want2 Layer) {
		t.Helper()
		if g1, g2 := d1.TargetLayer(), d2.TargetLayer(); g1 != want1 || g2 != want2 {
			t.Fatalf("%s: targets %v %v, want %v %v", step, g1, g2, want1, want2)
		}
	}
	// 1.9 Mbit/s carries f (1.5M) and q (150k); the estimate covers that,
	// so d2 is probed one layer up.
	a.SetEstimate(1_900_000)
	check("probe", 2, 1)
	clock.Advance(time.Second)
	a.SetEstimate(1_900_000)
	check("during the probe", 2, 1)
	// The estimate did not grow: after the window d2 goes back, and the
	// next probe waits for the backoff.
	clock.Advance(probeWindow)
	a.SetEstimate(1_900_000)
	check("failed probe", 2, 0)
	clock.Advance(probeMinBackoff - time.Millisecond)
	a.SetEstimate(1_900_000)
	check("backoff", 2, 0)
	clock.Advance(time.Millisecond)
	a.SetEstimate(1_900_000)
	check("second probe", 2, 1)
	// This time the estimate grows with what is received: the layer stays.
	a.SetEstimate(2_500_000)
	clock.Advance(probeWindow)
	a.SetEstimate(2_500_000)
	if d2.TargetLayer() < 1 {
		t.Fatalf("successful probe undone: %v", d2.TargetLayer())
	}
	// Congestion during a probe ends it at once.
	a.SetEstimate(100_000)
	check("congested", 0, LayerNone)
	a.Remove(d1)
	check("d1 removed", 0, 0)
	a.SetEstimate(0)
	check("unknown estimate", 0, 2)
}

func TestForwardDoesNotAllocate(t *testing.T) {
	var requests atomic.Int64
	clock := newFakeClock()
	r := NewReceiver(ReceiverConfig{TrackID: "TR_v", Codec: vp8Codec, Layers: testLayers, Now: clock.Now,
		RequestKeyFrame: func(uint32) { requests.Add(1) }})
	t.Cleanup(r.Close)
	f := newFeeder(t, r, 111)
	var ws []*captureWriter
	for i := range 5 {
		d, w := bindDownTrack(t, r, "sub"+string(rune('a'+i)))
		d.SetRequestedQuality(0)
		w.keep = false
		ws = append(ws, w)
	}
	src := &vp8Source{ssrc: 111, seq: 10, pic: 5}
	// Start on a key frame and push the PictureID offset away from zero
	// so the rewrite path runs.
	for _, raw := range src.frame(t, true, 1) {
		f.feed(0, raw)
	}
	src.pic += 1000
	raws := src.frame(t, false, 64)
	i := 0
	allocs := testing.AllocsPerRun(500, func() {
		raw := raws[i%len(raws)]
		seq := src.seq + uint16(i)
		raw[2], raw[3] = byte(seq>>8), byte(seq)
		f.feed(0, raw)
		i++
	})
	if allocs != 0 && !raceEnabled {
		t.Fatalf("%.1f allocations per forwarded packet (5 subscribers)", allocs)
	}
	if ws[0].n < 500 {
		t.Fatalf("only %d packets written", ws[0].n)
	}
}

func TestReceiverCloseWithoutTracks(t *testing.T) {
	r := NewReceiver(ReceiverConfig{TrackID: "TR_x", Codec: vp8Codec})
	d, _ := bindDownTrack(t, r, "sub")
	r.Close()
	select {
	case <-r.Done():
	default:
		t.Fatal("Done not closed by Close")
	}
	r.Close()
	d.Close()
	if r.Stats().DownTracks != 0 {
		t.Fatal("down track still registered")
	}
	if _, err := d.Bind(&fakeBind{id: "again", codecs: []webrtc.RTPCodecParameters{vp8Codec}, w: &captureWriter{}}); err == nil {
		t.Fatal("closed down track bound again")
	}
}

func TestForwardOtherVideoCodecsFromKeyFrame(t *testing.T) {
	codec := func(mime, fmtp string, pt uint8) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp}, PayloadType: webrtc.PayloadType(pt)}
	}
	tests := []struct {
		name       string
		codec      webrtc.RTPCodecParameters
		delta, key []byte
	}{
		{"h264", codec(webrtc.MimeTypeH264, "packetization-mode=1;profile-level-id=42e01f", 102),
			[]byte{0x41, 0x9a, 0x01}, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce, 0x00, 0x02, 0x65, 0x88}},
		{"vp9", codec(webrtc.MimeTypeVP9, "profile-id=0", 98), []byte{0x48, 0x11}, []byte{0x08, 0x22}},
		{"av1", codec(webrtc.MimeTypeAV1, "", 45), []byte{0x10, 0x33}, []byte{0x18, 0x44}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReceiver(ReceiverConfig{TrackID: "TR_" + tt.name, Codec: tt.codec})
			t.Cleanup(r.Close)
			f := newFeeder(t, r, 7)
			_, w := bindDownTrack(t, r, "sub")
			for i, p := range [][]byte{tt.delta, tt.delta, tt.key, tt.delta} {
				f.feed(0, rtpRaw(t, rtp.Header{PayloadType: uint8(tt.codec.PayloadType), SequenceNumber: uint16(100 + i), Timestamp: uint32(3000 * i), SSRC: 7}, p))
			}
			got := w.sent()
			if len(got) != 2 || string(got[0].payload) != string(tt.key) || string(got[1].payload) != string(tt.delta) {
				t.Fatalf("forwarded %d packets: %+v", len(got), got)
			}
			if got[0].hdr.PayloadType != uint8(tt.codec.PayloadType) || got[1].hdr.SequenceNumber != got[0].hdr.SequenceNumber+1 {
				t.Fatalf("headers %+v %+v", got[0].hdr, got[1].hdr)
			}
		})
	}
}

func TestPaddingOnlyPacketsNotForwarded(t *testing.T) {
	rig := newSimulcastRig(t)
	rig.all(false)
	d, w := bindDownTrack(t, rig.r, "sub1")
	d.SetRequestedQuality(0)
	pad := func() {
		s := rig.src[0]
		raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, Padding: true, PayloadType: 96, SequenceNumber: s.seq, Timestamp: s.ts, SSRC: s.ssrc}, PaddingSize: 200}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		s.seq++
		rig.f.feed(0, raw)
	}
	pad() // before the key frame: nothing to forward anyway
	rig.send(0, true)
	pad()
	pad()
	rig.send(0, false)
	pad()
	rig.send(0, false)
	pkts := w.sent()
	if len(pkts) != 9 {
		t.Fatalf("%d packets forwarded, want 9", len(pkts))
	}
	for _, p := range pkts {
		if len(p.payload) == 0 || p.hdr.Padding {
			t.Fatal("padding forwarded")
		}
	}
	checkStream(t, pkts)
}

func TestNACKResendsArePerPacketBounded(t *testing.T) {
	rig := newSimulcastRig(t)
	rig.all(false)
	d, w := bindDownTrack(t, rig.r, "sub1")
	d.SetRequestedQuality(0)
	rig.send(0, true)
	pkts := w.sent()
	if len(pkts) != 3 {
		t.Fatalf("%d packets", len(pkts))
	}
	w.reset()
	nb := &nackBuf{sc: newScratch()}
	// A subscriber NACKing the same packets every interval for the whole
	// cache lifetime gets each at most maxResends times.
	seqs := []uint16{pkts[0].hdr.SequenceNumber, pkts[1].hdr.SequenceNumber}
	for i := 0; i < int(cacheMaxAge/nackInterval); i++ {
		d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: 5000, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}}, nb)
		rig.clock.Advance(nackInterval)
	}
	if n := len(w.sent()); n != maxResends*len(seqs) {
		t.Fatalf("%d resends of %d packets, want %d", n, len(seqs), maxResends*len(seqs))
	}
}
