package rooms

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// ReportedState is the room state before an event as a remote server
// reported it (GET /state at the event): the state events and their auth
// chain, bytes as received.
type ReportedState struct {
	State     [][]byte
	AuthChain [][]byte
}

// backfillRequest is one Backfill on the worker.
type backfillRequest struct {
	version *pdu.Version
	events  []*incoming
	// states holds the reported state before the events whose prev
	// events are neither placed here nor among events.
	states map[EventID]*givenRequest
}

// Backfill stores history older than this server's copy of a room, as
// GET /backfill returns it (server-server API, "Backfilling and retrieving
// missing events"), without changing the room's forward extremities,
// current state or anything a /sync or federation sender reads: the events
// take stream positions below every stored event (storage.Batch.Backfill)
// and the Listener does not hear of them.
//
// Every event goes through "Checks performed on receipt of a PDU" steps 1
// to 5: dropped on bad format or signature, or if its auth events are
// unknown here; redacted on a bad content hash; rejected when its auth
// events or the state before it refuse it. The state before an event is
// the resolution of the states after its prev events, when all of them
// are placed here or among pdus; otherwise it is states[event ID], whose
// events are stored as outliers after the same checks as Join's. An event
// with neither cannot be placed and is left out: BackfillRoots tells the
// caller which events need a reported state.
//
// The room's backward extremities (storage.DB.BackwardExtremities) move
// with it: the events placed leave them, and their prev events that are
// not placed here join them. It returns the placed events oldest first;
// events already placed are left out.
func (s *Service) Backfill(ctx context.Context, roomID RoomID, pdus [][]byte, states map[EventID]*ReportedState) ([]*Stored, error) {
	v, err := s.givenVersion(ctx, roomID, nil)
	if err != nil {
		return nil, err
	}
	req := &backfillRequest{version: v, states: map[EventID]*givenRequest{}}
	all := make([]*incoming, 0, len(pdus))
	for _, d := range pdus {
		x := &incoming{data: d}
		req.events = append(req.events, x)
		all = append(all, x)
	}
	for id, st := range states {
		if st == nil {
			continue
		}
		// The event itself is one of pdus; the request's own copy is
		// matched to it on the worker.
		g := newGivenRequest(false, v, nil, st.State, st.AuthChain)
		req.states[id] = g
		all = append(all, g.state...)
		all = append(all, g.chain...)
	}
	s.precheck(v, all)
	r, err := s.do(ctx, roomID, &request{kind: reqBackfill, backfill: req})
	if err != nil {
		return nil, err
	}
	return r.backfilled, nil
}

// BackfillRoots lists, sorted, the events among pdus (as /backfill
// returned them) that Backfill can place only with a reported state: those
// citing a prev event that is neither among pdus nor placed here. Events
// that do not parse are skipped; Backfill drops them.
func (s *Service) BackfillRoots(ctx context.Context, roomID RoomID, pdus [][]byte) ([]EventID, error) {
	v, err := s.givenVersion(ctx, roomID, nil)
	if err != nil {
		return nil, err
	}
	got := map[EventID]bool{}
	var evs []*Event
	for _, d := range pdus {
		ev, err := pdu.ParseEvent(d, v)
		if err != nil || ev.RoomID() != roomID {
			continue
		}
		got[ev.ID()] = true
		evs = append(evs, ev)
	}
	var outside []string
	for _, ev := range evs {
		for _, p := range ev.PrevEvents() {
			if !got[p] {
				outside = append(outside, string(p))
			}
		}
	}
	recs, err := s.deps.Store.Events(ctx, outside)
	if err != nil {
		return nil, err
	}
	var roots []EventID
	for _, ev := range evs {
		for _, p := range ev.PrevEvents() {
			if rec := recs[string(p)]; !got[p] && (rec == nil || rec.Outlier || rec.RoomID != string(roomID)) {
				roots = append(roots, ev.ID())
				break
			}
		}
	}
	sort.Slice(roots, func(i, j int) bool { return roots[i] < roots[j] })
	return roots, nil
}

