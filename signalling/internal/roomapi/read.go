package roomapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// readableState is the room state userID may read: the current state if
// they are joined (or the room is world readable), the state when they
// left if they were a member, and otherwise 403 M_FORBIDDEN ("You aren't
// a member of the room and weren't previously a member of the room").
func (a *API) readableState(ctx context.Context, roomID, userID string) (storage.StateMap, error) {
	notMember := mxerr.Forbidden(fmt.Sprintf("User %s is not in room %s", userID, roomID))
	info, err := a.deps.DB.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notMember
	} else if err != nil {
		return nil, err
	}
	m, err := a.membership(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if m == "join" {
		return info.Current, nil
	}
	if m == "leave" || m == "ban" {
		forgotten, err := a.isForgotten(ctx, userID, roomID)
		if err != nil {
			return nil, err
		}
		if id := info.Current[storage.StateKey{Type: "m.room.member", StateKey: userID}]; id != "" && !forgotten {
			return a.deps.DB.StateAfter(ctx, id)
		}
	}
	vis, err := a.visibilityIn(ctx, roomID, info.Current)
	if err != nil {
		return nil, err
	}
	if vis.hv == hvWorldReadable {
		return info.Current, nil
	}
	return nil, notMember
}

// stateEvents loads the events of a state map, sorted by type and state
// key for stable output.
func (a *API) stateEvents(ctx context.Context, roomID string, state storage.StateMap, keep func(storage.StateKey) bool) ([]*rooms.Event, error) {
	keys := make([]storage.StateKey, 0, len(state))
	for k := range state {
		if keep == nil || keep(k) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Type != keys[j].Type {
			return keys[i].Type < keys[j].Type
		}
		return keys[i].StateKey < keys[j].StateKey
	})
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = state[k]
	}
	evs, err := a.parsedEvents(ctx, roomID, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*rooms.Event, 0, len(ids))
	for _, id := range ids {
		if e := evs[id]; e != nil {
			out = append(out, e)
		}
	}
	return out, nil
}

func (a *API) getState(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	state, err := a.readableState(ctx, roomID, s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	evs, err := a.stateEvents(ctx, roomID, state, nil)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	out, err := formatter{a: a, roomID: roomID}.format(ctx, evs)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, out)
}

func (a *API) getStateEvent(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID, typ, stateKey := r.PathValue("roomId"), r.PathValue("eventType"), r.PathValue("stateKey")
	format := r.URL.Query().Get("format")
	if format != "" && format != "content" && format != "event" {
		endpoint.Fail(w, mxerr.InvalidParam("format must be content or event"))
		return
	}
	state, err := a.readableState(ctx, roomID, s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	id := state[storage.StateKey{Type: typ, StateKey: stateKey}]
	evs, err := a.parsedEvents(ctx, roomID, []string{id})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	ev := evs[id]
	if id == "" || ev == nil {
		endpoint.Fail(w, mxerr.NotFound(fmt.Sprintf("Event not found: no %s state with key %q", typ, stateKey)))
		return
	}
	out, err := formatter{a: a, roomID: roomID}.one(ctx, ev)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if format == "event" {
		endpoint.Write(w, out)
		return
	}
	// The content, redacted if the event was.
	var obj struct {
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(out, &obj); err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, obj.Content)
}

func (a *API) members(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	q := r.URL.Query()
	want, notWant := q.Get("membership"), q.Get("not_membership")
	for _, m := range []string{want, notWant} {
		switch m {
		case "", "join", "invite", "knock", "leave", "ban":
		default:
			endpoint.Fail(w, mxerr.InvalidParam(fmt.Sprintf("Unknown membership %q", m)))
			return
		}
	}
	a.awaitMembers(ctx, roomID)
	state, err := a.readableState(ctx, roomID, s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if at := q.Get("at"); at != "" {
		tok, err := stream.ParseToken(at)
		if err != nil {
			endpoint.Fail(w, mxerr.InvalidParam("Invalid at token"))
			return
		}
		v, err := a.newViewer(ctx, roomID, s.UserID)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		pos := tok.Events
		if v.leftAt > 0 && pos > v.leftAt {
			// Never past what the user may read: the state when they left.
			pos = v.leftAt
		}
		st, err := a.stateAtPos(ctx, roomID, pos)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		if st != nil {
			state = st
		}
	}
	evs, err := a.stateEvents(ctx, roomID, state, func(k storage.StateKey) bool { return k.Type == "m.room.member" })
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	kept := evs[:0]
	for _, e := range evs {
		m := e.Membership()
		// Both given: "either the membership is the same as membership or
		// is not the same as not_membership".
		var ok bool
		switch {
		case want != "" && notWant != "":
			ok = m == want || m != notWant
		case want != "":
			ok = m == want
		case notWant != "":
			ok = m != notWant
		default:
			ok = true
		}
		if ok {
			kept = append(kept, e)
		}
	}
	out, err := formatter{a: a, roomID: roomID}.format(ctx, kept)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string]any{"chunk": out})
}

