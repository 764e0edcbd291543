package roomapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/clientevent"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/invites"
)

// Remote is what the membership and alias endpoints ask of federation
// beyond joins (server-server API, "Inviting to a room", "Leaving Rooms
// (Rejecting Invites)", "Knocking upon a room", "Querying for
// information"). Its errors are *mxerr.MatrixError where a remote server
// refused.
type Remote interface {
	// Invite has the invitee's server countersign our invite event
	// (state is invite_room_state) and returns the countersigned event.
	Invite(ctx context.Context, roomID, version string, event json.RawMessage, state []json.RawMessage) (json.RawMessage, error)
	// Leave makes userID leave a room this server is not in through one
	// of servers, and returns the leave event.
	Leave(ctx context.Context, roomID, userID string, servers []string) (json.RawMessage, error)
	// Knock makes userID knock on a room this server is not in through
	// one of servers; content adds fields to the membership.
	Knock(ctx context.Context, roomID, userID string, servers []string, content map[string]any) (json.RawMessage, []json.RawMessage, error)
	// QueryDirectory resolves another server's room alias.
	QueryDirectory(ctx context.Context, alias string) (roomID string, servers []string, err error)
}

// inviteUser invites target to roomID as sender. A user on another server
// is invited over federation when there is federation (inviteRemote);
// otherwise the invite is only appended to our copy of the room, and
// OnRemoteInvite hears of it.
func (a *API) inviteUser(ctx context.Context, roomID, sender, target, reason string, extra ...cjson.Member) error {
	if !a.isLocal(target) && a.deps.Remote != nil {
		return a.inviteRemote(ctx, roomID, sender, target, reason, extra...)
	}
	st, err := a.setMembership(ctx, roomID, sender, target, "invite", reason, extra...)
	if err != nil {
		return err
	}
	if !a.isLocal(target) && a.deps.OnRemoteInvite != nil {
		a.deps.OnRemoteInvite(ctx, roomID, string(st.Event.ID()), target)
	}
	return nil
}

// inviteRemote is the inviting side of "Inviting to a room": the invite
// is built and signed but not stored, the invitee's server countersigns
// it, and only then does it enter the room, from where it is sent to the
// room's other servers like any event. A refusal by the invitee's server
// fails the invite with that server's error, and nothing is stored.
func (a *API) inviteRemote(ctx context.Context, roomID, sender, target, reason string, extra ...cjson.Member) error {
	content, err := a.memberContent(ctx, target, "invite", reason, extra...)
	if err != nil {
		return err
	}
	ev, err := a.deps.Rooms.Invite(ctx, rooms.RoomID(roomID), rooms.LocalEvent{
		Type: "m.room.member", StateKey: &target, Sender: rooms.UserID(sender), Content: content,
	})
	if err != nil {
		return appendErr(err)
	}
	state, err := a.inviteRoomState(ctx, roomID)
	if err != nil {
		return err
	}
	signed, err := a.deps.Remote.Invite(ctx, roomID, ev.Version().ID, ev.JSON(), state)
	if err != nil {
		return err
	}
	adm, err := a.deps.Rooms.Admit(ctx, rooms.RoomID(roomID), signed)
	if err != nil {
		return appendErr(err)
	}
	if adm.Rejected != "" || adm.SoftFailed {
		// The room moved on between building the invite and storing it
		// (the inviter was kicked, say).
		return mxerr.Forbidden("The invite is no longer allowed: " + adm.Rejected)
	}
	return nil
}

// inviteRoomState is invite_room_state: the current state events of the
// stripped-state types, as PDUs, which v1.16 of the spec requires (with
// m.room.create) so the invitee's server can check them.
func (a *API) inviteRoomState(ctx context.Context, roomID string) ([]json.RawMessage, error) {
	info, err := a.deps.DB.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, t := range clientevent.StrippedStateTypes {
		if id, ok := info.Current[storage.StateKey{Type: t}]; ok {
			ids = append(ids, id)
		}
	}
	recs, err := a.deps.DB.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(ids))
	for _, id := range ids {
		if rec := recs[id]; rec != nil {
			out = append(out, rec.JSON)
		}
	}
	return out, nil
}

