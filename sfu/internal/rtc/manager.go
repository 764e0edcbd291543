package rtc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/plexus-chat/plexus/internal/latency"
	"github.com/plexus-chat/plexus/internal/pionlog"
	"github.com/plexus-chat/plexus/sfu/internal/data"
	"github.com/plexus-chat/plexus/sfu/internal/media"
	"github.com/plexus-chat/plexus/sfu/internal/signal"
)

// WorldStore persists rooms' world snapshots (see sfu.WorldStore).
type WorldStore interface {
	LoadWorld(ctx context.Context, room string) ([]byte, error)
	SaveWorld(ctx context.Context, room string, snapshot []byte, identities []string) error
}

// Config configures a Manager.
type Config struct {
	Engine         *Engine
	Data           data.Config
	EmptyTimeout   time.Duration
	PingInterval   time.Duration
	PingTimeout    time.Duration
	ReconnectGrace time.Duration
	SaveInterval   time.Duration
	// NegotiationTimeout is how long a subscriber offer may wait for its
	// answer before the client is told to reconnect (default 15s).
	NegotiationTimeout time.Duration
	// RequireRoomCreate lets only tokens with the roomCreate grant start
	// a room; others join live rooms only (livekit-server with
	// room.auto_create off, as lk-jwt-service deployments run it).
	RequireRoomCreate bool
	// MaxParticipants bounds the participants of one room (default 256)
	// and MaxTotalParticipants those of the whole server (default 2048):
	// every participant holds two peer connections and their goroutines.
	MaxParticipants, MaxTotalParticipants int

	// Refresh mints a fresh token with a participant's grants; every
	// RefreshInterval (default 5 minutes, as livekit-server) each
	// participant is sent one (RefreshToken). Nil = none.
	Refresh         func(*signal.Claims) (string, error)
	RefreshInterval time.Duration

	ICEServers func(identity string) []*livekit.ICEServer
	World      WorldStore
	Logger     *slog.Logger
	Now        func() time.Time
	// Version is reported in ServerInfo.
	Version string
}

// Manager holds the rooms and admits participants (signal.Joiner).
type Manager struct {
	cfg        Config
	lim        *pionlog.Limiter
	dataErrors atomic.Uint64
	// participants counts the participants of every room (Room.join and
	// Room.leaveWith keep it, under the room's lock).
	participants atomic.Int64
	// worldRelay is every room's data.Config.RelayLatency unless the
	// configuration names another.
	worldRelay latency.Histogram
	// wg counts room loops and track watchers.
	wg sync.WaitGroup

	mu    sync.Mutex // guards the fields below
	rooms map[string]*Room
	// closing has the rooms being closed by their empty timeout, closed
	// when done: a new room of that name waits, so that it loads the
	// world the old one saved last.
	closing map[string]chan struct{}
	closed  bool
}

// NewManager returns a manager; cfg.Engine is required.
func NewManager(cfg Config) *Manager {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EmptyTimeout <= 0 {
		cfg.EmptyTimeout = 20 * time.Second
	}
	if cfg.ReconnectGrace <= 0 {
		cfg.ReconnectGrace = 15 * time.Second
	}
	if cfg.NegotiationTimeout <= 0 {
		cfg.NegotiationTimeout = 15 * time.Second
	}
	if cfg.SaveInterval <= 0 {
		cfg.SaveInterval = 30 * time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 10 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 20 * time.Second
	}
	if cfg.MaxParticipants <= 0 {
		cfg.MaxParticipants = 256
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 5 * time.Minute
	}
	if cfg.MaxTotalParticipants <= 0 {
		cfg.MaxTotalParticipants = 2048
	}
	return &Manager{cfg: cfg, lim: pionlog.NewLimiter(5, 10*time.Second, nil), rooms: map[string]*Room{}, closing: map[string]chan struct{}{}}
}

func (m *Manager) goWatch(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

// errClosed refuses joins during shutdown.
var errClosed = errors.New("rtc: server shutting down")

// errNoRoom refuses a token without roomCreate when its room is not live.
var errNoRoom = errors.New("rtc: room not found and the token may not create it")

// room returns the room name, creating and loading it if needed and
// create is set.
func (m *Manager) room(name string, create bool) (*Room, error) {
	m.mu.Lock()
	for m.closing[name] != nil && !m.closed {
		ch := m.closing[name]
		m.mu.Unlock()
		<-ch
		m.mu.Lock()
	}
	if m.closed {
		m.mu.Unlock()
		return nil, errClosed
	}
	r := m.rooms[name]
	if r == nil && !create {
		m.mu.Unlock()
		return nil, errNoRoom
	}
	created := r == nil
	if created {
		r = newRoom(m, name)
		m.rooms[name] = r
	}
	m.mu.Unlock()
	if created {
		r.load()
	}
	<-r.ready
	return r, nil
}

func (m *Manager) existingRoom(name string) *Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rooms[name]
}

