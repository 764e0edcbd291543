package rtc

import (
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"

	"github.com/plexus-chat/plexus/sfu/internal/media"
	"github.com/plexus-chat/plexus/sfu/internal/signal"
)

// Participant is one client in a room.
type Participant struct {
	room     *Room
	sid      string
	identity string
	log      *slog.Logger
	joinedAt time.Time
	claims   signal.Claims

	pub   *webrtc.PeerConnection
	sub   *webrtc.PeerConnection
	alloc *media.Allocator
	dcs   *dataSender

	// closedCh is closed when the participant has left.
	closedCh chan struct{}

	mu sync.Mutex // guards the fields below
	// conn is the current signalling connection, nil between a dropped
	// connection and a resume.
	conn *signal.Conn
	// attached is set once the JoinResponse is queued; until then
	// messages for the client wait in early, so none overtakes it.
	attached      bool
	early         []*livekit.SignalResponse
	autoSubscribe bool
	version       uint32
	closed        bool
	// graceTimer removes the participant if its signalling connection
	// does not come back.
	graceTimer *time.Timer
	// pending are AddTrackRequests waiting for their media, by cid, in
	// arrival order in pendingOrder.
	pending      map[string]*PublishedTrack
	pendingOrder []string
	// published are this participant's tracks by sid; byMid finds a
	// track's further simulcast layers.
	published map[string]*PublishedTrack
	byMid     map[string]*PublishedTrack
	// subs are the tracks this participant receives, by track sid.
	subs map[string]*subscription
	// Subscriber negotiation: negotiating while an offer waits for its
	// answer; again when another round is needed after it; restartICE
	// when that round must restart ICE.
	negotiating, again, restartICE bool
	// offerSeq numbers the offers sent; answerTimer waits for the answer
	// to the latest.
	offerSeq    uint64
	answerTimer *time.Timer
	// Remote candidates that arrived before the remote description, and
	// the count accepted in the current ICE generation (bounded by
	// maxRemoteCandidates).
	pubCands, subCands         []webrtc.ICECandidateInit
	pubCandCount, subCandCount int
	// pubUfrag is the ICE ufrag of the last publisher offer.
	pubUfrag string
	// dataChannels counts the channels the client opened.
	dataChannels int
}

// Identity returns the participant's identity.
func (p *Participant) Identity() string { return p.identity }

// SID returns the participant's "PA_" sid.
func (p *Participant) SID() string { return p.sid }

// hidden reports the hidden grant: others neither see the participant
// nor receive its tracks. The claims never change after newParticipant.
func (p *Participant) hidden() bool { return p.claims.Hidden }

// send queues msg on the participant's signalling connection. Messages
// while the connection is down (awaiting a resume) are dropped; the
// client resyncs with SyncState. Conn.Send only appends to an in-memory
// queue, so it is called under p.mu: that keeps messages from several
// goroutines in one order.
func (p *Participant) send(msg *livekit.SignalResponse) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.conn != nil:
		_ = p.conn.Send(msg)
	case !p.attached && !p.closed && len(p.early) < maxEarly:
		p.early = append(p.early, msg)
	}
}

// maxEarly bounds the messages held before the JoinResponse is queued.
const maxEarly = 256

func (p *Participant) sendRequestError(reason livekit.RequestResponse_Reason, msg string, fill func(*livekit.RequestResponse)) {
	rr := &livekit.RequestResponse{Reason: reason, Message: msg}
	if fill != nil {
		fill(rr)
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_RequestResponse{RequestResponse: rr}})
}

// info returns the participant's ParticipantInfo; bump increments its
// version first (every change to what others see must carry a higher
// version, or the SDKs ignore it).
func (p *Participant) info(bump bool) *livekit.ParticipantInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.infoLocked(bump)
}

func (p *Participant) infoLocked(bump bool) *livekit.ParticipantInfo {
	if bump {
		p.version++
	}
	state := livekit.ParticipantInfo_ACTIVE
	if p.closed {
		state = livekit.ParticipantInfo_DISCONNECTED
	}
	tracks := make([]*livekit.TrackInfo, 0, len(p.published))
	for _, t := range p.published {
		if t.visible() {
			tracks = append(tracks, t.Info())
		}
	}
	sort.Slice(tracks, func(i, j int) bool { return tracks[i].Sid < tracks[j].Sid })
	c := p.claims
	return &livekit.ParticipantInfo{
		Sid:         p.sid,
		Identity:    p.identity,
		Name:        c.Name,
		Metadata:    c.Metadata,
		Attributes:  c.Attributes,
		State:       state,
		Tracks:      tracks,
		JoinedAt:    p.joinedAt.Unix(),
		JoinedAtMs:  p.joinedAt.UnixMilli(),
		Version:     p.version,
		Kind:        livekit.ParticipantInfo_STANDARD,
		IsPublisher: len(tracks) > 0,
		Permission: &livekit.ParticipantPermission{
			CanSubscribe:   c.CanSubscribe,
			CanPublish:     c.CanPublish,
			CanPublishData: c.CanPublishData,
			Hidden:         c.Hidden,
		},
	}
}

