package rooms

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// givenRequest places one event with a state before it that a remote
// server reported, rather than one computed here: the join event of a
// send_join (Join), or an event past a gap (AdmitWithState).
type givenRequest struct {
	join    bool // Join: the room may be new here, and the join must pass
	version *pdu.Version
	event   *incoming
	state   []*incoming
	chain   []*incoming
	// partial: JoinPartial, whose state lacks the members; servers are
	// the send_join answer's servers_in_room.
	partial bool
	servers []string
}

// Join stores this server's copy of a room joined over federation: the
// joining server's side of send_join (server-server API, "Joining
// Rooms"). join is the signed join event (as the resident returned it, for
// a restricted join countersigned by it), state the room state before it
// and authChain the auth chain of that state, as the send_join response
// lists them.
//
// The state and auth chain events are stored as outliers, each checked as
// "Checks performed on receipt of a PDU" steps 1 to 4 prescribe (dropped on
// bad format or signature or unknown auth events, redacted on a bad content
// hash, rejected when its own auth events refuse it), in auth order. The
// join is then placed with the accepted state events as the state before
// it; it becomes the room's only forward extremity and the state after it
// the current state. Its prev events are not fetched.
//
// A join that is not a valid, signed join of a local user, a state without
// the room's create event, or a join the state refuses is an error, and
// nothing is stored. If the room was already stored (an earlier
// membership), its forward extremities are replaced by the join.
func (s *Service) Join(ctx context.Context, roomID RoomID, join []byte, state [][]byte, authChain [][]byte) (*Admitted, error) {
	v, err := s.givenVersion(ctx, roomID, state)
	if err != nil {
		return nil, err
	}
	g := newGivenRequest(true, v, join, state, authChain)
	s.precheck(v, g.all())
	if err := s.checkJoin(roomID, g.event); err != nil {
		return nil, err
	}
	r, err := s.do(ctx, roomID, &request{kind: reqGiven, given: g})
	if err != nil {
		return nil, err
	}
	return r.admitted, nil
}

// AdmitWithState places a remote event whose prev events are missing and
// could not be fetched (server-server API, "Retrieving missing events":
// the server "may request the state of the room at" the gap instead).
// state is the state before the event as a remote server reported it
// (/state_ids at the event and the events it names) and authChain its auth
// chain. They are stored as outliers as for Join; the event then goes
// through steps 4 to 6 of the receive pipeline with that state as its
// state before, and becomes a forward extremity beside the existing ones
// (state resolution merges them into the current state). Events held for
// it are placed after it.
//
// A state without the room's create event is an error, and nothing is
// stored. Unknown auth events of the event itself give a
// *MissingAuthError.
func (s *Service) AdmitWithState(ctx context.Context, roomID RoomID, data []byte, state [][]byte, authChain [][]byte) (*Admitted, error) {
	v, err := s.givenVersion(ctx, roomID, nil)
	if err != nil {
		return nil, err
	}
	g := newGivenRequest(false, v, data, state, authChain)
	s.precheck(v, g.all())
	r, err := s.do(ctx, roomID, &request{kind: reqGiven, given: g})
	if err != nil {
		return nil, err
	}
	return r.admitted, nil
}

func newGivenRequest(join bool, v *pdu.Version, event []byte, state, chain [][]byte) *givenRequest {
	g := &givenRequest{join: join, version: v, event: &incoming{data: event}}
	for _, d := range state {
		g.state = append(g.state, &incoming{data: d})
	}
	for _, d := range chain {
		g.chain = append(g.chain, &incoming{data: d})
	}
	return g
}

func (g *givenRequest) all() []*incoming {
	out := make([]*incoming, 0, 1+len(g.state)+len(g.chain))
	out = append(out, g.event)
	out = append(out, g.state...)
	return append(out, g.chain...)
}

