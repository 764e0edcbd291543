//lint:file-ignore SA1019 LiveKit clients still read and write the deprecated DataPacket.kind and UserPacket sender and destination fields, so the relay keeps them in step with the new ones.

package data

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-chat/plexus/internal/pionlog"
)

// Sender is one recipient's side of the subscriber connection's data
// channels.
type Sender interface {
	// SendData writes one message to the recipient's data channel of kind; must not block long
	// (it is pion DataChannel.Send). io.ErrClosedPipe (a channel not open yet) makes a
	// reliable message or a world delta wait and be retried every Tick. It may keep b when
	// kind is Reliable; a Lossy b is reused for the next delta once SendData returns (pion's
	// SCTP copies it).
	SendData(kind Kind, b []byte) error
	// Buffered reports bytes queued in that channel (DataChannel.BufferedAmount) so a slow peer
	// is detected before its socket buffer fills.
	Buffered(kind Kind) uint64
}

// DrainNotifier is implemented by a Sender that can report when a
// channel's buffered amount falls to threshold (pion's
// DataChannel.OnBufferedAmountLow): a writer held back by a slow channel
// then resumes at once instead of at its next Tick. fn must not block.
type DrainNotifier interface {
	OnDrained(kind Kind, threshold uint64, fn func())
}

// Room relays data packets among one room's participants and keeps its
// world state. All methods are safe for concurrent use; none blocks on a
// recipient.
type Room struct {
	cfg        Config
	log        *slog.Logger
	lim        *pionlog.Limiter
	snapTopic  string
	deltaTopic string
	slowBytes  [2]uint64 // by Kind
	maxPending int       // world changes pending per recipient per Kind
	fillBytes  int       // the entries' share of Config.DeltaFillBytes
	stats      counters

	// The refusals a flood repeats, built once: their text is the same
	// every time so that a caller's rate-limited log keyed by it holds.
	errTooLarge, errRateLimited error
	wg                          sync.WaitGroup // writer goroutines
	closed                      atomic.Bool

	// peers is replaced whole under mu, read without it on the hot path.
	peers atomic.Pointer[peerSet]

	mu sync.Mutex
	// mu guards the following fields, and the replacement of peers: a
	// world change and a Join are ordered by it, so a joiner either sees
	// a change in its snapshot or receives it live.
	world     *state
	lastSweep int64 // unix ms of the last tombstone expiry
}

type peerSet struct {
	list  []*peer
	bySID map[string]*peer
}

var errNoGrant = fmt.Errorf("%w: no permission to publish data", ErrNotAllowed)

// counters are Stats' atomic sources.
type counters struct {
	received, relayed, relayedBytes, coalesced              atomic.Uint64
	deltas, deltaEntries                                    atomic.Uint64
	tooLarge, rateLimited, malformed, notAllowed, worldFull atomic.Uint64
	unknownSender, stale, ignored                           atomic.Uint64
	lossyOverflow, reliableOverflow, sendFailed             atomic.Uint64
}

// Stats are a Room's counters since it was made.
type Stats struct {
	Received     uint64 // packets accepted from senders
	Relayed      uint64 // messages written to recipients (snapshots included)
	RelayedBytes uint64
	Coalesced    uint64 // lossy messages merged into an unsent one of the same stream, world changes into a pending one of the same key
	Deltas       uint64 // world delta packets written (counted in Relayed too)
	DeltaEntries uint64 // world changes written in them: DeltaEntries/Deltas is the mean batch
	Dropped      Dropped
	Recipients   int
	WorldVersion uint64
	WorldEntries int
	WorldBytes   int // size of the encoded snapshot
}

// Dropped counts packets refused or dropped, per reason.
type Dropped struct {
	TooLarge, RateLimited, Malformed, NotAllowed, WorldFull, UnknownSender uint64 // refused by Receive
	Stale                                                                  uint64 // world messages older than the state in every key
	Ignored                                                                uint64 // packets for the server alone (client metrics)
	LossyOverflow                                                          uint64 // oldest lossy message dropped from a full queue, or lossy world change from a full delta
	ReliableOverflow                                                       uint64 // reliable message or world change dropped: that recipient is hopeless
	SendFailed                                                             uint64 // Sender.SendData errors
}

