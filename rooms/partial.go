package rooms

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// Partial-state joins ("faster joins"; Server-Server API, PUT /send_join
// v2 with omit_members, from MSC3706): the resident server answers a join
// with the state before it less the m.room.member events, so a join to a
// room of thousands of members costs a few dozen events. The joining server
// stores the room as partial-state (JoinPartial), lets its user send at
// once, fetches the full state before the join in the background and
// completes the room with it (CompleteState).
//
// Until then the room's states lack the members of other servers, so
// events of other users cannot be checked here: federation holds them
// (AwaitFullState) and the client side makes /members wait.

// StateListener, when the Service's Listener implements it, hears that a
// partial-state room's state is complete: the member events stored as
// outliers by CompleteState are in the current state now. It is called
// from the caller of CompleteState and must not block.
type StateListener interface {
	StateCompleted(roomID RoomID)
}

// partialRooms tracks which rooms are partial-state, as storage records
// them; every change goes through this Service, so the record read once
// stays true until JoinPartial or CompleteState changes it.
type partialRooms struct {
	mu    sync.Mutex // guards rooms
	rooms map[RoomID]*partialEntry
}

type partialEntry struct {
	partial bool
	// done is closed when a partial room's state is complete.
	done chan struct{}
}

var fullEntry = &partialEntry{}

// entry returns a room's record, reading storage the first time.
func (s *Service) partialEntry(ctx context.Context, roomID RoomID) (*partialEntry, error) {
	s.partial.mu.Lock()
	e := s.partial.rooms[roomID]
	s.partial.mu.Unlock()
	if e != nil {
		return e, nil
	}
	_, err := s.deps.Store.PartialStateRoom(ctx, string(roomID))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		e = fullEntry
	case err != nil:
		return nil, err
	default:
		e = &partialEntry{partial: true, done: make(chan struct{})}
	}
	s.partial.mu.Lock()
	defer s.partial.mu.Unlock()
	if cur := s.partial.rooms[roomID]; cur != nil {
		return cur, nil // set meanwhile, by a join or a completion
	}
	if s.partial.rooms == nil {
		s.partial.rooms = map[RoomID]*partialEntry{}
	}
	s.partial.rooms[roomID] = e
	return e, nil
}

// markPartial records a partial-state join, keeping the waiters of a
// record already read from storage.
func (s *Service) markPartial(roomID RoomID) {
	s.partial.mu.Lock()
	defer s.partial.mu.Unlock()
	if cur := s.partial.rooms[roomID]; cur != nil && cur.partial {
		return
	}
	if s.partial.rooms == nil {
		s.partial.rooms = map[RoomID]*partialEntry{}
	}
	s.partial.rooms[roomID] = &partialEntry{partial: true, done: make(chan struct{})}
}

// markFull records a completed room and wakes its waiters.
func (s *Service) markFull(roomID RoomID) {
	s.partial.mu.Lock()
	defer s.partial.mu.Unlock()
	if cur := s.partial.rooms[roomID]; cur != nil && cur.partial {
		close(cur.done)
	}
	if s.partial.rooms == nil {
		s.partial.rooms = map[RoomID]*partialEntry{}
	}
	s.partial.rooms[roomID] = fullEntry
}

// PartialState reports whether the room was joined with a partial state
// that is not complete yet. A room not stored here is not partial.
func (s *Service) PartialState(ctx context.Context, roomID RoomID) (bool, error) {
	e, err := s.partialEntry(ctx, roomID)
	if err != nil {
		return false, err
	}
	return e.partial, nil
}

