package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

func (f *Federation) registerJoins(r server.Router) {
	r.Handle("GET /_matrix/federation/v1/make_join/{roomId}/{userId}", fedhttp.Wrap(f.auth, 0, f.makeMembership("join")))
	r.Handle("GET /_matrix/federation/v1/make_leave/{roomId}/{userId}", fedhttp.Wrap(f.auth, 0, f.makeMembership("leave")))
	r.Handle("GET /_matrix/federation/v1/make_knock/{roomId}/{userId}", fedhttp.Wrap(f.auth, 0, f.makeMembership("knock")))
	r.Handle("PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}", fedhttp.Wrap(f.auth, 0, f.sendMembership("join")))
	r.Handle("PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}", fedhttp.Wrap(f.auth, 0, f.sendMembership("leave")))
	r.Handle("PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}", fedhttp.Wrap(f.auth, 0, f.sendMembership("knock")))
}

// makeMembership serves make_join, make_leave and make_knock
// (Server-Server API, "Joining Rooms", "Leaving Rooms", "Knocking"): a
// proto-event the remote user's server fills in, signs and sends back
// with the matching send_ endpoint.
func (f *Federation) makeMembership(membership string) fedhttp.Handler {
	return func(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
		roomID, userID := r.PathValue("roomId"), r.PathValue("userId")
		if _, err := rooms.ParseUserID(userID); err != nil {
			server.WriteError(w, mxerr.InvalidParam("Invalid user ID"))
			return
		}
		if serverOf(userID) != req.Origin {
			server.WriteError(w, mxerr.Forbidden("The user is not on the requesting server"))
			return
		}
		info, err := f.deps.DB.Room(r.Context(), roomID)
		if errors.Is(err, storage.ErrNotFound) {
			server.WriteError(w, mxerr.NotFound("Unknown room"))
			return
		}
		if err != nil {
			server.WriteError(w, err)
			return
		}
		if partial, err := f.deps.Rooms.PartialState(r.Context(), rooms.RoomID(roomID)); err != nil || partial {
			// Our copy lacks the members until its state is complete
			// (partial.go): a template, and the send_join answer after
			// it, would be wrong. Another resident can serve it.
			if err == nil {
				err = mxerr.NotFound("This server does not have the full state of the room yet")
			}
			server.WriteError(w, err)
			return
		}
		if membership != "leave" && !versionAccepted(r.URL.Query()["ver"], info.Version) {
			// "The room version the server supports ... is not listed
			// in ver": M_INCOMPATIBLE_ROOM_VERSION with room_version.
			server.WriteError(w, mxerr.New(http.StatusBadRequest, mxerr.CodeIncompatibleVersion,
				"Your server does not support this room's version").With("room_version", info.Version))
			return
		}
		content := cjson.Obj().With("membership", cjson.Str(membership))
		proto, version, err := f.deps.Rooms.Template(r.Context(), rooms.RoomID(roomID), rooms.LocalEvent{
			Type: "m.room.member", StateKey: &userID, Sender: rooms.UserID(userID), Content: content,
		})
		if err != nil {
			writeRoomsError(w, err)
			return
		}
		server.WriteJSON(w, http.StatusOK, map[string]any{"room_version": version, "event": json.RawMessage(proto)})
	}
}

// versionAccepted: without ver the remote supports only version 1
// (Server-Server API, make_join "ver").
func versionAccepted(vers []string, version string) bool {
	if len(vers) == 0 {
		return version == "1"
	}
	for _, v := range vers {
		if v == version {
			return true
		}
	}
	return false
}