// backfill runs a Backfill on the worker. It commits on its own, in a
// batch of its own, before returning: storage gives a whole batch
// backfill positions, so no live event may share it.
func (w *worker) backfill(ctx context.Context, tx *txn, req *backfillRequest) *result {
	if err := w.load(ctx); err != nil {
		return &result{err: err}
	}
	if w.st.version.ID != req.version.ID {
		return &result{err: fmt.Errorf("rooms: events of room version %s for a room of version %s", req.version.ID, w.st.version.ID)}
	}
	// Live events of this round go first, in their own batch; then
	// storage is current for every state read below.
	if err := tx.flush(ctx); err != nil {
		return &result{err: fatal(err)}
	}
	w.barrier()

	b := &backfiller{w: w, req: req, tx: newTxn(w), after: map[EventID]stateMap{}, placed: map[EventID]bool{}}
	b.tx.batch.Backfill = true
	order, err := b.candidates(ctx)
	if err != nil {
		return &result{err: err}
	}
	var out []*Stored
	for _, x := range order {
		s, err := b.place(ctx, x)
		if err != nil {
			if isFatal(err) {
				return &result{err: err}
			}
			w.log.Info("backfilled event left out", "event", x.ev.ID(), "err", err)
			continue
		}
		out = append(out, s)
	}
	b.frontier()
	if b.tx.empty() && len(b.tx.batch.DropBackward) == 0 {
		return &result{}
	}
	b.tx.seal()
	if err := w.s.deps.Store.Commit(ctx, &b.tx.batch); err != nil {
		// The cache now holds events as placed that are not: reload.
		return &result{err: fatal(err)}
	}
	for i := range b.tx.batch.Events {
		b.tx.stored[i].StreamPos = b.tx.batch.Events[i].Record.StreamPos
	}
	// Not the Listener: history is neither new to /sync nor for sending.
	sort.Slice(out, func(i, j int) bool { return out[i].StreamPos < out[j].StreamPos })
	return &result{backfilled: out}
}

// noteBackward records the prev events of ev that are not placed here as
// backward extremities of the room: a joined room's history starts at the
// join, and Backfill goes on from there.
func (w *worker) noteBackward(ctx context.Context, tx *txn, ev *Event) error {
	if err := w.fetch(ctx, ev.PrevEvents()); err != nil {
		return err
	}
	for _, p := range ev.PrevEvents() {
		if k := w.st.events[p]; k == nil || k.outlier {
			tx.batch.BackwardExtremities = append(tx.batch.BackwardExtremities, string(p))
		}
	}
	return nil
}

// backfiller is the state of one Backfill on the worker.
type backfiller struct {
	w   *worker
	req *backfillRequest
	tx  *txn
	// after holds the state after each event placed by this request.
	after map[EventID]stateMap
	// placed are the events this request placed, and dropped the IDs of
	// those it refused at steps 1 to 3.
	placed  map[EventID]bool
	dropped []EventID
	// already are events of the answer that were placed before.
	already []EventID
}

// candidates checks steps 1 to 3 and returns the events still to place,
// each after its prev and auth events among them.
func (b *backfiller) candidates(ctx context.Context) ([]*incoming, error) {
	w := b.w
	byID := map[EventID]*incoming{}
	var ids []EventID
	for _, x := range b.req.events {
		if !x.checked {
			w.s.check(w.st.version, x)
		}
		if x.err != nil {
			w.log.Info("backfilled event dropped", "err", x.err)
			if id, ok := eventIDOf(x.data, w.st.version); ok {
				b.dropped = append(b.dropped, id)
			}
			continue
		}
		id := x.ev.ID()
		if x.ev.RoomID() != w.roomID {
			w.log.Info("backfilled event of another room dropped", "event", id, "in", x.ev.RoomID())
			b.dropped = append(b.dropped, id)
			continue
		}
		if _, dup := byID[id]; dup {
			continue
		}
		byID[id] = x
		ids = append(ids, id)
	}
	if err := w.fetch(ctx, ids); err != nil {
		return nil, err
	}
	// Oldest first by depth, ties by ID, then a walk that puts prev and
	// auth events first whatever depths the sender claimed.
	sort.Slice(ids, func(i, j int) bool {
		di, dj := byID[ids[i]].ev.Depth(), byID[ids[j]].ev.Depth()
		if di != dj {
			return di < dj
		}
		return ids[i] < ids[j]
	})
	seen := map[EventID]bool{}
	var order []*incoming
	var visit func(id EventID)
	visit = func(id EventID) {
		seen[id] = true
		x := byID[id]
		for _, p := range append(x.ev.PrevEvents(), x.ev.AuthEvents()...) {
			if _, ok := byID[p]; ok && !seen[p] {
				visit(p)
			}
		}
		if k := w.st.events[id]; k != nil && !k.outlier {
			b.already = append(b.already, id)
			return
		}
		order = append(order, x)
	}
	for _, id := range ids {
		if !seen[id] {
			visit(id)
		}
	}
	return order, nil
}

// eventIDOf is the ID of an event that failed its checks, if it parses
// that far.
func eventIDOf(data []byte, v *pdu.Version) (EventID, bool) {
	ev, err := pdu.ParseEvent(data, v)
	if err != nil {
		return "", false
	}
	return ev.ID(), true
}

