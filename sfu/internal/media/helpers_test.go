package media

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// fakeClock is an injectable clock for Receiver.Now.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sentPacket is one packet a captureWriter saw.
type sentPacket struct {
	hdr     rtp.Header
	payload []byte
}

// captureWriter is a webrtc.TrackLocalWriter that keeps what it is given.
// With keep false it only counts, for allocation tests.
type captureWriter struct {
	mu   sync.Mutex // guards pkts, n
	keep bool
	pkts []sentPacket
	n    int
}

func (w *captureWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	if w.keep {
		hc := *h
		hc.Extensions = nil
		if b := h.GetExtension(testLevelID); b != nil {
			_ = hc.SetExtension(testLevelID, append([]byte(nil), b...))
		}
		hc.CSRC = append([]uint32(nil), h.CSRC...)
		w.pkts = append(w.pkts, sentPacket{hdr: hc, payload: append([]byte(nil), payload...)})
	}
	return h.MarshalSize() + len(payload), nil
}

func (w *captureWriter) Write(b []byte) (int, error) { return len(b), nil }

func (w *captureWriter) sent() []sentPacket {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]sentPacket(nil), w.pkts...)
}

func (w *captureWriter) reset() {
	w.mu.Lock()
	w.pkts = nil
	w.mu.Unlock()
}

const testLevelID = 3

// fakeBind is a webrtc.TrackLocalContext for binding a DownTrack without a
// peer connection.
type fakeBind struct {
	id     string
	ssrc   webrtc.SSRC
	codecs []webrtc.RTPCodecParameters
	exts   []webrtc.RTPHeaderExtensionParameter
	w      webrtc.TrackLocalWriter
}

func (f *fakeBind) CodecParameters() []webrtc.RTPCodecParameters           { return f.codecs }
func (f *fakeBind) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return f.exts }
func (f *fakeBind) SSRC() webrtc.SSRC                                      { return f.ssrc }
func (f *fakeBind) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (f *fakeBind) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (f *fakeBind) WriteStream() webrtc.TrackLocalWriter                   { return f.w }
func (f *fakeBind) ID() string                                             { return f.id }
func (f *fakeBind) RTCPReader() interceptor.RTCPReader                     { return nil }

var (
	vp8Codec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		PayloadType:        96,
	}
	opusCodec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}
	redCodec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/red", ClockRate: 48000, Channels: 2, SDPFmtpLine: "111/111"},
		PayloadType:        63,
	}
	testLayers = []LayerInfo{
		{Layer: 0, Width: 320, Height: 180, Bitrate: 150_000},
		{Layer: 1, Width: 640, Height: 360, Bitrate: 500_000},
		{Layer: 2, Width: 1280, Height: 720, Bitrate: 1_500_000},
	}
)

// vp8Payload builds a VP8 RTP payload: a descriptor with a 15-bit
// PictureID, TL0PICIDX and KEYIDX, then a payload header whose P bit marks
// key frames, then filler that stands in for (possibly encrypted) media.
func vp8Payload(pic uint16, tl0, keyIdx uint8, start, key bool, size int) []byte {
	b0 := byte(0x80)
	if start {
		b0 |= 0x10
	}
	p := []byte{b0, 0xf0, 0x80 | byte(pic>>8)&0x7f, byte(pic), tl0, keyIdx & 0x1f}
	if start {
		if key {
			// Frame tag with P=0, then the key frame start code and a
			// 320x180 size (RFC 6386 9.1), which the Receiver reports as the
			// layer's received size.
			p = append(p, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00)
		} else {
			p = append(p, 0x01, 0x00, 0x00)
		}
	}
	for len(p) < size {
		p = append(p, 0xa5)
	}
	return p
}

// rtpRaw marshals a packet.
func rtpRaw(t testing.TB, h rtp.Header, payload []byte) []byte {
	t.Helper()
	h.Version = 2
	b, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// feeder injects packets into a Receiver's receive path as a read loop
// would, without a peer connection.
type feeder struct {
	t   testing.TB
	r   *Receiver
	sc  *scratch
	pkt rtp.Packet
}

func newFeeder(t testing.TB, r *Receiver, ssrcs ...uint32) *feeder {
	for l, s := range ssrcs {
		r.layers[l].ssrc.Store(s)
	}
	return &feeder{t: t, r: r, sc: newScratch()}
}

func (f *feeder) feed(layer Layer, raw []byte) {
	f.t.Helper()
	if err := f.pkt.Unmarshal(raw); err != nil {
		f.t.Fatal(err)
	}
	f.r.handle(layer, raw, &f.pkt, f.sc)
}

// bindDownTrack makes a DownTrack on r bound to a captureWriter.
func bindDownTrack(t testing.TB, r *Receiver, id string, codecs ...webrtc.RTPCodecParameters) (*DownTrack, *captureWriter) {
	t.Helper()
	d, err := NewDownTrack(r, DownTrackConfig{SubscriberID: id, StreamID: "PA_x|TR_x", TrackID: "TR_x"})
	if err != nil {
		t.Fatal(err)
	}
	w := &captureWriter{keep: true}
	if len(codecs) == 0 {
		codecs = []webrtc.RTPCodecParameters{r.cfg.Codec}
	}
	ctx := &fakeBind{id: id, ssrc: 5000, codecs: codecs, w: w,
		exts: []webrtc.RTPHeaderExtensionParameter{{URI: sdp.AudioLevelURI, ID: testLevelID}}}
	if _, err := d.Bind(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, w
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// engineGoroutines counts running goroutines started by this package's
// Receivers and DownTracks.
func engineGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "media.(*Receiver).tickLoop") || strings.Contains(g, "media.(*Receiver).readLoop") ||
			strings.Contains(g, "media.(*DownTrack).rtcpLoop") {
			n++
		}
	}
	return n
}