// givenVersion is the room's version: the stored room's, or for a room new
// here (state non-nil: a join) the one its create event names.
func (s *Service) givenVersion(ctx context.Context, roomID RoomID, state [][]byte) (*pdu.Version, error) {
	if v, ok := s.versions.Load(roomID); ok {
		return v.(*pdu.Version), nil
	}
	info, err := s.deps.Store.Room(ctx, string(roomID))
	if err == nil {
		v, ok := pdu.LookupVersion(info.Version)
		if !ok {
			return nil, fmt.Errorf("rooms: room %s has unsupported version %q", roomID, info.Version)
		}
		return v, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	if state == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownRoom, roomID)
	}
	for _, d := range state {
		obj, err := cjson.Parse(d)
		if err != nil {
			continue // dropped later, with the reason
		}
		if typ, _ := obj.GetStr("type"); typ != pdu.TypeCreate {
			continue
		}
		if sk, _ := obj.GetStr("state_key"); sk != "" {
			continue
		}
		rv, ok := obj.Path("content", "room_version")
		vs, isStr := rv.Str()
		if !ok || !isStr {
			return nil, &pdu.FormatError{Field: "content.room_version", Reason: "missing or not a string on m.room.create"}
		}
		v, ok := pdu.LookupVersion(vs)
		if !ok {
			return nil, fmt.Errorf("rooms: unsupported room version %q", vs)
		}
		return v, nil
	}
	return nil, errors.New("rooms: join: the state has no m.room.create event")
}

// checkJoin applies what send_join requires of a join (server-server API,
// PUT /send_join: signed, m.room.member, membership join, state_key the
// sender) and that the sender is ours.
func (s *Service) checkJoin(roomID RoomID, x *incoming) error {
	if x.err != nil {
		return x.err
	}
	ev := x.ev
	switch {
	case x.redacted:
		return &pdu.FormatError{Field: "hashes", Reason: "content hash mismatch on the join event"}
	case ev.RoomID() != roomID:
		return &pdu.FormatError{Field: "room_id", Reason: fmt.Sprintf("join is for %s, not %s", ev.RoomID(), roomID)}
	case ev.Type() != pdu.TypeMember || ev.Membership() != "join":
		return &pdu.FormatError{Field: "type", Reason: "not an m.room.member join"}
	case !ev.StateKeyIs(string(ev.Sender())):
		return &pdu.FormatError{Field: "state_key", Reason: "not the sender"}
	case ev.Sender().Domain() != s.cfg.Signer.Server:
		return ErrNotLocal
	}
	return nil
}