// place checks and places one event (steps 4 and 5), with the state before
// it from its prev events or a reported state.
func (b *backfiller) place(ctx context.Context, x *incoming) (*Stored, error) {
	w := b.w
	st := w.st
	ev := x.ev
	isCreate := ev.Type() == pdu.TypeCreate && ev.StateKeyIs("")
	if isCreate && ev.ID() != st.create.ID() {
		return nil, errors.New("a second m.room.create event")
	}
	if !isCreate && len(ev.PrevEvents()) == 0 {
		return nil, &pdu.FormatError{Field: "prev_events", Reason: "empty on an event other than m.room.create"}
	}

	var before stateMap
	var spec *storage.StateSpec
	var baseState stateMap // set when spec is a delta on the first prev event
	switch given := b.req.states[ev.ID()]; {
	case isCreate:
		before = stateMap{}
		spec = &storage.StateSpec{}
	case b.prevsPlaced(ev):
		prevStates := make([]stateMap, 0, len(ev.PrevEvents()))
		for _, p := range ev.PrevEvents() {
			s, ok := b.after[p]
			if !ok {
				var err error
				if s, err = w.stateAfter(ctx, p); err != nil {
					return nil, err
				}
			}
			prevStates = append(prevStates, s)
		}
		var err error
		if before, err = w.resolve(ctx, prevStates); err != nil {
			return nil, err
		}
		spec = &storage.StateSpec{BaseEvent: string(ev.PrevEvents()[0])}
		baseState = prevStates[0]
	case given != nil:
		given.event = x
		o, err := w.checkOutliers(ctx, given, false)
		if err != nil {
			return nil, err
		}
		if before, err = o.stateBefore(given.state); err != nil {
			return nil, err
		}
		for _, k := range o.order {
			st.events[k.ev.ID()] = k
			b.tx.add(k, nil)
		}
		spec = &storage.StateSpec{}
	default:
		return nil, errors.New("the state before it is unknown: its prev events are not placed and no state was reported")
	}

	// 4. Auth against the event's own auth events.
	if err := w.fetch(ctx, ev.AuthEvents()); err != nil {
		return nil, err
	}
	authEvs := make([]*pdu.Event, 0, len(ev.AuthEvents()))
	for _, id := range ev.AuthEvents() {
		k := st.events[id]
		if k == nil {
			return nil, &MissingAuthError{EventID: ev.ID(), Missing: []EventID{id}}
		}
		authEvs = append(authEvs, k.ev)
	}
	isRejected := func(id pdu.EventID) bool {
		k := st.events[id]
		return k != nil && k.rejected != ""
	}
	k := &known{ev: ev}
	if isCreate {
		// The room's own create event: checked when the room was joined.
	} else if err := auth.CheckAuthEvents(ev, authEvs, st.create, isRejected); err != nil {
		k.rejected = rejectedByAuthEvents + err.Error()
	} else if err := auth.Allowed(ev, w.authEventsGetter(authEvs)); err != nil {
		k.rejected = rejectedByAuthEvents + err.Error()
	}
	// 5. Auth against the state before the event. History is not
	// soft-failed: step 6 is about the room as it is now.
	if err := w.ensureStateEvents(ctx, before); err != nil {
		return nil, err
	}
	if k.rejected == "" && !isCreate {
		if err := auth.Allowed(ev, w.getter(before)); err != nil {
			k.rejected = rejectedByState + err.Error()
		}
	}
	after := before
	if k.rejected == "" && ev.IsState() {
		noteReplaces(k, before)
		after = copyState(before)
		after[ev.Tuple()] = ev.ID()
	}
	if baseState != nil {
		if len(ev.PrevEvents()) > 1 {
			spec.Delta = toStorageMap(diffState(baseState, after))
		} else if k.rejected == "" && ev.IsState() {
			spec.Delta = storage.StateMap{{Type: ev.Type(), StateKey: *ev.StateKey()}: string(ev.ID())}
		}
	} else {
		spec.Delta = toStorageMap(after)
	}

	if old := st.events[ev.ID()]; old != nil && old.outlier {
		// Held for its prev events, or stored as state: history now.
		w.unwait(ev)
		b.tx.batch.FilledGaps = append(b.tx.batch.FilledGaps, string(ev.ID()))
	}
	st.events[ev.ID()] = k
	b.after[ev.ID()] = after
	b.placed[ev.ID()] = true
	return b.tx.add(k, spec), nil
}

// prevsPlaced reports whether every prev event of ev has a known state:
// placed by this request or before it.
func (b *backfiller) prevsPlaced(ev *Event) bool {
	for _, p := range ev.PrevEvents() {
		if b.placed[p] {
			continue
		}
		if k := b.w.st.events[p]; k == nil || k.outlier {
			return false
		}
	}
	return true
}

// frontier fills in the batch's change to the room's backward
// extremities.
func (b *backfiller) frontier() {
	batch := &b.tx.batch
	seen := map[EventID]bool{}
	for id := range b.placed {
		k := b.w.st.events[id]
		for _, p := range k.ev.PrevEvents() {
			if seen[p] || b.placed[p] {
				continue
			}
			seen[p] = true
			if pk := b.w.st.events[p]; pk == nil || pk.outlier {
				batch.BackwardExtremities = append(batch.BackwardExtremities, string(p))
			}
		}
	}
	sort.Strings(batch.BackwardExtremities)
	// An event that failed its checks ends the walk on its branch (storage
	// deletes these after adding the above), and one placed before is no
	// edge of the history at all.
	for _, id := range append(b.dropped, b.already...) {
		batch.DropBackward = append(batch.DropBackward, string(id))
	}
}
