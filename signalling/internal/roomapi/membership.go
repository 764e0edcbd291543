package roomapi

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// currentStateID is the event ID holding (typ, stateKey) in roomID's
// current state, "" if none.
func (a *API) currentStateID(ctx context.Context, roomID, typ, stateKey string) (string, error) {
	var id string
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT event_id FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?`,
			roomID, typ, stateKey).Scan(&id)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// currentState is the current state event (typ, stateKey), nil if none.
func (a *API) currentState(ctx context.Context, roomID, typ, stateKey string) (*rooms.Event, error) {
	id, err := a.currentStateID(ctx, roomID, typ, stateKey)
	if err != nil || id == "" {
		return nil, err
	}
	evs, err := a.parsedEvents(ctx, roomID, []string{id})
	if err != nil {
		return nil, err
	}
	return evs[id], nil
}

// memberContent builds the content of an m.room.member event. A join
// carries the user's profile (Client-Server API, "Profiles", "Events on
// change of profile information").
func (a *API) memberContent(ctx context.Context, userID, membership, reason string, extra ...cjson.Member) (cjson.Value, error) {
	ms := []cjson.Member{cjson.M("membership", cjson.Str(membership))}
	if reason != "" {
		ms = append(ms, cjson.M("reason", cjson.Str(reason)))
	}
	if (membership == "join" || membership == "invite") && a.deps.Profiles != nil && a.isLocal(userID) {
		name, avatar, err := a.deps.Profiles.Profile(ctx, userID)
		if err != nil {
			return cjson.Value{}, err
		}
		if name != "" {
			ms = append(ms, cjson.M("displayname", cjson.Str(name)))
		}
		if avatar != "" {
			ms = append(ms, cjson.M("avatar_url", cjson.Str(avatar)))
		}
	}
	ms = append(ms, extra...)
	return cjson.Obj(ms...), nil
}

func (a *API) isLocal(userID string) bool {
	return strings.HasSuffix(userID, ":"+a.cfg.ServerName)
}

// setMembership appends sender's m.room.member event for target.
func (a *API) setMembership(ctx context.Context, roomID, sender, target, membership, reason string, extra ...cjson.Member) (*rooms.Stored, error) {
	content, err := a.memberContent(ctx, target, membership, reason, extra...)
	if err != nil {
		return nil, err
	}
	st, err := a.deps.Rooms.Append(ctx, rooms.RoomID(roomID), rooms.LocalEvent{
		Type: "m.room.member", StateKey: &target, Sender: rooms.UserID(sender), Content: content,
	})
	if err != nil {
		return nil, appendErr(err)
	}
	if membership == "join" || membership == "invite" || membership == "knock" {
		// Rejoining, or being invited again, brings a forgotten room back
		// ("Leaving rooms").
		if err := a.unforget(ctx, target, roomID); err != nil {
			return nil, err
		}
	}
	return st, nil
}

type membershipBody struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

// decodeTarget reads a body naming a target user.
func decodeTarget(r *http.Request) (*membershipBody, error) {
	var b membershipBody
	if err := endpoint.Decode(r, 0, &b); err != nil {
		return nil, err
	}
	if b.UserID == "" {
		return nil, mxerr.MissingParam("Missing user_id")
	}
	if _, err := rooms.ParseUserID(b.UserID); err != nil {
		return nil, mxerr.InvalidParam(fmt.Sprintf("Invalid user ID %q", b.UserID))
	}
	return &b, nil
}

// join makes userID join a room. A room this server is not in is joined
// over federation through one of the via servers, or the server named in
// the room ID (server-server API, "Joining Rooms"); without federation,
// or with no server to ask, it is 404 as the spec's join endpoints say.
func (a *API) join(ctx context.Context, roomID, userID, reason string, via []string) error {
	// An invite from another server to a room we are not in (or hold only
	// an old copy of) is accepted by joining through the inviting server.
	inv, err := a.pendingRemoteInvite(ctx, roomID, userID)
	if err != nil {
		return err
	}
	remote := inv != nil
	if !remote {
		err := a.requireRoom(ctx, roomID, mxerr.NotFound("No known servers"))
		var me *mxerr.MatrixError
		if err != nil && (a.deps.RemoteJoin == nil || !errors.As(err, &me) || me.Code != mxerr.CodeNotFound) {
			return err
		}
		remote = err != nil
	}
	if remote {
		servers := a.remoteServers(roomID, via, inv)
		if len(servers) == 0 || a.deps.RemoteJoin == nil {
			return mxerr.NotFound("No known servers")
		}
		content, cerr := a.memberContent(ctx, userID, "join", reason)
		if cerr != nil {
			return cerr
		}
		if err := a.deps.RemoteJoin(ctx, roomID, userID, servers, content); err != nil {
			return err
		}
		pos, err := a.deps.DB.MaxStreamPos(ctx)
		if err != nil {
			return err
		}
		return a.waitIndexed(ctx, pos)
	}
	cur, err := a.currentState(ctx, roomID, "m.room.member", userID)
	if err != nil {
		return err
	}
	content, err := a.memberContent(ctx, userID, "join", reason)
	if err != nil {
		return err
	}
	if cur != nil && cur.Membership() == "join" && cur.Content().Equal(content) {
		return nil // already joined with this profile: nothing to change
	}
	st, err := a.setMembership(ctx, roomID, userID, userID, "join", reason)
	if err != nil {
		return err
	}
	return a.waitIndexed(ctx, st.StreamPos)
}

func (a *API) joinRoom(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	roomID := r.PathValue("roomId")
	var body struct {
		Reason string `json:"reason"`
	}
	if err := validRoomID(roomID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := endpoint.Decode(r, 0, &body); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := a.join(r.Context(), roomID, s.UserID, body.Reason, viaServers(r)); err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string]string{"room_id": roomID})
}

func (a *API) joinByIDOrAlias(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := endpoint.Decode(r, 0, &body); err != nil {
		endpoint.Fail(w, err)
		return
	}
	roomID, via, err := a.roomAndServers(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := a.join(r.Context(), roomID, s.UserID, body.Reason, via); err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string]string{"room_id": roomID})
}

// roomAndServers reads the {roomIdOrAlias} of /join and /knock: the room,
// and the servers to go through if it is not here (the via parameters,
// then those a remote alias lists).
func (a *API) roomAndServers(r *http.Request) (string, []string, error) {
	target := r.PathValue("roomIdOrAlias")
	via := viaServers(r)
	switch {
	case strings.HasPrefix(target, "#"):
		alias, err := parseAlias(target)
		if err != nil {
			return "", nil, err
		}
		id, servers, err := a.lookupAlias(r.Context(), alias)
		if err != nil {
			return "", nil, err
		}
		return id, append(via, servers...), nil
	case strings.HasPrefix(target, "!"):
		if err := validRoomID(target); err != nil {
			return "", nil, err
		}
		return target, via, nil
	}
	return "", nil, mxerr.InvalidParam(fmt.Sprintf("%q is not a room ID or alias", target))
}

func (a *API) invite(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	b, err := decodeTarget(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := a.requireJoined(ctx, roomID, s.UserID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	cur, err := a.currentState(ctx, roomID, "m.room.member", b.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if cur != nil {
		switch cur.Membership() {
		case "invite":
			endpoint.Write(w, struct{}{}) // "or was already invited"
			return
		case "join":
			endpoint.Fail(w, mxerr.Forbidden(b.UserID+" is already in the room"))
			return
		case "ban":
			endpoint.Fail(w, mxerr.Forbidden(b.UserID+" is banned from the room"))
			return
		}
	}
	if err := a.inviteUser(ctx, roomID, s.UserID, b.UserID, b.Reason); err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, struct{}{})
}

func (a *API) leave(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	var body struct {
		Reason string `json:"reason"`
	}
	if err := endpoint.Decode(r, 0, &body); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := validRoomID(roomID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	// An invite from another server to a room we are not in is rejected
	// through the inviting server.
	if inv, err := a.pendingRemoteInvite(ctx, roomID, s.UserID); err != nil || inv != nil {
		if err == nil {
			err = a.rejectRemoteInvite(ctx, roomID, s.UserID, inv)
		}
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		endpoint.Write(w, struct{}{})
		return
	}
	if err := a.requireRoom(ctx, roomID, mxerr.NotFound("Unknown room")); err != nil {
		endpoint.Fail(w, err)
		return
	}
	m, err := a.membership(ctx, roomID, s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	switch m {
	case "join", "invite", "knock":
	case "leave":
		endpoint.Write(w, struct{}{}) // already left: nothing to do
		return
	default:
		endpoint.Fail(w, mxerr.Forbidden(fmt.Sprintf("User %s is not in room %s", s.UserID, roomID)))
		return
	}
	if _, err := a.setMembership(ctx, roomID, s.UserID, s.UserID, "leave", body.Reason); err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, struct{}{})
}

func (a *API) forget(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	if err := a.requireRoom(ctx, roomID, mxerr.NotFound("Unknown room")); err != nil {
		endpoint.Fail(w, err)
		return
	}
	m, err := a.membership(ctx, roomID, s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	switch m {
	case "join", "invite", "knock":
		// 400 "The user has not left the room"; Synapse's errcode.
		endpoint.Fail(w, mxerr.New(http.StatusBadRequest, mxerr.CodeUnknown, "The user has not left the room"))
		return
	case "":
		endpoint.Fail(w, mxerr.NotFound("User was never in the room"))
		return
	}
	err = a.deps.DB.Exec(ctx, `INSERT INTO forgotten_rooms (user_id, room_id) VALUES (?, ?) ON CONFLICT (user_id, room_id) DO NOTHING`, s.UserID, roomID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	a.deps.Hub.Wake(s.UserID)
	endpoint.Write(w, struct{}{})
}

// isForgotten reports whether userID forgot roomID.
func (a *API) isForgotten(ctx context.Context, userID, roomID string) (bool, error) {
	var n int
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT COUNT(*) FROM forgotten_rooms WHERE user_id = ? AND room_id = ?`, userID, roomID).Scan(&n)
	})
	return n > 0, err
}

