//lint:file-ignore SA1019 LiveKit clients still read and write the deprecated DataPacket.kind and UserPacket sender and destination fields, so the relay keeps them in step with the new ones.

package data

import (
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// outMsg is one encoded message for many recipients. Its fields are
// shared and never modified after Receive builds it.
type outMsg struct {
	b     []byte
	key   lossyKey  // coalescing key; zero topic+sender means none
	world *worldMsg // the applied world change, for merging
	from  *peer
}

// lossyKey identifies the lossy stream a message supersedes: one
// sender's messages on one topic.
type lossyKey struct {
	sender string // sid
	topic  string
}

// lossyItem is a queued lossy message. b is nil when a merge of world
// changes has to be encoded before sending.
type lossyItem struct {
	b        []byte
	key      lossyKey
	coalesce bool
	world    *worldMsg
	from     *peer
}

// peer is one participant: a sender (rate limit) and a recipient (two
// bounded queues drained by one writer goroutine).
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

	wake chan struct{} // cap 1: something was queued
	stop chan struct{} // closed by Leave/Close
}

func newPeer(r *Room, sid, identity string, to Sender) *peer {
	return &peer{
		sid: sid, identity: identity, to: to, room: r,
		tokens: float64(r.cfg.Burst), last: r.cfg.Now(),
		rel:   newRing[[]byte](r.cfg.QueueLen),
		lossy: newRing[lossyItem](r.cfg.QueueLen),
		byKey: map[lossyKey]uint64{},
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
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
				if m.world != nil && it.world != nil && !supersedes(m.world, it.world) {
					it.world = mergeWorld(it.world, m.world)
					it.b = nil
				} else {
					it.b, it.world = m.b, m.world
				}
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
	seq := p.lossy.push(lossyItem{b: m.b, key: m.key, coalesce: coalesce, world: m.world, from: m.from})
	if coalesce {
		p.byKey[m.key] = seq
	}
	p.mu.Unlock()
	if dropped {
		st.lossyOverflow.Add(1)
	}
	p.signal()
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

// run is the writer goroutine: reliable first, then lossy, each kind
// only while its channel's buffered amount is under SlowBytes. While a
// channel is slow or not yet open it polls every Tick; in that time lossy
// messages coalesce and drop in the queue and never hold up anyone else.
func (p *peer) run() {
	defer p.room.wg.Done()
	tick := p.room.cfg.Tick
	timer := time.NewTimer(tick)
	timer.Stop()
	defer timer.Stop()
	for {
		if cb := p.takeOverflow(); cb != nil {
			cb(p.sid)
		}
		// Reliable first, strictly: while reliable messages wait (a slow
		// or unopened channel) lossy ones wait too, coalescing, so that a
		// joiner's snapshot always arrives before live world changes.
		retry := p.drainReliable()
		if !retry {
			retry = p.drainLossy()
		}
		if retry {
			timer.Reset(tick)
			select {
			case <-p.stop:
				return
			case <-timer.C:
			}
			continue
		}
		select {
		case <-p.stop:
			return
		case <-p.wake:
		}
	}
}

func (p *peer) takeOverflow() func(string) {
	cb := p.room.cfg.OnReliableOverflow
	if cb == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.overflowed || p.stopped {
		return nil
	}
	p.overflowed = false
	// Once per episode: the flag is set again by the next overflow.
	return cb
}

func (p *peer) stopping() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// drainReliable writes queued reliable messages; it reports whether some
// remain that must be retried after a tick (slow or unopened channel).
func (p *peer) drainReliable() (retry bool) {
	st := &p.room.stats
	for !p.stopping() {
		p.mu.Lock()
		if p.rel.len() == 0 {
			p.mu.Unlock()
			return false
		}
		b := *p.rel.peek()
		p.mu.Unlock()
		if p.to.Buffered(Reliable) > p.room.cfg.SlowBytes {
			return true
		}
		err := p.to.SendData(Reliable, b)
		// A channel not open yet (pion answers io.ErrClosedPipe) keeps
		// the message at the head: the world snapshot is queued at Join,
		// before the subscriber connection's channels open.
		if errors.Is(err, io.ErrClosedPipe) {
			return true
		}
		p.mu.Lock()
		if p.rel.len() > 0 {
			p.rel.pop()
		}
		p.mu.Unlock()
		if err != nil {
			st.sendFailed.Add(1)
			p.room.warn("data send failed", "sid", p.sid, "kind", Reliable, "err", err)
			continue
		}
		st.relayed.Add(1)
		st.relayedBytes.Add(uint64(len(b)))
	}
	return false
}

func (p *peer) drainLossy() (retry bool) {
	st := &p.room.stats
	for !p.stopping() {
		p.mu.Lock()
		if p.lossy.len() == 0 {
			p.mu.Unlock()
			return false
		}
		p.mu.Unlock()
		if p.to.Buffered(Lossy) > p.room.cfg.SlowBytes {
			return true
		}
		p.mu.Lock()
		if p.lossy.len() == 0 {
			p.mu.Unlock()
			return false
		}
		it, seq := p.lossy.pop()
		if it.coalesce && p.byKey[it.key] == seq {
			delete(p.byKey, it.key)
		}
		p.mu.Unlock()
		b := it.b
		if b == nil {
			var err error
			if b, err = encodeWorld(it.from, Lossy, it.key.topic, it.world); err != nil {
				st.sendFailed.Add(1)
				continue
			}
		}
		if err := p.to.SendData(Lossy, b); err != nil {
			// Lossy messages are never retried: a newer one supersedes.
			st.sendFailed.Add(1)
			if !errors.Is(err, io.ErrClosedPipe) {
				p.room.warn("data send failed", "sid", p.sid, "kind", Lossy, "err", err)
			}
			continue
		}
		st.relayed.Add(1)
		st.relayedBytes.Add(uint64(len(b)))
	}
	return false
}

// encodeWorld builds the DataPacket carrying world change m from sender.
func encodeWorld(from *peer, kind Kind, topic string, m *worldMsg) ([]byte, error) {
	dp := &livekit.DataPacket{
		Kind:                livekitKind(kind),
		ParticipantIdentity: from.identity,
		ParticipantSid:      from.sid,
		Value: &livekit.DataPacket_User{User: &livekit.UserPacket{
			ParticipantSid:      from.sid,
			ParticipantIdentity: from.identity,
			Payload:             appendWorldMsg(nil, m),
			Topic:               &topic,
		}},
	}
	return proto.Marshal(dp)
}

func livekitKind(k Kind) livekit.DataPacket_Kind {
	if k == Lossy {
		return livekit.DataPacket_LOSSY
	}
	return livekit.DataPacket_RELIABLE
}

// supersedes reports whether nw changes every key old does, each at a
// stamp no older: then nw alone says all the merge would, and replacing
// old costs no allocation. It is the common case of a client sending its
// avatar's pose under the same keys every frame.
func supersedes(nw, old *worldMsg) bool {
	for k := range old.set {
		if _, ok := nw.set[k]; !ok || nw.tsFor(k) < old.tsFor(k) {
			return false
		}
	}
	for _, k := range old.del {
		if _, ok := nw.set[k]; ok && nw.tsFor(k) >= old.tsFor(k) {
			continue
		}
		if _, ok := slices.BinarySearch(nw.del, k); !ok || nw.tsFor(k) < old.tsFor(k) {
			return false
		}
	}
	return true
}

// mergeWorld combines two queued changes of one sender; per key the
// later stamp wins (the later message on a tie), and keys keep their own
// stamps through "at" so a merge never makes an old value look newer.
func mergeWorld(old, nw *worldMsg) *worldMsg {
	type op struct {
		v   []byte
		del bool
		ts  int64
	}
	ops := make(map[string]op, len(old.set)+len(old.del)+len(nw.set)+len(nw.del))
	add := func(m *worldMsg) {
		for k, v := range m.set {
			t := m.tsFor(k)
			if cur, ok := ops[k]; !ok || t >= cur.ts {
				ops[k] = op{v: v, ts: t}
			}
		}
		for _, k := range m.del {
			t := m.tsFor(k)
			if cur, ok := ops[k]; !ok || t >= cur.ts {
				ops[k] = op{del: true, ts: t}
			}
		}
	}
	add(old)
	add(nw)
	out := &worldMsg{ts: max(old.ts, nw.ts)}
	for k, o := range ops {
		if o.del {
			out.del = append(out.del, k)
		} else {
			if out.set == nil {
				out.set = map[string]json.RawMessage{}
			}
			out.set[k] = o.v
		}
		out.setAt(k, o.ts)
	}
	slices.Sort(out.del)
	return out
}
