//lint:file-ignore SA1019 LiveKit clients still read and write the deprecated DataPacket.kind and UserPacket sender and destination fields, so the relay keeps them in step with the new ones.

package data

import (
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
)

// outMsg is one encoded message for many recipients. Its fields are
// shared and never modified after Receive builds it.
type outMsg struct {
	b   []byte
	key lossyKey // coalescing key; zero topic+sender means none
}

// lossyKey identifies the lossy stream a message supersedes: one
// sender's messages on one topic.
type lossyKey struct {
	sender string // sid
	topic  string
}

// lossyItem is a queued lossy message.
type lossyItem struct {
	b        []byte
	key      lossyKey
	coalesce bool
}

// peer is one participant: a sender (rate limit) and a recipient (two
// bounded queues and two pending world deltas, drained by one writer
// goroutine).
type peer struct {
	sid, identity string
	to            Sender
	room          *Room

	bmu sync.Mutex
	// bmu guards the following fields (the sender's token bucket).
	tokens float64
	last   time.Time

	mu sync.Mutex
	// mu guards the following fields.
	rel        ring[[]byte]
	lossy      ring[lossyItem]
	byKey      map[lossyKey]uint64 // lossy seq of the queued message per stream
	overflowed bool                // reliable queue overflowed, callback not yet made
	stopped    bool
	// world holds, per Kind, the world changes not yet written; spare
	// is the emptied map the writer swaps in when it takes one, so that
	// batching allocates nothing in the steady state (nil while the
	// writer holds it).
	world, spare [2]pending
	// worldBytes is, per Kind, about the encoded size of world's entries
	// (change.size), for Config.DeltaFillBytes.
	worldBytes [2]int
	snapFirst  bool // the head of rel is the joiner's snapshot: it precedes every delta
	// lossyHeld: the writer holds the lossy channel until a timer fires
	// (a world delta waits out Config.LossyDeltaInterval), so lossy
	// messages queued meanwhile need not wake it.
	lossyHeld bool

	// delta and lossyDeltaDue belong to the writer goroutine:
	// lossyDeltaDue is when, on the mono clock, the next lossy world
	// delta may be written (Config.LossyDeltaInterval).
	delta         *deltaEncoder
	lossyDeltaDue time.Duration

	wake    chan struct{} // cap 1: something was queued
	drained chan struct{} // cap 1: a slow channel drained (DrainNotifier)
	stop    chan struct{} // closed by Leave/Close
}

