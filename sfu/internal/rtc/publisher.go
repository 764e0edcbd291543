package rtc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-chat/plexus/sfu/internal/data"
	"github.com/plexus-chat/plexus/sfu/internal/media"
)

// setupPublisher installs the publisher connection's callbacks.
func (p *Participant) setupPublisher() {
	p.pub.OnICECandidate(func(c *webrtc.ICECandidate) {
		p.sendCandidate(c, livekit.SignalTarget_PUBLISHER)
	})
	p.pub.OnTrack(p.onTrack)
	p.pub.OnDataChannel(func(dc *webrtc.DataChannel) {
		p.mu.Lock()
		p.dataChannels++
		over := p.dataChannels > maxDataChannels
		p.mu.Unlock()
		if over {
			// pion runs a read loop per channel: a client opening
			// thousands would hold as many goroutines. Closed inside
			// this callback, before pion opens it, none is started.
			_ = dc.Close()
			return
		}
		var kind data.Kind
		switch dc.Label() {
		case "_reliable":
			kind = data.Reliable
		case "_lossy":
			kind = data.Lossy
		default:
			return // other channels (data tracks) are not relayed
		}
		dc.OnMessage(func(msg webrtc.DataChannelMessage) {
			p.onData(kind, msg.Data)
		})
	})
	p.pub.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		p.log.Debug("publisher ICE", "state", s.String())
	})
}

// maxDataChannels bounds the data channels a client may open on its
// publisher connection: LiveKit clients open "_reliable" and "_lossy".
const maxDataChannels = 8

func (p *Participant) onData(kind data.Kind, b []byte) {
	p.mu.Lock()
	canPublish := p.claims.CanPublishData
	p.mu.Unlock()
	if err := p.room.data.Receive(p.sid, kind, b, canPublish); err != nil {
		p.room.mgr.dataErrors.Add(1)
		if ok, n := p.room.mgr.lim.Allow("data:" + err.Error()); ok {
			p.log.Info("data packet refused", "err", err, "suppressed", n)
		}
	}
}

func (p *Participant) sendCandidate(c *webrtc.ICECandidate, target livekit.SignalTarget) {
	if c == nil {
		return
	}
	init := c.ToJSON()
	b, err := jsonCandidate(init)
	if err != nil {
		return
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Trickle{Trickle: &livekit.TrickleRequest{
		CandidateInit: b, Target: target,
	}}})
}

