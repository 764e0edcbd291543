package rooms

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// MissingAuthError says an event cannot be checked because some of its
// auth events are unknown here. The event is not stored; federation
// fetches the listed events and admits them first.
type MissingAuthError struct {
	EventID EventID
	Missing []EventID
}

func (e *MissingAuthError) Error() string {
	return fmt.Sprintf("event %s: %d auth events unknown: %v", e.EventID, len(e.Missing), e.Missing)
}

// Rejection reasons start with the pipeline step that rejected the event.
// State resolution must tell them apart: an event rejected against its own
// auth events is never used, while one rejected against the state before
// it takes part like any other (rooms v2 "Rejected events").
const (
	rejectedByAuthEvents = "auth events: "
	rejectedByState      = "state before: "
)

// rejectedOnAuthChain reports whether a rejection reason is step 4's.
func rejectedOnAuthChain(reason string) bool {
	return strings.HasPrefix(reason, rejectedByAuthEvents)
}

// Admitted is the outcome of Admit.
type Admitted struct {
	*Stored
	// Duplicate: the event was already stored; nothing changed.
	Duplicate bool
	// MissingPrevs lists prev events we lack; the event is held as an
	// outlier and placed in the graph once they arrive.
	MissingPrevs []EventID
}

// Admit runs a remote event (federation format, bytes as received) through
// the receive pipeline (server-server API, "Checks performed on receipt of
// a PDU"): dropped with an error on bad format or signature; redacted on a
// bad content hash; stored as rejected when it fails auth against its auth
// events or the state before it; stored as soft-failed when it fails
// against the current state; otherwise accepted, moving the forward
// extremities and current state.
func (s *Service) Admit(ctx context.Context, roomID RoomID, data []byte) (*Admitted, error) {
	rs, err := s.AdmitMany(ctx, roomID, [][]byte{data})
	if err != nil {
		return nil, err
	}
	return rs[0].Admitted, rs[0].Err
}

// AdmitResult is the outcome for one event of AdmitMany.
type AdmitResult struct {
	*Admitted
	Err error
}

// AdmitMany admits several events of one room in order, as a federation
// transaction delivers them, in one trip to the room's worker (and usually
// one storage transaction). A per-event failure does not stop the others.
func (s *Service) AdmitMany(ctx context.Context, roomID RoomID, pdus [][]byte) ([]AdmitResult, error) {
	in := make([]*incoming, len(pdus))
	for i, data := range pdus {
		in[i] = &incoming{data: data}
	}
	if v, ok := s.versions.Load(roomID); ok {
		s.precheck(v.(*pdu.Version), in)
	}
	r, err := s.do(ctx, roomID, &request{kind: reqRemote, remote: in})
	if err != nil {
		return nil, err
	}
	return r.many, nil
}

func (w *worker) admit(ctx context.Context, tx *txn, x *incoming) *result {
	st := w.st
	if !x.checked || x.ev != nil && x.ev.Version() != st.version {
		w.s.check(st.version, x)
	}
	if x.err != nil {
		return &result{err: x.err}
	}
	ev := x.ev
	if ev.RoomID() != w.roomID {
		return &result{err: &pdu.FormatError{Field: "room_id", Reason: fmt.Sprintf("event is for %s, not %s", ev.RoomID(), w.roomID)}}
	}
	isCreate := ev.Type() == pdu.TypeCreate && ev.StateKeyIs("")
	if !isCreate && len(ev.PrevEvents()) == 0 {
		// Only the create event starts a graph; anything else without a
		// parent cannot be placed, and would be a second root.
		return &result{err: &pdu.FormatError{Field: "prev_events", Reason: "empty on an event other than m.room.create"}}
	}
	if isCreate {
		// The create event is the room: it arrives with the room (join),
		// never on its own into an existing room.
		if ev.ID() == st.create.ID() {
			return &result{admitted: &Admitted{Stored: &Stored{Event: st.create}, Duplicate: true}}
		}
		return w.storeRejected(tx, ev, rejectedByAuthEvents+"a second m.room.create event", nil)
	}
	k, ok := st.events[ev.ID()]
	if !ok && !x.prefetched {
		var err error
		if k, err = w.get(ctx, ev.ID()); err != nil {
			return &result{err: err}
		}
	}
	if k != nil && !k.outlier {
		return &result{admitted: &Admitted{Stored: &Stored{Event: k.ev, Rejected: k.rejected, SoftFailed: k.softFailed}, Duplicate: true}}
	}
	// 4. Auth against the event's own auth events.
	authEvs := make([]*pdu.Event, 0, len(ev.AuthEvents()))
	if err := w.fetch(ctx, ev.AuthEvents()); err != nil {
		return &result{err: err}
	}
	var missing []EventID
	for _, id := range ev.AuthEvents() {
		k := st.events[id]
		if k == nil {
			missing = append(missing, id)
			continue
		}
		authEvs = append(authEvs, k.ev)
	}
	if len(missing) > 0 {
		return &result{err: &MissingAuthError{EventID: ev.ID(), Missing: missing}}
	}
	isRejected := func(id pdu.EventID) bool {
		k := st.events[id]
		return k != nil && k.rejected != ""
	}
	var reason string
	if err := auth.CheckAuthEvents(ev, authEvs, st.create, isRejected); err != nil {
		reason = rejectedByAuthEvents + err.Error()
	} else if err := auth.Allowed(ev, w.authEventsGetter(authEvs)); err != nil {
		reason = rejectedByAuthEvents + err.Error()
	}
	// An event already held as an outlier stays one until placed: placeOne
	// must not store it a second time.
	k = &known{ev: ev, rejected: reason, outlier: k != nil && k.outlier}
	st.events[ev.ID()] = k
	return w.place(ctx, tx, k)
}