// sendMembership serves send_join (v2), send_leave (v2) and send_knock:
// the remote server's signed membership event goes through the receive
// pipeline like any PDU, and a join is answered with the state before it
// and its auth chain, from which the joining server builds its copy.
func (f *Federation) sendMembership(membership string) fedhttp.Handler {
	return func(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
		ctx := r.Context()
		roomID, eventID := r.PathValue("roomId"), r.PathValue("eventId")
		info, err := f.deps.DB.Room(ctx, roomID)
		if errors.Is(err, storage.ErrNotFound) {
			server.WriteError(w, mxerr.NotFound("Unknown room"))
			return
		}
		if err != nil {
			server.WriteError(w, err)
			return
		}
		v, ok := rooms.LookupVersion(info.Version)
		if !ok || req.Body == nil {
			server.WriteError(w, mxerr.BadJSON("Missing event"))
			return
		}
		ev, err := rooms.ParseEvent(req.Body, v)
		if err != nil {
			server.WriteError(w, mxerr.BadJSON("Malformed event: "+err.Error()))
			return
		}
		switch {
		case string(ev.ID()) != eventID:
			server.WriteError(w, mxerr.BadJSON("The event ID does not match the event"))
			return
		case string(ev.RoomID()) != roomID:
			server.WriteError(w, mxerr.BadJSON("The event is for another room"))
			return
		case ev.Type() != "m.room.member" || ev.StateKey() == nil || *ev.StateKey() != string(ev.Sender()) || ev.Membership() != membership:
			server.WriteError(w, mxerr.BadJSON(fmt.Sprintf("Not a %s event of its sender", membership)))
			return
		case serverOf(string(ev.Sender())) != req.Origin:
			server.WriteError(w, mxerr.Forbidden("The event's sender is not on the requesting server"))
			return
		}
		a, err := f.deps.Rooms.Admit(ctx, rooms.RoomID(roomID), req.Body)
		if err != nil {
			writeRoomsError(w, err)
			return
		}
		if a.Rejected != "" || a.SoftFailed {
			server.WriteError(w, mxerr.Forbidden("The event is not allowed: "+a.Rejected))
			return
		}
		if !a.Duplicate {
			// "The resident server must also send the event to other
			// servers participating in the room" (Server-Server API,
			// "Joining Rooms"): EventsStored only sends the events
			// this server created.
			f.relay(roomID, req.Origin, string(a.Event.ID()))
		}
		switch membership {
		case "leave":
			server.WriteJSON(w, http.StatusOK, map[string]any{})
			return
		case "knock":
			st, err := f.strippedState(ctx, roomID)
			if err != nil {
				server.WriteError(w, err)
				return
			}
			server.WriteJSON(w, http.StatusOK, map[string]any{"knock_room_state": st})
			return
		}
		resp, err := f.joinResponse(ctx, info.RoomID, ev, req.Body, r.URL.Query().Get("omit_members") == "true")
		if err != nil {
			server.WriteError(w, err)
			return
		}
		server.WriteJSON(w, http.StatusOK, resp)
	}
}

type sendJoinResponse struct {
	Origin         string            `json:"origin"`
	State          []json.RawMessage `json:"state"`
	AuthChain      []json.RawMessage `json:"auth_chain"`
	Event          json.RawMessage   `json:"event,omitempty"`
	MembersOmitted bool              `json:"members_omitted"`
	ServersInRoom  []string          `json:"servers_in_room,omitempty"`
}

// joinResponse is send_join's answer: the state before the join and the
// full auth chain of that state and the join. With omit_members the
// member events are left out of the state (a partial-state join, MSC3706 as
// taken into the spec in v1.6) and the auth chain does not repeat events
// already in the state.
func (f *Federation) joinResponse(ctx context.Context, roomID string, join *rooms.Event, joinJSON []byte, omitMembers bool) (*sendJoinResponse, error) {
	state, chain, err := f.deps.Rooms.StateBefore(ctx, rooms.RoomID(roomID), join.ID())
	if err != nil {
		return nil, err
	}
	// The auth chain is that of the join too: an omitted member event the
	// join cites (its user's invite, knock or earlier membership) goes
	// there, or the joining server cannot check the join.
	joinAuth := map[string]bool{}
	for _, id := range join.AuthEvents() {
		joinAuth[string(id)] = true
	}
	var members map[string]bool
	if omitMembers {
		// Which state events are members, from the state map rather
		// than from the events themselves: in a big room they are
		// nearly all of it, and need not be read at all.
		if members, err = f.memberEvents(ctx, join, state); err != nil {
			return nil, err
		}
	}
	ids := make([]string, 0, len(state)+len(chain))
	for _, id := range state {
		if !members[string(id)] || joinAuth[string(id)] {
			ids = append(ids, string(id))
		}
	}
	for _, id := range chain {
		ids = append(ids, string(id))
	}
	recs, err := f.deps.DB.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	// Events redacted since they were received go out redacted, as
	// every other endpoint serves them.
	if recs, err = f.api.RedactedMap(ctx, recs); err != nil {
		return nil, err
	}
	resp := &sendJoinResponse{Origin: f.cfg.ServerName, Event: joinJSON, State: []json.RawMessage{}, AuthChain: []json.RawMessage{}}
	listed := map[string]bool{} // in state, or already in the auth chain
	for _, id := range state {
		if members[string(id)] {
			if joinAuth[string(id)] {
				listed[string(id)] = true
				resp.AuthChain = append(resp.AuthChain, recs[string(id)].JSON)
			}
			continue
		}
		rec := recs[string(id)]
		if rec == nil {
			return nil, fmt.Errorf("state event %s is not stored", id)
		}
		listed[string(id)] = true
		resp.State = append(resp.State, rec.JSON)
	}
	for _, id := range chain {
		if omitMembers && listed[string(id)] {
			continue
		}
		rec := recs[string(id)]
		if rec == nil {
			return nil, fmt.Errorf("auth event %s is not stored", id)
		}
		resp.AuthChain = append(resp.AuthChain, rec.JSON)
	}
	if omitMembers {
		resp.MembersOmitted = true
		// The servers with joined users, from the destinations cache
		// the sender keeps (it includes the joining server now, which
		// the spec's "before the join" leaves out; listing it is
		// harmless, as the joining server knows itself).
		others, err := f.servers.get(ctx, roomID)
		if err != nil {
			return nil, err
		}
		resp.ServersInRoom = append([]string{f.cfg.ServerName}, others...)
		sort.Strings(resp.ServersInRoom)
	}
	return resp, nil
}