// HandleRequest implements signal.Session. The reader loop calls it
// serially, so requests of one client are handled in order.
func (p *Participant) HandleRequest(req *livekit.SignalRequest) {
	switch m := req.Message.(type) {
	case *livekit.SignalRequest_Offer:
		p.handlePublisherOffer(m.Offer)
	case *livekit.SignalRequest_Answer:
		p.handleSubscriberAnswer(m.Answer)
	case *livekit.SignalRequest_Trickle:
		p.handleTrickle(m.Trickle)
	case *livekit.SignalRequest_AddTrack:
		p.handleAddTrack(m.AddTrack)
	case *livekit.SignalRequest_Mute:
		p.handleMute(m.Mute)
	case *livekit.SignalRequest_Subscription:
		p.handleSubscription(m.Subscription)
	case *livekit.SignalRequest_TrackSetting:
		p.handleTrackSettings(m.TrackSetting)
	case *livekit.SignalRequest_Leave:
		p.room.leave(p, livekit.DisconnectReason_CLIENT_INITIATED, false)
	case *livekit.SignalRequest_Ping:
		p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Pong{Pong: p.room.now().UnixMilli()}})
	case *livekit.SignalRequest_PingReq:
		p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_PongResp{PongResp: &livekit.Pong{
			LastPingTimestamp: m.PingReq.GetTimestamp(),
			Timestamp:         p.room.now().UnixMilli(),
		}}})
	case *livekit.SignalRequest_SyncState:
		p.handleSyncState(m.SyncState)
	case *livekit.SignalRequest_Simulate:
		p.handleSimulate(m.Simulate)
	case *livekit.SignalRequest_UpdateLayers, *livekit.SignalRequest_SubscriptionPermission,
		*livekit.SignalRequest_UpdateAudioTrack, *livekit.SignalRequest_UpdateVideoTrack:
		// Accepted and ignored: layer dimensions come with AddTrack and
		// subscription permissions are not enforced beyond grants.
	case *livekit.SignalRequest_UpdateMetadata:
		p.sendRequestError(livekit.RequestResponse_NOT_ALLOWED, "metadata updates are not supported", func(rr *livekit.RequestResponse) {
			rr.RequestId = m.UpdateMetadata.GetRequestId()
			rr.Request = &livekit.RequestResponse_UpdateMetadata{UpdateMetadata: m.UpdateMetadata}
		})
	default:
		p.sendRequestError(livekit.RequestResponse_UNSUPPORTED_TYPE, "unsupported signal request", nil)
	}
}

// handleSimulate plays the one scenario of LiveKit's that concerns the
// asking client alone and that its SDKs test their recovery with: a
// leave asking for a full reconnect, which the client answers by joining
// again with new peer connections (livekit-server does the same). The
// others (node failure, migration, server leave, speaker updates, a
// switch to TCP or TLS) are for LiveKit's own clusters and are ignored.
func (p *Participant) handleSimulate(sc *livekit.SimulateScenario) {
	if !sc.GetLeaveRequestFullReconnect() {
		return
	}
	p.log.Info("the client asked for a full reconnect")
	p.room.leaveWith(p, livekit.DisconnectReason_CLIENT_INITIATED, &livekit.LeaveRequest{
		CanReconnect: true,
		Reason:       livekit.DisconnectReason_CLIENT_INITIATED,
		Action:       livekit.LeaveRequest_RECONNECT,
	})
}

// ConnClosed implements signal.Session: the connection dropped. Unless
// the participant left, it has ReconnectGrace to resume.
func (p *Participant) ConnClosed(c *signal.Conn) {
	p.mu.Lock()
	if p.conn != c || p.closed {
		p.mu.Unlock()
		return
	}
	p.conn = nil
	grace := p.room.mgr.cfg.ReconnectGrace
	p.graceTimer = time.AfterFunc(grace, func() {
		p.mu.Lock()
		gone := p.conn == nil && !p.closed
		p.mu.Unlock()
		if gone {
			p.room.leave(p, livekit.DisconnectReason_SIGNAL_CLOSE, false)
		}
	})
	p.mu.Unlock()
	p.log.Debug("signalling connection dropped; waiting for a resume", "grace", grace)
}

// attach makes c the participant's connection (join or resume); the
// previous connection, if any, is closed.
func (p *Participant) attach(c *signal.Conn) (ok bool) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	old := p.conn
	p.conn = c
	p.attached = true
	if p.graceTimer != nil {
		p.graceTimer.Stop()
		p.graceTimer = nil
	}
	p.mu.Unlock()
	if old != nil && old != c {
		old.Close(nil)
	}
	return true
}

// close tears the participant down; the room has already removed it.
// leave, if set, is sent to the client first.
func (p *Participant) close(leave *livekit.LeaveRequest) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	c := p.conn
	p.conn = nil
	if p.graceTimer != nil {
		p.graceTimer.Stop()
	}
	if p.answerTimer != nil {
		p.answerTimer.Stop()
	}
	subs := p.subs
	p.subs = map[string]*subscription{}
	var tracks []*PublishedTrack
	for _, t := range p.published {
		tracks = append(tracks, t)
	}
	for _, t := range p.pending {
		tracks = append(tracks, t)
	}
	p.published, p.pending, p.byMid = map[string]*PublishedTrack{}, map[string]*PublishedTrack{}, map[string]*PublishedTrack{}
	p.mu.Unlock()
	close(p.closedCh)
	if c != nil {
		c.Close(leave)
	}
	for _, s := range subs {
		s.dt.Close()
	}
	for _, t := range tracks {
		t.close()
	}
	_ = p.pub.Close()
	_ = p.sub.Close()
}

func (p *Participant) handleSyncState(s *livekit.SyncState) {
	// After a resume the client reports what it believes; the server's
	// view wins. Re-send everyone's state so the client converges.
	p.room.sendFullUpdate(p)
}
