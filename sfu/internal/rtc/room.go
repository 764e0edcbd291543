package rtc

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/plexus-chat/plexus/sfu/internal/data"
)

// Room is one SFU room: its participants, their tracks and the data
// relay.
type Room struct {
	mgr     *Manager
	name    string
	sid     string
	created time.Time
	data    *data.Room
	log     *slog.Logger
	// ready is closed once the world snapshot is loaded; nobody joins
	// before, so nobody misses it.
	ready chan struct{}
	// stop ends the room's loop; loopDone is closed when it has.
	stop     chan struct{}
	loopDone chan struct{}

	mu           sync.Mutex              // guards the fields below
	participants map[string]*Participant // by sid
	byIdentity   map[string]*Participant
	// identities is everyone who was in the room, for SaveWorld.
	identities map[string]struct{}
	closed     bool
	emptyTimer *time.Timer
	// savedVersion is the world version last loaded or saved.
	savedVersion uint64
	// speakers is the last speaker state sent, by participant sid.
	speakers map[string]float32
}

func newRoom(m *Manager, name string) *Room {
	r := &Room{
		mgr: m, name: name, sid: "RM_" + randomID(12), created: m.cfg.Now(),
		log:          m.cfg.Logger.With("room", name),
		ready:        make(chan struct{}),
		stop:         make(chan struct{}),
		loopDone:     make(chan struct{}),
		participants: map[string]*Participant{},
		byIdentity:   map[string]*Participant{},
		identities:   map[string]struct{}{},
		speakers:     map[string]float32{},
	}
	dc := m.cfg.Data
	if dc.RelayLatency == nil {
		dc.RelayLatency = &m.worldRelay
	}
	r.data = data.NewRoom(dc, r.log)
	return r
}

func (r *Room) now() time.Time { return r.mgr.cfg.Now() }

// load reads the persisted world (before anyone joins), then starts the
// room's loop.
func (r *Room) load() {
	defer close(r.ready)
	if w := r.mgr.cfg.World; w != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		snap, err := w.LoadWorld(ctx, r.name)
		cancel()
		switch {
		case err != nil:
			r.log.Warn("loading the world snapshot failed", "err", err)
		case snap != nil:
			if err := r.data.LoadWorld(snap); err != nil {
				r.log.Warn("stored world snapshot refused", "err", err)
			}
		}
		_, v := r.data.Snapshot()
		r.mu.Lock()
		r.savedVersion = v
		r.mu.Unlock()
	}
	// A room nobody manages to join (the first join failed) closes like
	// one everybody left.
	r.mu.Lock()
	if len(r.participants) == 0 {
		r.emptyTimer = time.AfterFunc(r.mgr.cfg.EmptyTimeout, func() { r.mgr.closeIfEmpty(r) })
	}
	r.mu.Unlock()
	r.mgr.wg.Add(1)
	go func() {
		defer r.mgr.wg.Done()
		r.loop()
	}()
}

func (r *Room) protoRoom() *livekit.Room {
	r.mu.Lock()
	n := len(r.participants)
	r.mu.Unlock()
	return &livekit.Room{
		Sid:             r.sid,
		Name:            r.name,
		EmptyTimeout:    uint32(r.mgr.cfg.EmptyTimeout / time.Second),
		CreationTime:    r.created.Unix(),
		CreationTimeMs:  r.created.UnixMilli(),
		NumParticipants: uint32(n),
		EnabledCodecs:   enabledCodecs(),
	}
}

func enabledCodecs() []*livekit.Codec {
	return []*livekit.Codec{
		{Mime: "audio/opus"}, {Mime: "audio/red"}, {Mime: "video/VP8"}, {Mime: "video/H264"},
		{Mime: "video/VP9"}, {Mime: "video/AV1"},
	}
}

// errRoomFull and errServerFull refuse a join over Config.MaxParticipants
// or Config.MaxTotalParticipants.
var (
	errRoomFull   = errors.New("rtc: room is full")
	errServerFull = errors.New("rtc: server is full")
)

// join adds p. It returns false if the room is closing (the caller
// retries with a new room), an error if a participant limit refuses p.
func (r *Room) join(p *Participant) (others []*Participant, ok bool, err error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, false, nil
		}
		old := r.byIdentity[p.identity]
		if old == nil {
			break
		}
		r.mu.Unlock()
		// LiveKit semantics: a second connection with the same identity
		// replaces the first; others see it leave before the new one
		// arrives.
		r.leave(old, livekit.DisconnectReason_DUPLICATE_IDENTITY, true)
	}
	if len(r.participants) >= r.mgr.cfg.MaxParticipants {
		r.mu.Unlock()
		return nil, false, errRoomFull
	}
	if r.mgr.participants.Add(1) > int64(r.mgr.cfg.MaxTotalParticipants) {
		r.mgr.participants.Add(-1)
		r.mu.Unlock()
		return nil, false, errServerFull
	}
	for _, o := range r.participants {
		others = append(others, o)
	}
	r.participants[p.sid] = p
	r.byIdentity[p.identity] = p
	r.identities[p.identity] = struct{}{}
	if r.emptyTimer != nil {
		r.emptyTimer.Stop()
		r.emptyTimer = nil
	}
	r.mu.Unlock()
	sort.Slice(others, func(i, j int) bool { return others[i].joinedAt.Before(others[j].joinedAt) })
	return others, true, nil
}

