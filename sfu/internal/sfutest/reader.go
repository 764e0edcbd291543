package sfutest

import (
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TrackStats is what a TrackReader saw so far.
type TrackStats struct {
	Packets, Bytes int64
	// Expected is the span of sequence numbers seen (highest - first + 1);
	// Unique how many distinct ones arrived, Duplicates how many twice.
	Expected, Unique, Duplicates int64
	KeyFrames                    int // VP8 key frames (first packets) seen
	// Width and Height are from the last VP8 key frame's header.
	Width, Height int
	// FirstPacket and FirstKeyFrame are arrival times (zero if none yet).
	FirstPacket, FirstKeyFrame time.Time
}

// Lost is Expected - Unique: sequence numbers never received.
func (s TrackStats) Lost() int64 { return s.Expected - s.Unique }

// TrackReader reads one subscribed track until it ends and keeps the
// figures a test or benchmark asks about.
type TrackReader struct {
	track  *webrtc.TrackRemote
	vp8    bool
	ledger *Ledger
	done   chan struct{}

	// mu guards the fields below.
	mu       sync.Mutex
	stats    TrackStats
	firstExt int64    // extended sequence number of the first packet
	maxExt   int64    // highest extended sequence number
	seen     []uint64 // bitset over ext seq - firstExt
	lat      []int32  // latency samples, µs
}

// ReadTrack starts reading track (until it ends: the subscription or the
// peer connection closed). ledger may be nil (no latency).
func ReadTrack(track *webrtc.TrackRemote, ledger *Ledger) *TrackReader {
	r := &TrackReader{
		track:  track,
		vp8:    strings.EqualFold(track.Codec().MimeType, webrtc.MimeTypeVP8),
		ledger: ledger,
		done:   make(chan struct{}),
		maxExt: -1,
	}
	go r.run()
	return r
}

// Track is the track read.
func (r *TrackReader) Track() *webrtc.TrackRemote { return r.track }

// Done is closed when the track ended.
func (r *TrackReader) Done() <-chan struct{} { return r.done }

// Stats is a copy of the figures so far.
func (r *TrackReader) Stats() TrackStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Missing counts sequence numbers not received among all but the newest
// spare ones (those may still be on their way or being retransmitted).
func (r *TrackReader) Missing(spare int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.maxExt - r.firstExt + 1 - spare
	var missing int64
	for i := int64(0); i < n; i++ {
		if r.seen[i/64]&(1<<(i%64)) == 0 {
			missing++
		}
	}
	return missing
}

// Latencies returns the latency samples so far and, if reset, starts anew
// (a benchmark discards the warm-up).
func (r *TrackReader) Latencies(reset bool) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]time.Duration, len(r.lat))
	for i, us := range r.lat {
		out[i] = time.Duration(us) * time.Microsecond
	}
	if reset {
		r.lat = r.lat[:0]
	}
	return out
}

func (r *TrackReader) run() {
	defer close(r.done)
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := r.track.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		r.note(&pkt, n, now)
	}
}

func (r *TrackReader) note(pkt *rtp.Packet, size int, now time.Time) {
	var w, h int
	key := false
	if r.vp8 {
		w, h, key = VP8KeyFrame(pkt.Payload)
	}
	var lat time.Duration
	haveLat := false
	if r.ledger != nil {
		if fp, ok := r.ledger.Fingerprint(r.vp8, pkt.Payload); ok {
			lat, haveLat = r.ledger.Latency(fp, now)
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.stats
	s.Packets++
	s.Bytes += int64(size)
	if s.FirstPacket.IsZero() {
		s.FirstPacket = now
	}
	if key {
		s.KeyFrames++
		s.Width, s.Height = w, h
		if s.FirstKeyFrame.IsZero() {
			s.FirstKeyFrame = now
		}
	}
	if haveLat && lat >= 0 && lat < time.Minute {
		r.lat = append(r.lat, int32(lat/time.Microsecond))
	}
	r.noteSeqLocked(pkt.SequenceNumber)
}

// noteSeqLocked extends the 16-bit sequence number (RFC 3550, A.1) and
// marks it seen.
func (r *TrackReader) noteSeqLocked(seq uint16) {
	var ext int64
	if r.maxExt < 0 {
		r.firstExt, r.maxExt = int64(seq), int64(seq)
		ext = int64(seq)
	} else {
		ext = r.maxExt + int64(int16(seq-uint16(r.maxExt)))
	}
	if ext < r.firstExt {
		return // older than the first packet seen
	}
	i := ext - r.firstExt
	for int64(len(r.seen))*64 <= i {
		r.seen = append(r.seen, 0)
	}
	word, bit := i/64, uint64(1)<<(i%64)
	if r.seen[word]&bit != 0 {
		r.stats.Duplicates++
	} else {
		r.seen[word] |= bit
		r.stats.Unique++
	}
	r.maxExt = max(r.maxExt, ext)
	r.stats.Expected = r.maxExt - r.firstExt + 1
}
