package rtc

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"

	"github.com/plexus-chat/plexus/sfu/internal/data"
	"github.com/plexus-chat/plexus/sfu/internal/media"
)

// subscription is one track a participant receives.
type subscription struct {
	track *PublishedTrack
	dt    *media.DownTrack
	tr    *webrtc.RTPTransceiver
}

// dataSender writes relayed data packets to a subscriber's channels
// (data.Sender). The participant joins the data room as it joins the
// room, before its channels open: reliable messages meanwhile (the world
// snapshot first) wait in pending and are flushed in order on open, lossy
// ones are dropped.
type dataSender struct {
	reliable, lossy *webrtc.DataChannel

	mu           sync.Mutex // guards the fields below
	open         bool
	pending      [][]byte
	pendingBytes uint64
}

var errChannelNotOpen = errors.New("rtc: data channel not open")

// maxPendingData bounds the reliable messages held before the channel
// opens.
const maxPendingData = 1024

func (d *dataSender) ch(kind data.Kind) *webrtc.DataChannel {
	if kind == data.Lossy {
		return d.lossy
	}
	return d.reliable
}

// SendData implements data.Sender.
func (d *dataSender) SendData(kind data.Kind, b []byte) error {
	if kind == data.Reliable {
		d.mu.Lock()
		if !d.open {
			defer d.mu.Unlock()
			if len(d.pending) >= maxPendingData {
				return errChannelNotOpen
			}
			d.pending = append(d.pending, b)
			d.pendingBytes += uint64(len(b))
			return nil
		}
		d.mu.Unlock()
	}
	dc := d.ch(kind)
	if dc.ReadyState() != webrtc.DataChannelStateOpen {
		return errChannelNotOpen
	}
	return dc.Send(b)
}

// Buffered implements data.Sender.
func (d *dataSender) Buffered(kind data.Kind) uint64 {
	if kind == data.Reliable {
		d.mu.Lock()
		n := d.pendingBytes
		d.mu.Unlock()
		if n > 0 {
			return n
		}
	}
	return d.ch(kind).BufferedAmount()
}

// OnDrained implements data.DrainNotifier: pion calls fn when the
// channel's buffered amount falls to threshold, so the data room's
// writer resumes at once (pion keeps both until the channel opens).
func (d *dataSender) OnDrained(kind data.Kind, threshold uint64, fn func()) {
	dc := d.ch(kind)
	dc.SetBufferedAmountLowThreshold(threshold)
	dc.OnBufferedAmountLow(fn)
}

// opened flushes what waited for the reliable channel, in order: the
// data room's writer keeps appending to pending until the flush finds it
// empty and marks the channel open.
func (d *dataSender) opened() {
	for {
		d.mu.Lock()
		batch := d.pending
		d.pending, d.pendingBytes = nil, 0
		if len(batch) == 0 {
			d.open = true
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		for _, b := range batch {
			_ = d.reliable.Send(b)
		}
	}
}

// setupSubscriber creates the server's data channels on the subscriber
// connection and installs its callbacks.
func (p *Participant) setupSubscriber() error {
	ordered, unordered := true, false
	var zero uint16
	rel, err := p.sub.CreateDataChannel("_reliable", &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		return fmt.Errorf("rtc: reliable data channel: %w", err)
	}
	lossy, err := p.sub.CreateDataChannel("_lossy", &webrtc.DataChannelInit{Ordered: &unordered, MaxRetransmits: &zero})
	if err != nil {
		return fmt.Errorf("rtc: lossy data channel: %w", err)
	}
	p.dcs = &dataSender{reliable: rel, lossy: lossy}
	rel.OnOpen(p.dcs.opened)
	p.sub.OnICECandidate(func(c *webrtc.ICECandidate) {
		p.sendCandidate(c, livekit.SignalTarget_SUBSCRIBER)
	})
	p.sub.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		p.log.Debug("subscriber ICE", "state", s.String())
	})
	return nil
}

// subscribe starts forwarding t to p.
func (p *Participant) subscribe(t *PublishedTrack) {
	r := t.Receiver()
	if r == nil || t.owner == p {
		return
	}
	p.mu.Lock()
	if p.closed || p.subs[t.sid] != nil || !p.claims.CanSubscribe {
		p.mu.Unlock()
		return
	}
	// Reserve the slot so that a concurrent subscribe does not add a
	// second transceiver.
	s := &subscription{track: t}
	p.subs[t.sid] = s
	p.mu.Unlock()

	dt, err := media.NewDownTrack(r, media.DownTrackConfig{
		SubscriberID: p.sid,
		StreamID:     t.owner.sid + "|" + t.sid,
		TrackID:      t.sid,
		Logger:       p.log.With("track", t.sid),
	})
	if err != nil {
		p.log.Info("cannot subscribe", "track", t.sid, "err", err)
		p.dropSub(t.sid, s)
		return
	}
	tr, err := p.addSender(dt)
	if err != nil {
		dt.Close()
		p.log.Info("cannot subscribe", "track", t.sid, "err", err)
		p.dropSub(t.sid, s)
		return
	}
	dt.Start(tr.Sender())
	p.mu.Lock()
	s.dt, s.tr = dt, tr
	gone := p.closed || p.subs[t.sid] != s
	p.mu.Unlock()
	if gone {
		dt.Close()
		_ = p.sub.RemoveTrack(tr.Sender())
		return
	}
	if t.kind == livekit.TrackType_VIDEO {
		p.alloc.Add(dt)
	}
	t.mu.Lock()
	first := !t.everWatched
	t.everWatched = true
	t.mu.Unlock()
	if first {
		// LiveKit tells a publisher when its track first gets a
		// subscriber (SDKs may delay encoding until then).
		t.owner.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_TrackSubscribed{
			TrackSubscribed: &livekit.TrackSubscribed{TrackSid: t.sid},
		}})
	}
	p.negotiate(false)
}