// given runs a Join or AdmitWithState on the worker.
func (w *worker) given(ctx context.Context, tx *txn, g *givenRequest) *result {
	fresh := false
	if err := w.load(ctx); errors.Is(err, ErrUnknownRoom) && g.join {
		fresh = true
	} else if err != nil {
		return &result{err: err}
	}
	if !fresh && w.st.version.ID != g.version.ID {
		return &result{err: fmt.Errorf("rooms: events of room version %s for a room of version %s", g.version.ID, w.st.version.ID)}
	}
	x := g.event
	if !x.checked {
		w.s.check(g.version, x)
	}
	if x.err != nil {
		return &result{err: x.err}
	}
	ev := x.ev
	if ev.RoomID() != w.roomID {
		return &result{err: &pdu.FormatError{Field: "room_id", Reason: fmt.Sprintf("event is for %s, not %s", ev.RoomID(), w.roomID)}}
	}
	if ev.Type() == pdu.TypeCreate && ev.StateKeyIs("") {
		return &result{err: &pdu.FormatError{Field: "type", Reason: "m.room.create cannot be placed on a state"}}
	}
	var prior *known // the event as already stored, if it is
	if !fresh {
		var err error
		if prior, err = w.get(ctx, ev.ID()); err != nil {
			return &result{err: err}
		}
		if prior != nil && !prior.outlier {
			return &result{admitted: &Admitted{Stored: &Stored{Event: prior.ev, Rejected: prior.rejected, SoftFailed: prior.softFailed}, Duplicate: true}}
		}
	}

	o, err := w.checkOutliers(ctx, g, fresh)
	if err != nil {
		return &result{err: err}
	}
	before, err := o.stateBefore(g.state)
	if err != nil {
		return &result{err: err}
	}

	// Step 4 for the event itself.
	authEvs := make([]*pdu.Event, 0, len(ev.AuthEvents()))
	var missing []EventID
	for _, id := range ev.AuthEvents() {
		if k := o.lookup(id); k != nil {
			authEvs = append(authEvs, k.ev)
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return &result{err: &MissingAuthError{EventID: ev.ID(), Missing: missing}}
	}
	var reason string
	if err := auth.CheckAuthEvents(ev, authEvs, o.create, o.isRejected); err != nil {
		reason = rejectedByAuthEvents + err.Error()
	} else if err := auth.Allowed(ev, getterOf(o.create, authEvs)); err != nil {
		reason = rejectedByAuthEvents + err.Error()
	}
	if g.join {
		// The joining server has no other view of the room: a join the
		// resident's own answer refuses means the answer is wrong.
		if reason != "" {
			return &result{err: fmt.Errorf("rooms: join refused by its auth events: %s", reason)}
		}
		state := o.stateGetter(before)
		if g.partial {
			state = withAuthMembers(state, authEvs)
		}
		if err := auth.Allowed(ev, state); err != nil {
			return &result{err: fmt.Errorf("rooms: join refused by the state before it: %w", err)}
		}
	}

	// Everything checked: from here on, store.
	if fresh {
		w.st = &roomState{
			version: g.version,
			create:  o.create,
			current: stateMap{},
			extrem:  map[EventID]stateMap{},
			events:  map[EventID]*known{},
			waiting: map[EventID][]EventID{},
		}
		w.s.versions.Store(w.roomID, g.version)
		tx.batch.CreateVersion = g.version.ID
	}
	for _, k := range o.order {
		w.st.events[k.ev.ID()] = k
		tx.add(k, nil)
	}
	k := prior
	if k == nil {
		k = &known{ev: ev, outlier: true}
	}
	k.rejected = reason
	k.softFailed = false
	w.st.events[ev.ID()] = k
	if prior != nil {
		// Held for missing prev events until now: the gap no longer
		// matters, as the event has a state.
		w.unwait(ev)
		tx.batch.FilledGaps = append(tx.batch.FilledGaps, string(ev.ID()))
	}
	var stored *Stored
	if g.join {
		stored = w.placeJoin(tx, k, before)
		if err := w.noteBackward(ctx, tx, ev); err != nil {
			return &result{err: err}
		}
		if g.partial {
			tx.batch.PartialState = &storage.PartialStateRoom{JoinEvent: string(ev.ID()), Servers: g.servers}
		}
	} else if res := w.placeWithState(ctx, tx, k, before); res.err != nil {
		return res
	} else {
		stored = res.admitted.Stored
	}
	if !k.outlier {
		if r := w.placeWaiting(ctx, tx, ev.ID()); r != nil {
			return r
		}
	}
	return &result{admitted: &Admitted{Stored: stored}}
}

// placeJoin places a checked join with the given state before it, as the
// room's only forward extremity.
func (w *worker) placeJoin(tx *txn, k *known, before stateMap) *Stored {
	st := w.st
	ev := k.ev
	noteReplaces(k, before)
	after := copyState(before)
	after[ev.Tuple()] = ev.ID()
	k.outlier = false
	old := st.current
	st.extrem = map[EventID]stateMap{ev.ID(): after}
	st.current = after
	tx.extremChanged = true
	tx.setCurrent(diffState(old, after))
	return tx.add(k, &storage.StateSpec{Delta: toStorageMap(after)})
}

// placeWithState runs steps 5 and 6 for an event with a state before it
// from elsewhere, then stores it as a forward extremity beside the others.
func (w *worker) placeWithState(ctx context.Context, tx *txn, k *known, before stateMap) *result {
	st := w.st
	ev := k.ev
	if err := w.ensureStateEvents(ctx, before); err != nil {
		return &result{err: err}
	}
	if k.rejected == "" {
		if err := auth.Allowed(ev, w.getter(before)); err != nil {
			k.rejected = rejectedByState + err.Error()
		}
	}
	k.outlier = false
	if k.rejected != "" {
		// As in placeOne: the state after a rejected event is the state
		// before it, so events citing it can be placed.
		return &result{admitted: &Admitted{Stored: tx.add(k, &storage.StateSpec{Delta: toStorageMap(before)})}}
	}
	if err := w.ensureStateEvents(ctx, st.current); err != nil {
		return &result{err: err}
	}
	if err := auth.Allowed(ev, w.getter(st.current)); err != nil {
		k.softFailed = true
		w.log.Info("event soft-failed", "event", ev.ID(), "reason", err)
	}
	noteReplaces(k, before)
	after := copyState(before)
	if ev.IsState() {
		after[ev.Tuple()] = ev.ID()
	}
	spec := &storage.StateSpec{Delta: toStorageMap(after)}
	if err := w.advance(ctx, tx, k, before); err != nil {
		return &result{err: err}
	}
	return &result{admitted: &Admitted{Stored: tx.add(k, spec)}}
}

// unwait forgets that ev waits for its prev events.
func (w *worker) unwait(ev *Event) {
	for _, p := range ev.PrevEvents() {
		ws := slices.DeleteFunc(w.st.waiting[p], func(id EventID) bool { return id == ev.ID() })
		if len(ws) == 0 {
			delete(w.st.waiting, p)
		} else {
			w.st.waiting[p] = ws
		}
	}
}

// outliers are the state and auth chain events of a Join or
// AdmitWithState, checked but not yet stored.
type outliers struct {
	w      *worker
	create *Event
	// fresh: the room is not stored here; nothing is looked up in w.st.
	fresh bool
	// events holds the verdicts on the new events; order lists them so
	// that every event comes after its auth events.
	events map[EventID]*known
	order  []*known
}

// lookup finds an event among the new outliers or those stored.
func (o *outliers) lookup(id EventID) *known {
	if k := o.events[id]; k != nil {
		return k
	}
	if o.fresh {
		return nil
	}
	return o.w.st.events[id]
}

func (o *outliers) isRejected(id EventID) bool {
	k := o.lookup(id)
	return k != nil && k.rejected != ""
}

// stateGetter serves a state whose events are all found by lookup.
func (o *outliers) stateGetter(s stateMap) auth.StateGetter {
	return func(t pdu.StateTuple) *pdu.Event {
		if t.Type == pdu.TypeCreate && t.StateKey == "" {
			return o.create
		}
		if k := o.lookup(s[t]); k != nil {
			return k.ev
		}
		return nil
	}
}

// getterOf serves state from an event's own auth events, with the create
// event always visible (room version 12).
func getterOf(create *Event, evs []*pdu.Event) auth.StateGetter {
	m := make(map[pdu.StateTuple]*pdu.Event, len(evs))
	for _, e := range evs {
		if e.IsState() {
			m[e.Tuple()] = e
		}
	}
	return func(t pdu.StateTuple) *pdu.Event {
		if t.Type == pdu.TypeCreate && t.StateKey == "" {
			return create
		}
		return m[t]
	}
}

// checkOutliers runs steps 1 to 4 on the state and auth chain events. An
// event that fails steps 1 or 2, is in another room, or cites auth events
// found neither here nor among them is dropped; one that fails step 4 is
// kept as rejected. Events already stored keep their stored verdict.
func (w *worker) checkOutliers(ctx context.Context, g *givenRequest, fresh bool) (*outliers, error) {
	o := &outliers{w: w, fresh: fresh, events: map[EventID]*known{}}
	cands := map[EventID]*incoming{}
	var ids []EventID
	for _, x := range append(slices.Clip(g.state), g.chain...) {
		if !x.checked {
			w.s.check(g.version, x)
		}
		if x.err != nil {
			w.log.Info("state event dropped", "err", x.err)
			continue
		}
		id := x.ev.ID()
		if x.ev.RoomID() != w.roomID {
			w.log.Info("state event of another room dropped", "event", id, "in", x.ev.RoomID())
			continue
		}
		if _, dup := cands[id]; dup || id == g.event.ev.ID() {
			continue
		}
		cands[id] = x
		ids = append(ids, id)
	}
	if fresh {
		for _, id := range ids {
			x := cands[id]
			if x.ev.Type() != pdu.TypeCreate || !x.ev.StateKeyIs("") {
				continue
			}
			if o.create != nil {
				return nil, errors.New("rooms: join: the state has two m.room.create events")
			}
			if x.redacted {
				return nil, &pdu.FormatError{Field: "hashes", Reason: "content hash mismatch on m.room.create"}
			}
			if err := auth.Allowed(x.ev, func(pdu.StateTuple) *pdu.Event { return nil }); err != nil {
				return nil, fmt.Errorf("rooms: join: m.room.create: %w", err)
			}
			o.create = x.ev
		}
		if o.create == nil {
			return nil, errors.New("rooms: join: the state has no valid m.room.create event")
		}
	} else {
		o.create = w.st.create
		// Load whichever of the events, and of their auth events, are
		// stored already, in one query.
		need := slices.Clone(ids)
		for _, id := range ids {
			need = append(need, cands[id].ev.AuthEvents()...)
		}
		need = append(need, g.event.ev.AuthEvents()...)
		if err := w.fetch(ctx, need); err != nil {
			return nil, err
		}
	}

	// Auth events first: a depth-first walk over auth_events, from the
	// events in (depth, ID) order so the result does not depend on the
	// order the remote server listed them in.
	sort.Slice(ids, func(i, j int) bool {
		di, dj := cands[ids[i]].ev.Depth(), cands[ids[j]].ev.Depth()
		if di != dj {
			return di < dj
		}
		return ids[i] < ids[j]
	})
	const (
		visiting = 1
		done     = 2
	)
	mark := map[EventID]int{}
	var visit func(id EventID)
	visit = func(id EventID) {
		mark[id] = visiting
		defer func() { mark[id] = done }()
		ev := cands[id].ev
		if !fresh && w.st.events[id] != nil {
			return // stored: its verdict stands
		}
		if ev.Type() == pdu.TypeCreate && ev.StateKeyIs("") {
			// The room's own create event was checked above; any other
			// is rejected, as Admit rejects it.
			k := &known{ev: ev, outlier: true}
			if ev.ID() != o.create.ID() {
				k.rejected = rejectedByAuthEvents + "a second m.room.create event"
			}
			o.events[id] = k
			o.order = append(o.order, k)
			return
		}
		authEvs := make([]*pdu.Event, 0, len(ev.AuthEvents()))
		for _, a := range ev.AuthEvents() {
			if _, ok := cands[a]; ok && mark[a] == 0 {
				visit(a)
			}
			k := o.lookup(a)
			if k == nil {
				// Unknown, dropped, or on an auth cycle.
				w.log.Info("state event with unknown auth events dropped", "event", id, "auth", a)
				return
			}
			authEvs = append(authEvs, k.ev)
		}
		k := &known{ev: ev, outlier: true}
		if err := auth.CheckAuthEvents(ev, authEvs, o.create, o.isRejected); err != nil {
			k.rejected = rejectedByAuthEvents + err.Error()
		} else if err := auth.Allowed(ev, getterOf(o.create, authEvs)); err != nil {
			k.rejected = rejectedByAuthEvents + err.Error()
		}
		o.events[id] = k
		o.order = append(o.order, k)
	}
	for _, id := range ids {
		if mark[id] == 0 {
			visit(id)
		}
	}
	return o, nil
}

// stateBefore keys the accepted state events of the reported state by
// their (type, state_key). It must hold the room's create event.
func (o *outliers) stateBefore(state []*incoming) (stateMap, error) {
	before := stateMap{}
	for _, x := range state {
		if x.ev == nil {
			continue
		}
		k := o.lookup(x.ev.ID())
		if k == nil || k.rejected != "" || !k.ev.IsState() {
			continue
		}
		t := k.ev.Tuple()
		if id, dup := before[t]; dup && id != k.ev.ID() {
			return nil, fmt.Errorf("rooms: the reported state lists %s and %s for (%s, %q)", id, k.ev.ID(), t.Type, t.StateKey)
		}
		before[t] = k.ev.ID()
	}
	if before[pdu.StateTuple{Type: pdu.TypeCreate}] != o.create.ID() {
		return nil, fmt.Errorf("rooms: the reported state does not hold the room's m.room.create event %s", o.create.ID())
	}
	return before, nil
}