// stateAtPos is the room state after its last servable event at or
// before stream position pos; nil if the room has none.
func (a *API) stateAtPos(ctx context.Context, roomID string, pos int64) (storage.StateMap, error) {
	var group int64
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		rows, err := tx.Query(ctx, `SELECT state_group FROM events WHERE room_id = ? AND stream_pos <= ?
			AND outlier = FALSE AND rejected = '' AND soft_failed = FALSE AND state_group <> 0
			ORDER BY stream_pos DESC LIMIT 1`, roomID, pos)
		if err != nil {
			return err
		}
		defer rows.Close()
		if rows.Next() {
			if err := rows.Scan(&group); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil || group == 0 {
		return nil, err
	}
	return a.deps.DB.StateOfGroup(ctx, group)
}

// roomMember is a RoomMember of /joined_members.
type roomMember struct {
	DisplayName *string `json:"display_name"`
	AvatarURL   *string `json:"avatar_url"`
}

func (a *API) joinedMembers(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	if err := a.requireJoined(ctx, roomID, s.UserID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	a.awaitMembers(ctx, roomID)
	info, err := a.deps.DB.Room(ctx, roomID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	evs, err := a.stateEvents(ctx, roomID, info.Current, func(k storage.StateKey) bool { return k.Type == "m.room.member" })
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	out := map[string]roomMember{}
	for _, e := range evs {
		if e.Membership() != "join" {
			continue
		}
		out[*e.StateKey()] = roomMember{DisplayName: optStr(e.Content(), "displayname"), AvatarURL: optStr(e.Content(), "avatar_url")}
	}
	endpoint.Write(w, map[string]any{"joined": out})
}

func optStr(c cjson.Value, key string) *string {
	if s, ok := c.GetStr(key); ok {
		return &s
	}
	return nil
}

// visibleEvent loads one event of roomID that userID may see; 404
// M_NOT_FOUND otherwise ("The event was not found or you do not have
// permission to read this event").
func (a *API) visibleEvent(ctx context.Context, v *viewer, roomID, eventID string) (*storage.EventRecord, *rooms.Event, error) {
	notFound := mxerr.NotFound("Event not found")
	recs, err := a.deps.DB.Events(ctx, []string{eventID})
	if err != nil {
		return nil, nil, err
	}
	rec := recs[eventID]
	if rec == nil || rec.RoomID != roomID || !servable(rec) {
		return nil, nil, notFound
	}
	vers, err := a.roomVersion(ctx, roomID)
	if err != nil {
		return nil, nil, err
	}
	ev, err := rooms.ParseEvent(rec.JSON, vers)
	if err != nil {
		return nil, nil, err
	}
	ok, err := v.visible(ctx, rec, ev)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, notFound
	}
	return rec, ev, nil
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID, eventID := r.PathValue("roomId"), r.PathValue("eventId")
	v, err := a.newViewer(ctx, roomID, s.UserID)
	var me *mxerr.MatrixError
	if errors.As(err, &me) && me.Code == mxerr.CodeForbidden {
		// This endpoint answers 404 for events the user may not read.
		endpoint.Fail(w, mxerr.NotFound("Event not found"))
		return
	} else if err != nil {
		endpoint.Fail(w, err)
		return
	}
	_, ev, err := a.visibleEvent(ctx, v, roomID, eventID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	out, err := formatter{a: a, roomID: roomID}.one(ctx, ev)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, out)
}
