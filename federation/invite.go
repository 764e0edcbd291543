package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/rooms"
)

// InviteHandler receives the invites of local users that other servers
// had us countersign, so the invitee's /sync shows them. This server is
// usually not in the room: event is the countersigned invite PDU and state
// the invite_room_state the inviting server sent, from which the client
// is shown the room. The client side implements it.
type InviteHandler interface {
	HandleInvite(ctx context.Context, roomID, version string, event []byte, state []json.RawMessage) error
}

// SetInvites supplies the client side's invite delivery, like SetLocal.
func (f *Federation) SetInvites(h InviteHandler) { f.deps.Invites = h }

func (f *Federation) registerInvites(r server.Router) {
	r.Handle("PUT /_matrix/federation/v2/invite/{roomId}/{eventId}", fedhttp.Wrap(f.auth, 0, f.handleInvite))
	r.Handle("PUT /_matrix/federation/v1/invite/{roomId}/{eventId}", fedhttp.Wrap(f.auth, 0, f.handleInviteV1))
}

// handleInviteV1 answers the v1 invite, which is only for room versions 1
// and 2 (the sender "should retry using the v1 API ... if the room version
// is 1 or 2"): neither is supported here.
func (f *Federation) handleInviteV1(w http.ResponseWriter, _ *http.Request, _ *fedhttp.Request) {
	server.WriteError(w, mxerr.New(http.StatusBadRequest, mxerr.CodeIncompatibleVersion,
		"Room versions 1 and 2 are not supported").With("room_version", "1"))
}

// handleInvite is the invitee's side of "Inviting to a room" (PUT
// /_matrix/federation/v2/invite): the invite is checked as the endpoint
// requires, countersigned, handed to the client side for the invitee's
// /sync, and answered with our signature added.
func (f *Federation) handleInvite(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	ctx := r.Context()
	roomID, eventID := r.PathValue("roomId"), r.PathValue("eventId")
	var body struct {
		RoomVersion     string            `json:"room_version"`
		Event           json.RawMessage   `json:"event"`
		InviteRoomState []json.RawMessage `json:"invite_room_state"`
	}
	if req.Body == nil || json.Unmarshal(req.Body, &body) != nil {
		server.WriteError(w, mxerr.BadJSON("The body is not a JSON object"))
		return
	}
	if body.RoomVersion == "" || len(body.Event) == 0 {
		server.WriteError(w, mxerr.MissingParam("room_version and event are required"))
		return
	}
	v, ok := rooms.LookupVersion(body.RoomVersion)
	if !ok {
		server.WriteError(w, mxerr.New(http.StatusBadRequest, mxerr.CodeIncompatibleVersion,
			"This server does not support the room's version").With("room_version", body.RoomVersion))
		return
	}
	ev, err := rooms.ParseEvent(body.Event, v)
	if err != nil {
		server.WriteError(w, mxerr.InvalidParam("Malformed invite: "+err.Error()))
		return
	}
	// The checks the endpoint lists, each M_INVALID_PARAM ("Servers MUST
	// apply certain validation to ensure they don't accidentally sign
	// non-invite events").
	switch {
	case string(ev.ID()) != eventID:
		server.WriteError(w, mxerr.InvalidParam("The event ID does not match the event"))
		return
	case string(ev.RoomID()) != roomID:
		server.WriteError(w, mxerr.InvalidParam("The event is for another room"))
		return
	case ev.Type() != "m.room.member" || ev.StateKey() == nil || ev.Membership() != "invite":
		server.WriteError(w, mxerr.InvalidParam("Not an invite"))
		return
	case serverOf(string(ev.Sender())) != req.Origin:
		server.WriteError(w, mxerr.InvalidParam("The sender is not on the requesting server"))
		return
	case serverOf(*ev.StateKey()) != f.cfg.ServerName:
		server.WriteError(w, mxerr.InvalidParam("The invitee is not on this server"))
		return
	}
	invitee := *ev.StateKey()
	if _, err := f.deps.Local.Profile(ctx, invitee); err != nil {
		server.WriteError(w, err) // 404 M_NOT_FOUND for an unknown user
		return
	}
	if err := checkInviteState(v, roomID, body.InviteRoomState); err != nil {
		// "Servers SHOULD warn about invites which fail the validation
		// rather than error in room versions 1 through 11"; later versions
		// error (v1.16, "Inviting to a room").
		if v.RoomIDIsCreateHash {
			server.WriteError(w, mxerr.InvalidParam("invite_room_state: "+err.Error()))
			return
		}
		f.log.Warn("invite with invalid invite_room_state accepted", "room", roomID, "origin", req.Origin, "err", err)
	}
	signed, err := f.deps.Rooms.Countersign(body.RoomVersion, body.Event)
	if err != nil {
		// A bad signature or content hash: M_INVALID_PARAM as the
		// endpoint says.
		server.WriteError(w, mxerr.InvalidParam("The invite does not verify: "+err.Error()))
		return
	}
	if f.deps.Invites == nil {
		server.WriteError(w, errors.New("federation: no invite handler"))
		return
	}
	if err := f.deps.Invites.HandleInvite(ctx, roomID, body.RoomVersion, signed.JSON(), body.InviteRoomState); err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"event": json.RawMessage(signed.JSON())})
}