func newPeer(r *Room, sid, identity string, to Sender) *peer {
	return &peer{
		sid: sid, identity: identity, to: to, room: r,
		tokens: float64(r.cfg.Burst), last: r.cfg.Now(),
		rel:     newRing[[]byte](r.cfg.QueueLen),
		lossy:   newRing[lossyItem](r.cfg.QueueLen),
		byKey:   map[lossyKey]uint64{},
		world:   [2]pending{{}, {}},
		spare:   [2]pending{{}, {}},
		delta:   newDeltaEncoder(r.deltaTopic, r.cfg.MaxPacketBytes),
		wake:    make(chan struct{}, 1),
		drained: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
}

// allow takes one token from the sender's bucket.
func (p *peer) allow(now time.Time) bool {
	cfg := &p.room.cfg
	p.bmu.Lock()
	defer p.bmu.Unlock()
	if d := now.Sub(p.last); d > 0 {
		p.tokens += d.Seconds() * cfg.Rate
		if p.tokens > float64(cfg.Burst) {
			p.tokens = float64(cfg.Burst)
		}
	}
	p.last = now
	if p.tokens < 1 {
		return false
	}
	p.tokens--
	return true
}

// enqueue queues m without blocking. Reliable overflow drops m (the peer
// is hopeless, see Config.OnReliableOverflow); lossy coalesces with an
// unsent message of the same stream or drops the oldest.
func (p *peer) enqueue(kind Kind, m *outMsg) {
	st := &p.room.stats
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	if kind == Reliable {
		if p.rel.full() {
			first := !p.overflowed
			p.overflowed = true
			p.mu.Unlock()
			st.reliableOverflow.Add(1)
			if first {
				p.room.warn("reliable queue overflow", "sid", p.sid)
			}
			p.signal()
			return
		}
		p.rel.push(m.b)
		p.mu.Unlock()
		p.signal()
		return
	}
	coalesce := m.key != lossyKey{}
	if coalesce {
		if seq, ok := p.byKey[m.key]; ok {
			if it := p.lossy.at(seq); it != nil {
				it.b = m.b
				p.mu.Unlock()
				st.coalesced.Add(1)
				return
			}
		}
	}
	dropped := false
	if p.lossy.full() {
		old, seq := p.lossy.pop()
		if old.coalesce && p.byKey[old.key] == seq {
			delete(p.byKey, old.key)
		}
		dropped = true
	}
	seq := p.lossy.push(lossyItem{b: m.b, key: m.key, coalesce: coalesce})
	if coalesce {
		p.byKey[m.key] = seq
	}
	held := p.lossyHeld
	p.mu.Unlock()
	if dropped {
		st.lossyOverflow.Add(1)
	}
	if !held {
		p.signal()
	}
}

// enqueueWorld merges an applied world message's changes (changesOf)
// into the pending delta of kind, per key last-writer-wins, without
// blocking. A
// change on the reliable channel also retires an older pending lossy
// change of the key; a lossy change never retires a reliable one, so the
// latest reliable value is still delivered if the lossy delta is lost.
//
// The pending changes are bounded by the keys the state can hold (live
// ones and tombstones) as long as the recipient keeps up; a recipient
// stalled while a sender churns through ever new keys reaches
// Room.maxPending and then loses changes as from a full queue: a lossy
// one is dropped, a reliable one reports the recipient as hopeless.
func (p *peer) enqueueWorld(kind Kind, changes []keyed) {
	var coalesced, overflow uint64
	put := func(k string, c change) {
		old, had := p.world[kind][k]
		if !had && len(p.world[kind]) >= p.room.maxPending {
			overflow++
			return
		}
		if kind == Lossy {
			if cur, ok := p.world[Reliable][k]; ok && !c.newer(&cur) {
				coalesced++
				return
			}
		} else if cur, ok := p.world[Lossy][k]; ok && c.newer(&cur) {
			delete(p.world[Lossy], k)
			p.worldBytes[Lossy] -= cur.size
			coalesced++
		}
		replaced, kept := p.world[kind].put(k, c)
		if replaced || !kept {
			coalesced++
		}
		if kept {
			p.worldBytes[kind] += c.size
			if had {
				p.worldBytes[kind] -= old.size
			}
		}
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	for _, c := range changes {
		put(c.key, c.change)
	}
	first := false
	if overflow > 0 && kind == Reliable {
		first = !p.overflowed
		p.overflowed = true
	}
	// A held channel's writer is woken once its delta is as full as a
	// packet gets: waiting longer would only make it two.
	held := kind == Lossy && p.lossyHeld && !p.lossyFullLocked()
	p.mu.Unlock()
	if coalesced > 0 {
		p.room.stats.coalesced.Add(coalesced)
	}
	if overflow > 0 {
		if kind == Reliable {
			p.room.stats.reliableOverflow.Add(overflow)
		} else {
			p.room.stats.lossyOverflow.Add(overflow)
		}
		if first {
			p.room.warn("world delta overflow", "sid", p.sid, "kind", kind)
		}
	}
	if !held {
		p.signal()
	}
}

// lossyFullLocked reports whether the pending lossy delta is full: one
// more entry of its average size would take it past
// Config.DeltaFillBytes. p.mu must be held.
func (p *peer) lossyFullLocked() bool {
	n := len(p.world[Lossy])
	if n == 0 {
		return false
	}
	b := p.worldBytes[Lossy]
	return b+b/n > p.room.fillBytes
}

// drainedSignal wakes a writer waiting for a slow channel to drain.
func (p *peer) drainedSignal() {
	select {
	case p.drained <- struct{}{}:
	default:
	}
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// halt stops the writer; it does not wait (Room.Close does).
func (p *peer) halt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.stopped = true
		close(p.stop)
	}
}

func livekitKind(k Kind) livekit.DataPacket_Kind {
	if k == Lossy {
		return livekit.DataPacket_LOSSY
	}
	return livekit.DataPacket_RELIABLE
}