// addSender adds dt to the subscriber connection on a transceiver that
// an earlier unsubscribe left idle, if there is one: without reuse every
// subscribe adds an m-line for good and the SDP grows with churn.
// livekit-server reuses transceivers the same way, with pion's AddTrack,
// for clients of protocol 4 and later. AddTrack makes new transceivers
// sendrecv, so a removed track leaves its m-line recvonly, not inactive:
// a pion client stops its receiver on every offer that says inactive, and
// one that saw two such offers can never receive on that m-line again.
func (p *Participant) addSender(dt *media.DownTrack) (*webrtc.RTPTransceiver, error) {
	sender, err := p.sub.AddTrack(dt)
	if err != nil {
		return nil, err
	}
	for _, tr := range p.sub.GetTransceivers() {
		if tr.Sender() == sender {
			return tr, nil
		}
	}
	_ = p.sub.RemoveTrack(sender)
	return nil, errors.New("rtc: the new sender has no transceiver")
}

func (p *Participant) dropSub(sid string, s *subscription) {
	p.mu.Lock()
	if p.subs[sid] == s {
		delete(p.subs, sid)
	}
	p.mu.Unlock()
}

// unsubscribe stops forwarding track sid to p.
func (p *Participant) unsubscribe(sid string) {
	p.mu.Lock()
	s := p.subs[sid]
	delete(p.subs, sid)
	closed := p.closed
	p.mu.Unlock()
	if s == nil || s.dt == nil {
		return
	}
	p.alloc.Remove(s.dt)
	s.dt.Close()
	if closed {
		return
	}
	if err := p.sub.RemoveTrack(s.tr.Sender()); err != nil {
		p.log.Debug("remove track", "err", err)
	}
	p.negotiate(false)
}

func (p *Participant) handleSubscription(u *livekit.UpdateSubscription) {
	sids := append([]string(nil), u.GetTrackSids()...)
	for _, pt := range u.GetParticipantTracks() {
		sids = append(sids, pt.GetTrackSids()...)
	}
	for _, sid := range sids {
		if !u.GetSubscribe() {
			p.unsubscribe(sid)
			continue
		}
		t := p.room.track(sid)
		if t == nil || (t.owner.hidden() && t.owner != p) {
			p.sendRequestError(livekit.RequestResponse_NOT_FOUND, "unknown track "+sid, nil)
			continue
		}
		p.subscribe(t)
	}
}

// handleTrackSettings applies a subscriber's settings: disabled pauses
// the down track; requested dimensions (LiveKit gives them precedence)
// or else the requested quality cap the simulcast layer.
func (p *Participant) handleTrackSettings(s *livekit.UpdateTrackSettings) {
	for _, sid := range s.GetTrackSids() {
		p.mu.Lock()
		sub := p.subs[sid]
		p.mu.Unlock()
		if sub == nil || sub.dt == nil {
			p.sendRequestError(livekit.RequestResponse_NOT_FOUND, "not subscribed to "+sid, nil)
			continue
		}
		sub.dt.SetMuted(s.GetDisabled())
		if s.GetWidth() > 0 && s.GetHeight() > 0 {
			sub.dt.SetRequestedDimensions(s.GetWidth(), s.GetHeight())
			sub.dt.SetRequestedQuality(2)
		} else {
			sub.dt.SetRequestedDimensions(0, 0)
			q := qualityLayer(s.GetQuality())
			if q == media.LayerNone {
				sub.dt.SetMuted(true)
			}
			sub.dt.SetRequestedQuality(q)
		}
	}
}

func jsonCandidate(c webrtc.ICECandidateInit) (string, error) {
	b, err := json.Marshal(c)
	return string(b), err
}

func parseCandidate(s string) (webrtc.ICECandidateInit, error) {
	var c webrtc.ICECandidateInit
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return c, err
	}
	if c.Candidate == "" && c.SDPMid == nil && c.SDPMLineIndex == nil {
		return c, errors.New("empty candidate")
	}
	return c, nil
}