// closeIfEmpty closes r after its empty timeout if nobody came back.
func (m *Manager) closeIfEmpty(r *Room) {
	m.mu.Lock()
	r.mu.Lock()
	empty := len(r.participants) == 0 && !r.closed
	r.mu.Unlock()
	if !empty || m.closed || m.rooms[r.name] != r || m.closing[r.name] != nil {
		m.mu.Unlock()
		return
	}
	// The room stays listed until its world is saved, so that an operator
	// (or a test) seeing it gone knows the snapshot is stored.
	done := make(chan struct{})
	m.closing[r.name] = done
	// Counted before Close can start waiting (it sets closed under mu).
	m.wg.Add(1)
	defer m.wg.Done()
	m.mu.Unlock()
	r.close(livekit.DisconnectReason_ROOM_CLOSED)
	m.mu.Lock()
	delete(m.closing, r.name)
	if m.rooms[r.name] == r {
		delete(m.rooms, r.name)
	}
	m.mu.Unlock()
	close(done)
}

func (m *Manager) serverInfo() *livekit.ServerInfo {
	return &livekit.ServerInfo{Edition: livekit.ServerInfo_Standard, Version: m.cfg.Version, Protocol: 16, NodeId: "plexus"}
}

func (m *Manager) iceServers(identity string) []*livekit.ICEServer {
	if m.cfg.ICEServers == nil {
		return nil
	}
	return m.cfg.ICEServers(identity)
}

// Check implements signal.Checker: a join that Join would refuse for a
// missing room or a full server is answered with an HTTP status before
// the WebSocket upgrade. A resume is left to Join.
func (m *Manager) Check(claims *signal.Claims, params signal.Params) error {
	if params.Reconnect && params.ParticipantSID != "" {
		return nil
	}
	if m.cfg.RequireRoomCreate && !claims.CanCreateRoom && m.existingRoom(claims.Room) == nil {
		return &signal.RefusedError{Status: http.StatusNotFound, Reason: "requested room does not exist"}
	}
	if m.participants.Load() >= int64(m.cfg.MaxTotalParticipants) {
		return &signal.RefusedError{Status: http.StatusServiceUnavailable, Reason: "participant limit exceeded"}
	}
	return nil
}

// Join implements signal.Joiner.
func (m *Manager) Join(c *signal.Conn, claims *signal.Claims, params signal.Params) (signal.Session, error) {
	if params.Reconnect && params.ParticipantSID != "" {
		return m.resume(c, claims, params)
	}
	create := claims.CanCreateRoom || !m.cfg.RequireRoomCreate
	for attempt := 0; ; attempt++ {
		r, err := m.room(claims.Room, create)
		if errors.Is(err, errNoRoom) {
			return nil, &signal.JoinError{Err: err}
		}
		if err != nil {
			return nil, &signal.JoinError{Err: err, Leave: &livekit.LeaveRequest{Reason: livekit.DisconnectReason_SERVER_SHUTDOWN}}
		}
		p, err := newParticipant(r, claims, params)
		if err != nil {
			return nil, err
		}
		others, ok, err := r.join(p)
		if err != nil {
			p.close(nil)
			return nil, &signal.JoinError{Err: err}
		}
		if ok {
			// Before anything else can reach it: the world snapshot is
			// the first data message it gets.
			r.data.Join(p.sid, p.identity, p.dcs)
		}
		if !ok {
			p.close(nil)
			if attempt > 3 {
				return nil, &signal.JoinError{Err: errClosed}
			}
			continue // the room closed meanwhile; make a new one
		}
		if !m.admit(r, p, others, c) {
			// Replaced by a newer connection of the same identity, or
			// the room closed, between joining and admission; its leave
			// may have run before the data room's Join above.
			r.data.Leave(p.sid)
			return nil, &signal.JoinError{Err: errors.New("rtc: participant left before it was admitted")}
		}
		return p, nil
	}
}