func (p *Participant) handleTrickle(t *livekit.TrickleRequest) {
	init, err := parseCandidate(t.GetCandidateInit())
	if err != nil {
		p.sendRequestError(livekit.RequestResponse_INVALID_REQUEST, "malformed ICE candidate", func(rr *livekit.RequestResponse) {
			rr.Request = &livekit.RequestResponse_Trickle{Trickle: t}
		})
		return
	}
	pc := p.pub
	if t.GetTarget() == livekit.SignalTarget_SUBSCRIBER {
		pc = p.sub
	}
	// Asked of pion before taking p.mu (no pion calls under it). Offers,
	// answers and candidates are all handled on the reader loop, one at a
	// time, so the remote description cannot be set meanwhile and the
	// candidate cannot miss the flush that follows it.
	haveRemote := pc.RemoteDescription() != nil
	sub := t.GetTarget() == livekit.SignalTarget_SUBSCRIBER
	p.mu.Lock()
	n := &p.pubCandCount
	if sub {
		n = &p.subCandCount
	}
	if *n >= maxRemoteCandidates {
		p.mu.Unlock()
		if ok, k := p.room.mgr.lim.Allow("candidates"); ok {
			p.log.Info("remote ICE candidate over the limit dropped", "suppressed", k)
		}
		return
	}
	*n++
	if !haveRemote {
		if sub {
			p.subCands = append(p.subCands, init)
		} else {
			p.pubCands = append(p.pubCands, init)
		}
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	if err := pc.AddICECandidate(init); err != nil {
		p.log.Debug("remote ICE candidate refused", "err", err)
	}
}

// maxRemoteCandidates bounds the remote candidates a client may trickle
// for one connection per ICE generation (a publisher offer or a
// subscriber ICE restart starts a new one). Each is held until the
// remote description arrives, then paired with every local candidate and
// checked by the ICE agent; a browser sends a handful.
const maxRemoteCandidates = 64

// flushCandidates adds candidates that arrived before pc's remote
// description.
func (p *Participant) flushCandidates(target livekit.SignalTarget) {
	p.mu.Lock()
	var cands []webrtc.ICECandidateInit
	pc := p.pub
	if target == livekit.SignalTarget_SUBSCRIBER {
		cands, p.subCands, pc = p.subCands, nil, p.sub
	} else {
		cands, p.pubCands = p.pubCands, nil
	}
	p.mu.Unlock()
	for _, c := range cands {
		if err := pc.AddICECandidate(c); err != nil {
			p.log.Debug("remote ICE candidate refused", "err", err)
		}
	}
}

// handlePublisherOffer answers the client's offer on the publisher
// connection (first negotiation, new tracks, or an ICE restart on resume:
// pion restarts ICE when the offer's credentials change).
func (p *Participant) handlePublisherOffer(sd *livekit.SessionDescription) {
	bad := func(msg string) {
		p.sendRequestError(livekit.RequestResponse_INVALID_REQUEST, msg, nil)
	}
	if sd.GetType() != "offer" {
		bad("publisher offer has type " + sd.GetType())
		return
	}
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(sd.GetSdp()); err != nil {
		bad("malformed offer SDP")
		return
	}
	if len(parsed.MediaDescriptions) > maxMediaSections {
		// pion makes a transceiver (and for every SSRC a receiver
		// goroutine) per media section before any track is announced.
		bad("offer has too many media sections")
		return
	}
	if err := p.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sd.GetSdp()}); err != nil {
		p.log.Info("publisher offer refused", "err", err)
		bad("offer refused: " + err.Error())
		return
	}
	p.flushCandidates(livekit.SignalTarget_PUBLISHER)
	if ufrag := iceUfrag(&parsed); ufrag != "" {
		p.mu.Lock()
		if ufrag != p.pubUfrag {
			// New ICE credentials: an ICE restart, a new generation.
			p.pubUfrag, p.pubCandCount = ufrag, 0
		}
		p.mu.Unlock()
	}
	answer, err := p.pub.CreateAnswer(nil)
	if err == nil {
		err = p.pub.SetLocalDescription(answer)
	}
	if err != nil {
		p.log.Info("publisher answer failed", "err", err)
		bad("answer failed: " + err.Error())
		return
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Answer{Answer: &livekit.SessionDescription{
		Type: "answer", Sdp: answer.SDP, Id: sd.GetId(),
	}}})
}

func (p *Participant) handleAddTrack(req *livekit.AddTrackRequest) {
	p.mu.Lock()
	allowed := p.claims.CanPublish
	p.mu.Unlock()
	deny := func(reason livekit.RequestResponse_Reason, msg string) {
		p.sendRequestError(reason, msg, func(rr *livekit.RequestResponse) {
			rr.Request = &livekit.RequestResponse_AddTrack{AddTrack: req}
		})
	}
	if !allowed {
		deny(livekit.RequestResponse_NOT_ALLOWED, "no publish permission")
		return
	}
	if req.GetCid() == "" || (req.GetType() != livekit.TrackType_AUDIO && req.GetType() != livekit.TrackType_VIDEO) {
		deny(livekit.RequestResponse_INVALID_REQUEST, "add track needs a cid and an audio or video type")
		return
	}
	if err := checkAddTrack(req); err != nil {
		deny(livekit.RequestResponse_INVALID_REQUEST, err.Error())
		return
	}
	if !p.claims.CanPublishSource(req.GetSource()) {
		// canPublishSources (livekit/protocol auth): a token may allow,
		// say, the microphone but not the camera.
		deny(livekit.RequestResponse_NOT_ALLOWED, "no permission to publish source "+req.GetSource().String())
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	t := p.pending[req.GetCid()]
	if t == nil {
		for _, pt := range p.published {
			if pt.cid == req.GetCid() {
				t = pt
			}
		}
	}
	if t == nil {
		if len(p.pending)+len(p.published) >= maxTracksPerParticipant {
			p.mu.Unlock()
			deny(livekit.RequestResponse_LIMIT_EXCEEDED, "too many tracks")
			return
		}
		t = newTrack(p, req)
		p.pending[req.GetCid()] = t
		p.pendingOrder = append(p.pendingOrder, req.GetCid())
	}
	p.mu.Unlock()
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_TrackPublished{TrackPublished: &livekit.TrackPublishedResponse{
		Cid: req.GetCid(), Track: t.Info(),
	}}})
}

