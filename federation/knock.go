package federation

import (
	"context"
	"encoding/json"
)

// Knock makes a local user knock on a room this server is not in
// (server-server API, "Knocking upon a room"): make_knock on one of
// servers, with the room versions we support, then send_knock to the same
// server. content adds fields (a reason) to the membership. It returns our
// knock event and the stripped state the resident answered
// (knock_room_state), for the client to show the room by.
func (f *Federation) Knock(ctx context.Context, roomID, userID string, servers []string, content map[string]any) (event json.RawMessage, state []json.RawMessage, err error) {
	var resp struct {
		KnockRoomState []json.RawMessage `json:"knock_room_state"`
	}
	ev, err := f.handshake(ctx, "knock", roomID, userID, servers, content, &resp)
	if err != nil {
		return nil, nil, err
	}
	return ev, resp.KnockRoomState, nil
}