// admit sends p its JoinResponse, attaches c and tells the others. It
// returns false if p was closed meanwhile (c is then not attached: a
// connection bound to a closed participant would stay open and idle).
func (m *Manager) admit(r *Room, p *Participant, others []*Participant, c *signal.Conn) bool {
	infos := make([]*livekit.ParticipantInfo, 0, len(others))
	for _, o := range others {
		if !o.hidden() {
			infos = append(infos, o.info(false))
		}
	}
	self := p.info(true)
	join := &livekit.SignalResponse{Message: &livekit.SignalResponse_Join{Join: &livekit.JoinResponse{
		Room:                 r.protoRoom(),
		Participant:          self,
		OtherParticipants:    infos,
		ServerVersion:        m.cfg.Version,
		IceServers:           m.iceServers(p.identity),
		SubscriberPrimary:    true,
		PingTimeout:          int32(m.cfg.PingTimeout / time.Second),
		PingInterval:         int32(m.cfg.PingInterval / time.Second),
		ServerInfo:           m.serverInfo(),
		EnabledPublishCodecs: enabledCodecs(),
	}}}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	// Queue the JoinResponse first, then attach: anything sent to p
	// meanwhile was held in early and follows it in order.
	_ = c.Send(join)
	early := p.early
	p.early = nil
	for _, msg := range early {
		_ = c.Send(msg)
	}
	p.conn = c
	p.attached = true
	p.mu.Unlock()
	r.log.Info("participant joined", "identity", p.identity, "sid", p.sid)

	// The subscriber connection carries the server's data channels, so
	// it is negotiated at once (subscriber_primary).
	p.negotiate(false)
	upd := &livekit.SignalResponse{Message: &livekit.SignalResponse_Update{Update: &livekit.ParticipantUpdate{
		Participants: []*livekit.ParticipantInfo{p.info(false)},
	}}}
	if !p.hidden() {
		for _, o := range others {
			o.send(upd)
		}
	}
	p.mu.Lock()
	auto := p.autoSubscribe && p.claims.CanSubscribe
	p.mu.Unlock()
	if auto {
		for _, o := range others {
			if o.hidden() {
				continue
			}
			o.mu.Lock()
			var ts []*PublishedTrack
			for _, t := range o.published {
				ts = append(ts, t)
			}
			o.mu.Unlock()
			for _, t := range ts {
				p.subscribe(t)
			}
		}
	}
	return true
}

// resume reattaches a participant whose signalling connection dropped
// (LiveKit "reconnect=1&sid="): ReconnectResponse, then the client
// restarts ICE on its publisher with a new offer; the subscriber is
// restarted by the server if its ICE is not connected.
func (m *Manager) resume(c *signal.Conn, claims *signal.Claims, params signal.Params) (signal.Session, error) {
	mismatch := &signal.JoinError{
		Err:   fmt.Errorf("rtc: no session %s to resume", params.ParticipantSID),
		Leave: &livekit.LeaveRequest{Reason: livekit.DisconnectReason_STATE_MISMATCH, Action: livekit.LeaveRequest_RECONNECT},
	}
	r := m.existingRoom(claims.Room)
	if r == nil {
		return nil, mismatch
	}
	p := r.participantBySID(params.ParticipantSID)
	if p == nil || p.identity != claims.Identity {
		return nil, mismatch
	}
	_ = c.Send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Reconnect{Reconnect: &livekit.ReconnectResponse{
		IceServers: m.iceServers(p.identity),
		ServerInfo: m.serverInfo(),
	}}})
	if !p.attach(c) {
		return nil, mismatch
	}
	r.log.Info("participant resumed", "identity", p.identity, "sid", p.sid)
	p.resumeNegotiation()
	return p, nil
}

// newParticipant makes a participant with its two peer connections.
func newParticipant(r *Room, claims *signal.Claims, params signal.Params) (*Participant, error) {
	m := r.mgr
	sid := "PA_" + randomID(12)
	p := &Participant{
		room: r, sid: sid, identity: claims.Identity, claims: *claims,
		log:           r.log.With("identity", claims.Identity, "participant", sid),
		joinedAt:      m.cfg.Now(),
		closedCh:      make(chan struct{}),
		autoSubscribe: params.AutoSubscribe,
		pending:       map[string]*PublishedTrack{},
		published:     map[string]*PublishedTrack{},
		byMid:         map[string]*PublishedTrack{},
		subs:          map[string]*subscription{},
	}
	p.alloc = media.NewAllocator(p.log)
	var err error
	if p.pub, err = m.cfg.Engine.NewPublisherPC(); err != nil {
		return nil, err
	}
	if p.sub, err = m.cfg.Engine.NewSubscriberPC(func(bps int) { p.alloc.SetEstimate(bps) }); err != nil {
		_ = p.pub.Close()
		return nil, err
	}
	p.setupPublisher()
	if err := p.setupSubscriber(); err != nil {
		_ = p.pub.Close()
		_ = p.sub.Close()
		return nil, err
	}
	return p, nil
}

// RoomInfo describes a room for an operator page.
type RoomInfo struct {
	Name         string
	SID          string
	Created      time.Time
	Participants []ParticipantInfo
}

