package sfu_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/plexus-chat/plexus/sfu"
	"github.com/plexus-chat/plexus/sfu/internal/sfutest"
)

// bitWriter appends bits most significant first.
type bitWriter struct {
	b []byte
	n int // bits written
}

func (w *bitWriter) put(v uint64, bits int) {
	for i := bits - 1; i >= 0; i-- {
		if w.n%8 == 0 {
			w.b = append(w.b, 0)
		}
		if v>>i&1 == 1 {
			w.b[len(w.b)-1] |= 0x80 >> (w.n % 8)
		}
		w.n++
	}
}

// vp9Frame is frame i as a VP9 encoder's output would start (VP9
// bitstream specification, "uncompressed header"): profile 0, shown, and
// for a key frame the sync code, colour config and a 640x480 frame size,
// which pion's payloader reads to mark key frames. The rest is
// fillFrame's, never decoded by anyone.
func vp9Frame(i int, key bool) []byte {
	var w bitWriter
	w.put(2, 2) // frame_marker
	w.put(0, 2) // profile 0
	w.put(0, 1) // show_existing_frame
	if key {
		w.put(0, 1) // frame_type KEY_FRAME
	} else {
		w.put(1, 1) // NON_KEY_FRAME
	}
	w.put(1, 1) // show_frame
	w.put(0, 1) // error_resilient_mode
	size := 300 + (i*37)%600
	if key {
		w.put(0x498342, 24) // frame_sync_code
		w.put(0, 3)         // color_space CS_UNKNOWN
		w.put(0, 1)         // color_range
		w.put(640-1, 16)
		w.put(480-1, 16)
		size = 4000
	}
	b := append(w.b, make([]byte, size)...)
	fillFrame(b[len(w.b):], i)
	return b
}

// vp9FrameNumber finds the number vp9Frame wrote after its header.
func vp9FrameNumber(f []byte) (n int, key bool, ok bool) {
	if len(f) == 0 {
		return 0, false, false
	}
	head := 1
	if key = f[0] == 0x82; key {
		head = 9 // 68 bits of header
	}
	if len(f) < head {
		return 0, false, false
	}
	n, ok = frameNumber(f[head:])
	return n, key, ok
}

// AV1 OBU types (AV1 specification section 6.2.2) and the header byte of
// one with obu_has_size_field set and no extension.
const (
	obuSequenceHeader = 1
	obuFrame          = 6
)

func obuHeader(typ byte) byte { return typ<<3 | 0x02 }

func appendOBU(b []byte, typ byte, payload []byte) []byte {
	b = append(b, obuHeader(typ))
	for n := uint(len(payload)); ; n >>= 7 { // leb128
		if n < 0x80 {
			b = append(b, byte(n))
			break
		}
		b = append(b, byte(n&0x7f)|0x80)
	}
	return append(b, payload...)
}

// av1Frame is temporal unit i as low-overhead bitstream OBUs: a key
// frame starts with a sequence header, which is what makes pion's
// payloader mark a new coded video sequence (N=1), the SFU's key frame.
// Payloads are fillFrame's, never decoded by anyone.
func av1Frame(i int, key bool) []byte {
	var b []byte
	size := 300 + (i*37)%600
	if key {
		seq := make([]byte, 12)
		fillFrame(seq, i)
		b = appendOBU(b, obuSequenceHeader, seq)
		size = 4000
	}
	frame := make([]byte, size)
	fillFrame(frame, i)
	return appendOBU(b, obuFrame, frame)
}

// av1FrameNumber finds the number in the frame OBU of a temporal unit
// av1Frame built.
func av1FrameNumber(f []byte) (n int, key bool, ok bool) {
	if len(f) < 2 {
		return 0, false, false
	}
	key = f[0] == obuHeader(obuSequenceHeader)
	for len(f) >= 2 && f[0] != obuHeader(obuFrame) {
		// Skip an OBU: header, leb128 size, payload.
		size, k := 0, 1
		for shift := 0; k < len(f); shift += 7 {
			size |= int(f[k]&0x7f) << shift
			k++
			if f[k-1]&0x80 == 0 {
				break
			}
		}
		if k+size > len(f) {
			return 0, false, false
		}
		f = f[k+size:]
	}
	if len(f) < 2 {
		return 0, false, false
	}
	k := 1
	for k < len(f) && f[k]&0x80 != 0 {
		k++
	}
	if k+1 > len(f) {
		return 0, false, false
	}
	n, ok = frameNumber(f[k+1:])
	return n, key, ok
}

// passCodec is a codec the SFU forwards without knowing more of it than
// where key frames start: how the test builds its frames and reads them
// back.
type passCodec struct {
	name   string
	cap    webrtc.RTPCodecCapability
	frame  func(i int, key bool) []byte
	number func(frame []byte) (n int, key, ok bool)
	depack func() rtp.Depacketizer
}

var passCodecs = []passCodec{
	{
		name:   "VP9",
		cap:    webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"},
		frame:  vp9Frame,
		number: vp9FrameNumber,
		depack: func() rtp.Depacketizer { return &codecs.VP9Packet{} },
	},
	{
		name:   "AV1",
		cap:    webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000},
		frame:  av1Frame,
		number: av1FrameNumber,
		depack: func() rtp.Depacketizer { return &codecs.AV1Depacketizer{} },
	},
}

// frameReader reads a subscribed track, rebuilds its frames with the
// codec's depacketizer (a frame ends at the RTP marker) and checks each
// against what the publisher built.
type frameReader struct {
	codec passCodec
	wg    sync.WaitGroup

	mu sync.Mutex // guards the fields below
	st frameState
	// Depacketizer state.
	dp      rtp.Depacketizer
	started bool
	nextSeq uint16
	cur     []byte
	inFrame bool
}