// pendingRemoteInvite is userID's pending invite to roomID from another
// server, nil if there is none or the event stream has the user in the
// room since (an invite this server also received as a room event, as
// another local user is in the room).
func (a *API) pendingRemoteInvite(ctx context.Context, roomID, userID string) (*invites.Invite, error) {
	if a.deps.Invites == nil || a.deps.Remote == nil {
		return nil, nil
	}
	inv, err := a.deps.Invites.Get(ctx, userID, roomID)
	if err != nil || inv == nil || inv.Membership != "invite" {
		return nil, err
	}
	switch m, err := a.membership(ctx, roomID, userID); {
	case err != nil:
		return nil, err
	case m == "join" || m == "invite":
		return nil, nil
	}
	return inv, nil
}

// remoteServers lists the servers to reach a room this server is not in
// through: via, then the inviting server, then the room ID's server; ours
// left out.
func (a *API) remoteServers(roomID string, via []string, inv *invites.Invite) []string {
	servers := append([]string(nil), via...)
	if inv != nil {
		if _, s, ok := strings.Cut(inv.Sender, ":"); ok {
			servers = append(servers, s)
		}
	}
	if _, s, ok := strings.Cut(roomID, ":"); ok {
		servers = append(servers, s)
	}
	var out []string
	for _, s := range servers {
		if s != "" && s != a.cfg.ServerName && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// rejectRemoteInvite rejects an invite to a room this server is not in
// through the inviting server's make_leave/send_leave (server-server API,
// "Leaving Rooms (Rejecting Invites)"); /sync then moves the room from
// invite to leave.
func (a *API) rejectRemoteInvite(ctx context.Context, roomID, userID string, inv *invites.Invite) error {
	leave, err := a.deps.Remote.Leave(ctx, roomID, userID, a.remoteServers(roomID, nil, inv))
	if err != nil {
		return err
	}
	return a.deps.Invites.Reject(ctx, userID, roomID, leave)
}

// lookupAlias resolves an alias to its room and the servers to join it
// through: ours from the alias table, another server's with a directory
// query (server-server API, "Querying for information").
func (a *API) lookupAlias(ctx context.Context, alias roomAlias) (string, []string, error) {
	if alias.server != a.cfg.ServerName {
		if a.deps.Remote == nil {
			return "", nil, mxerr.NotFound(fmt.Sprintf("Room alias %s not found", alias.full))
		}
		return a.deps.Remote.QueryDirectory(ctx, alias.full)
	}
	id, err := a.resolveAlias(ctx, alias)
	if err != nil {
		return "", nil, err
	}
	return id, []string{a.cfg.ServerName}, nil
}

// knock is POST /knock/{roomIdOrAlias} (Client-Server API, "Knocking on
// rooms"): a room this server is in gets the knock appended; any other is
// knocked on over federation through the via servers, the alias's
// servers or the room ID's server.
func (a *API) knock(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
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
	err = a.requireRoom(ctx, roomID, mxerr.NotFound("No known servers"))
	var me *mxerr.MatrixError
	switch {
	case err == nil:
		if _, err := a.setMembership(ctx, roomID, s.UserID, s.UserID, "knock", body.Reason); err != nil {
			endpoint.Fail(w, err)
			return
		}
	case errors.As(err, &me) && me.Code == mxerr.CodeNotFound && a.deps.Remote != nil:
		servers := a.remoteServers(roomID, via, nil)
		if len(servers) == 0 {
			endpoint.Fail(w, err)
			return
		}
		var content map[string]any
		if body.Reason != "" {
			content = map[string]any{"reason": body.Reason}
		}
		if _, _, err := a.deps.Remote.Knock(ctx, roomID, s.UserID, servers, content); err != nil {
			endpoint.Fail(w, err)
			return
		}
	default:
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string]string{"room_id": roomID})
}
