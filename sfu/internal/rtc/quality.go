package rtc

import (
	"github.com/livekit/protocol/livekit"

	"github.com/plexus-chat/plexus/sfu/internal/media"
)

// connectionQuality scores p from the loss its subscribers' receiver
// reports show on its downlink and the sequence gaps on its uplink. A
// simple table, as the brief allows: LiveKit's MOS model needs far more
// inputs than loss.
func (p *Participant) connectionQuality() (livekit.ConnectionQuality, float32) {
	dts, tracks := p.media()
	var loss float64
	var n int
	for _, dt := range dts {
		st := dt.Stats()
		if st.Packets > 0 {
			loss += st.FractionLost
			n++
		}
	}
	var recvPkts, recvLost uint64
	for _, t := range tracks {
		if r := t.Receiver(); r != nil {
			st := r.Stats()
			recvPkts += st.Packets
			recvLost += st.Lost
		}
	}
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

// media returns p's down tracks and published tracks, so that their
// statistics are read without holding p.mu.
func (p *Participant) media() ([]*media.DownTrack, []*PublishedTrack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dts := make([]*media.DownTrack, 0, len(p.subs))
	for _, s := range p.subs {
		if s.dt != nil {
			dts = append(dts, s.dt)
		}
	}
	tracks := make([]*PublishedTrack, 0, len(p.published))
	for _, t := range p.published {
		tracks = append(tracks, t)
	}
	return dts, tracks
}