// NewRoom returns an empty room; log may be nil.
func NewRoom(cfg Config, log *slog.Logger) *Room {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Room{
		cfg:        cfg,
		log:        log,
		lim:        pionlog.NewLimiter(5, 10*time.Second, cfg.Now),
		snapTopic:  cfg.WorldTopic + ".snapshot",
		deltaTopic: cfg.WorldTopic + ".delta",
		slowBytes:  [2]uint64{Reliable: cfg.SlowBytes, Lossy: cfg.LossySlowBytes},
		// The keys the state can hold: tombstones, and live entries of
		// at least 16 bytes each in the snapshot.
		maxPending: cfg.MaxTombstones + cfg.MaxWorldBytes/16,
		// What of a packet the entries may fill: the envelope around
		// them is the delta's JSON and the DataPacket's protobuf.
		fillBytes: cfg.DeltaFillBytes - deltaEnvelope - len(cfg.WorldTopic+".delta") - len(deltaHead) - len(deltaTail),
		world:     newState(cfg.MaxWorldBytes),
	}
	r.errTooLarge = fmt.Errorf("%w: over %d bytes", ErrTooLarge, cfg.MaxPacketBytes)
	r.errRateLimited = fmt.Errorf("%w: over %g packets/s", ErrRateLimited, cfg.Rate)
	r.peers.Store(&peerSet{bySID: map[string]*peer{}})
	return r
}

// warn logs a hot-path warning, a few a second per message at most.
func (r *Room) warn(msg string, args ...any) {
	ok, n := r.lim.Allow(msg)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	r.log.Log(context.Background(), slog.LevelWarn, msg, args...)
}

// Join adds a recipient; the world snapshot (if any entries) is queued to it FIRST, before any
// live packet, as a reliable DataPacket with user.topic = WorldTopic+".snapshot" and an empty
// participant identity (from the server). Starts that recipient's writer goroutine. Joining
// again with a sid already present replaces the old one.
func (r *Room) Join(sid, identity string, to Sender) {
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return
	}
	p := newPeer(r, sid, identity, to)
	if r.world.live > 0 {
		b, err := r.snapshotPacketLocked()
		if err != nil {
			r.log.Error("encoding world snapshot", "err", err)
		} else {
			p.rel.push(b)
			p.snapFirst = true
		}
	}
	old := r.peers.Load()
	next := &peerSet{list: make([]*peer, 0, len(old.list)+1), bySID: make(map[string]*peer, len(old.list)+1)}
	prev := old.bySID[sid]
	for _, q := range old.list {
		if q != prev {
			next.list = append(next.list, q)
			next.bySID[q.sid] = q
		}
	}
	next.list = append(next.list, p)
	next.bySID[sid] = p
	r.peers.Store(next)
	r.wg.Add(1)
	r.mu.Unlock()
	if prev != nil {
		prev.halt()
	}
	if n, ok := to.(DrainNotifier); ok {
		for _, k := range []Kind{Reliable, Lossy} {
			n.OnDrained(k, r.slowBytes[k], p.drainedSignal)
		}
	}
	go p.run()
	p.signal()
}

func (r *Room) snapshotPacketLocked() ([]byte, error) {
	topic := r.snapTopic
	return proto.Marshal(&livekit.DataPacket{
		Kind: livekit.DataPacket_RELIABLE,
		Value: &livekit.DataPacket_User{User: &livekit.UserPacket{
			Payload: r.world.snapshot(),
			Topic:   &topic,
		}},
	})
}

// Leave removes a participant: nothing more is queued to it and its
// writer stops (a SendData in progress may still complete after Leave
// returns). Unknown sids are ignored. Safe to call from
// Config.OnReliableOverflow.
func (r *Room) Leave(sid string) {
	r.mu.Lock()
	old := r.peers.Load()
	p := old.bySID[sid]
	if p == nil {
		r.mu.Unlock()
		return
	}
	next := &peerSet{list: make([]*peer, 0, len(old.list)), bySID: make(map[string]*peer, len(old.list))}
	for _, q := range old.list {
		if q != p {
			next.list = append(next.list, q)
			next.bySID[q.sid] = q
		}
	}
	r.peers.Store(next)
	r.mu.Unlock()
	p.halt()
}

// Close stops every writer and waits for them. Idempotent.
func (r *Room) Close() {
	r.mu.Lock()
	r.closed.Store(true)
	ps := r.peers.Load()
	r.peers.Store(&peerSet{bySID: map[string]*peer{}})
	r.mu.Unlock()
	for _, p := range ps.list {
		p.halt()
	}
	r.wg.Wait()
}