// authEventsGetter serves state from an event's own auth events.
func (w *worker) authEventsGetter(evs []*pdu.Event) auth.StateGetter {
	m := make(map[pdu.StateTuple]*pdu.Event, len(evs))
	for _, e := range evs {
		if e.IsState() {
			m[e.Tuple()] = e
		}
	}
	return func(t pdu.StateTuple) *pdu.Event {
		if t.Type == pdu.TypeCreate && t.StateKey == "" {
			return w.st.create
		}
		return m[t]
	}
}

func (w *worker) storeRejected(tx *txn, ev *Event, reason string, state *storage.StateSpec) *result {
	k := &known{ev: ev, rejected: reason, outlier: state == nil}
	w.st.events[ev.ID()] = k
	return &result{admitted: &Admitted{Stored: tx.add(k, state)}}
}

// place runs steps 5 and 6 for an event that passed (or was rejected at)
// step 4, then stores it; events whose prev events lack state are stored
// as outliers and placed later. Outliers that were waiting for this event
// are placed after it.
func (w *worker) place(ctx context.Context, tx *txn, k *known) *result {
	res := w.placeOne(ctx, tx, k)
	if res.err != nil {
		return res
	}
	if k.outlier {
		return res
	}
	if r := w.placeWaiting(ctx, tx, k.ev.ID()); r != nil {
		return r
	}
	return res
}

// placeWaiting places the outliers that were held for id, now placed, and
// those they free in turn, breadth first. It returns a result only on a
// fatal error.
func (w *worker) placeWaiting(ctx context.Context, tx *txn, id EventID) *result {
	queue := []EventID{id}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		children := w.st.waiting[id]
		delete(w.st.waiting, id)
		for _, c := range children {
			ck, err := w.get(ctx, c)
			if err != nil {
				return &result{err: err}
			}
			if ck == nil || !ck.outlier || !w.prevsHaveState(ck.ev) {
				continue
			}
			r := w.placeOne(ctx, tx, ck)
			if r.err != nil {
				if isFatal(r.err) {
					return r
				}
				// The child stays held; the event that freed it is
				// stored all the same.
				w.log.Warn("could not place a held event", "event", c, "err", r.err)
				continue
			}
			if !ck.outlier {
				queue = append(queue, c)
			}
		}
	}
	return nil
}

// prevsHaveState reports whether the state after every prev event is known.
func (w *worker) prevsHaveState(ev *Event) bool {
	for _, p := range ev.PrevEvents() {
		pk := w.st.events[p]
		if pk == nil || pk.outlier {
			return false
		}
	}
	return true
}

