package cable

import (
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/signalling/internal/syncer"
)

// The channels' messages are encoded by hand, with the /sync engine's
// encoders (syncer.AppendResponse and its parts); each writes exactly
// what json.Marshal would (TestEncodersMatchEncodingJSON holds them to
// it).

// appendSync writes a sync channel message: {"type":"sync",
// "next_batch":..,"sync":<response>}.
func appendSync(b []byte, r *syncer.Response) []byte {
	b = append(b, `{"type":"sync","next_batch":`...)
	b = cjson.AppendString(b, r.NextBatch)
	b = append(b, `,"sync":`...)
	b = syncer.AppendResponse(b, r)
	return append(b, '}')
}

// appendRoom writes a room channel message (see roomMessage for its
// fields), from the room's section of a response.
func appendRoom(b []byte, m roomMessage) []byte {
	b = append(b, `{"type":"room","room_id":`...)
	b = cjson.AppendString(b, m.RoomID)
	b = append(b, `,"membership":`...)
	b = cjson.AppendString(b, m.Membership)
	b = append(b, `,"next_batch":`...)
	b = cjson.AppendString(b, m.NextBatch)
	if m.Summary != nil {
		b = append(b, `,"summary":`...)
		b = syncer.AppendMarshal(b, m.Summary)
	}
	if m.State != nil {
		b = append(b, `,"state":`...)
		b = syncer.AppendEventList(b, *m.State)
	}
	if m.Timeline != nil {
		b = append(b, `,"timeline":`...)
		b = syncer.AppendTimeline(b, *m.Timeline)
	}
	if m.Ephemeral != nil {
		b = append(b, `,"ephemeral":`...)
		b = syncer.AppendEventList(b, *m.Ephemeral)
	}
	if m.AccountData != nil {
		b = append(b, `,"account_data":`...)
		b = syncer.AppendEventList(b, *m.AccountData)
	}
	if m.UnreadNotifications != nil {
		b = append(b, `,"unread_notifications":`...)
		b = syncer.AppendUnread(b, *m.UnreadNotifications)
	}
	if m.InviteState != nil {
		b = append(b, `,"invite_state":`...)
		b = syncer.AppendEventList(b, *m.InviteState)
	}
	return append(b, '}')
}
