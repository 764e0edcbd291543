package sfutest

import "encoding/binary"

// VP8DescriptorLen is the length of the VP8 RTP payload descriptor at the
// start of payload (RFC 7741, 4.2), or ok=false if it is truncated.
func VP8DescriptorLen(payload []byte) (n int, ok bool) {
	if len(payload) < 1 {
		return 0, false
	}
	n = 1
	if payload[0]&0x80 == 0 { // X: no extension byte
		return n, len(payload) > n
	}
	if len(payload) < 2 {
		return 0, false
	}
	ext := payload[1]
	n = 2
	if ext&0x80 != 0 { // I: PictureID, one byte or (M set) two
		if len(payload) < n+1 {
			return 0, false
		}
		if payload[n]&0x80 != 0 {
			n += 2
		} else {
			n++
		}
	}
	if ext&0x40 != 0 { // L: TL0PICIDX
		n++
	}
	if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX share one byte
		n++
	}
	return n, len(payload) > n
}

// VP8KeyFrame reports whether payload (one RTP packet's) starts a VP8 key
// frame and, if so, the frame's size from the key frame header (RFC 6386,
// 9.1: a 3-byte frame tag, the start code 9d 01 2a, then 14-bit width and
// height). This reads ten bytes of header; it does not decode.
func VP8KeyFrame(payload []byte) (width, height int, ok bool) {
	n, ok := VP8DescriptorLen(payload)
	if !ok {
		return 0, 0, false
	}
	// S set and partition index 0: the packet starts the frame.
	if payload[0]&0x10 == 0 || payload[0]&0x0f != 0 {
		return 0, 0, false
	}
	h := payload[n:]
	if len(h) < 10 || h[0]&0x01 != 0 { // P bit 0 = key frame
		return 0, 0, false
	}
	if h[3] != 0x9d || h[4] != 0x01 || h[5] != 0x2a {
		return 0, 0, false
	}
	w := int(binary.LittleEndian.Uint16(h[6:8]) & 0x3fff)
	ht := int(binary.LittleEndian.Uint16(h[8:10]) & 0x3fff)
	return w, ht, true
}