func (w *worker) placeOne(ctx context.Context, tx *txn, k *known) *result {
	st := w.st
	ev := k.ev
	wasOutlier := k.outlier
	if err := w.fetch(ctx, ev.PrevEvents()); err != nil {
		return &result{err: err}
	}
	if !w.prevsHaveState(ev) {
		// Hold as an outlier until the prev events arrive.
		var missing []EventID
		var recs []storage.MissingPrev
		for _, p := range ev.PrevEvents() {
			pk := st.events[p]
			if pk != nil && !pk.outlier {
				continue
			}
			missing = append(missing, p)
			st.waiting[p] = append(st.waiting[p], ev.ID())
			if pk == nil {
				recs = append(recs, storage.MissingPrev{RoomID: string(w.roomID), EventID: string(p), ReferencedBy: string(ev.ID())})
			}
		}
		k.outlier = true
		if wasOutlier {
			return &result{admitted: &Admitted{Stored: &Stored{Event: ev, Outlier: true, Rejected: k.rejected}, MissingPrevs: missing}}
		}
		tx.batch.MissingPrevs = append(tx.batch.MissingPrevs, recs...)
		return &result{admitted: &Admitted{Stored: tx.add(k, nil), MissingPrevs: missing}}
	}
	// 5. The state before the event: the resolution of the states after
	// its prev events (rooms v2/v12 "State resolution").
	if err := w.syncStore(ctx, tx, ev.PrevEvents()); err != nil {
		return &result{err: err}
	}
	prevStates := make([]stateMap, 0, len(ev.PrevEvents()))
	for _, p := range ev.PrevEvents() {
		s, err := w.stateAfter(ctx, p)
		if err != nil {
			return &result{err: err}
		}
		prevStates = append(prevStates, s)
	}
	before, err := w.resolve(ctx, prevStates)
	if err != nil {
		return &result{err: err}
	}
	if err := w.ensureStateEvents(ctx, before); err != nil {
		return &result{err: err}
	}
	if k.rejected == "" {
		if err := auth.Allowed(ev, w.getter(before)); err != nil {
			k.rejected = rejectedByState + err.Error()
		}
	}
	var baseState stateMap
	if len(prevStates) > 1 {
		baseState = prevStates[0]
	}
	k.outlier = false
	if k.rejected != "" {
		// A rejected event does not change state: the state after it is
		// the state before it, so events that cite it can still be placed.
		spec := stateSpec(ev.PrevEvents()[0], baseState, before, ev, false)
		return &result{admitted: &Admitted{Stored: tx.add(k, spec)}}
	}
	// 6. Soft failure against the current state.
	if err := w.ensureStateEvents(ctx, st.current); err != nil {
		return &result{err: err}
	}
	if err := auth.Allowed(ev, w.getter(st.current)); err != nil {
		k.softFailed = true
		w.log.Info("event soft-failed", "event", ev.ID(), "reason", err)
	}
	// The spec is taken before advance, which may update before in place.
	spec := stateSpec(ev.PrevEvents()[0], baseState, before, ev, true)
	noteReplaces(k, before)
	if err := w.advance(ctx, tx, k, before); err != nil {
		return &result{err: err}
	}
	return &result{admitted: &Admitted{Stored: tx.add(k, spec)}}
}

// advance moves the forward extremities and current state for an accepted
// event. The state after the event is before plus the event; before is
// updated in place only when nothing else can still need it.
func (w *worker) advance(ctx context.Context, tx *txn, k *known, before stateMap) error {
	st := w.st
	ev := k.ev
	prevs := ev.PrevEvents()
	inPlace := !k.softFailed && len(prevs) == 1 && len(st.extrem) == 1
	if inPlace {
		if _, ok := st.extrem[prevs[0]]; !ok {
			inPlace = false
		}
	}
	if inPlace {
		// The linear case: the event extends the only extremity, whose
		// state map is the current state.
		if ev.IsState() {
			before[ev.Tuple()] = ev.ID()
			tx.setCurrent(stateMap{ev.Tuple(): ev.ID()})
		}
		st.extrem = map[EventID]stateMap{ev.ID(): before}
		st.current = before
		tx.extremChanged = true
		return nil
	}
	a := copyState(before)
	if ev.IsState() {
		a[ev.Tuple()] = ev.ID()
	}
	if k.softFailed {
		// Soft-failed events are not forward extremities (server-server
		// API, "Soft failure").
		return nil
	}
	// The forward extremities are the placed events no placed event cites.
	// Outliers waiting for this event do not count: they are placed next
	// and then take its place.
	for _, p := range prevs {
		delete(st.extrem, p)
	}
	st.extrem[ev.ID()] = a
	tx.extremChanged = true
	old := st.current
	if len(st.extrem) == 1 {
		st.current = a
	} else {
		states := make([]stateMap, 0, len(st.extrem))
		for _, id := range w.sortedExtremities() {
			states = append(states, st.extrem[id])
		}
		cur, err := w.resolve(ctx, states)
		if err != nil {
			return err
		}
		if len(states) == 1 {
			cur = copyState(cur)
		}
		st.current = cur
	}
	tx.setCurrent(diffState(old, st.current))
	return nil
}

// stateAfter returns the state after a placed event: from the extremities
// in memory, or from storage.
func (w *worker) stateAfter(ctx context.Context, id EventID) (stateMap, error) {
	if s, ok := w.st.extrem[id]; ok {
		return s, nil
	}
	s, err := w.s.deps.Store.StateAfter(ctx, string(id))
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("rooms: no state after %s: %w", id, err)
		}
		return nil, fatal(err)
	}
	return toStateMap(s), nil
}

// syncStore makes storage current for reading the state after ids: it
// commits the batch in progress if one of them is in it, and otherwise
// waits for batches already handed to the commit loop. Events that are
// extremities need neither: their state is in memory.
func (w *worker) syncStore(ctx context.Context, tx *txn, ids []EventID) error {
	inMemory, inTx := true, false
	for _, id := range ids {
		if _, ok := w.st.extrem[id]; !ok {
			inMemory = false
			_, in := tx.ids[id]
			inTx = inTx || in
		}
	}
	switch {
	case inMemory:
		return nil
	case inTx:
		if err := tx.flush(ctx); err != nil {
			return fatal(err)
		}
	default:
		w.barrier()
	}
	return nil
}