// checkInviteState applies the invite_room_state validation of v1.16:
// the m.room.create event is present, and every entry is a state event of
// the room formatted for its version. Signatures are not checked here.
func checkInviteState(v *rooms.Version, roomID string, state []json.RawMessage) error {
	create := false
	for i, raw := range state {
		ev, err := rooms.ParseEvent(raw, v)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if ev.StateKey() == nil {
			return fmt.Errorf("entry %d is not a state event", i)
		}
		if string(ev.RoomID()) != roomID {
			return fmt.Errorf("entry %d is for another room", i)
		}
		create = create || ev.Type() == "m.room.create" && *ev.StateKey() == ""
	}
	if !create {
		return errors.New("no m.room.create event")
	}
	return nil
}

// Invite sends our invite of a user on another server to that server for
// its countersignature (server-server API, "Inviting to a room", PUT
// /_matrix/federation/v2/invite) with state as invite_room_state, and
// returns the event as answered once it is the same event and carries the
// invitee server's valid signature. The caller admits it to the room. A
// refusal is the remote server's own Matrix error; M_INVALID_PARAM and
// M_MISSING_PARAM, which are about our request, become a 502 as the
// endpoint asks ("the Client-Server API request SHOULD fail with a 5xx
// error rather than being passed through").
func (f *Federation) Invite(ctx context.Context, roomID, version string, event json.RawMessage, state []json.RawMessage) (json.RawMessage, error) {
	v, ok := rooms.LookupVersion(version)
	if !ok {
		return nil, fmt.Errorf("federation: unsupported room version %q", version)
	}
	ev, err := rooms.ParseEvent(event, v)
	if err != nil {
		return nil, err
	}
	if ev.StateKey() == nil {
		return nil, errors.New("federation: invite without a state key")
	}
	dest := serverOf(*ev.StateKey())
	if state == nil {
		state = []json.RawMessage{}
	}
	body := map[string]any{"room_version": version, "event": event, "invite_room_state": state}
	var resp struct {
		Event json.RawMessage `json:"event"`
	}
	path := "/_matrix/federation/v2/invite/" + pathEscape(roomID) + "/" + pathEscape(string(ev.ID()))
	if err := f.client.Do(ctx, dest, "PUT", path, body, &resp); err != nil {
		return nil, inviteError(err)
	}
	signed, err := f.deps.Rooms.Countersigned(ev, resp.Event, rooms.ServerName(dest))
	if err != nil {
		return nil, mxerr.New(http.StatusBadGateway, mxerr.CodeUnknown, fmt.Sprintf("%s answered the invite with an unusable event: %v", dest, err))
	}
	return signed.JSON(), nil
}

func inviteError(err error) error {
	var remote *transport.RemoteError
	if errors.As(err, &remote) && remote.ErrCode != "" && remote.Status >= 400 && remote.Status < 500 {
		if remote.ErrCode == mxerr.CodeInvalidParam || remote.ErrCode == mxerr.CodeMissingParam {
			return mxerr.New(http.StatusBadGateway, mxerr.CodeUnknown, "The invitee's server refused the invite: "+remote.Message)
		}
		return mxerr.New(remote.Status, remote.ErrCode, remote.Message)
	}
	return mxerr.New(http.StatusBadGateway, mxerr.CodeUnknown, "The invitee's server could not be reached: "+err.Error())
}