func (a *API) unforget(ctx context.Context, userID, roomID string) error {
	return a.deps.DB.Exec(ctx, `DELETE FROM forgotten_rooms WHERE user_id = ? AND room_id = ?`, userID, roomID)
}

// moderate handles kick, ban and unban: from lists the target
// memberships the action applies to (nil: any).
func (a *API) moderate(w http.ResponseWriter, r *http.Request, s *endpoint.Session, membership string, from []string, refusal string) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	b, err := decodeTarget(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := a.requireJoined(ctx, roomID, s.UserID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if from != nil {
		m, err := a.membership(ctx, roomID, b.UserID)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		ok := false
		for _, f := range from {
			ok = ok || m == f
		}
		if !ok {
			endpoint.Fail(w, mxerr.Forbidden(fmt.Sprintf(refusal, b.UserID)))
			return
		}
	}
	if _, err := a.setMembership(ctx, roomID, s.UserID, b.UserID, membership, b.Reason); err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, struct{}{})
}

func (a *API) kick(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	a.moderate(w, r, s, "leave", []string{"join", "invite", "knock"}, "The target user %s is not in the room")
}

func (a *API) ban(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	a.moderate(w, r, s, "ban", nil, "")
}

func (a *API) unban(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	a.moderate(w, r, s, "leave", []string{"ban"}, "The target user %s is not banned")
}

