package sfutest

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

func loadFixtures(t *testing.T) *Fixtures {
	t.Helper()
	fx, err := Load("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

// TestFixtures checks the clip is what the tests assume: three layers of
// 120 frames at 30 fps with the announced sizes, frame 0 a key frame, the
// "-key" files all key frames, and 20 ms Opus packets.
func TestFixtures(t *testing.T) {
	fx := loadFixtures(t)
	sizes := [3][2]int{{320, 180}, {640, 360}, {1280, 720}}
	for i, v := range fx.Video {
		if v.Width != sizes[i][0] || v.Height != sizes[i][1] {
			t.Errorf("layer %d: %dx%d, want %v", i, v.Width, v.Height, sizes[i])
		}
		if len(v.Frames) != 120 || v.FrameDuration != time.Second/30 {
			t.Errorf("layer %d: %d frames of %v", i, len(v.Frames), v.FrameDuration)
		}
		pk := rtp.NewPacketizer(1200, 96, 1, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewFixedSequencer(1), 90000)
		keys := 0
		for j := range v.Frames {
			if w, h, ok := VP8KeyFrame(pk.Packetize(v.Frames[j], 3000)[0].Payload); ok {
				keys++
				if w != v.Width || h != v.Height {
					t.Errorf("layer %d frame %d: key frame header says %dx%d", i, j, w, h)
				}
			}
			if _, _, ok := VP8KeyFrame(pk.Packetize(v.Key[j], 3000)[0].Payload); !ok {
				t.Errorf("layer %d: key file frame %d is not a key frame", i, j)
			}
		}
		if keys != 2 { // -g 60 over 120 frames
			t.Errorf("layer %d: %d key frames in the normal file, want 2", i, keys)
		}
	}
	if n := len(fx.Audio.Packets); n < 195 || n > 201 {
		t.Errorf("%d Opus packets, want about 200 (4 s of 20 ms)", n)
	}
}

// TestFingerprintsUnique checks no two packets of one clip loop share a
// fingerprint, which the latency measurement relies on.
func TestFingerprintsUnique(t *testing.T) {
	fx := loadFixtures(t)
	l := NewLedger()
	seen := map[uint64]string{}
	check := func(name string, vp8 bool, pkts []*rtp.Packet) {
		for _, p := range pkts {
			fp, ok := l.Fingerprint(vp8, p.Payload)
			if !ok {
				t.Fatalf("%s: no fingerprint", name)
			}
			if prev, dup := seen[fp]; dup {
				t.Errorf("%s and %s share a fingerprint", name, prev)
			}
			seen[fp] = name
		}
	}
	for i, v := range fx.Video {
		pk := rtp.NewPacketizer(1200, 96, 1, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
		for j := range v.Frames {
			check(fmt.Sprintf("layer %d frame %d", i, j), true, pk.Packetize(v.Frames[j], 3000))
			// The encoder's regular key frames are byte for byte the
			// intra file's: the same packet, not a collision.
			if !bytes.Equal(v.Frames[j], v.Key[j]) {
				check(fmt.Sprintf("layer %d key frame %d", i, j), true, pk.Packetize(v.Key[j], 3000))
			}
		}
	}
	pk := rtp.NewPacketizer(1200, 111, 1, &codecs.OpusPayloader{}, rtp.NewRandomSequencer(), 48000)
	for _, a := range fx.Audio.Packets {
		check("opus", false, pk.Packetize(a, 960))
	}
	// Rewritten picture IDs do not change a fingerprint.
	a := []byte{0x90, 0x80, 0x80, 0x01, 1, 2, 3, 4}
	b := []byte{0x90, 0x80, 0xff, 0x7f, 1, 2, 3, 4}
	fa, _ := l.Fingerprint(true, a)
	fb, _ := l.Fingerprint(true, b)
	if fa != fb {
		t.Error("fingerprint depends on the picture ID")
	}
}

func TestVP8DescriptorLen(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		n    int
		ok   bool
	}{
		{"no extension", []byte{0x10, 0xaa}, 1, true},
		{"7-bit picture id", []byte{0x90, 0x80, 0x05, 0xaa}, 3, true},
		{"15-bit picture id", []byte{0x90, 0x80, 0x85, 0x01, 0xaa}, 4, true},
		{"all fields", []byte{0x90, 0xf0, 0x85, 0x01, 0x07, 0x20, 0xaa}, 6, true},
		{"truncated", []byte{0x90, 0x80}, 0, false},
		{"descriptor only", []byte{0x10}, 1, false},
		{"empty", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := VP8DescriptorLen(tc.b)
			if ok != tc.ok || (ok && n != tc.n) {
				t.Errorf("got %d %v, want %d %v", n, ok, tc.n, tc.ok)
			}
		})
	}
}

// TestReaderSequence feeds the reader's bookkeeping directly: wrap-around,
// reordering, duplicates and a gap.
func TestReaderSequence(t *testing.T) {
	r := &TrackReader{maxExt: -1}
	for _, s := range []uint16{65534, 65535, 1, 0, 1, 2, 5} {
		r.noteSeqLocked(s)
	}
	s := r.stats
	if s.Expected != 8 || s.Unique != 6 || s.Duplicates != 1 || s.Lost() != 2 {
		t.Errorf("got %+v", s)
	}
	if m := r.Missing(0); m != 2 {
		t.Errorf("Missing(0) = %d, want 2", m)
	}
	// Sparing the newest two (4 and 5) leaves 3 missing.
	if m := r.Missing(2); m != 1 {
		t.Errorf("Missing(2) = %d, want 1", m)
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	if p := Percentile(s, 50); p != 50*time.Millisecond {
		t.Errorf("p50 = %v", p)
	}
	if p := Percentile(s, 99); p != 99*time.Millisecond {
		t.Errorf("p99 = %v", p)
	}
	if p := Percentile(nil, 99); p != 0 {
		t.Errorf("empty p99 = %v", p)
	}
}

func TestProcessCPU(t *testing.T) {
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the kernel's tick counter moves (a condition, with a deadline).
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		now, err := ProcessCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stuck at %v (%d)", now, x)
		}
	}
}

// TestLoss checks the loss interceptor drops every Nth video packet once
// and lets its retransmission through.
func TestLoss(t *testing.T) {
	l := &Loss{Every: 4}
	i, _ := l.NewInterceptor("")
	var got []uint16
	w := i.BindLocalStream(&interceptor.StreamInfo{MimeType: "video/VP8"}, interceptor.RTPWriterFunc(
		func(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) {
			got = append(got, h.SequenceNumber)
			return 0, nil
		}))
	for _, s := range []uint16{1, 2, 3, 4, 5, 4, 8, 4} {
		_, _ = w.Write(&rtp.Header{SequenceNumber: s}, nil, nil)
	}
	want := []uint16{1, 2, 3, 5, 4, 4}
	if len(got) != len(want) {
		t.Fatalf("wrote %v, want %v", got, want)
	}
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("wrote %v, want %v", got, want)
		}
	}
	if l.Dropped() != 2 || l.Resent() != 1 {
		t.Errorf("dropped %d resent %d, want 2 1", l.Dropped(), l.Resent())
	}
	audio := i.BindLocalStream(&interceptor.StreamInfo{MimeType: "audio/opus"}, interceptor.RTPWriterFunc(
		func(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) { return 1, nil }))
	if n, _ := audio.Write(&rtp.Header{SequenceNumber: 4}, nil, nil); n != 1 {
		t.Error("audio packet dropped")
	}
}
