package media

import "time"

// offsets turn one segment's source numbering into the subscriber's: every
// output field is the source field plus its offset, modulo the field width.
// A segment is a run of packets from one layer between switches or pauses.
type offsets struct {
	seq    uint16
	ts     uint32
	pic    uint16
	tl0    uint8
	keyIdx uint8
}

// munged is one packet's output numbering.
type munged struct {
	seq    uint16
	ts     uint32
	pic    uint16
	tl0    uint8
	keyIdx uint8
}

func (o offsets) apply(srcSeq uint16, srcTS uint32, d *vp8Desc) munged {
	m := munged{seq: srcSeq + o.seq, ts: srcTS + o.ts}
	if d != nil {
		m.pic = (d.picID + o.pic) & d.picMask()
		m.tl0 = d.tl0 + o.tl0
		m.keyIdx = (d.keyIdx + o.keyIdx) & 0x1f
	}
	return m
}

// munger keeps one DownTrack's output sequence numbers, timestamps and VP8
// picture numbering continuous across layer switches and pauses: the
// subscriber's decoder and jitter buffer must see one stream, with no gap in
// sequence numbers (a gap reads as loss and triggers NACKs) and timestamps
// that advance like the wall clock. It is not safe for concurrent use; the
// DownTrack's mutex guards it.
type munger struct {
	started  bool
	off      offsets
	segStart uint16 // first source sequence number of the segment
	highSrc  uint16 // newest source sequence number of the segment

	// Padding-only packets dropped in order; the sequence offset was
	// lowered by one for each so the output has no gap. A packet arriving
	// late from before a drop must be numbered with the offset before it.
	drops  [16]uint16
	nDrops int // total dropped in the segment; drops is a ring of the last 16

	// The newest packet sent; sent is false until there is one.
	sent       bool
	lastSeq    uint16
	lastTS     uint32
	lastAt     time.Time
	lastPic    uint16
	lastTl0    uint8
	lastKeyIdx uint8
	havePic    bool
	haveTl0    bool
	haveKeyIdx bool
}

// begin starts a segment whose first packet has source numbers srcSeq and
// srcTS (and VP8 descriptor d, nil for other codecs). The first output
// sequence number follows the last one sent; the timestamp advances by the
// wall-clock time since the last packet was sent (at least one tick), so
// the new layer's first frame lands where a player expects the next frame.
// PictureID, TL0PICIDX and KEYIDX each continue at last+1 (RFC 7741 4.2: a
// receiver treats a PictureID jump as lost frames).
func (m *munger) begin(srcSeq uint16, srcTS uint32, now time.Time, clockRate uint32, d *vp8Desc) {
	m.segStart, m.highSrc, m.nDrops = srcSeq, srcSeq, 0
	if !m.sent {
		m.started = true
		m.off = offsets{}
		return
	}
	m.off.seq = m.lastSeq + 1 - srcSeq
	elapsed := now.Sub(m.lastAt)
	if elapsed < 0 {
		elapsed = 0
	}
	ticks := uint32(int64(elapsed) / int64(time.Millisecond) * int64(clockRate) / 1000)
	if ticks == 0 {
		ticks = 1
	}
	m.off.ts = m.lastTS + ticks - srcTS
	if d != nil {
		if d.picOff > 0 && m.havePic {
			m.off.pic = (m.lastPic + 1 - d.picID) & d.picMask()
		}
		if d.tl0Off > 0 && m.haveTl0 {
			m.off.tl0 = m.lastTl0 + 1 - d.tl0
		}
		if d.keyIdxOff > 0 && m.haveKeyIdx {
			m.off.keyIdx = (m.lastKeyIdx + 1 - d.keyIdx) & 0x1f
		}
	}
}

// munge numbers a packet of the current segment and returns the offsets
// it used (for a NACK resend). ok is false for a packet older than the
// segment's first packet (it belongs to the stream before the switch point
// and would corrupt the new one) and for a padding-only packet that arrives
// in order: publishers without RTX probe bandwidth with padding on the media
// SSRC, which subscribers need not receive; the packets after it are
// renumbered to close the gap.
func (m *munger) munge(srcSeq uint16, srcTS uint32, now time.Time, d *vp8Desc, padding bool) (out munged, used offsets, ok bool) {
	if !m.started || int16(srcSeq-m.segStart) < 0 {
		return munged{}, offsets{}, false
	}
	if padding && srcSeq == m.highSrc+1 {
		m.highSrc = srcSeq
		m.off.seq--
		m.drops[m.nDrops%len(m.drops)] = srcSeq
		m.nDrops++
		return munged{}, offsets{}, false
	}
	used = m.off
	if int16(srcSeq-m.highSrc) > 0 {
		m.highSrc = srcSeq
	} else {
		// Late: undo the drops that came after it.
		for i := 0; i < min(m.nDrops, len(m.drops)); i++ {
			if int16(m.drops[i]-srcSeq) > 0 {
				used.seq++
			}
		}
	}
	out = used.apply(srcSeq, srcTS, d)
	if !m.sent || int16(out.seq-m.lastSeq) > 0 {
		m.sent = true
		m.lastSeq, m.lastTS, m.lastAt = out.seq, out.ts, now
		if d != nil {
			if d.picOff > 0 {
				m.lastPic, m.havePic = out.pic, true
			}
			if d.tl0Off > 0 {
				m.lastTl0, m.haveTl0 = out.tl0, true
			}
			if d.keyIdxOff > 0 {
				m.lastKeyIdx, m.haveKeyIdx = out.keyIdx, true
			}
		}
	}
	return out, used, true
}
