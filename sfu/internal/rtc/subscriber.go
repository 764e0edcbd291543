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

// negotiate sends the subscriber a new offer, or, if one is in flight,
// marks that another round is needed once it is answered.
func (p *Participant) negotiate(iceRestart bool) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if p.negotiating {
		p.again = true
		p.restartICE = p.restartICE || iceRestart
		p.mu.Unlock()
		return
	}
	p.negotiating = true
	p.mu.Unlock()
	p.offer(iceRestart)
}

func (p *Participant) offer(iceRestart bool) {
	var opts *webrtc.OfferOptions
	if iceRestart {
		opts = &webrtc.OfferOptions{ICERestart: true}
	}
	offer, err := p.sub.CreateOffer(opts)
	if err == nil {
		err = p.sub.SetLocalDescription(offer)
	}
	if err != nil {
		p.mu.Lock()
		p.negotiating = false
		closed := p.closed
		p.mu.Unlock()
		if !closed {
			p.log.Info("subscriber offer failed", "err", err)
		}
		return
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Offer{Offer: &livekit.SessionDescription{
		Type: "offer", Sdp: offer.SDP,
	}}})
}

func (p *Participant) handleSubscriberAnswer(sd *livekit.SessionDescription) {
	if sd.GetType() != "answer" {
		p.sendRequestError(livekit.RequestResponse_INVALID_REQUEST, "subscriber answer has type "+sd.GetType(), nil)
		return
	}
	if p.sub.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		p.sendRequestError(livekit.RequestResponse_INVALID_REQUEST, "no subscriber offer is waiting for an answer", nil)
		return
	}
	if err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sd.GetSdp()}); err != nil {
		p.log.Info("subscriber answer refused", "err", err)
		p.sendRequestError(livekit.RequestResponse_INVALID_REQUEST, "answer refused: "+err.Error(), nil)
		// Roll back to stable so the next change can offer again.
		_ = p.sub.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
	}
	p.flushCandidates(livekit.SignalTarget_SUBSCRIBER)
	p.mu.Lock()
	again, restart := p.again, p.restartICE
	p.again, p.restartICE = false, false
	if !again {
		p.negotiating = false
	}
	p.mu.Unlock()
	if again {
		p.offer(restart)
	}
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
	tr, err := p.sub.AddTransceiverFromTrack(dt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
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
		if t == nil {
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