// memberEvents tells which of the state before join are m.room.member
// events, from the state after the join (one read of a state map). The
// one event of state that the map does not hold is the one the join
// replaced: the joining user's earlier membership, a member event too.
func (f *Federation) memberEvents(ctx context.Context, join *rooms.Event, state []rooms.EventID) (map[string]bool, error) {
	after, err := f.deps.DB.StateAfter(ctx, string(join.ID()))
	if err != nil {
		return nil, err
	}
	byID := make(map[string]string, len(after))
	for k, id := range after {
		byID[id] = k.Type
	}
	members := make(map[string]bool)
	for _, id := range state {
		if typ, ok := byID[string(id)]; !ok || typ == "m.room.member" {
			members[string(id)] = true
		}
	}
	return members, nil
}

// writeRoomsError maps the room service's refusals to Matrix errors.
func writeRoomsError(w http.ResponseWriter, err error) {
	var notAllowed *rooms.NotAllowedError
	var format *rooms.FormatError
	var sig *rooms.SignatureError
	switch {
	case errors.As(err, &notAllowed):
		server.WriteError(w, mxerr.Forbidden(notAllowed.Error()))
	case errors.As(err, &format):
		server.WriteError(w, mxerr.BadJSON(format.Error()))
	case errors.As(err, &sig):
		server.WriteError(w, mxerr.Forbidden(sig.Error()))
	case errors.Is(err, rooms.ErrUnknownRoom), errors.Is(err, storage.ErrNotFound):
		server.WriteError(w, mxerr.NotFound("Unknown room"))
	default:
		server.WriteError(w, err)
	}
}

