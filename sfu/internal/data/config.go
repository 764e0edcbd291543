package data

import (
	"errors"
	"time"

	"github.com/plexus-chat/plexus/internal/latency"
)

// Kind is the data channel a message travels on.
type Kind uint8

const (
	// Reliable is the ordered, retransmitted "_reliable" channel.
	Reliable Kind = iota
	// Lossy is the unordered "_lossy" channel with maxRetransmits 0.
	Lossy
)

func (k Kind) String() string {
	switch k {
	case Reliable:
		return "reliable"
	case Lossy:
		return "lossy"
	}
	return "unknown"
}

// Config tunes a Room. Zero fields take the defaults named on each.
type Config struct {
	QueueLen       int     // per recipient per kind, default 256
	MaxPacketBytes int     // default 15 * 1024 (bigger -> ErrTooLarge)
	Rate           float64 // per sender packets/s (token bucket), default 300
	Burst          int     // bucket size, default 2*Rate
	WorldTopic     string  // default "plexus.world"
	MaxWorldBytes  int     // total snapshot size cap, default 48 * 1024 (a Matrix event is <= 64 KiB)
	Now            func() time.Time

	// Tick, default 10ms, is how often a recipient that is slow or whose
	// channel is not open yet is checked again. Its lossy messages
	// coalesce meanwhile, so once it drains it gets about one message
	// per stream per tick however fast the senders are.
	Tick time.Duration

	// SlowBytes is the data channel buffered amount above which a
	// recipient counts as slow: nothing more is written to that channel
	// until it drains, lossy messages coalesce and drop meanwhile.
	// Default 1 MiB.
	SlowBytes uint64
	// LossySlowBytes is SlowBytes for the lossy channel, default 16 KiB:
	// what waits in the SCTP buffer can only go out late and whole,
	// while what waits here is merged, so a lossy channel is held to a
	// short buffer and its world changes batch in the pending delta
	// instead (1 MiB of buffered poses was seconds of lag).
	LossySlowBytes uint64
	// LossyDeltaInterval, default 3ms, is the least time between two
	// lossy world deltas to one recipient: a change after a quiet spell
	// goes out at once, while changes stream in they merge and go out
	// once per interval. Every delta costs a data channel message, SCTP
	// packets and their acknowledgements at both ends whatever it holds,
	// and with 50 peers at 30 poses a second a recipient whose delta
	// went out the moment it could was sent several a frame. Negative:
	// no interval.
	LossyDeltaInterval time.Duration
	// DeltaFillBytes, default 1160, is the size at which a lossy world
	// delta is full: within LossyDeltaInterval it goes out once the next
	// entry would take it past this size, rather than at the interval's
	// end. 1160 bytes is what one SCTP packet carries of a data channel
	// message at pion's MTU (1191 bytes less the common and DATA chunk
	// headers), so deltas of one packet are not followed by a second
	// packet of a few bytes.
	DeltaFillBytes int
	// MaxClockSkew bounds how far in the future a world message's "ts"
	// may lie; later stamps are clamped to the server's clock so that one
	// client with a fast clock cannot own keys forever. Default 30s.
	MaxClockSkew time.Duration
	// TombstoneTTL is how long a deleted key is remembered to refuse
	// older sets that arrive late; default 10 minutes. At most
	// MaxTombstones (default 4096) are kept, the oldest forgotten first.
	TombstoneTTL  time.Duration
	MaxTombstones int
	// OnReliableOverflow, if set, is called (from the recipient's writer
	// goroutine, never under a lock) once when a recipient's reliable
	// queue overflows: reliable delivery to it is broken and the core
	// may disconnect it. It may call Leave.
	OnReliableOverflow func(sid string)
	// RelayLatency, if set, records for every world change written to a
	// recipient the time from its packet's arrival in Receive to the
	// return of the SendData that wrote the delta carrying it: the time
	// the change spent in the relay, queueing and merging included.
	RelayLatency *latency.Histogram
}

// Errors returned by Receive and LoadWorld; each concerns the sending
// client alone.
var (
	ErrTooLarge      = errors.New("data: packet too large")
	ErrRateLimited   = errors.New("data: sender over its packet rate")
	ErrMalformed     = errors.New("data: malformed packet")
	ErrWorldFull     = errors.New("data: world state size cap reached")
	ErrNotAllowed    = errors.New("data: not allowed")
	ErrUnknownSender = errors.New("data: sender has not joined")
	ErrClosed        = errors.New("data: room closed")
)

func (c Config) withDefaults() Config {
	if c.QueueLen <= 0 {
		c.QueueLen = 256
	}
	if c.MaxPacketBytes <= 0 {
		c.MaxPacketBytes = 15 * 1024
	}
	if c.Rate <= 0 {
		c.Rate = 300
	}
	if c.Burst <= 0 {
		c.Burst = int(2 * c.Rate)
		if c.Burst < 1 {
			c.Burst = 1
		}
	}
	if c.Tick <= 0 {
		c.Tick = 10 * time.Millisecond
	}
	if c.LossyDeltaInterval == 0 {
		c.LossyDeltaInterval = 3 * time.Millisecond
	}
	if c.DeltaFillBytes <= 0 {
		c.DeltaFillBytes = 1160
	}
	if c.WorldTopic == "" {
		c.WorldTopic = "plexus.world"
	}
	if c.MaxWorldBytes <= 0 {
		c.MaxWorldBytes = 48 * 1024
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SlowBytes == 0 {
		c.SlowBytes = 1 << 20
	}
	if c.LossySlowBytes == 0 {
		c.LossySlowBytes = 16 << 10
	}
	if c.MaxClockSkew <= 0 {
		c.MaxClockSkew = 30 * time.Second
	}
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = 10 * time.Minute
	}
	if c.MaxTombstones <= 0 {
		c.MaxTombstones = 4096
	}
	return c
}
