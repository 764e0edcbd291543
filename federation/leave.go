package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"

	"github.com/plexus-chat/plexus/rooms"
)

// Leave makes a local user leave a room this server is not in, which is
// how an invite from another server is rejected (server-server API,
// "Leaving Rooms (Rejecting Invites)"): make_leave on one of servers (the
// inviting server is resident) for a template, which we complete and sign,
// then send_leave v2 to the same server. It returns our leave event. A
// refusal is the remote server's Matrix error; no reachable server is 404.
func (f *Federation) Leave(ctx context.Context, roomID, userID string, servers []string) (json.RawMessage, error) {
	return f.handshake(ctx, "leave", roomID, userID, servers, nil, nil)
}

// handshake runs make_<membership> and send_<membership> for a local
// user through the first of servers that completes both, and returns our
// signed event. For a knock, out receives send_knock's answer.
func (f *Federation) handshake(ctx context.Context, membership, roomID, userID string, servers []string, content map[string]any, out any) (json.RawMessage, error) {
	var lastErr error
	for _, dest := range servers {
		if dest == f.cfg.ServerName || dest == "" {
			continue
		}
		ev, err := f.handshakeVia(ctx, dest, membership, roomID, userID, content, out)
		if err == nil {
			return ev, nil
		}
		f.log.Info("membership handshake through a server failed", "membership", membership, "room", roomID, "server", dest, "err", err)
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, clientError(lastErr)
}

func (f *Federation) handshakeVia(ctx context.Context, dest, membership, roomID, userID string, content map[string]any, out any) (json.RawMessage, error) {
	var made struct {
		RoomVersion string          `json:"room_version"`
		Event       json.RawMessage `json:"event"`
	}
	path := "/_matrix/federation/v1/make_" + membership + "/" + pathEscape(roomID) + "/" + pathEscape(userID)
	if membership == "knock" {
		vers := url.Values{}
		for _, v := range rooms.SupportedVersions() {
			vers.Add("ver", v)
		}
		path += "?" + vers.Encode()
	}
	if err := f.client.Do(ctx, dest, "GET", path, nil, &made); err != nil {
		return nil, err
	}
	proto, err := withContent(made.Event, content)
	if err != nil {
		return nil, err
	}
	ev, err := f.deps.Rooms.Complete(made.RoomVersion, proto)
	if err != nil {
		return nil, err
	}
	if string(ev.RoomID()) != roomID || string(ev.Sender()) != userID || ev.Membership() != membership {
		return nil, errors.New("make_" + membership + " answered a template for another room, user or membership")
	}
	// send_leave has a v2 (its answer is {}); send_knock only a v1.
	version := "v2"
	if membership == "knock" {
		version = "v1"
	}
	path = "/_matrix/federation/" + version + "/send_" + membership + "/" + pathEscape(roomID) + "/" + pathEscape(string(ev.ID()))
	if err := f.client.Do(ctx, dest, "PUT", path, json.RawMessage(ev.JSON()), out); err != nil {
		return nil, err
	}
	return ev.JSON(), nil
}