// leave removes p and tells the others. sendLeave sends the client a
// LeaveRequest to disconnect (server-initiated disconnects).
func (r *Room) leave(p *Participant, reason livekit.DisconnectReason, sendLeave bool) {
	var msg *livekit.LeaveRequest
	if sendLeave {
		msg = &livekit.LeaveRequest{Reason: reason, Action: livekit.LeaveRequest_DISCONNECT}
	}
	r.leaveWith(p, reason, msg)
}

// leaveWith removes p and tells the others; msg, if set, is the last
// message p's client gets.
func (r *Room) leaveWith(p *Participant, reason livekit.DisconnectReason, msg *livekit.LeaveRequest) {
	r.mu.Lock()
	if r.participants[p.sid] != p {
		r.mu.Unlock()
		return
	}
	delete(r.participants, p.sid)
	r.mgr.participants.Add(-1)
	if r.byIdentity[p.identity] == p {
		delete(r.byIdentity, p.identity)
	}
	delete(r.speakers, p.sid)
	others := r.listLocked()
	if len(r.participants) == 0 && !r.closed {
		r.emptyTimer = time.AfterFunc(r.mgr.cfg.EmptyTimeout, func() { r.mgr.closeIfEmpty(r) })
	}
	r.mu.Unlock()

	p.mu.Lock()
	var sids []string
	for sid := range p.published {
		sids = append(sids, sid)
	}
	p.mu.Unlock()
	p.close(msg)
	r.data.Leave(p.sid)
	info := p.info(true)
	info.DisconnectReason = reason
	upd := &livekit.SignalResponse{Message: &livekit.SignalResponse_Update{Update: &livekit.ParticipantUpdate{
		Participants: []*livekit.ParticipantInfo{info},
	}}}
	for _, o := range others {
		for _, sid := range sids {
			o.unsubscribe(sid)
		}
		if !p.hidden() {
			o.send(upd)
		}
	}
	r.log.Info("participant left", "identity", p.identity, "sid", p.sid, "reason", reason.String())
}

func (r *Room) listLocked() []*Participant {
	ps := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		ps = append(ps, p)
	}
	return ps
}

func (r *Room) list() []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listLocked()
}

func (r *Room) participantBySID(sid string) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.participants[sid]
}

// track finds a published track by sid.
func (r *Room) track(sid string) *PublishedTrack {
	for _, p := range r.list() {
		p.mu.Lock()
		t := p.published[sid]
		p.mu.Unlock()
		if t != nil {
			return t
		}
	}
	return nil
}

// broadcastParticipant sends p's new state to everyone (p included: the
// SDKs update the local participant from it too). A hidden participant's
// state goes to itself alone: the hidden grant keeps it out of everyone
// else's view, as livekit-server's broadcastParticipantState does.
func (r *Room) broadcastParticipant(p *Participant) {
	info := p.info(true)
	upd := &livekit.SignalResponse{Message: &livekit.SignalResponse_Update{Update: &livekit.ParticipantUpdate{
		Participants: []*livekit.ParticipantInfo{info},
	}}}
	if p.hidden() {
		p.send(upd)
		return
	}
	for _, o := range r.list() {
		o.send(upd)
	}
}

// sendFullUpdate sends p everyone's state (after a resume).
func (r *Room) sendFullUpdate(p *Participant) {
	var infos []*livekit.ParticipantInfo
	for _, o := range r.list() {
		if o == p || !o.hidden() {
			infos = append(infos, o.info(false))
		}
	}
	p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Update{Update: &livekit.ParticipantUpdate{Participants: infos}}})
}

// trackPublished is called when t's media arrived: everyone learns of
// it and auto-subscribers start receiving it.
func (r *Room) trackPublished(p *Participant, t *PublishedTrack) {
	r.log.Info("track published", "identity", p.identity, "track", t.sid, "kind", t.kind.String())
	r.broadcastParticipant(p)
	if p.hidden() {
		return // nobody knows of the track to receive it
	}
	for _, o := range r.list() {
		o.mu.Lock()
		auto := o.autoSubscribe && o.claims.CanSubscribe
		o.mu.Unlock()
		if o != p && auto {
			o.subscribe(t)
		}
	}
}

// trackUnpublished is called when t's media ended.
func (r *Room) trackUnpublished(p *Participant, t *PublishedTrack) {
	p.mu.Lock()
	if p.published[t.sid] != t {
		p.mu.Unlock()
		return
	}
	delete(p.published, t.sid)
	for mid, x := range p.byMid {
		if x == t {
			delete(p.byMid, mid)
		}
	}
	p.mu.Unlock()
	t.close()
	for _, o := range r.list() {
		o.unsubscribe(t.sid)
	}
	r.broadcastParticipant(p)
}

