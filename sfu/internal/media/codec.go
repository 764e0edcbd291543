package media

import (
	"errors"
	"strings"
)

// codecKind is the codec family, which decides how key frames are found and
// whether payload descriptors are rewritten.
type codecKind uint8

const (
	codecOther codecKind = iota
	codecOpus
	codecRED
	codecVP8
	codecVP9
	codecH264
	codecAV1
)

func codecKindOf(mime string) codecKind {
	switch strings.ToLower(mime) {
	case "audio/opus":
		return codecOpus
	case "audio/red":
		return codecRED
	case "video/vp8":
		return codecVP8
	case "video/vp9":
		return codecVP9
	case "video/h264":
		return codecH264
	case "video/av1":
		return codecAV1
	}
	return codecOther
}

var errShortPayload = errors.New("media: payload descriptor truncated")

// vp8Desc is a parsed VP8 payload descriptor (RFC 7741, section 4.2). The
// offsets let a DownTrack rewrite the fields in a copy of the payload
// without changing its length.
type vp8Desc struct {
	hdrLen    int  // descriptor length; the VP8 payload starts here
	start     bool // S=1 and PID=0: first packet of a frame
	keyFrame  bool // start and the payload header's P bit is 0
	picOff    int  // offset of PictureID, 0 = absent
	pic15     bool // 15-bit PictureID (M bit)
	picID     uint16
	tl0Off    int // offset of TL0PICIDX, 0 = absent
	tl0       uint8
	keyIdxOff int // offset of the TID/Y/KEYIDX byte when K=1, 0 = absent
	keyIdx    uint8
}

// parseVP8 reads the descriptor at the start of a VP8 RTP payload. Only the
// descriptor and the first byte of the VP8 payload header are read: under
// E2EE (LiveKit's frame cryptor leaves the VP8 frame header in the clear)
// everything after may be ciphertext.
func parseVP8(p []byte) (vp8Desc, error) {
	var d vp8Desc
	if len(p) < 1 {
		return d, errShortPayload
	}
	// RFC 7741 4.2: |X|R|N|S|R| PID |
	x := p[0]&0x80 != 0
	s := p[0]&0x10 != 0
	pid := p[0] & 0x07
	i := 1
	if x {
		if len(p) < 2 {
			return d, errShortPayload
		}
		// |I|L|T|K| RSV |
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: PictureID
			if len(p) < i+1 {
				return d, errShortPayload
			}
			d.picOff = i
			if p[i]&0x80 != 0 { // M: 15 bits
				if len(p) < i+2 {
					return d, errShortPayload
				}
				d.pic15 = true
				d.picID = uint16(p[i]&0x7f)<<8 | uint16(p[i+1])
				i += 2
			} else {
				d.picID = uint16(p[i] & 0x7f)
				i++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			if len(p) < i+1 {
				return d, errShortPayload
			}
			d.tl0Off = i
			d.tl0 = p[i]
			i++
		}
		if ext&0x30 != 0 { // T or K: |TID|Y| KEYIDX |
			if len(p) < i+1 {
				return d, errShortPayload
			}
			if ext&0x10 != 0 {
				d.keyIdxOff = i
				d.keyIdx = p[i] & 0x1f
			}
			i++
		}
	}
	d.hdrLen = i
	d.start = s && pid == 0
	// RFC 7741 4.3: the payload header's P bit (bit 0 of the first byte)
	// is 0 for key frames; it exists only in a frame's first packet.
	if d.start && len(p) > i {
		d.keyFrame = p[i]&0x01 == 0
	}
	return d, nil
}

// vp8FrameSize reads the frame size from the start of a VP8 key frame (the
// payload after the descriptor). RFC 6386 section 9.1: a 3-byte frame tag,
// the start code 9d 01 2a, then width and height as 14-bit little-endian
// values, each topped by 2 scaling bits. These 10 bytes are what LiveKit's
// frame cryptor leaves in the clear, so the size is readable under E2EE.
func vp8FrameSize(f []byte) (width, height uint16, ok bool) {
	if len(f) < 10 || f[0]&0x01 != 0 || f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a {
		return 0, 0, false
	}
	width = (uint16(f[6]) | uint16(f[7])<<8) & 0x3fff
	height = (uint16(f[8]) | uint16(f[9])<<8) & 0x3fff
	if width == 0 || height == 0 {
		return 0, 0, false
	}
	return width, height, true
}

