package rooms

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// LocalEvent is an event a local user asks to send.
type LocalEvent struct {
	Type     string
	StateKey *string
	Sender   UserID
	Content  cjson.Value
	// Redacts is the target of an m.room.redaction.
	Redacts EventID
}

// ErrNotLocal is returned when a local event's sender is not on this server.
var ErrNotLocal = errors.New("rooms: sender is not a local user")

// ErrRoomExists is returned when creating a room whose ID is taken.
var ErrRoomExists = errors.New("rooms: room already exists")

type createRequest struct {
	version *pdu.Version
	event   *Event
}

// Create makes a new room of the given version (DefaultVersion if empty)
// whose creator is sender: it builds and stores the m.room.create event.
// content is the create event's content (may be null); room_version (and
// creator, for version 10) are filled in.
func (s *Service) Create(ctx context.Context, version string, sender UserID, content cjson.Value) (*Stored, error) {
	if version == "" {
		version = DefaultVersion
	}
	v, ok := pdu.LookupVersion(version)
	if !ok {
		return nil, fmt.Errorf("rooms: unsupported room version %q", version)
	}
	if sender.Domain() != s.cfg.Signer.Server {
		return nil, ErrNotLocal
	}
	if content.Kind() == cjson.Null {
		content = cjson.Obj()
	}
	if content.Kind() != cjson.Object {
		return nil, fmt.Errorf("rooms: create content must be an object")
	}
	content = content.With("room_version", cjson.Str(v.ID))
	if !v.CreatorIsSender {
		content = content.With("creator", cjson.Str(string(sender)))
	}
	empty := ""
	p := &pdu.Proto{
		Type:           pdu.TypeCreate,
		StateKey:       &empty,
		Sender:         sender,
		Content:        content,
		PrevEvents:     []EventID{},
		AuthEvents:     []EventID{},
		Depth:          1,
		OriginServerTS: s.deps.Now().UnixMilli(),
	}
	if !v.RoomIDIsCreateHash {
		id, err := randomRoomID(s.cfg.Signer.Server)
		if err != nil {
			return nil, err
		}
		p.RoomID = id
	}
	// In room version 12 the room ID is the create event's hash, so two
	// rooms created by the same user with the same content in the same
	// millisecond would collide: move the timestamp on and try again.
	for attempt := 0; ; attempt++ {
		ev, err := p.Build(v, s.cfg.Signer)
		if err != nil {
			return nil, err
		}
		st, err := s.storeCreate(ctx, v, ev)
		if errors.Is(err, ErrRoomExists) && v.RoomIDIsCreateHash && attempt < 8 {
			p.OriginServerTS++
			continue
		}
		return st, err
	}
}

// storeCreate checks a create event against auth rule 1 (the only rule
// that applies to it) and stores it as the root of a new room.
func (s *Service) storeCreate(ctx context.Context, v *pdu.Version, ev *Event) (*Stored, error) {
	if err := auth.Allowed(ev, func(pdu.StateTuple) *pdu.Event { return nil }); err != nil {
		return nil, err
	}
	r, err := s.do(ctx, ev.RoomID(), &request{kind: reqCreate, create: &createRequest{version: v, event: ev}})
	if err != nil {
		return nil, err
	}
	return r.stored, nil
}

func randomRoomID(server ServerName) (RoomID, error) {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return RoomID("!" + string(b) + ":" + string(server)), nil
}

func (w *worker) create(ctx context.Context, tx *txn, req *createRequest) *result {
	if w.st != nil {
		return &result{err: ErrRoomExists}
	}
	if _, err := w.s.deps.Store.Room(ctx, string(w.roomID)); err == nil {
		return &result{err: ErrRoomExists}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return &result{err: fatal(err)}
	}
	ev := req.event
	tuple := ev.Tuple()
	st := &roomState{
		version: req.version,
		create:  ev,
		current: stateMap{tuple: ev.ID()},
		events:  map[EventID]*known{},
		waiting: map[EventID][]EventID{},
	}
	st.extrem = map[EventID]stateMap{ev.ID(): st.current}
	k := &known{ev: ev}
	noteReplaces(k, stateMap{})
	st.events[ev.ID()] = k
	w.st = st
	w.s.versions.Store(w.roomID, req.version)
	tx.batch.CreateVersion = req.version.ID
	stored := tx.add(k, &storage.StateSpec{Delta: storage.StateMap{{Type: tuple.Type, StateKey: tuple.StateKey}: string(ev.ID())}})
	tx.setCurrent(stateMap{tuple: ev.ID()})
	tx.extremChanged = true
	return &result{stored: stored}
}

// Append builds, signs, checks and stores a local event in roomID. An event
// the auth rules refuse is not stored, and the error is a
// *NotAllowedError naming the rule.
func (s *Service) Append(ctx context.Context, roomID RoomID, le LocalEvent) (*Stored, error) {
	if le.Sender.Domain() != s.cfg.Signer.Server {
		return nil, ErrNotLocal
	}
	if le.Type == pdu.TypeCreate {
		return nil, errors.New("rooms: use Create for m.room.create")
	}
	r, err := s.do(ctx, roomID, &request{kind: reqLocal, local: &le})
	if err != nil {
		return nil, err
	}
	return r.stored, nil
}