func (a *API) joinedRooms(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ids, err := a.deps.Members.JoinedRooms(r.Context(), s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if ids == nil {
		ids = []string{}
	}
	endpoint.Write(w, map[string][]string{"joined_rooms": ids})
}

// UpdateProfile appends a new join event, carrying the new display name
// and avatar URL, to every room userID is joined to (Client-Server API,
// "Events on change of profile information"). It goes on past a room that
// fails and returns the errors together.
func (a *API) UpdateProfile(ctx context.Context, userID, displayname, avatarURL string) error {
	ids, err := a.deps.Members.JoinedRooms(ctx, userID)
	if err != nil {
		return err
	}
	var errs []error
	for _, roomID := range ids {
		cur, err := a.currentState(ctx, roomID, "m.room.member", userID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if cur == nil || cur.Membership() != "join" {
			continue
		}
		content := cur.Content().Without("displayname", "avatar_url", "reason")
		if displayname != "" {
			content = content.With("displayname", cjson.Str(displayname))
		}
		if avatarURL != "" {
			content = content.With("avatar_url", cjson.Str(avatarURL))
		}
		if content.Equal(cur.Content()) {
			continue
		}
		_, err = a.deps.Rooms.Append(ctx, rooms.RoomID(roomID), rooms.LocalEvent{
			Type: "m.room.member", StateKey: &userID, Sender: rooms.UserID(userID), Content: content,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("roomapi: profile update in %s: %w", roomID, err))
		}
	}
	return errors.Join(errs...)
}

// viaServers are the servers a join may go through: the via query
// parameters, and the deprecated server_name ones (Client-Server API,
// POST /join/{roomIdOrAlias}).
func viaServers(r *http.Request) []string {
	q := r.URL.Query()
	return append(append([]string(nil), q["via"]...), q["server_name"]...)
}

// waitIndexed waits until membership lookups see the event at pos, so a
// client that joined and then reads the room is not told it is not in it.
func (a *API) waitIndexed(ctx context.Context, pos int64) error {
	if a.deps.WaitIndexed == nil {
		return nil
	}
	return a.deps.WaitIndexed(ctx, pos)
}
