package media

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
)

func TestParseVP8(t *testing.T) {
	tests := []struct {
		name    string
		p       []byte
		want    vp8Desc
		wantErr bool
	}{
		{"empty", nil, vp8Desc{}, true},
		{"minimal key", []byte{0x10, 0x00}, vp8Desc{hdrLen: 1, start: true, keyFrame: true}, false},
		{"minimal delta", []byte{0x10, 0x01}, vp8Desc{hdrLen: 1, start: true}, false},
		{"continuation is never a key frame", []byte{0x00, 0x00}, vp8Desc{hdrLen: 1}, false},
		{"start of partition 1 is not a frame start", []byte{0x11, 0x00}, vp8Desc{hdrLen: 1}, false},
		{"15-bit picture id", []byte{0x90, 0x80, 0x81, 0x02, 0x00}, vp8Desc{hdrLen: 4, start: true, keyFrame: true, picOff: 2, pic15: true, picID: 0x102}, false},
		{"7-bit picture id", []byte{0x90, 0x80, 0x05, 0x01}, vp8Desc{hdrLen: 3, start: true, picOff: 2, picID: 5}, false},
		{"all fields", vp8Payload(0x1234, 7, 9, true, true, 20), vp8Desc{hdrLen: 6, start: true, keyFrame: true, picOff: 2, pic15: true, picID: 0x1234, tl0Off: 4, tl0: 7, keyIdxOff: 5, keyIdx: 9}, false},
		{"T without K", []byte{0x80, 0x20, 0x40}, vp8Desc{hdrLen: 3}, false},
		{"truncated picture id", []byte{0x90, 0x80, 0x81}, vp8Desc{}, true},
		{"truncated extension", []byte{0x80}, vp8Desc{}, true},
		{"truncated tl0", []byte{0x80, 0x40}, vp8Desc{}, true},
		{"start without payload header", []byte{0x10}, vp8Desc{hdrLen: 1, start: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVP8(tt.p)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestVP8KeyFrameWithEncryptedPayload(t *testing.T) {
	// Under E2EE everything after the clear frame header may be random: a
	// key frame is found from the descriptor and the P bit alone.
	p := vp8Payload(1, 1, 1, true, true, 100)
	for i := 10; i < len(p); i++ {
		p[i] = byte(i * 37)
	}
	if !keyFrameStart(codecVP8, p) {
		t.Fatal("key frame not detected")
	}
	p = vp8Payload(1, 1, 1, true, false, 100)
	p[6+3] = 0x9d // a start code by chance in a delta frame's ciphertext
	if keyFrameStart(codecVP8, p) {
		t.Fatal("delta frame detected as key frame")
	}
}

func TestVP8Rewrite(t *testing.T) {
	p := vp8Payload(0x7ffe, 250, 31, true, true, 30)
	d, err := parseVP8(p)
	if err != nil {
		t.Fatal(err)
	}
	q := append([]byte(nil), p...)
	d.rewrite(q, 0x0003, 4, 2)
	got, err := parseVP8(q)
	if err != nil {
		t.Fatal(err)
	}
	if got.picID != 3 || got.tl0 != 4 || got.keyIdx != 2 || got.hdrLen != d.hdrLen || !got.keyFrame {
		t.Fatalf("rewritten descriptor %+v", got)
	}
	if !bytes.Equal(q[d.hdrLen:], p[d.hdrLen:]) {
		t.Fatal("rewrite touched the VP8 payload")
	}
	// 7-bit PictureIDs stay 7 bits wide.
	p7 := []byte{0x90, 0x80, 0x7f, 0x00}
	d7, _ := parseVP8(p7)
	d7.rewrite(p7, 0x1234&d7.picMask(), 0, 0)
	if p7[2] != 0x34 || len(p7) != 4 {
		t.Fatalf("7-bit rewrite = %x", p7)
	}
}

func TestH264KeyFrame(t *testing.T) {
	tests := []struct {
		name string
		p    []byte
		want bool
	}{
		{"empty", nil, false},
		{"IDR", []byte{0x65, 0x88}, true},
		{"SPS", []byte{0x67, 0x42}, true},
		{"non-IDR slice", []byte{0x41, 0x9a}, false},
		{"PPS alone", []byte{0x68, 0xce}, false},
		{"STAP-A SPS PPS", []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"STAP-A slices", []byte{0x78, 0x00, 0x02, 0x41, 0x9a, 0x00, 0x02, 0x41, 0x9b}, false},
		{"STAP-A truncated", []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"FU-A IDR start", []byte{0x7c, 0x85, 0xff}, true},
		{"FU-A IDR middle", []byte{0x7c, 0x05, 0xff}, false},
		{"FU-A non-IDR start", []byte{0x7c, 0x81, 0xff}, false},
		{"FU-A short", []byte{0x7c}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h264KeyFrame(tt.p); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVP9AndAV1KeyFrame(t *testing.T) {
	tests := []struct {
		name string
		kind codecKind
		p    []byte
		want bool
	}{
		{"vp9 key start", codecVP9, []byte{0x08}, true},
		{"vp9 inter", codecVP9, []byte{0x48}, false},
		{"vp9 key continuation", codecVP9, []byte{0x00}, false},
		{"vp9 key sid 0", codecVP9, []byte{0xa8, 0x81, 0x02, 0x00}, true},
		{"vp9 key sid 1", codecVP9, []byte{0xa8, 0x81, 0x02, 0x02}, false},
		{"vp9 key 7-bit pid sid 0", codecVP9, []byte{0xa8, 0x01, 0x00}, true},
		{"vp9 truncated", codecVP9, []byte{0xa8, 0x81}, false},
		{"av1 new sequence", codecAV1, []byte{0x18}, true},
		{"av1 continuation", codecAV1, []byte{0x98}, false},
		{"av1 delta", codecAV1, []byte{0x10}, false},
		{"opus always", codecOpus, []byte{0xfc}, true},
		{"vp8 garbage", codecVP8, []byte{0x80}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyFrameStart(tt.kind, tt.p); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestREDPrimary(t *testing.T) {
	// RFC 2198 section 3: two redundant blocks of 3 and 2 bytes, then the
	// primary (one-byte header).
	red := []byte{
		0x80 | 111, 0x03, 0xc0, 0x03, // F=1 PT=111 ts offset=0xf0 len=3
		0x80 | 111, 0x01, 0xe0, 0x02, // F=1 PT=111 ts offset=0x78 len=2
		111,           // F=0 PT=111
		1, 2, 3, 4, 5, // redundant data
		9, 9, 9, // primary
	}
	got, ok := redPrimary(red)
	if !ok || !bytes.Equal(got, []byte{9, 9, 9}) {
		t.Fatalf("primary = %v, %v", got, ok)
	}
	if got, ok := redPrimary([]byte{111, 7, 7}); !ok || !bytes.Equal(got, []byte{7, 7}) {
		t.Fatalf("primary only = %v, %v", got, ok)
	}
	for _, bad := range [][]byte{nil, {0x80 | 111, 0x00}, {0x80 | 111, 0, 0, 9, 111, 1}} {
		if _, ok := redPrimary(bad); ok {
			t.Fatalf("redPrimary(%x) accepted", bad)
		}
	}
}

func TestVP8FrameSize(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		w, h  uint16
		ok    bool
	}{
		{"320x180", []byte{0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00}, 320, 180, true},
		{"960x540, scaling bits set", []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xc0, 0x43, 0x1c, 0xc2}, 960, 540, true},
		{"inter frame", []byte{0x01, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00}, 0, 0, false},
		{"no start code", []byte{0x00, 0x00, 0x00, 0x9d, 0x01, 0x2b, 0x40, 0x01, 0xb4, 0x00}, 0, 0, false},
		{"truncated", []byte{0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4}, 0, 0, false},
		{"zero width", []byte{0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x00, 0xb4, 0x00}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, h, ok := vp8FrameSize(tt.frame)
			if w != tt.w || h != tt.h || ok != tt.ok {
				t.Fatalf("vp8FrameSize = %d, %d, %v; want %d, %d, %v", w, h, ok, tt.w, tt.h, tt.ok)
			}
		})
	}
}

// TestReceivedLayerSizes: a Receiver reports each layer's size from its
// key frames as received, whatever the publisher announced.
func TestReceivedLayerSizes(t *testing.T) {
	r := NewReceiver(ReceiverConfig{TrackID: "TR_v", Codec: vp8Codec, Layers: testLayers})
	t.Cleanup(r.Close)
	f := newFeeder(t, r, 111, 222, 333)
	key := func(w, h uint16) []byte {
		p := vp8Payload(1, 1, 1, true, true, 40)
		// The size follows the 6-byte descriptor, the frame tag and the start code.
		p[12], p[13], p[14], p[15] = byte(w), byte(w>>8), byte(h), byte(h>>8)
		return p
	}
	f.feed(0, rtpRaw(t, rtp.Header{SSRC: 111, SequenceNumber: 1, PayloadType: 96}, key(160, 90)))
	f.feed(1, rtpRaw(t, rtp.Header{SSRC: 222, SequenceNumber: 1, PayloadType: 96}, key(480, 270)))
	// An inter frame on layer 2 says nothing of its size.
	f.feed(2, rtpRaw(t, rtp.Header{SSRC: 333, SequenceNumber: 1, PayloadType: 96}, vp8Payload(1, 1, 1, true, false, 40)))
	got := r.Stats().Layers
	want := [][2]int{{160, 90}, {480, 270}, {0, 0}}
	for l, w := range want {
		if got[l].Width != w[0] || got[l].Height != w[1] {
			t.Errorf("layer %d: %dx%d, want %dx%d", l, got[l].Width, got[l].Height, w[0], w[1])
		}
	}
	// A later key frame of another size replaces the first.
	f.feed(0, rtpRaw(t, rtp.Header{SSRC: 111, SequenceNumber: 2, PayloadType: 96}, key(320, 180)))
	if l := r.Stats().Layers[0]; l.Width != 320 || l.Height != 180 {
		t.Errorf("layer 0 after a new key frame: %dx%d, want 320x180", l.Width, l.Height)
	}
}

func FuzzParseVP8(f *testing.F) {
	f.Add(vp8Payload(0x1234, 7, 9, true, true, 20))
	f.Add([]byte{0x90, 0x80, 0x05, 0x01})
	f.Add([]byte{0x80, 0xf0})
	f.Fuzz(func(t *testing.T, p []byte) {
		d, err := parseVP8(p)
		if err != nil {
			return
		}
		if w, h, ok := vp8FrameSize(p[min(d.hdrLen, len(p)):]); ok && (w == 0 || h == 0 || w > 0x3fff || h > 0x3fff) {
			t.Fatalf("frame size %dx%d", w, h)
		}
		if d.hdrLen > len(p) || d.hdrLen < 1 {
			t.Fatalf("hdrLen %d for %d bytes", d.hdrLen, len(p))
		}
		// Rewriting with the parsed values is the identity; rewriting
		// never changes the payload after the descriptor.
		q := append([]byte(nil), p...)
		d.rewrite(q, d.picID, d.tl0, d.keyIdx)
		if !bytes.Equal(p, q) {
			t.Fatalf("identity rewrite changed %x to %x", p, q)
		}
		d.rewrite(q, 0x5555&d.picMask(), 0xaa, 0x15)
		if !bytes.Equal(p[d.hdrLen:], q[d.hdrLen:]) {
			t.Fatal("rewrite touched the payload")
		}
		e, err := parseVP8(q)
		if err != nil || e.hdrLen != d.hdrLen || e.keyFrame != d.keyFrame {
			t.Fatalf("rewritten descriptor %+v, %v; was %+v", e, err, d)
		}
	})
}

func FuzzKeyFrame(f *testing.F) {
	f.Add(uint8(codecH264), []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce})
	f.Add(uint8(codecH264), []byte{0x7c, 0x85, 0xff})
	f.Add(uint8(codecVP9), []byte{0xa8, 0x81, 0x02, 0x00})
	f.Add(uint8(codecAV1), []byte{0x18})
	f.Fuzz(func(t *testing.T, kind uint8, p []byte) {
		keyFrameStart(codecKind(kind%uint8(codecAV1+1)), p)
	})
}

func FuzzREDPrimary(f *testing.F) {
	f.Add([]byte{0x80 | 111, 0x03, 0xc0, 0x03, 111, 1, 2, 3, 9, 9})
	f.Add([]byte{111, 7})
	f.Fuzz(func(t *testing.T, p []byte) {
		got, ok := redPrimary(p)
		if !ok {
			return
		}
		if len(got) > len(p) || !bytes.Equal(p[len(p)-len(got):], got) {
			t.Fatal("primary is not a suffix of the payload")
		}
	})
}