// appendLocal links a local event to the forward extremities ("the most
// recent unlinked objects in the graph"), picks its auth events from the
// current state (server-server API, "Auth events selection"), and checks it
// against the current state, which is its state before.
func (w *worker) appendLocal(ctx context.Context, tx *txn, le *LocalEvent) *result {
	st := w.st
	v := st.version
	p := w.newProto(le)
	prevs := p.PrevEvents
	content := p.Content
	// The signature is added when the batch is sealed, all events of the
	// batch in parallel: the event ID does not depend on it, so the next
	// event can follow this one at once. The one rule that reads the
	// event's signatures (a restricted join's authorising server) needs it
	// now.
	u, err := p.BuildUnsigned(v, w.s.cfg.Signer)
	if err != nil {
		return &result{err: err}
	}
	_, viaJoin := content.Get("join_authorised_via_users_server")
	if viaJoin {
		u.Sign(w.s.cfg.Signer)
	} else {
		tx.unsigned = append(tx.unsigned, u)
	}
	ev := u.Event()
	if err := auth.Allowed(ev, w.getter(st.current)); err != nil {
		if !viaJoin {
			tx.unsigned = tx.unsigned[:len(tx.unsigned)-1]
		}
		return &result{err: err}
	}
	k := &known{ev: ev}
	st.events[ev.ID()] = k

	// State after: the current state plus this event. With one extremity
	// the current map is that extremity's state and is updated in place.
	base := prevs[0]
	var baseState stateMap
	after := st.current
	if len(st.extrem) != 1 {
		baseState = st.extrem[base]
		after = copyState(st.current)
	}
	spec := stateSpec(base, baseState, st.current, ev, true)
	noteReplaces(k, st.current)
	if ev.IsState() {
		after[ev.Tuple()] = ev.ID()
		tx.setCurrent(stateMap{ev.Tuple(): ev.ID()})
	}
	stored := tx.add(k, spec)
	st.extrem = map[EventID]stateMap{ev.ID(): after}
	st.current = after
	tx.extremChanged = true
	return &result{stored: stored}
}

// Begin stores the m.room.create event of a room created on another server:
// the root from which this server's copy of the room grows as further
// events are admitted (federation joins start here). The event must be
// validly signed, hashed and allowed by auth rule 1.
func (s *Service) Begin(ctx context.Context, data []byte) (*Stored, error) {
	raw, err := cjson.Parse(data)
	if err != nil {
		return nil, &pdu.FormatError{Reason: err.Error()}
	}
	version, ok := raw.Path("content", "room_version")
	vs, isStr := version.Str()
	if !ok || !isStr {
		return nil, &pdu.FormatError{Field: "content.room_version", Reason: "missing or not a string"}
	}
	v, ok := pdu.LookupVersion(vs)
	if !ok {
		return nil, fmt.Errorf("rooms: unsupported room version %q", vs)
	}
	ev, err := pdu.NewEvent(raw, v)
	if err != nil {
		return nil, err
	}
	if ev.Type() != pdu.TypeCreate || !ev.StateKeyIs("") {
		return nil, &pdu.FormatError{Field: "type", Reason: "not an m.room.create event"}
	}
	if err := pdu.VerifySignatures(ev, s.deps.Keys); err != nil {
		return nil, err
	}
	if !ev.CheckContentHash() {
		return nil, &pdu.FormatError{Field: "hashes", Reason: "content hash mismatch on m.room.create"}
	}
	return s.storeCreate(ctx, v, ev)
}

// newProto builds an event on the room's forward extremities, with its
// auth events picked from the current state (server-server API, "Auth
// events selection").
func (w *worker) newProto(le *LocalEvent) *pdu.Proto {
	st := w.st
	v := st.version
	content := le.Content
	if content.Kind() == cjson.Null {
		content = cjson.Obj()
	}
	prevs := w.sortedExtremities()
	if len(prevs) > pdu.MaxPrevEvents {
		prevs = prevs[:pdu.MaxPrevEvents]
	}
	var depth int64
	for _, p := range prevs {
		if d := w.depthOf(p); d > depth {
			depth = d
		}
	}
	depth++
	if depth > cjson.MaxSafeInt {
		depth = cjson.MaxSafeInt
	}
	var authIDs []EventID
	for _, t := range auth.SelectAuthTuples(v, le.Type, le.StateKey, le.Sender, content) {
		if t.Type == pdu.TypeCreate && v.RoomIDIsCreateHash {
			continue
		}
		if id, ok := st.current[t]; ok {
			authIDs = append(authIDs, id)
		}
	}
	return &pdu.Proto{
		Type:           le.Type,
		StateKey:       le.StateKey,
		Sender:         le.Sender,
		RoomID:         w.roomID,
		Content:        content,
		PrevEvents:     prevs,
		AuthEvents:     authIDs,
		Depth:          depth,
		OriginServerTS: w.s.deps.Now().UnixMilli(),
		Redacts:        le.Redacts,
	}
}