// Snapshot returns the world snapshot (doc.go) and its version, which
// increments on every applied change; the bytes must not be modified.
func (r *Room) Snapshot() (snapshot []byte, version uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.world.snapshot(), r.world.version
}

// LoadWorld merges a persisted snapshot into the world, per key
// last-writer-wins; call it before or as the room starts. It does not
// change the version.
func (r *Room) LoadWorld(snapshot []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.world.load(snapshot); err != nil {
		return fmt.Errorf("loading world: %w", err)
	}
	return nil
}

// Stats returns the counters.
func (r *Room) Stats() Stats {
	st := &r.stats
	s := Stats{
		Received:     st.received.Load(),
		Relayed:      st.relayed.Load(),
		RelayedBytes: st.relayedBytes.Load(),
		Coalesced:    st.coalesced.Load(),
		Deltas:       st.deltas.Load(),
		DeltaEntries: st.deltaEntries.Load(),
		Dropped: Dropped{
			TooLarge:         st.tooLarge.Load(),
			RateLimited:      st.rateLimited.Load(),
			Malformed:        st.malformed.Load(),
			NotAllowed:       st.notAllowed.Load(),
			WorldFull:        st.worldFull.Load(),
			UnknownSender:    st.unknownSender.Load(),
			Stale:            st.stale.Load(),
			Ignored:          st.ignored.Load(),
			LossyOverflow:    st.lossyOverflow.Load(),
			ReliableOverflow: st.reliableOverflow.Load(),
			SendFailed:       st.sendFailed.Load(),
		},
		Recipients: len(r.peers.Load().list),
	}
	r.mu.Lock()
	s.WorldVersion, s.WorldEntries, s.WorldBytes = r.world.version, r.world.live, r.world.size
	r.mu.Unlock()
	return s
}