// maxTracksPerParticipant bounds pending and published tracks together.
const maxTracksPerParticipant = 32

// maxMediaSections bounds the m-lines of a publisher offer: one per track
// and the data channels' one, with room for the inactive sections that
// clients keep after unpublishing.
const maxMediaSections = 4 * maxTracksPerParticipant

// Bounds on an AddTrackRequest. Its fields become the TrackInfo that goes
// to every participant in every ParticipantUpdate of the publisher, so an
// unbounded request would multiply into megabytes per update per
// recipient. A real one (three layers, two simulcast codecs) is a few
// hundred bytes.
const (
	maxAddTrackBytes  = 4096
	maxSimulcastCodec = 4
)

// checkAddTrack refuses an AddTrackRequest beyond those bounds: more than
// maxLayers layers (LiveKit simulcast has q, h and f), more codecs than a
// client backs up to, or too many bytes overall.
func checkAddTrack(req *livekit.AddTrackRequest) error {
	if n := proto.Size(req); n > maxAddTrackBytes {
		return fmt.Errorf("add track request of %d bytes exceeds %d", n, maxAddTrackBytes)
	}
	if len(req.GetLayers()) > media.MaxLayers || len(req.GetSimulcastCodecs()) > maxSimulcastCodec {
		return errors.New("add track request has too many layers or codecs")
	}
	for _, sc := range req.GetSimulcastCodecs() {
		if len(sc.GetLayers()) > media.MaxLayers {
			return errors.New("add track request has too many layers")
		}
	}
	return nil
}

// onTrack matches a remote track (or one more simulcast layer of one)
// to its AddTrackRequest and starts forwarding it.
func (p *Participant) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	mid := ""
	for _, tr := range p.pub.GetTransceivers() {
		if tr.Receiver() == recv {
			mid = tr.Mid()
		}
	}
	kind := trackKind(track.Kind())
	p.mu.Lock()
	t := p.byMid[mid]
	if t == nil && !p.closed {
		cid := ""
		if _, ok := p.pending[track.ID()]; ok {
			cid = track.ID()
		}
		for _, c := range p.pendingOrder {
			if cid == "" && p.pending[c] != nil && p.pending[c].matchesCid(track.ID()) {
				cid = c
			}
		}
		for _, c := range p.pendingOrder {
			if cid == "" && p.pending[c] != nil && p.pending[c].kind == kind {
				cid = c
			}
		}
		if t = p.pending[cid]; t != nil {
			delete(p.pending, cid)
			p.pendingOrder = removeString(p.pendingOrder, cid)
			p.published[t.sid] = t
			if mid != "" {
				p.byMid[mid] = t
			}
		}
	}
	p.mu.Unlock()
	if t == nil {
		p.log.Info("media track without a matching add-track request; ignored", "kind", kind.String(), "id", track.ID())
		return
	}
	first, r := t.addLayer(p, track, recv, mid)
	if r == nil {
		return
	}
	if first {
		p.room.trackPublished(p, t)
		p.room.mgr.goWatch(func() {
			select {
			case <-r.Done():
				p.room.trackUnpublished(p, t)
			case <-p.closedCh:
			}
		})
	}
}