// rewrite writes the munged PictureID, TL0PICIDX and KEYIDX into p, a copy
// of the payload d was parsed from. The field widths stay as the publisher
// sent them, so the payload length never changes.
func (d *vp8Desc) rewrite(p []byte, picID uint16, tl0, keyIdx uint8) {
	if d.picOff > 0 {
		if d.pic15 {
			p[d.picOff] = 0x80 | byte(picID>>8)&0x7f
			p[d.picOff+1] = byte(picID)
		} else {
			p[d.picOff] = byte(picID) & 0x7f
		}
	}
	if d.tl0Off > 0 {
		p[d.tl0Off] = tl0
	}
	if d.keyIdxOff > 0 {
		p[d.keyIdxOff] = p[d.keyIdxOff]&0xe0 | keyIdx&0x1f
	}
}

// picMask is the PictureID modulus minus one for this packet's field width.
func (d *vp8Desc) picMask() uint16 {
	if d.pic15 {
		return 0x7fff
	}
	return 0x7f
}

// H.264 NAL unit types (RFC 6184 section 5.2, ITU-T H.264 table 7-1).
const (
	naluIDR  = 5
	naluSPS  = 7
	naluSTAP = 24
	naluFUA  = 28
)

// h264KeyFrame reports whether an H.264 RTP payload starts a key frame: it
// carries an SPS or the first fragment of an IDR slice, alone, aggregated
// (STAP-A) or fragmented (FU-A). Only NAL headers are read.
func h264KeyFrame(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case naluIDR, naluSPS:
		return true
	case naluSTAP:
		// RFC 6184 5.7.1: 16-bit size, then the NAL unit.
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n == 0 || i+n > len(p) {
				return false
			}
			if nt := p[i] & 0x1f; nt == naluIDR || nt == naluSPS {
				return true
			}
			i += n
		}
	case naluFUA:
		// RFC 6184 5.8: FU header |S|E|R|Type|.
		if len(p) < 2 {
			return false
		}
		return p[1]&0x80 != 0 && p[1]&0x1f == naluIDR
	}
	return false
}

// vp9KeyFrame reports whether a VP9 RTP payload starts a key frame, from the
// payload descriptor (RFC 9628 section 4.2): P=0 (not inter-picture
// predicted), B=1 (start of a frame) and, when layer indices are present,
// spatial layer 0.
func vp9KeyFrame(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	// |I|P|L|F|B|E|V|Z|
	b := p[0]
	if b&0x40 != 0 || b&0x08 == 0 {
		return false
	}
	if b&0x20 == 0 { // no layer indices
		return true
	}
	i := 1
	if b&0x80 != 0 { // PictureID, 7 or 15 bits
		if len(p) < 2 {
			return false
		}
		if p[1]&0x80 != 0 {
			i += 2
		} else {
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	// |TID|U| SID |D|
	return (p[i]>>1)&0x07 == 0
}

// av1KeyFrame reports whether an AV1 RTP payload starts a key frame: the
// aggregation header's N bit marks the first packet of a coded video
// sequence, which begins with a key frame (AV1 RTP spec section 4.4), and Z=0
// says the packet does not continue an OBU from the previous one.
func av1KeyFrame(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	// |Z|Y| W |N|-|-|-|
	return p[0]&0x08 != 0 && p[0]&0x80 == 0
}

// keyFrameStart reports whether payload is the first packet of a key frame
// for kind. Audio packets always are: any audio packet is a switch point.
func keyFrameStart(kind codecKind, p []byte) bool {
	switch kind {
	case codecVP8:
		d, err := parseVP8(p)
		return err == nil && d.keyFrame
	case codecH264:
		return h264KeyFrame(p)
	case codecVP9:
		return vp9KeyFrame(p)
	case codecAV1:
		return av1KeyFrame(p)
	case codecOpus, codecRED:
		return true
	}
	// Unknown video codecs: no key-frame detection, any packet switches.
	return true
}

// redPrimary returns the primary (newest) encoding inside an RFC 2198 RED
// payload: the block after all redundant blocks. Each redundant block has a
// 4-byte header |F|PT|timestamp offset(14)|length(10)|; the last header is
// one byte with F=0. The result aliases p.
func redPrimary(p []byte) ([]byte, bool) {
	i, skip := 0, 0
	for {
		if i >= len(p) {
			return nil, false
		}
		if p[i]&0x80 == 0 { // F=0: last (primary) header, one byte
			i++
			break
		}
		if i+4 > len(p) {
			return nil, false
		}
		skip += int(p[i+2]&0x03)<<8 | int(p[i+3])
		i += 4
	}
	if i+skip > len(p) {
		return nil, false
	}
	return p[i+skip:], true
}
