package media

import (
	"testing"
	"time"
)

func TestMungerContinuityAcrossSwitches(t *testing.T) {
	var m munger
	t0 := time.Unix(100, 0)
	// Layer A: source seq 1000.., ts 3000 per frame, PictureID 200..
	dA := func(pic uint16) *vp8Desc {
		return &vp8Desc{picOff: 2, pic15: true, picID: pic, tl0Off: 4, tl0: uint8(pic), keyIdxOff: 5, keyIdx: uint8(pic) & 0x1f}
	}
	m.begin(1000, 50_000, t0, 90000, dA(200))
	var last munged
	for i := 0; i < 10; i++ {
		out, _, ok := m.munge(uint16(1000+i), uint32(50_000+3000*i), t0.Add(time.Duration(i)*33*time.Millisecond), dA(uint16(200+i)), false)
		if !ok {
			t.Fatalf("packet %d dropped", i)
		}
		if i > 0 && (out.seq != last.seq+1 || out.ts != last.ts+3000 || out.pic != last.pic+1) {
			t.Fatalf("packet %d: %+v after %+v", i, out, last)
		}
		last = out
	}
	// Switch to layer B (wildly different numbering, PictureID wrapping)
	// 40 ms after the last packet.
	at := t0.Add(9*33*time.Millisecond + 40*time.Millisecond)
	dB := func(pic uint16) *vp8Desc {
		return &vp8Desc{picOff: 2, pic15: true, picID: pic & 0x7fff, tl0Off: 4, tl0: 250 + uint8(pic), keyIdxOff: 5, keyIdx: 30}
	}
	m.begin(65530, 4_000_000_000, at, 90000, dB(0x7ffe))
	for i := 0; i < 10; i++ {
		out, _, ok := m.munge(uint16(65530+i), uint32(4_000_000_000+3000*i), at.Add(time.Duration(i)*33*time.Millisecond), dB(uint16(0x7ffe+i)), false)
		if !ok {
			t.Fatalf("B packet %d dropped", i)
		}
		if out.seq != last.seq+1 {
			t.Fatalf("B packet %d: seq %d after %d", i, out.seq, last.seq)
		}
		if out.pic != (last.pic+1)&0x7fff || out.tl0 != last.tl0+1 || (i == 0 && out.keyIdx != (last.keyIdx+1)&0x1f) {
			t.Fatalf("B packet %d: VP8 fields %+v after %+v", i, out, last)
		}
		want := uint32(3000)
		if i == 0 {
			want = 40 * 90 // the wall-clock gap at 90 kHz
		}
		if out.ts-last.ts != want {
			t.Fatalf("B packet %d: ts step %d, want %d", i, out.ts-last.ts, want)
		}
		last = out
	}
	// A late packet of layer B from before its switch point is dropped; a
	// reordered one after it passes with its own number.
	if _, _, ok := m.munge(65529, 0, at, nil, false); ok {
		t.Fatal("packet before the switch point forwarded")
	}
	if out, _, ok := m.munge(65531, 4_000_003_000, at, nil, false); !ok || out.seq != last.seq-8 {
		t.Fatalf("reordered packet: %+v %v", out, ok)
	}
}

func TestMungerResumeTimestamp(t *testing.T) {
	var m munger
	t0 := time.Unix(100, 0)
	m.begin(10, 960, t0, 48000, nil)
	first, _, _ := m.munge(10, 960, t0, nil, false)
	// Paused for 3 s; the source's timestamps jumped by something else.
	m.begin(500, 7, t0.Add(3*time.Second), 48000, nil)
	out, _, _ := m.munge(500, 7, t0.Add(3*time.Second), nil, false)
	if out.seq != first.seq+1 || out.ts-first.ts != 3*48000 {
		t.Fatalf("resume: %+v after %+v", out, first)
	}
	// Resuming in the same instant still advances the timestamp.
	m.begin(900, 1, t0.Add(3*time.Second), 48000, nil)
	again, _, _ := m.munge(900, 1, t0.Add(3*time.Second), nil, false)
	if again.ts == out.ts || again.seq != out.seq+1 {
		t.Fatalf("instant resume: %+v after %+v", again, out)
	}
}

func TestOffsetsApplyMatchesMunge(t *testing.T) {
	// A NACK resend recomputes numbering from the offsets munge returned;
	// it must match what was first sent.
	var m munger
	t0 := time.Unix(1, 0)
	m.begin(100, 1000, t0, 90000, nil)
	m.munge(100, 1000, t0, nil, false)
	d := &vp8Desc{picOff: 2, pic15: true, picID: 77}
	m.begin(9000, 123456, t0.Add(time.Second), 90000, d)
	out, used, _ := m.munge(9003, 123456+3000, t0.Add(time.Second), d, false)
	if got := used.apply(9003, 123456+3000, d); got != out {
		t.Fatalf("apply %+v, munge %+v", got, out)
	}
}

func TestMungerDropsPadding(t *testing.T) {
	// Source: 1 2 3(pad) 4 5(pad) 6(pad) 8 9(pad) 7(late) 10. Padding in
	// order is dropped and the rest renumbered without gaps; 7 arrives
	// after the drop of 9 and keeps the number it would have had.
	type in struct {
		seq uint16
		pad bool
	}
	var m munger
	t0 := time.Unix(1, 0)
	m.begin(1, 0, t0, 90000, nil)
	outs := map[uint16]uint16{}
	var resends = map[uint16]offsets{}
	for _, p := range []in{{1, false}, {2, false}, {3, true}, {4, false}, {5, true}, {6, true}, {8, false}, {9, true}, {7, false}, {10, false}} {
		out, used, ok := m.munge(p.seq, 0, t0, nil, p.pad)
		if ok != !p.pad {
			t.Fatalf("seq %d: forwarded %v", p.seq, ok)
		}
		if ok {
			outs[p.seq] = out.seq
			resends[p.seq] = used
		}
	}
	want := map[uint16]uint16{1: 1, 2: 2, 4: 3, 7: 4, 8: 5, 10: 6}
	for src, o := range want {
		if outs[src] != o {
			t.Fatalf("source %d sent as %d, want %d (all: %v)", src, outs[src], o, outs)
		}
		if got := resends[src].apply(src, 0, nil).seq; got != o {
			t.Fatalf("resend of %d numbered %d, want %d", src, got, o)
		}
	}
	// A padding packet out of order (older than the newest) is forwarded
	// into its place: dropping it would leave a gap nothing fills.
	m.begin(100, 0, t0, 90000, nil)
	a, _, _ := m.munge(100, 0, t0, nil, false)
	c, _, _ := m.munge(102, 0, t0, nil, false)
	b, _, ok := m.munge(101, 0, t0, nil, true)
	if !ok || b.seq != a.seq+1 || c.seq != a.seq+2 {
		t.Fatalf("late padding: %v %d between %d and %d", ok, b.seq, a.seq, c.seq)
	}
}