// addLayer creates the receiver on the first layer and adds track to it.
func (t *PublishedTrack) addLayer(p *Participant, track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, mid string) (first bool, r *media.Receiver) {
	extID := 0
	for _, x := range recv.GetParameters().HeaderExtensions {
		if x.URI == sdp.AudioLevelURI {
			extID = x.ID
		}
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return false, nil
	}
	if t.recv == nil {
		first = true
		codec := track.Codec()
		t.recv = media.NewReceiver(media.ReceiverConfig{
			TrackID: t.sid,
			Codec:   codec,
			Layers:  t.layers,
			RequestKeyFrame: func(ssrc uint32) {
				_ = p.pub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
			},
			AudioLevelExtID: extID,
			Logger:          p.log.With("track", t.sid),
			Now:             p.room.mgr.cfg.Now,
		})
		t.info.MimeType = codec.MimeType
		t.info.Mid = mid
		t.mid = mid
		if t.info.Muted {
			t.recv.SetMuted(true)
		}
		if t.kind == livekit.TrackType_VIDEO {
			r := t.recv
			r.OnMaxLayerChanged(func(l media.Layer) { t.onMaxLayer(l) })
		}
	}
	r = t.recv
	t.mu.Unlock()
	r.AddLayer(media.LayerFromRID(track.RID()), track)
	return first, r
}

// onMaxLayer tells the publisher which simulcast layers anybody watches
// (dynacast, SubscribedQualityUpdate).
func (t *PublishedTrack) onMaxLayer(l media.Layer) {
	t.mu.Lock()
	if l != media.LayerNone {
		t.everWatched = true
	}
	skip := !t.everWatched || t.closed
	mime := t.info.MimeType
	t.mu.Unlock()
	if skip {
		return
	}
	qs := []*livekit.SubscribedQuality{
		{Quality: livekit.VideoQuality_LOW, Enabled: l >= 0},
		{Quality: livekit.VideoQuality_MEDIUM, Enabled: l >= 1},
		{Quality: livekit.VideoQuality_HIGH, Enabled: l >= 2},
	}
	codec := strings.ToLower(mime)
	if i := strings.IndexByte(codec, '/'); i >= 0 {
		codec = codec[i+1:]
	}
	t.owner.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_SubscribedQualityUpdate{
		SubscribedQualityUpdate: &livekit.SubscribedQualityUpdate{
			TrackSid: t.sid,
			//lint:ignore SA1019 clients before protocol 9 read only this field
			SubscribedQualities: qs,
			SubscribedCodecs:    []*livekit.SubscribedCodec{{Codec: codec, Qualities: qs}},
		},
	}})
}

func (p *Participant) handleMute(m *livekit.MuteTrackRequest) {
	p.mu.Lock()
	t := p.published[m.GetSid()]
	if t == nil {
		for _, pt := range p.pending {
			if pt.sid == m.GetSid() {
				t = pt
			}
		}
	}
	p.mu.Unlock()
	if t == nil {
		p.sendRequestError(livekit.RequestResponse_NOT_FOUND, "unknown track", func(rr *livekit.RequestResponse) {
			rr.Request = &livekit.RequestResponse_Mute{Mute: m}
		})
		return
	}
	t.mu.Lock()
	changed := t.info.Muted != m.GetMuted()
	t.info.Muted = m.GetMuted()
	r := t.recv
	t.mu.Unlock()
	if r != nil {
		r.SetMuted(m.GetMuted())
	}
	if changed {
		p.room.broadcastParticipant(p)
	}
}

// iceUfrag is the ICE username fragment of sd (RFC 8839 5.4): at session
// level or in the first media section that has one.
func iceUfrag(sd *sdp.SessionDescription) string {
	if v, ok := sd.Attribute("ice-ufrag"); ok {
		return v
	}
	for _, m := range sd.MediaDescriptions {
		if v, ok := m.Attribute("ice-ufrag"); ok {
			return v
		}
	}
	return ""
}

func removeString(s []string, v string) []string {
	for i, x := range s {
		if x == v {
			return append(s[:i:i], s[i+1:]...)
		}
	}
	return s
}
