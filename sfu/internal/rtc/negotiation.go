package rtc

import (
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
)

// Subscriber negotiation. The server offers on the subscriber connection;
// one offer is in flight at a time (p.negotiating) and changes meanwhile
// only ask for another round (p.again). Each offer starts the answer
// timer: a client that does not answer within Config.NegotiationTimeout
// would hold every later subscription change back for ever, so it is
// told to reconnect and removed, as livekit-server does when its
// negotiationFailedTimeout (15 s) passes: a LeaveRequest with action
// RECONNECT and reason STATE_MISMATCH ("full reconnect").

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

// offer creates, applies and sends a subscriber offer; p.negotiating is
// set.
func (p *Participant) offer(iceRestart bool) {
	var opts *webrtc.OfferOptions
	if iceRestart {
		opts = &webrtc.OfferOptions{ICERestart: true}
		p.mu.Lock()
		p.subCandCount = 0 // the client gathers a new generation
		p.mu.Unlock()
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
	p.sendOffer(offer.SDP)
}

// sendOffer starts the answer timer and sends the offer. The timer is
// armed first so that an answer, however quick, finds it and stops it.
func (p *Participant) sendOffer(sdp string) {
	p.mu.Lock()
	p.offerSeq++
	seq := p.offerSeq
	if p.answerTimer != nil {
		p.answerTimer.Stop()
	}
	if !p.closed {
		p.answerTimer = time.AfterFunc(p.room.mgr.cfg.NegotiationTimeout, func() { p.answerOverdue(seq) })
	}
	p.mu.Unlock()
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Offer{Offer: &livekit.SessionDescription{
		Type: "offer", Sdp: sdp,
	}}})
}

// answerOverdue runs when offer seq went unanswered for the negotiation
// timeout. While the signalling connection is down the client cannot
// answer: the resume sends the offer again and restarts the timer.
func (p *Participant) answerOverdue(seq uint64) {
	p.mu.Lock()
	overdue := !p.closed && p.negotiating && p.offerSeq == seq && p.conn != nil
	p.mu.Unlock()
	if !overdue {
		return
	}
	p.log.Info("the subscriber did not answer an offer; asking the client to reconnect",
		"timeout", p.room.mgr.cfg.NegotiationTimeout)
	p.room.leaveWith(p, livekit.DisconnectReason_STATE_MISMATCH, &livekit.LeaveRequest{
		CanReconnect: true,
		Reason:       livekit.DisconnectReason_STATE_MISMATCH,
		Action:       livekit.LeaveRequest_RECONNECT,
	})
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
	if p.answerTimer != nil {
		p.answerTimer.Stop()
		p.answerTimer = nil
	}
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

// resumeNegotiation runs after a resume: an offer sent while the
// connection was down was lost, so it is sent again; if the subscriber's
// ICE has failed meanwhile, ICE is restarted.
func (p *Participant) resumeNegotiation() {
	p.mu.Lock()
	negotiating := p.negotiating
	p.mu.Unlock()
	state := p.sub.ICEConnectionState()
	restart := state == webrtc.ICEConnectionStateDisconnected || state == webrtc.ICEConnectionStateFailed
	ld := p.sub.PendingLocalDescription()
	switch {
	case !negotiating:
		if restart {
			p.negotiate(true)
		}
	case ld == nil:
		// The offer is being made right now and will reach the new
		// connection; the restart, if needed, follows its answer.
		p.mu.Lock()
		p.again, p.restartICE = p.again || restart, p.restartICE || restart
		p.mu.Unlock()
	case !restart:
		p.sendOffer(ld.SDP)
	default:
		// The lost offer will never be answered: withdraw it and offer
		// again with new ICE credentials.
		if err := p.sub.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback}); err != nil {
			p.log.Info("withdrawing the lost subscriber offer failed", "err", err)
		}
		p.offer(true)
	}
}
