package rtc

import (
	"github.com/livekit/protocol/livekit"
)

// connectionQuality scores p from the loss its subscribers' receiver
// reports show on its downlink and the sequence gaps on its uplink. A
// simple table, as the brief allows: LiveKit's MOS model needs far more
// inputs than loss.
func (p *Participant) connectionQuality() (livekit.ConnectionQuality, float32) {
	p.mu.Lock()
	var loss float64
	var n int
	for _, s := range p.subs {
		if s.dt == nil {
			continue
		}
		st := s.dt.Stats()
		if st.Packets > 0 {
			loss += st.FractionLost
			n++
		}
	}
	var recvPkts, recvLost uint64
	for _, t := range p.published {
		if r := t.Receiver(); r != nil {
			st := r.Stats()
			recvPkts += st.Packets
			recvLost += st.Lost
		}
	}
	p.mu.Unlock()
	down := 0.0
	if n > 0 {
		down = loss / float64(n)
	}
	up := 0.0
	if recvPkts+recvLost > 0 {
		up = float64(recvLost) / float64(recvPkts+recvLost)
	}
	worst := max(down, up)
	switch {
	case worst < 0.02:
		return livekit.ConnectionQuality_EXCELLENT, 5 - float32(worst*50)
	case worst < 0.08:
		return livekit.ConnectionQuality_GOOD, 4 - float32(worst*10)
	default:
		return livekit.ConnectionQuality_POOR, 2
	}
}
