package syncer

import (
	"encoding/json"
	"slices"
	"strconv"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// Responses are encoded by hand: encoding/json re-validates and compacts
// every json.RawMessage it writes, which for a response full of events
// (already compact JSON) cost as much as building the response. Each
// encoder writes exactly what json.Marshal would (the realtime
// connection's TestEncodersMatchEncodingJSON holds them to it).

// AppendResponse writes a /sync response body.
func AppendResponse(b []byte, r *Response) []byte {
	b = append(b, `{"next_batch":`...)
	b = cjson.AppendString(b, r.NextBatch)
	if r.Rooms != nil {
		b = append(b, `,"rooms":{`...)
		n := len(b)
		if len(r.Rooms.Join) > 0 {
			b = appendRoomMap(b, "join", r.Rooms.Join, appendJoined)
		}
		if len(r.Rooms.Invite) > 0 {
			b = appendRoomMap(b, comma(b, n)+"invite", r.Rooms.Invite, func(b []byte, ir *InvitedRoom) []byte {
				b = append(b, `{"invite_state":`...)
				b = AppendEventList(b, ir.InviteState)
				return append(b, '}')
			})
		}
		if len(r.Rooms.Leave) > 0 {
			b = appendRoomMap(b, comma(b, n)+"leave", r.Rooms.Leave, appendLeft)
		}
		b = append(b, '}')
	}
	for _, l := range []struct {
		key  string
		list *EventList
	}{{"account_data", r.AccountData}, {"presence", r.Presence}, {"to_device", r.ToDevice}} {
		if l.list != nil {
			b = append(b, `,"`...)
			b = append(b, l.key...)
			b = append(b, `":`...)
			b = AppendEventList(b, *l.list)
		}
	}
	if r.DeviceLists != nil {
		b = append(b, `,"device_lists":`...)
		b = AppendMarshal(b, r.DeviceLists)
	}
	if len(r.OTKCounts) > 0 {
		b = append(b, `,"device_one_time_keys_count":`...)
		b = AppendMarshal(b, r.OTKCounts)
	}
	if r.UnusedFallbackKeys != nil {
		b = append(b, `,"device_unused_fallback_key_types":`...)
		b = AppendMarshal(b, r.UnusedFallbackKeys)
	}
	return append(b, '}')
}

// comma is "," when something was written to b after position n.
func comma(b []byte, n int) string {
	if len(b) > n {
		return ","
	}
	return ""
}

// appendRoomMap writes "key":{room: section, ...} with the rooms sorted,
// as encoding/json does.
func appendRoomMap[T any](b []byte, key string, m map[string]*T, section func([]byte, *T) []byte) []byte {
	if key[0] == ',' {
		b = append(b, ',')
		key = key[1:]
	}
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `":{`...)
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = cjson.AppendString(b, id)
		b = append(b, ':')
		if m[id] == nil {
			b = append(b, "null"...)
			continue
		}
		b = section(b, m[id])
	}
	return append(b, '}')
}

func appendJoined(b []byte, jr *JoinedRoom) []byte {
	b = append(b, '{')
	if jr.Summary != nil {
		b = append(b, `"summary":`...)
		b = AppendMarshal(b, jr.Summary)
		b = append(b, ',')
	}
	b = appendStates(b, jr.State, jr.StateAfter, jr.UnstableStateAfter)
	b = append(b, `"timeline":`...)
	b = AppendTimeline(b, jr.Timeline)
	b = append(b, `,"ephemeral":`...)
	b = AppendEventList(b, jr.Ephemeral)
	b = append(b, `,"account_data":`...)
	b = AppendEventList(b, jr.AccountData)
	b = append(b, `,"unread_notifications":`...)
	b = AppendUnread(b, jr.UnreadNotifications)
	return append(b, '}')
}

// appendStates writes a room's state sections that are set, each
// followed by a comma: state unless it is zero (omitzero), then
// state_after and its unstable twin when not nil (omitempty).
func appendStates(b []byte, state EventList, after, unstableAfter *EventList) []byte {
	if state.Events != nil {
		b = append(b, `"state":`...)
		b = AppendEventList(b, state)
		b = append(b, ',')
	}
	if after != nil {
		b = append(b, `"state_after":`...)
		b = AppendEventList(b, *after)
		b = append(b, ',')
	}
	if unstableAfter != nil {
		b = append(b, `"org.matrix.msc4222.state_after":`...)
		b = AppendEventList(b, *unstableAfter)
		b = append(b, ',')
	}
	return b
}

// AppendUnread writes a room's unread_notifications, which every joined
// room of every response carries.
func AppendUnread(b []byte, u UnreadCounts) []byte {
	b = append(b, `{"notification_count":`...)
	b = strconv.AppendInt(b, int64(u.NotificationCount), 10)
	b = append(b, `,"highlight_count":`...)
	b = strconv.AppendInt(b, int64(u.HighlightCount), 10)
	return append(b, '}')
}

func appendLeft(b []byte, lr *LeftRoom) []byte {
	b = append(b, '{')
	b = appendStates(b, lr.State, lr.StateAfter, lr.UnstableStateAfter)
	b = append(b, `"timeline":`...)
	b = AppendTimeline(b, lr.Timeline)
	b = append(b, `,"account_data":`...)
	b = AppendEventList(b, lr.AccountData)
	return append(b, '}')
}

// AppendEventList writes {"events":[...]}.
func AppendEventList(b []byte, l EventList) []byte {
	b = append(b, `{"events":`...)
	b = AppendRaws(b, l.Events)
	return append(b, '}')
}

// AppendTimeline writes a room's timeline section.
func AppendTimeline(b []byte, t Timeline) []byte {
	b = append(b, `{"events":`...)
	b = AppendRaws(b, t.Events)
	b = append(b, `,"limited":`...)
	b = strconv.AppendBool(b, t.Limited)
	if t.PrevBatch != "" {
		b = append(b, `,"prev_batch":`...)
		b = cjson.AppendString(b, t.PrevBatch)
	}
	return append(b, '}')
}

// AppendRaws writes a list of events as they are (null for nil, as
// encoding/json writes a nil slice).
func AppendRaws(b []byte, evs []json.RawMessage) []byte {
	if evs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, ev := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		if len(ev) == 0 {
			ev = json.RawMessage("null") // as encoding/json writes it
		}
		b = append(b, ev...)
	}
	return append(b, ']')
}

// AppendMarshal writes a small value with no raw JSON inside.
func AppendMarshal(b []byte, v any) []byte {
	m, err := json.Marshal(v)
	if err != nil { // cannot happen for the engine's plain types
		return append(b, "null"...)
	}
	return append(b, m...)
}
