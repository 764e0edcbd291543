package data

import (
	"errors"
	"io"
	"time"
)

// run is the writer goroutine: reliable first, then lossy, each kind
// only while its channel's buffered amount is under SlowBytes. While a
// channel is slow or not yet open it polls every Tick (or sooner, told by
// a DrainNotifier that the channel drained), and a lossy world delta
// waits out Config.LossyDeltaInterval after the previous one; in that
// time lossy messages coalesce and drop in the queue, world changes
// merge per key, and neither holds up anyone else.
func (p *peer) run() {
	defer p.room.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		if cb := p.takeOverflow(); cb != nil {
			cb(p.sid)
		}
		// What was queued before this point is drained next: a wake
		// left by a message that arrived during a wait would only wake
		// the writer again for nothing.
		p.mu.Lock()
		p.lossyHeld = false
		p.mu.Unlock()
		select {
		case <-p.wake:
		default:
		}
		// Reliable first, strictly: while reliable messages wait (a slow
		// or unopened channel) lossy ones wait too, coalescing, so that a
		// joiner's snapshot always arrives before live world changes.
		wait, held := p.drain(Reliable)
		if wait == 0 {
			wait, held = p.drain(Lossy)
		}
		if wait > 0 {
			// A slow channel does not listen for wakes: every queued
			// message would wake the writer for nothing. A held lossy
			// channel does, for reliable messages, which lossy ones no
			// longer send while it is held.
			wake := p.wake
			if !held {
				wake = nil
			}
			timer.Reset(wait)
			select {
			case <-p.stop:
				return
			case <-timer.C:
			case <-p.drained:
				timer.Stop() // Go 1.23 timers: no stale tick to drain
			case <-wake:
				timer.Stop()
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

// drain writes what waits on kind's channel; it returns, when some
// remains that must wait (a slow or unopened channel, a lossy delta
// inside its interval), how long until the next try, else 0, and
// whether the lossy channel is held for the interval (Config.LossyDeltaInterval).
//
// Pending world changes go out as one delta ahead of the packets queued
// when it is taken, and those packets go next, before the following
// delta: so a delta never falls behind a packet queued after one of its
// changes (the queue and the pending changes are looked at under one
// lock), may overtake packets queued before its changes, and a stream of
// changes cannot starve the queue. The exception is a joiner's snapshot,
// which precedes every delta.
func (p *peer) drain(kind Kind) (wait time.Duration, held bool) {
	var mark uint64 // queued packets with seq below mark go before the next delta
	for !p.stopping() {
		p.mu.Lock()
		world := len(p.world[kind]) > 0 && !(kind == Reliable && p.snapFirst)
		head, queued := p.rel.head, p.rel.len()
		if kind == Lossy {
			head, queued = p.lossy.head, p.lossy.len()
		}
		p.mu.Unlock()
		if !world && queued == 0 {
			if kind == Lossy {
				// Just after a delta the next waits out the interval
				// anyway: hold the channel now rather than be woken by
				// the next change only to hold it then.
				if d := p.lossyDeltaDue - mono(); d > 0 && !p.lossyFull() {
					return d, p.hold()
				}
			}
			return 0, false
		}
		if p.to.Buffered(kind) > p.room.slowBytes[kind] {
			return p.room.cfg.Tick, false // meanwhile lossy messages coalesce, changes merge
		}
		var again bool
		switch {
		case world && (queued == 0 || head >= mark):
			if kind == Lossy {
				// The packets queued after these changes wait with
				// them, for at most the interval.
				if d := p.lossyDeltaDue - mono(); d > 0 && !p.lossyFull() {
					return d, p.hold()
				}
			}
			mark = head + uint64(queued)
			again = p.sendWorld(kind)
		case kind == Reliable:
			again = p.sendReliable()
		default:
			p.sendLossy()
		}
		if again {
			return p.room.cfg.Tick, false
		}
	}
	return 0, false
}

func (p *peer) lossyFull() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lossyFullLocked()
}

// hold marks the lossy channel held until the writer's timer fires; it
// returns true.
func (p *peer) hold() bool {
	p.mu.Lock()
	p.lossyHeld = true
	p.mu.Unlock()
	return true
}

// sendReliable writes the reliable message at the head of the queue; it
// reports whether it must be retried (the channel is not open yet).
func (p *peer) sendReliable() (retry bool) {
	st := &p.room.stats
	p.mu.Lock()
	if p.rel.len() == 0 {
		p.mu.Unlock()
		return false
	}
	b := *p.rel.peek()
	p.mu.Unlock()
	err := p.to.SendData(Reliable, b)
	// A channel not open yet (pion answers io.ErrClosedPipe) keeps the
	// message at the head: the world snapshot is queued at Join, before
	// the subscriber connection's channels open.
	if errors.Is(err, io.ErrClosedPipe) {
		return true
	}
	p.mu.Lock()
	if p.rel.len() > 0 {
		p.rel.pop()
	}
	p.snapFirst = false
	p.mu.Unlock()
	if err != nil {
		st.sendFailed.Add(1)
		p.room.warn("data send failed", "sid", p.sid, "kind", Reliable, "err", err)
		return false
	}
	st.relayed.Add(1)
	st.relayedBytes.Add(uint64(len(b)))
	return false
}

// sendLossy writes the oldest queued lossy message, once: lossy messages
// are never retried, a newer one supersedes.
func (p *peer) sendLossy() {
	st := &p.room.stats
	p.mu.Lock()
	if p.lossy.len() == 0 {
		p.mu.Unlock()
		return
	}
	it, seq := p.lossy.pop()
	if it.coalesce && p.byKey[it.key] == seq {
		delete(p.byKey, it.key)
	}
	p.mu.Unlock()
	if err := p.to.SendData(Lossy, it.b); err != nil {
		st.sendFailed.Add(1)
		if !errors.Is(err, io.ErrClosedPipe) {
			p.room.warn("data send failed", "sid", p.sid, "kind", Lossy, "err", err)
		}
		return
	}
	st.relayed.Add(1)
	st.relayedBytes.Add(uint64(len(it.b)))
}

// sendWorld writes the world changes pending on kind as one delta (or a
// few, split at the packet size): every change queued since the last
// one, each key's latest only. The batch is whatever arrived while the
// writer was busy: one change under light load, sent at once, more as
// the load grows, so the packets written per second stay bounded by
// what the recipient and the server can take, not by the senders' rate.
// It reports whether the changes must be retried after a tick.
func (p *peer) sendWorld(kind Kind) (retry bool) {
	st := &p.room.stats
	p.mu.Lock()
	batch := p.world[kind]
	p.world[kind], p.spare[kind] = p.spare[kind], nil
	p.worldBytes[kind] = 0
	p.mu.Unlock()

	// The reliable Sender may keep the bytes (queued until its channel
	// opens); lossy ones are copied by SCTP before SendData returns.
	fresh := kind == Reliable
	var closed bool
	err := p.delta.encode(kind, batch, fresh, func(b []byte, n int) error {
		err := p.to.SendData(kind, b)
		switch {
		case err == nil:
			st.relayed.Add(1)
			st.relayedBytes.Add(uint64(len(b)))
			st.deltas.Add(1)
			st.deltaEntries.Add(uint64(n))
		case errors.Is(err, io.ErrClosedPipe):
			closed = true
			return err
		default:
			st.sendFailed.Add(1)
			p.room.warn("data send failed", "sid", p.sid, "kind", kind, "err", err)
		}
		return nil
	})
	if err != nil && !closed {
		st.sendFailed.Add(1)
		p.room.warn("encoding world delta", "sid", p.sid, "err", err)
	}

	if err == nil && !closed {
		now := mono()
		if kind == Lossy {
			p.lossyDeltaDue = now + p.room.cfg.LossyDeltaInterval
		}
		if h := p.room.cfg.RelayLatency; h != nil {
			for _, c := range batch {
				h.Record(now - c.at)
			}
		}
	}

	p.mu.Lock()
	if closed {
		// The channel is not open yet: keep the changes for the next
		// try, merged with those that arrived meanwhile (a part already
		// written is written again, which LWW makes harmless).
		for k, c := range batch {
			p.world[kind].put(k, c)
		}
		p.worldBytes[kind] = 0
		for _, c := range p.world[kind] {
			p.worldBytes[kind] += c.size
		}
	}
	clear(batch)
	p.spare[kind] = batch
	p.mu.Unlock()
	return closed
}