// Receive takes one raw message from sid's publisher data channel of kind. canPublish=false ->
// ErrNotAllowed. It returns errors for that client alone; nothing is forwarded on error. It
// never blocks on a recipient.
func (r *Room) Receive(sid string, kind Kind, raw []byte, canPublish bool) error {
	st := &r.stats
	if r.closed.Load() {
		return ErrClosed
	}
	ps := r.peers.Load()
	from := ps.bySID[sid]
	switch {
	case from == nil:
		st.unknownSender.Add(1)
		return ErrUnknownSender
	case kind != Reliable && kind != Lossy:
		st.malformed.Add(1)
		return fmt.Errorf("%w: data channel kind %d", ErrMalformed, kind)
	case !canPublish:
		st.notAllowed.Add(1)
		return errNoGrant
	case len(raw) > r.cfg.MaxPacketBytes:
		st.tooLarge.Add(1)
		return r.errTooLarge
	}
	now := r.cfg.Now()
	if !from.allow(now) {
		st.rateLimited.Add(1)
		return r.errRateLimited
	}
	var dp livekit.DataPacket
	if err := proto.Unmarshal(raw, &dp); err != nil {
		st.malformed.Add(1)
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	err := r.relay(from, kind, &dp, now, ps)
	if err != nil {
		countRefusal(st, err)
	}
	return err
}

// relay checks, stamps and forwards one parsed packet.
func (r *Room) relay(from *peer, kind Kind, dp *livekit.DataPacket, now time.Time, ps *peerSet) error {
	// What a client may send follows livekit-server
	// (pkg/rtc/participant.go handleReceivedDataMessage): user, chat, RPC,
	// data streams, DTMF and encrypted packets are forwarded; speaker
	// updates and transcriptions come from the server or agents only;
	// metrics are for the server.
	var u *livekit.UserPacket
	var empty bool
	switch v := dp.Value.(type) {
	case *livekit.DataPacket_User:
		u, empty = v.User, v.User == nil
	case *livekit.DataPacket_ChatMessage:
		empty = v.ChatMessage == nil
	case *livekit.DataPacket_RpcRequest:
		empty = v.RpcRequest == nil
	case *livekit.DataPacket_RpcAck:
		empty = v.RpcAck == nil
	case *livekit.DataPacket_RpcResponse:
		empty = v.RpcResponse == nil
	case *livekit.DataPacket_StreamHeader:
		empty = v.StreamHeader == nil
	case *livekit.DataPacket_StreamChunk:
		empty = v.StreamChunk == nil
	case *livekit.DataPacket_StreamTrailer:
		empty = v.StreamTrailer == nil
	case *livekit.DataPacket_EncryptedPacket:
		empty = v.EncryptedPacket == nil
	case *livekit.DataPacket_SipDtmf:
		empty = v.SipDtmf == nil
	case *livekit.DataPacket_Metrics:
		r.stats.ignored.Add(1)
		return nil
	case *livekit.DataPacket_Speaker, *livekit.DataPacket_Transcription:
		return fmt.Errorf("%w: %T is sent by the server only", ErrNotAllowed, v)
	case nil:
		// A value from a newer protocol arrives as unknown fields:
		// forwarded as livekit-server does; a packet with nothing at all
		// is noise.
		empty = len(dp.ProtoReflect().GetUnknown()) == 0
	}
	if empty {
		return fmt.Errorf("%w: empty data packet", ErrMalformed)
	}

	// Never trust the client's idea of who it is.
	dp.Kind = livekitKind(kind)
	dp.ParticipantIdentity = from.identity
	dp.ParticipantSid = from.sid
	var msg outMsg
	if u != nil {
		u.ParticipantIdentity, u.ParticipantSid = from.identity, from.sid
		if len(dp.DestinationIdentities) == 0 {
			dp.DestinationIdentities = u.DestinationIdentities
		} else {
			u.DestinationIdentities = dp.DestinationIdentities
		}
		topic := u.GetTopic()
		switch topic {
		case r.snapTopic, r.deltaTopic:
			return fmt.Errorf("%w: topic %q is the server's", ErrNotAllowed, topic)
		case r.cfg.WorldTopic:
			at := mono()
			w, err := r.applyWorld(from, u.Payload, now)
			if err != nil || w == nil {
				return err
			}
			r.stats.received.Add(1)
			// The world is one state for everyone: a change goes to all
			// but its sender, whatever the destinations, merged into
			// each recipient's pending delta. Peers are loaded after the
			// change was applied under r.mu, so a joiner has it in its
			// snapshot or here (or both, which LWW makes harmless).
			changes := changesOf(w, from.identity, at)
			for _, p := range r.peers.Load().list {
				if p != from {
					p.enqueueWorld(kind, changes)
				}
			}
			return nil
		}
		msg.key = lossyKey{sender: from.sid, topic: topic}
	}
	b, err := proto.Marshal(dp)
	if err != nil {
		return fmt.Errorf("%w: re-encoding: %w", ErrMalformed, err)
	}
	msg.b = b
	r.stats.received.Add(1)
	var dsids []string
	if u != nil {
		dsids = u.DestinationSids // still routed, as livekit-server does
	}
	dids := dp.DestinationIdentities
	for _, p := range ps.list {
		if p == from {
			continue
		}
		if (len(dids) > 0 || len(dsids) > 0) && !slices.Contains(dids, p.identity) && !slices.Contains(dsids, p.sid) {
			continue
		}
		p.enqueue(kind, &msg)
	}
	return nil
}

// applyWorld applies a world message to the state and returns the part
// that won, stamped (nil: nothing won, forward nothing).
func (r *Room) applyWorld(from *peer, payload []byte, now time.Time) (*worldMsg, error) {
	m, err := parseWorldMsg(payload)
	if err != nil {
		return nil, err
	}
	nowMs := now.UnixMilli()
	stamp(m, nowMs, r.cfg.MaxClockSkew.Milliseconds())
	r.mu.Lock()
	applied, err := r.world.apply(m, from.identity, nowMs)
	if ttl := r.cfg.TombstoneTTL.Milliseconds(); r.world.tombs > r.cfg.MaxTombstones || nowMs-r.lastSweep > ttl/2 {
		r.world.expireTombstones(nowMs-ttl, r.cfg.MaxTombstones)
		r.lastSweep = nowMs
	}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if applied == nil {
		r.stats.stale.Add(1)
		return nil, nil
	}
	return applied, nil
}

// stamp gives a message without ts the server's clock and clamps stamps
// more than skew ahead of it.
func stamp(m *worldMsg, now, skew int64) {
	if m.ts == 0 || m.ts > now+skew {
		m.ts = now
	}
	for k, t := range m.at {
		if t == 0 || t > now+skew {
			m.at[k] = now
		}
	}
}

func countRefusal(st *counters, err error) {
	switch {
	case errors.Is(err, ErrMalformed):
		st.malformed.Add(1)
	case errors.Is(err, ErrNotAllowed):
		st.notAllowed.Add(1)
	case errors.Is(err, ErrWorldFull):
		st.worldFull.Add(1)
	}
}