type frameState struct {
	codec     webrtc.RTPCodecParameters
	packets   int
	frames    int
	keyFrames int
	gaps      int
	firstKey  bool // the first frame completed is a key frame
	bad       []string
}

func (r *frameReader) run(track *webrtc.TrackRemote) {
	readPackets(track, &r.mu, func(c webrtc.RTPCodecParameters) {
		r.st.codec, r.dp = c, r.codec.depack()
	}, r.note)
}

// note takes one packet; r.mu is held.
func (r *frameReader) note(pkt *rtp.Packet) {
	r.st.packets++
	if r.started && pkt.SequenceNumber != r.nextSeq {
		// A packet lost on the way: the frame it was in is dropped,
		// as a decoder would until its next frame start.
		r.st.gaps++
		r.inFrame, r.cur = false, nil
	}
	r.started, r.nextSeq = true, pkt.SequenceNumber+1
	if r.dp.IsPartitionHead(pkt.Payload) {
		r.inFrame, r.cur = true, nil
	}
	data, err := r.dp.Unmarshal(pkt.Payload)
	if err != nil {
		r.badf("packet %d: %v", pkt.SequenceNumber, err)
		r.inFrame = false
		return
	}
	if !r.inFrame {
		return
	}
	r.cur = append(r.cur, data...)
	if !pkt.Marker {
		return
	}
	r.inFrame = false
	n, key, ok := r.codec.number(r.cur)
	switch {
	case !ok:
		r.badf("frame %d: no frame number in %d bytes", r.st.frames, len(r.cur))
	case !bytes.Equal(r.cur, r.codec.frame(n, key)):
		r.badf("frame %d (key %v): %d bytes differ from those sent", n, key, len(r.cur))
	}
	if r.st.frames == 0 {
		r.st.firstKey = key
	}
	r.st.frames++
	if key {
		r.st.keyFrames++
	}
	r.cur = nil
}

func (r *frameReader) badf(format string, args ...any) {
	if len(r.st.bad) < 5 {
		r.st.bad = append(r.st.bad, fmt.Sprintf(format, args...))
	}
}

func (r *frameReader) state() frameState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.bad = append([]string(nil), r.st.bad...)
	return st
}

// dialFrames joins room as identity, reading every video track it is
// given with a frameReader for codec.
func (h *harness) dialFrames(t *testing.T, room, identity string, codec passCodec) *frameReader {
	t.Helper()
	r := &frameReader{codec: codec}
	h.dialVideo(t, room, identity, &r.wg, r.run)
	return r
}

// TestVP9AndAV1 publishes a VP9 and then an AV1 track from lksdk, each a
// hand-built stream with a key frame first and then only when asked
// (PLI): the SFU passes both through, negotiated as they were published,
// every frame byte for byte; a subscriber who joins mid-stream starts at
// a key frame, which exists only because the SFU asked for it.
func TestVP9AndAV1(t *testing.T) {
	for _, codec := range passCodecs {
		t.Run(codec.name, func(t *testing.T) {
			h := newHarness(t, sfu.Config{}, sfu.Deps{})
			room := strings.ToLower(codec.name)
			alice := h.connect(room, "alice", nil)
			prov := newFrameProvider(time.Second/30, func(i int, key bool) []byte { return codec.frame(i, i == 0 || key) })
			track, err := lksdk.NewLocalSampleTrack(codec.cap, lksdk.WithRTCPHandler(prov.rtcpHandler))
			if err != nil {
				t.Fatal(err)
			}
			prov.start(t, track)
			if _, err := alice.room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{
				Name: "camera", Source: livekit.TrackSource_CAMERA, VideoWidth: 640, VideoHeight: 480,
			}); err != nil {
				t.Fatal(err)
			}
			check := func(t *testing.T, who string, st frameState) {
				t.Helper()
				if !strings.EqualFold(st.codec.MimeType, codec.cap.MimeType) {
					t.Errorf("%s's track is %s, want %s", who, st.codec.MimeType, codec.cap.MimeType)
				}
				if len(st.bad) > 0 {
					t.Errorf("%s got altered media: %v", who, st.bad)
				}
				if !st.firstKey {
					t.Errorf("%s's first frame is not a key frame", who)
				}
			}
			bob := h.dialFrames(t, room, "bob", codec)
			if err := sfutest.AwaitErr(20*time.Second, func() bool { st := bob.state(); return st.keyFrames >= 1 && st.frames >= 60 }); err != nil {
				t.Fatalf("bob receives alice's %s frames: %v; %+v", codec.name, err, bob.state())
			}
			st := bob.state()
			t.Logf("bob: %d packets, %d frames, %d key, %d gaps, codec %s %s", st.packets, st.frames, st.keyFrames, st.gaps, st.codec.MimeType, st.codec.SDPFmtpLine)
			check(t, "bob", st)

			requests := prov.keyRequests.Load()
			carol := h.dialFrames(t, room, "carol", codec)
			if err := sfutest.AwaitErr(10*time.Second, func() bool { return carol.state().frames >= 30 }); err != nil {
				t.Fatalf("carol receives alice's %s frames: %v; %+v", codec.name, err, carol.state())
			}
			check(t, "carol", carol.state())
			if prov.keyRequests.Load() == requests {
				t.Error("carol got a key frame without the SFU asking alice for one")
			}
		})
	}
}
