package sfutest

import (
	"hash/maphash"
	"sync"
	"time"
)

// Ledger maps packet fingerprints to the wall-clock time the publisher sent
// them (see the package comment for why fingerprints and not timestamps).
// A clip loop later the same fingerprint is written again with the newer
// time, which is the one a subscriber's arrival belongs to as long as the
// latency is below the loop length (4 s).
type Ledger struct {
	seed maphash.Seed

	// mu guards sent.
	mu   sync.RWMutex
	sent map[uint64]int64 // fingerprint -> send time, Unix ns
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{seed: maphash.MakeSeed(), sent: make(map[uint64]int64)}
}

// fingerprintBytes is how much of the media payload identifies a packet:
// enough that two packets of the clip never collide, little enough that
// 30,000 lookups a second cost nothing.
const fingerprintBytes = 48

// Fingerprint identifies an RTP payload by its media bytes: after the VP8
// payload descriptor for VP8 (the SFU rewrites picture IDs there), all of
// it otherwise. ok=false for a payload too short to carry media.
func (l *Ledger) Fingerprint(vp8 bool, payload []byte) (fp uint64, ok bool) {
	if vp8 {
		n, ok := VP8DescriptorLen(payload)
		if !ok {
			return 0, false
		}
		payload = payload[n:]
	}
	if len(payload) == 0 {
		return 0, false
	}
	b := payload[:min(len(payload), fingerprintBytes)]
	// The length goes in too: two packets of a frame may begin alike.
	return maphash.Bytes(l.seed, b) ^ uint64(len(payload))<<48, true
}

// Sent notes that the packet with fingerprint fp left at t.
func (l *Ledger) Sent(fp uint64, t time.Time) {
	l.mu.Lock()
	l.sent[fp] = t.UnixNano()
	l.mu.Unlock()
}

// Latency is the time from the send of the packet with fingerprint fp to
// arrival, ok=false if the ledger does not know it.
func (l *Ledger) Latency(fp uint64, arrival time.Time) (time.Duration, bool) {
	l.mu.RLock()
	t, ok := l.sent[fp]
	l.mu.RUnlock()
	if !ok {
		return 0, false
	}
	return time.Duration(arrival.UnixNano() - t), true
}