// AwaitFullState returns at once for a room whose state is complete, and
// otherwise when CompleteState completes it or ctx ends (with ctx's
// error).
func (s *Service) AwaitFullState(ctx context.Context, roomID RoomID) error {
	e, err := s.partialEntry(ctx, roomID)
	if err != nil || !e.partial {
		return err
	}
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// JoinPartial is Join for a send_join answer with members_omitted: state
// lacks (most of) the room's m.room.member events, and servers are the
// answer's servers_in_room. The join must pass the auth rules against that
// state, where a membership the state lacks is taken from the join's own
// auth events (a restricted join's authorising user). The room is stored
// as partial-state until CompleteState.
func (s *Service) JoinPartial(ctx context.Context, roomID RoomID, join []byte, state [][]byte, authChain [][]byte, servers []string) (*Admitted, error) {
	v, err := s.givenVersion(ctx, roomID, state)
	if err != nil {
		return nil, err
	}
	g := newGivenRequest(true, v, join, state, authChain)
	g.partial = true
	g.servers = servers
	s.precheck(v, g.all())
	if err := s.checkJoin(roomID, g.event); err != nil {
		return nil, err
	}
	r, err := s.do(ctx, roomID, &request{kind: reqGiven, given: g})
	if err != nil {
		return nil, err
	}
	if !r.admitted.Duplicate {
		s.markPartial(roomID)
	}
	return r.admitted, nil
}

// CompleteState completes a partial-state room with the full state before
// its join: fullState as GET /state at the join reports it (the state
// events) and authChain their auth chain. The events are checked and
// stored as outliers as for Join; the state must hold the room's create
// event and allow the join. Every entry of it whose key the state after
// the join lacks (the omitted members) is then added wherever that key is
// absent: to the state after the join and every state after it, to the
// current state and to the forward extremities' states. Keys set since
// the join (a member who left meanwhile) keep their newer value.
//
// It is a no-op for a room whose state is complete; joinID must be the
// partial-state join.
func (s *Service) CompleteState(ctx context.Context, roomID RoomID, joinID EventID, fullState [][]byte, authChain [][]byte) error {
	p, err := s.deps.Store.PartialStateRoom(ctx, string(roomID))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.JoinEvent != string(joinID) {
		return fmt.Errorf("rooms: the partial-state join of %s is %s, not %s", roomID, p.JoinEvent, joinID)
	}
	v, err := s.givenVersion(ctx, roomID, nil)
	if err != nil {
		return err
	}
	c := &completeRequest{joinID: joinID, version: v}
	for _, d := range fullState {
		c.state = append(c.state, &incoming{data: d})
	}
	for _, d := range authChain {
		c.chain = append(c.chain, &incoming{data: d})
	}
	s.precheck(v, append(append([]*incoming(nil), c.state...), c.chain...))
	if _, err := s.do(ctx, roomID, &request{kind: reqComplete, complete: c}); err != nil {
		return err
	}
	s.markFull(roomID)
	if l, ok := s.deps.Listener.(StateListener); ok {
		l.StateCompleted(roomID)
	}
	return nil
}

// completeRequest is a CompleteState on the worker.
type completeRequest struct {
	joinID  EventID
	version *pdu.Version
	state   []*incoming
	chain   []*incoming
}

func (w *worker) complete(ctx context.Context, tx *txn, c *completeRequest) *result {
	if err := w.load(ctx); err != nil {
		return &result{err: err}
	}
	// What this batch placed so far is committed first: the completion
	// reads the state groups written before it (storage's CompleteState).
	if err := tx.flush(ctx); err != nil {
		return &result{err: fatal(err)}
	}
	jk, err := w.get(ctx, c.joinID)
	if err != nil {
		return &result{err: err}
	}
	if jk == nil || jk.outlier || jk.rejected != "" {
		return &result{err: fmt.Errorf("rooms: the join %s is not placed here", c.joinID)}
	}
	g := &givenRequest{version: c.version, event: &incoming{checked: true, ev: jk.ev}, state: c.state, chain: c.chain}
	o, err := w.checkOutliers(ctx, g, false)
	if err != nil {
		return &result{err: err}
	}
	full, err := o.stateBefore(g.state)
	if err != nil {
		return &result{err: err}
	}
	// A full state holds the creator's membership (the first event after
	// the create event; member keys never leave a state); one without it
	// is another partial answer.
	if _, ok := full[pdu.StateTuple{Type: pdu.TypeMember, StateKey: string(w.st.create.Sender())}]; !ok {
		return &result{err: fmt.Errorf("rooms: the reported state before %s lacks the creator's membership: not a full state", c.joinID)}
	}
	// Anything but the state before the join would not allow it (a
	// server answering for another event, or not at all).
	if err := auth.Allowed(jk.ev, o.stateGetter(full)); err != nil {
		return &result{err: fmt.Errorf("rooms: the reported state before %s does not allow it: %w", c.joinID, err)}
	}
	if err := w.syncStore(ctx, tx, []EventID{c.joinID}); err != nil {
		return &result{err: err}
	}
	after, err := w.stateAfter(ctx, c.joinID)
	if err != nil {
		return &result{err: err}
	}
	missing := stateMap{}
	for t, id := range full {
		if _, ok := after[t]; !ok {
			missing[t] = id
		}
	}
	for _, k := range o.order {
		w.st.events[k.ev.ID()] = k
		tx.add(k, nil)
	}
	// The in-memory states are all the partial join's state plus what
	// happened since: the same rule as storage's applies to them.
	for _, s := range w.st.extrem {
		addAbsent(s, missing)
	}
	addAbsent(w.st.current, missing)
	tx.batch.CompleteState = &storage.StateCompletion{JoinEvent: string(c.joinID), Entries: toStorageMap(missing)}
	return &result{}
}

func addAbsent(s, add stateMap) {
	for t, id := range add {
		if _, ok := s[t]; !ok {
			s[t] = id
		}
	}
}

// withAuthMembers serves a partial state, taking the memberships it lacks
// from an event's own auth events.
func withAuthMembers(state auth.StateGetter, authEvs []*pdu.Event) auth.StateGetter {
	return func(t pdu.StateTuple) *pdu.Event {
		if ev := state(t); ev != nil || t.Type != pdu.TypeMember {
			return ev
		}
		for _, a := range authEvs {
			if a.IsState() && a.Tuple() == t {
				return a
			}
		}
		return nil
	}
}