// ParticipantInfo describes one participant.
type ParticipantInfo struct {
	Identity string
	SID      string
	JoinedAt time.Time
	Tracks   []TrackInfo
}

// TrackInfo describes one published track.
type TrackInfo struct {
	SID, Kind, MimeType, Source string
	Muted                       bool
	Subscribers                 int
	// Layers are the layers media arrived on, lowest first: one for an
	// audio or single-layer track, up to three for simulcast video.
	Layers []TrackLayer
}

// TrackLayer is one layer of a published track as the SFU receives it.
type TrackLayer struct {
	Layer   int // 0 is the lowest quality
	Width   int // of its last key frame; 0 if unknown (not VP8, no key frame yet)
	Height  int // likewise
	Packets uint64
	Active  bool // packets arrived within the last 1.5 s
}

// Rooms lists the rooms.
func (m *Manager) Rooms() []RoomInfo {
	m.mu.Lock()
	rooms := make([]*Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		rooms = append(rooms, r)
	}
	m.mu.Unlock()
	out := make([]RoomInfo, 0, len(rooms))
	for _, r := range rooms {
		ri := RoomInfo{Name: r.name, SID: r.sid, Created: r.created}
		for _, p := range r.list() {
			pi := ParticipantInfo{Identity: p.identity, SID: p.sid, JoinedAt: p.joinedAt}
			for _, t := range p.publishedTracks() {
				info := t.Info()
				ti := TrackInfo{SID: t.sid, Kind: t.kind.String(), MimeType: info.MimeType, Source: info.Source.String(), Muted: info.Muted}
				if rc := t.Receiver(); rc != nil {
					st := rc.Stats()
					ti.Subscribers = st.DownTracks
					for l, ls := range st.Layers {
						if ls.Packets > 0 {
							ti.Layers = append(ti.Layers, TrackLayer{Layer: l, Width: ls.Width, Height: ls.Height, Packets: ls.Packets, Active: ls.Active})
						}
					}
				}
				pi.Tracks = append(pi.Tracks, ti)
			}
			ri.Participants = append(ri.Participants, pi)
		}
		sort.Slice(ri.Participants, func(i, j int) bool { return ri.Participants[i].JoinedAt.Before(ri.Participants[j].JoinedAt) })
		out = append(out, ri)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (p *Participant) publishedTracks() []*PublishedTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := make([]*PublishedTrack, 0, len(p.published))
	for _, t := range p.published {
		ts = append(ts, t)
	}
	return ts
}

// Stats are the SFU's counters.
type Stats struct {
	Rooms, Participants, Tracks, DownTracks int
	// Received are RTP packets/bytes from publishers; Forwarded those
	// sent to subscribers (retransmissions included).
	ReceivedPackets, ReceivedBytes   uint64
	ForwardedPackets, ForwardedBytes uint64
	NACKs, NACKsAnswered, PLIs       uint64
	// DataRelayed counts data messages written to recipients;
	// DataRefused packets refused from senders.
	DataRelayed, DataRefused uint64
	// WorldRelay is the time world changes spent in the relay, from
	// arrival to the write of the delta carrying them (since start).
	WorldRelay latency.Dist
}

// Stats sums the counters over live rooms.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	rooms := make([]*Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		rooms = append(rooms, r)
	}
	m.mu.Unlock()
	s := Stats{Rooms: len(rooms), DataRefused: m.dataErrors.Load(), WorldRelay: m.worldRelay.Snapshot()}
	for _, r := range rooms {
		s.DataRelayed += r.data.Stats().Relayed
		for _, p := range r.list() {
			s.Participants++
			for _, t := range p.publishedTracks() {
				s.Tracks++
				if rc := t.Receiver(); rc != nil {
					st := rc.Stats()
					s.ReceivedPackets += st.Packets
					s.ReceivedBytes += st.Bytes
				}
			}
			dts, _ := p.media()
			for _, dt := range dts {
				st := dt.Stats()
				s.DownTracks++
				s.ForwardedPackets += st.Packets
				s.ForwardedBytes += st.Bytes
				s.NACKs += st.NACKs
				s.NACKsAnswered += st.NACKsAnswered
				s.PLIs += st.PLIs
			}
		}
	}
	return s
}

// Close disconnects everyone (LeaveRequest SERVER_SHUTDOWN), saves every
// world and waits for the rooms' goroutines. Idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	rooms := m.rooms
	m.rooms = map[string]*Room{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.close(livekit.DisconnectReason_SERVER_SHUTDOWN)
		}()
	}
	wg.Wait()
	m.wg.Wait()
}
