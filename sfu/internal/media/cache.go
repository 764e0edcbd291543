package media

import (
	"sync"
	"time"
)

// cacheSize is the number of packets kept per layer: about 2 s of a 720p
// layer at 2.5 Mbit/s (~250 packets/s) and far more for audio. A power of
// two so the slot is the sequence number's low bits.
const cacheSize = 512

// cacheMaxAge bounds how old a cached packet may be when a NACK asks for it:
// older retransmissions arrive too late to be played.
const cacheMaxAge = 2 * time.Second

// packetCache keeps the last cacheSize raw RTP packets of one layer, indexed
// by source sequence number. The bytes are stored once per packet, shared by
// every subscriber; a NACK copies them out. Slot buffers are allocated on
// first use and reused, so the steady state allocates nothing.
type packetCache struct {
	mu    sync.RWMutex // guards slots
	slots [cacheSize]cacheSlot
}

type cacheSlot struct {
	seq   uint16
	valid bool
	at    int64 // arrival, unix nanoseconds
	buf   []byte
}

// put stores a copy of raw, the packet with sequence number seq.
func (c *packetCache) put(seq uint16, raw []byte, now time.Time) {
	c.mu.Lock()
	s := &c.slots[seq%cacheSize]
	if cap(s.buf) < len(raw) {
		// Round up so a slightly bigger packet later does not reallocate.
		s.buf = make([]byte, len(raw), (len(raw)+255)&^255)
	}
	s.buf = s.buf[:len(raw)]
	copy(s.buf, raw)
	s.seq, s.valid, s.at = seq, true, now.UnixNano()
	c.mu.Unlock()
}

// get copies the packet with sequence number seq into dst and returns it;
// ok is false if the packet is not cached, was overwritten or is too old.
func (c *packetCache) get(seq uint16, dst []byte, now time.Time) (pkt []byte, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := &c.slots[seq%cacheSize]
	if !s.valid || s.seq != seq || now.UnixNano()-s.at > int64(cacheMaxAge) {
		return nil, false
	}
	return append(dst[:0], s.buf...), true
}