// Join makes a local user join a room this server is not in, through one
// of the given servers (Server-Server API, "Joining Rooms"): make_join
// for a template, which we complete and sign, then send_join, whose
// answer (the state before the join and its auth chain) becomes our copy
// of the room. content adds profile fields to the membership.
func (f *Federation) Join(ctx context.Context, roomID, userID string, servers []string, content map[string]any) (string, error) {
	vers := url.Values{}
	for _, v := range rooms.SupportedVersions() {
		vers.Add("ver", v)
	}
	var lastErr error
	for _, dest := range servers {
		if dest == f.cfg.ServerName || dest == "" {
			continue
		}
		id, err := f.joinVia(ctx, dest, roomID, userID, vers, content)
		if err == nil {
			return id, nil
		}
		f.log.Info("join through a server failed", "room", roomID, "server", dest, "err", err)
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return "", clientError(lastErr)
}

// clientError turns the last refusal of a remote handshake into the error
// the client sees: a remote server's own Matrix error (403 M_FORBIDDEN
// for a join the room does not allow, say) passes through; a server that
// could not be reached, or an answer we could not use, is 404 as for a
// room with no known servers.
func clientError(err error) error {
	var remote *transport.RemoteError
	switch {
	case err == nil:
		return mxerr.NotFound("No known servers")
	case errors.As(err, &remote) && remote.Status >= 400 && remote.Status < 500 && remote.ErrCode != "":
		return mxerr.New(remote.Status, remote.ErrCode, remote.Message)
	default:
		return mxerr.NotFound("No known servers could complete the request: " + err.Error())
	}
}

func (f *Federation) joinVia(ctx context.Context, dest, roomID, userID string, vers url.Values, content map[string]any) (string, error) {
	var made struct {
		RoomVersion string          `json:"room_version"`
		Event       json.RawMessage `json:"event"`
	}
	path := "/_matrix/federation/v1/make_join/" + pathEscape(roomID) + "/" + pathEscape(userID) + "?" + vers.Encode()
	if err := f.client.Do(ctx, dest, "GET", path, nil, &made); err != nil {
		return "", err
	}
	proto, err := withContent(made.Event, content)
	if err != nil {
		return "", err
	}
	ev, err := f.deps.Rooms.Complete(made.RoomVersion, proto)
	if err != nil {
		return "", err
	}
	if string(ev.RoomID()) != roomID || string(ev.Sender()) != userID || ev.Membership() != "join" {
		return "", errors.New("make_join answered a template for another room, user or membership")
	}
	var resp sendJoinResponse
	path = "/_matrix/federation/v2/send_join/" + pathEscape(roomID) + "/" + pathEscape(string(ev.ID()))
	if f.cfg.PartialStateJoins {
		// A partial-state join (partial.go): the answer may leave the
		// member events out of the state.
		path += "?omit_members=true"
	}
	if err := f.client.Do(ctx, dest, "PUT", path, json.RawMessage(ev.JSON()), &resp); err != nil {
		return "", err
	}
	joinJSON := ev.JSON()
	if len(resp.Event) > 0 {
		// The resident may add its signature (restricted joins); the
		// event must still be ours.
		joinJSON = resp.Event
	}
	if resp.MembersOmitted {
		return f.joinPartial(ctx, dest, roomID, joinJSON, &resp)
	}
	a, err := f.deps.Rooms.Join(ctx, rooms.RoomID(roomID), joinJSON, rawList(resp.State), rawList(resp.AuthChain))
	if err != nil {
		return "", fmt.Errorf("storing the room from %s's send_join answer: %w", dest, err)
	}
	f.servers.forget(roomID)
	return string(a.Event.ID()), nil
}

// withContent merges extra content fields (display name, avatar) into a
// proto-event's content, keeping its membership.
func withContent(proto json.RawMessage, extra map[string]any) ([]byte, error) {
	if len(extra) == 0 {
		return proto, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(proto, &obj); err != nil {
		return nil, fmt.Errorf("make_join answered a malformed event: %w", err)
	}
	var content map[string]any
	if c, ok := obj["content"]; ok {
		if err := json.Unmarshal(c, &content); err != nil {
			return nil, fmt.Errorf("make_join answered a malformed content: %w", err)
		}
	}
	if content == nil {
		content = map[string]any{}
	}
	for k, v := range extra {
		if k != "membership" && !strings.HasPrefix(k, "join_authorised") {
			content[k] = v
		}
	}
	c, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	obj["content"] = c
	return json.Marshal(obj)
}

// relay queues a remote server's event, taken through one of our send_
// endpoints, for every other server in the room but its origin.
func (f *Federation) relay(roomID, origin, eventID string) {
	servers, err := f.servers.get(f.ctx, roomID)
	if err != nil {
		f.log.Error("cannot find the servers in a room", "room", roomID, "err", err)
		return
	}
	dests := make([]string, 0, len(servers))
	for _, s := range servers {
		if s != origin {
			dests = append(dests, s)
		}
	}
	if len(dests) == 0 {
		return
	}
	if err := f.queue.EnqueuePDU(f.ctx, dests, roomID, eventID); err != nil {
		f.log.Error("cannot queue an event for federation", "room", roomID, "event", eventID, "err", err)
	}
}

// strippedStateTypes are the state events that let someone outside a room
// recognise it (Client-Server API, "Stripped state").
var strippedStateTypes = []string{
	"m.room.create", "m.room.name", "m.room.avatar", "m.room.topic",
	"m.room.join_rules", "m.room.canonical_alias", "m.room.encryption",
}

// strippedState is the knock_room_state of send_knock: since v1.16 the
// full PDUs of those state events, m.room.create always among them.
func (f *Federation) strippedState(ctx context.Context, roomID string) ([]json.RawMessage, error) {
	info, err := f.deps.DB.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, t := range strippedStateTypes {
		if id, ok := info.Current[storage.StateKey{Type: t}]; ok {
			ids = append(ids, id)
		}
	}
	recs, err := f.deps.DB.Events(ctx, ids)
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
