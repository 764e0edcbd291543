package rooms

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/plexus-chat/plexus/internal/storage"
)

// ErrUnknownEvent is returned by reads about an event that is not stored
// in the room, or whose state is not known here (an outlier).
var ErrUnknownEvent = errors.New("rooms: unknown event")

// Extremities returns the room's forward extremities, sorted: the events
// a new event would cite as prev_events.
func (s *Service) Extremities(ctx context.Context, roomID RoomID) ([]EventID, error) {
	info, err := s.deps.Store.Room(ctx, string(roomID))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownRoom, roomID)
	}
	if err != nil {
		return nil, err
	}
	return toIDs(info.Extremities), nil
}

// StateBefore returns the room state at (just before) an event as
// GET /state_ids and send_join answer it (server-server API, "Retrieving
// events"): the IDs of the state events, and the IDs of their full auth
// chain, both sorted. The state is the resolution of the states after the
// event's prev events or, for an event placed with a reported state (Join,
// AdmitWithState), that state. It is read from storage: the state after
// the event with the event's own entry put back as it was before it.
func (s *Service) StateBefore(ctx context.Context, roomID RoomID, eventID EventID) (state []EventID, authChain []EventID, err error) {
	store := s.deps.Store
	recs, err := store.Events(ctx, []string{string(eventID)})
	if err != nil {
		return nil, nil, err
	}
	rec := recs[string(eventID)]
	if rec == nil || rec.RoomID != string(roomID) {
		return nil, nil, fmt.Errorf("%w: %s", ErrUnknownEvent, eventID)
	}
	after, err := store.StateAfter(ctx, string(eventID))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w: no state known at %s", ErrUnknownEvent, eventID)
	}
	if err != nil {
		return nil, nil, err
	}
	if rec.StateKey != nil {
		key := storage.StateKey{Type: rec.Type, StateKey: *rec.StateKey}
		if after[key] == string(eventID) {
			// An accepted state event: undo it.
			prev, err := s.replaced(ctx, rec, key)
			if err != nil {
				return nil, nil, err
			}
			if prev == "" {
				delete(after, key)
			} else {
				after[key] = prev
			}
		}
	}
	ids := make([]string, 0, len(after))
	for _, id := range after {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	chain, err := store.AuthChain(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	return toIDs(ids), toIDs(chain), nil
}

// replaced is what rec's state entry held before rec. Rows stored before
// the replaces_state column existed do not say; for them it is read from
// the state after the first prev event, which is exact unless the prev
// events' states conflicted on that entry.
func (s *Service) replaced(ctx context.Context, rec *storage.EventRecord, key storage.StateKey) (string, error) {
	if rec.ReplacesState != nil {
		return *rec.ReplacesState, nil
	}
	if len(rec.PrevEvents) == 0 {
		return "", nil
	}
	prev, err := s.deps.Store.StateAfter(ctx, rec.PrevEvents[0])
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return prev[key], nil
}

func toIDs(ss []string) []EventID {
	out := make([]EventID, len(ss))
	for i, s := range ss {
		out[i] = EventID(s)
	}
	return out
}