// loop sends active speakers (~300 ms), connection quality (5 s) and
// fresh tokens (5 min), and saves the world periodically.
func (r *Room) loop() {
	defer close(r.loopDone)
	speak := time.NewTicker(300 * time.Millisecond)
	defer speak.Stop()
	quality := time.NewTicker(5 * time.Second)
	defer quality.Stop()
	save := time.NewTicker(r.mgr.cfg.SaveInterval)
	defer save.Stop()
	refresh := time.NewTicker(r.mgr.cfg.RefreshInterval)
	defer refresh.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-speak.C:
			r.updateSpeakers()
		case <-quality.C:
			r.updateQuality()
		case <-save.C:
			r.saveWorld()
		case <-refresh.C:
			r.refreshTokens()
		}
	}
}

// refreshTokens sends every participant a fresh access token
// (RefreshToken): the SDKs resume with the newest token they hold, and
// the one they joined with may expire during a long call (the token
// service's last an hour).
func (r *Room) refreshTokens() {
	f := r.mgr.cfg.Refresh
	if f == nil {
		return
	}
	for _, p := range r.list() {
		tok, err := f(&p.claims)
		if err != nil {
			p.log.Warn("refreshing the access token failed", "err", err)
			continue
		}
		p.send(&livekit.SignalResponse{Message: &livekit.SignalResponse_RefreshToken{RefreshToken: tok}})
	}
}

// updateSpeakers sends SpeakersChanged with the participants whose
// speaking state or level changed.
func (r *Room) updateSpeakers() {
	ps := r.list()
	cur := map[string]float32{}
	for _, p := range ps {
		if p.hidden() {
			continue
		}
		var best float32
		for _, t := range p.publishedTracks() {
			if t.kind != livekit.TrackType_AUDIO {
				continue
			}
			if rc := t.Receiver(); rc != nil {
				if l, active := rc.AudioLevel(); active && l > best {
					best = l
				}
			}
		}
		if best > 0 {
			cur[p.sid] = best
		}
	}
	r.mu.Lock()
	var changed []*livekit.SpeakerInfo
	for sid, l := range cur {
		if old, ok := r.speakers[sid]; !ok || math.Abs(float64(old-l)) >= 0.05 {
			changed = append(changed, &livekit.SpeakerInfo{Sid: sid, Level: l, Active: true})
		}
	}
	for sid := range r.speakers {
		if _, ok := cur[sid]; !ok {
			changed = append(changed, &livekit.SpeakerInfo{Sid: sid, Level: 0, Active: false})
		}
	}
	r.speakers = cur
	r.mu.Unlock()
	if len(changed) == 0 {
		return
	}
	sort.Slice(changed, func(i, j int) bool { return changed[i].Level > changed[j].Level })
	msg := &livekit.SignalResponse{Message: &livekit.SignalResponse_SpeakersChanged{SpeakersChanged: &livekit.SpeakersChanged{Speakers: changed}}}
	for _, p := range ps {
		p.send(msg)
	}
}

// updateQuality sends each participant's connection quality to everyone.
func (r *Room) updateQuality() {
	ps := r.list()
	var infos []*livekit.ConnectionQualityInfo
	for _, p := range ps {
		if p.hidden() {
			continue
		}
		q, score := p.connectionQuality()
		infos = append(infos, &livekit.ConnectionQualityInfo{ParticipantSid: p.sid, Quality: q, Score: score})
	}
	if len(infos) == 0 {
		return
	}
	msg := &livekit.SignalResponse{Message: &livekit.SignalResponse_ConnectionQuality{ConnectionQuality: &livekit.ConnectionQualityUpdate{Updates: infos}}}
	for _, p := range ps {
		p.send(msg)
	}
}

// saveWorld writes the world snapshot if it changed since the last save.
// It runs on the room's loop or at close, never on the media or data
// path and never under a lock.
func (r *Room) saveWorld() {
	w := r.mgr.cfg.World
	if w == nil {
		return
	}
	snap, v := r.data.Snapshot()
	r.mu.Lock()
	same := v == r.savedVersion
	ids := make([]string, 0, len(r.identities))
	for id := range r.identities {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	if same {
		return
	}
	sort.Strings(ids)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.SaveWorld(ctx, r.name, snap, ids); err != nil {
		r.log.Warn("saving the world snapshot failed", "err", err)
		return
	}
	r.mu.Lock()
	if v > r.savedVersion {
		r.savedVersion = v
	}
	r.mu.Unlock()
}

// close disconnects everyone, stops the loop, saves the world and closes
// the data room. The manager has removed the room already.
func (r *Room) close(reason livekit.DisconnectReason) {
	<-r.ready
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	if r.emptyTimer != nil {
		r.emptyTimer.Stop()
	}
	ps := r.listLocked()
	r.mu.Unlock()
	for _, p := range ps {
		r.leave(p, reason, true)
	}
	close(r.stop)
	<-r.loopDone
	r.saveWorld()
	r.data.Close()
	r.log.Info("room closed")
}
