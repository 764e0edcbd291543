package syncer

import "encoding/json"

// Response is the body of GET /sync (Client-Server API, "GET
// /_matrix/client/v3/sync"). Events are already in client form.
type Response struct {
	NextBatch   string       `json:"next_batch"`
	Rooms       *RoomsPart   `json:"rooms,omitempty"`
	AccountData *EventList   `json:"account_data,omitempty"`
	Presence    *EventList   `json:"presence,omitempty"`
	ToDevice    *EventList   `json:"to_device,omitempty"`
	DeviceLists *DeviceLists `json:"device_lists,omitempty"`
	// OTKCounts and UnusedFallbackKeys are sent whenever the device is
	// known: an absent fallback list reads as "server without fallback
	// keys", an empty one as "upload one". Never null.
	OTKCounts          map[string]int `json:"device_one_time_keys_count,omitempty"`
	UnusedFallbackKeys *[]string      `json:"device_unused_fallback_key_types,omitempty"`
}

// EventList is {"events": [...]}.
type EventList struct {
	Events []json.RawMessage `json:"events"`
}

// DeviceLists lists users whose devices changed or who no longer share a
// room with the caller.
type DeviceLists struct {
	Changed []string `json:"changed,omitempty"`
	Left    []string `json:"left,omitempty"`
}

// RoomsPart holds the per-room sections.
type RoomsPart struct {
	Join   map[string]*JoinedRoom  `json:"join,omitempty"`
	Invite map[string]*InvitedRoom `json:"invite,omitempty"`
	Leave  map[string]*LeftRoom    `json:"leave,omitempty"`
}

// The maps of a RoomsPart are made on first use: most responses have
// nothing for most of them.

func (rp *RoomsPart) setJoin(room string, jr *JoinedRoom) {
	if rp.Join == nil {
		rp.Join = map[string]*JoinedRoom{}
	}
	rp.Join[room] = jr
}

func (rp *RoomsPart) setInvite(room string, ir *InvitedRoom) {
	if rp.Invite == nil {
		rp.Invite = map[string]*InvitedRoom{}
	}
	rp.Invite[room] = ir
}

func (rp *RoomsPart) setLeave(room string, lr *LeftRoom) {
	if rp.Leave == nil {
		rp.Leave = map[string]*LeftRoom{}
	}
	rp.Leave[room] = lr
}

// JoinedRoom is one room of rooms.join.
type JoinedRoom struct {
	Summary *Summary `json:"summary,omitempty"`
	// State is left zero, and so omitted, when StateAfter or
	// UnstableStateAfter is sent instead (Client-Server API, "GET /sync":
	// with use_state_after "servers MUST ... omit state").
	State EventList `json:"state,omitzero"`
	// StateAfter is the state at the end of the timeline, for a request
	// with use_state_after (MSC4222); UnstableStateAfter the same for a
	// request with the unstable org.matrix.msc4222.use_state_after.
	// stateafter.go fills at most one of them.
	StateAfter          *EventList   `json:"state_after,omitempty"`
	UnstableStateAfter  *EventList   `json:"org.matrix.msc4222.state_after,omitempty"`
	Timeline            Timeline     `json:"timeline"`
	Ephemeral           EventList    `json:"ephemeral"`
	AccountData         EventList    `json:"account_data"`
	UnreadNotifications UnreadCounts `json:"unread_notifications"`
}

// Summary is the room summary used for naming rooms without a name.
type Summary struct {
	Heroes             []string `json:"m.heroes,omitempty"`
	JoinedMemberCount  *int     `json:"m.joined_member_count,omitempty"`
	InvitedMemberCount *int     `json:"m.invited_member_count,omitempty"`
}

// UnreadCounts are the room's notification counts for the caller.
type UnreadCounts struct {
	NotificationCount int `json:"notification_count"`
	HighlightCount    int `json:"highlight_count"`
}

// Timeline is a room's timeline slice.
type Timeline struct {
	Events    []json.RawMessage `json:"events"`
	Limited   bool              `json:"limited"`
	PrevBatch string            `json:"prev_batch,omitempty"`
}

// InvitedRoom is one room of rooms.invite.
type InvitedRoom struct {
	InviteState EventList `json:"invite_state"`
}

// LeftRoom is one room of rooms.leave.
type LeftRoom struct {
	// State, StateAfter and UnstableStateAfter are as in JoinedRoom.
	State              EventList  `json:"state,omitzero"`
	StateAfter         *EventList `json:"state_after,omitempty"`
	UnstableStateAfter *EventList `json:"org.matrix.msc4222.state_after,omitempty"`
	Timeline           Timeline   `json:"timeline"`
	AccountData        EventList  `json:"account_data"`
}

// empty reports whether r carries nothing a client would act on, so a
// long-poll should keep waiting.
func (r *Response) empty() bool {
	if r.Rooms != nil && (len(r.Rooms.Join) > 0 || len(r.Rooms.Invite) > 0 || len(r.Rooms.Leave) > 0) {
		return false
	}
	if r.AccountData != nil && len(r.AccountData.Events) > 0 {
		return false
	}
	if r.ToDevice != nil && len(r.ToDevice.Events) > 0 {
		return false
	}
	if r.DeviceLists != nil && (len(r.DeviceLists.Changed) > 0 || len(r.DeviceLists.Left) > 0) {
		return false
	}
	return true
}
