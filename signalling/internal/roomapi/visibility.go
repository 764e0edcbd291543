package roomapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// History visibility values (Client-Server API, "Room History
// Visibility").
const (
	hvWorldReadable = "world_readable"
	hvShared        = "shared"
	hvInvited       = "invited"
	hvJoined        = "joined"
)

// viewer decides which events of one room one user may see, caching the
// state it reads per state group for the length of one request.
type viewer struct {
	a         *API
	roomID    string
	userID    string
	joinedNow bool
	// leftAt, for a user who is not joined but was, is the stream
	// position of the membership event that ended it: nothing after it
	// is visible to them unless world readable.
	leftAt int64
	groups map[int64]visAt
}

// visAt is what history visibility reads from the state at an event.
type visAt struct{ hv, membership string }

// newViewer checks that userID may read roomID's history at all: joined
// users may; users who were members before may read what they could see
// then (unless they forgot the room); others only a world_readable room.
// Anything else is 403 M_FORBIDDEN, unknown rooms included.
func (a *API) newViewer(ctx context.Context, roomID, userID string) (*viewer, error) {
	v := &viewer{a: a, roomID: roomID, userID: userID, groups: map[int64]visAt{}}
	if err := a.requireRoom(ctx, roomID, mxerr.Forbidden(fmt.Sprintf("User %s is not in room %s", userID, roomID))); err != nil {
		return nil, err
	}
	m, err := a.membership(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	v.joinedNow = m == "join"
	if v.joinedNow {
		return v, nil
	}
	forgotten, err := a.isForgotten(ctx, userID, roomID)
	if err != nil {
		return nil, err
	}
	info, err := a.deps.DB.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if m != "" && !forgotten {
		if m != "leave" && m != "ban" {
			return v, nil // invited or knocking: rules 1 and 4 decide
		}
		if id := info.Current[storage.StateKey{Type: "m.room.member", StateKey: userID}]; id != "" {
			recs, err := a.deps.DB.Events(ctx, []string{id})
			if err != nil {
				return nil, err
			}
			if rec := recs[id]; rec != nil {
				v.leftAt = rec.StreamPos
			}
		}
		return v, nil
	}
	hv, err := a.visibilityIn(ctx, roomID, info.Current)
	if err != nil {
		return nil, err
	}
	if hv.hv == hvWorldReadable {
		return v, nil
	}
	return nil, mxerr.Forbidden(fmt.Sprintf("User %s is not in room %s", userID, roomID))
}

// visibilityIn reads history visibility and userID's membership from a
// state map.
func (a *API) visibilityIn(ctx context.Context, roomID string, state storage.StateMap) (visAt, error) {
	return a.visFor(ctx, roomID, "", state)
}

func (a *API) visFor(ctx context.Context, roomID, userID string, state storage.StateMap) (visAt, error) {
	hvID := state[storage.StateKey{Type: "m.room.history_visibility"}]
	memID := ""
	if userID != "" {
		memID = state[storage.StateKey{Type: "m.room.member", StateKey: userID}]
	}
	var ids []string
	for _, id := range []string{hvID, memID} {
		if id != "" {
			ids = append(ids, id)
		}
	}
	evs, err := a.parsedEvents(ctx, roomID, ids)
	if err != nil {
		return visAt{}, err
	}
	// "If no history_visibility is set, or if the value is not
	// understood, the visibility is assumed to be shared."
	out := visAt{hv: hvShared}
	if e := evs[hvID]; e != nil {
		if s, _ := e.Content().GetStr("history_visibility"); s == hvWorldReadable || s == hvInvited || s == hvJoined {
			out.hv = s
		}
	}
	if e := evs[memID]; e != nil {
		out.membership = e.Membership()
	}
	return out, nil
}

// atGroup reads visibility in the state of a state group.
func (v *viewer) atGroup(ctx context.Context, g int64) (visAt, error) {
	if r, ok := v.groups[g]; ok {
		return r, nil
	}
	state, err := v.a.deps.DB.StateOfGroup(ctx, g)
	if err != nil {
		return visAt{}, err
	}
	r, err := v.a.visFor(ctx, v.roomID, v.userID, state)
	if err != nil {
		return visAt{}, err
	}
	v.groups[g] = r
	return r, nil
}

// allows applies the server behaviour rules of "Room History Visibility"
// to the state at an event.
func (v *viewer) allows(s visAt) bool {
	switch {
	case s.hv == hvWorldReadable: // 1
		return true
	case s.membership == "join": // 2
		return true
	case s.hv == hvShared && v.joinedNow: // 3: the user joined after the event
		return true
	case s.hv == hvInvited && s.membership == "invite": // 4
		return true
	}
	return false
}

// visible reports whether the user may see a stored event.
func (v *viewer) visible(ctx context.Context, rec *storage.EventRecord, ev *rooms.Event) (bool, error) {
	if !servable(rec) || rec.StateGroup == 0 {
		return false, nil
	}
	after, err := v.atGroup(ctx, rec.StateGroup)
	if err != nil {
		return false, err
	}
	if v.leftAt > 0 && rec.StreamPos > v.leftAt && after.hv != hvWorldReadable {
		return false, nil
	}
	if v.allows(after) {
		return true, nil
	}
	// History visibility events, and the user's own membership events,
	// are visible if the state before or after them allows it.
	special := ev.Type() == "m.room.history_visibility" ||
		(ev.Type() == "m.room.member" && ev.StateKeyIs(v.userID))
	if !special || len(rec.PrevEvents) == 0 {
		return false, nil
	}
	g, err := v.a.deps.DB.StateGroupOf(ctx, rec.PrevEvents[0])
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	before, err := v.atGroup(ctx, g)
	if err != nil {
		return false, err
	}
	return v.allows(before), nil
}
