package signalling

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/plexus-chat/plexus/signalling/internal/rtcauth"
	"github.com/plexus-chat/plexus/signalling/internal/status"
)

// The operator page (issue 7) reads GET /_plexus/admin/v1/status and
// .../status/history (package status). Signalling answers for the rooms
// and calls itself; the SFU, the TURN relay and federation report through
// the StatusSources cmd hands it, since signalling may not import them.

// StatusSource is one part of the server that reports its status to the
// operator page: *sfu.Server, *turn.Server and *federation.Federation
// implement it. Its value must encode as a JSON object; its top-level
// numbers are sampled every 10 s for the page's charts.
type StatusSource = status.Source

// Names of the status sections signalling fills itself.
const (
	statusRooms = "rooms"
	statusCalls = "calls"
)

// maxStatusCalls bounds the rooms whose calls one status request lists.
const maxStatusCalls = 1000

// newStatus builds the operator status service over deps.Status and the
// built-in rooms and calls sections. Only the given sources are sampled
// for the history: the built-in ones read the database.
func (s *Signalling) newStatus(deps Deps) error {
	sources := map[string]status.Source{
		statusRooms: status.SourceFunc(s.roomsStatus),
		statusCalls: status.SourceFunc(s.callsStatus),
	}
	sampled := []string{}
	for name, src := range deps.Status {
		if _, builtin := sources[name]; builtin {
			return fmt.Errorf("signalling: status source %q is built in", name)
		}
		sources[name] = src
		sampled = append(sampled, name)
	}
	var err error
	s.status, err = status.New(status.Config{}, status.Deps{
		Sources: sources, Sampled: sampled,
		Logger: deps.Logger.With("component", "status"), Now: deps.Now,
	})
	return err
}

// roomsStatus is the rooms section: how many rooms and members.
func (s *Signalling) roomsStatus(ctx context.Context) (any, error) {
	return s.rtc.db.CountRooms(ctx, ":"+s.cfg.ServerName)
}

// statusCall is one room's live MatrixRTC call memberships.
type statusCall struct {
	RoomID       string             `json:"room_id"`
	Participants int                `json:"participants"`
	Members      []statusCallMember `json:"members"`
}

type statusCallMember struct {
	UserID      string          `json:"user_id"`
	DeviceID    string          `json:"device_id"`
	Application string          `json:"application,omitempty"`
	CallID      string          `json:"call_id,omitempty"`
	SlotID      string          `json:"slot_id,omitempty"`
	FocusActive json.RawMessage `json:"focus_active,omitempty"`
	CreatedTS   int64           `json:"created_ts"`
	ExpiresTS   int64           `json:"expires_ts"`
}

// callsStatus is the calls section: every room with live call members
// (MSC4143 memberships that are neither left nor expired). Only rooms
// whose current state holds a call member event are looked at; a room
// keeps such an event, emptied, after its call ends, so this is the
// rooms that ever had a call, bounded by maxStatusCalls.
func (s *Signalling) callsStatus(ctx context.Context) (any, error) {
	roomIDs, err := s.rtc.db.RoomsWithState(ctx, rtcauth.TypeCallMember, rtcauth.TypeRTCMember)
	if err != nil {
		return nil, err
	}
	out := []statusCall{}
	for _, roomID := range roomIDs[:min(len(roomIDs), maxStatusCalls)] {
		members, err := s.ActiveCallMembers(ctx, roomID)
		if err != nil {
			return nil, err
		}
		if len(members) == 0 {
			continue
		}
		c := statusCall{RoomID: roomID, Participants: len(members)}
		for _, m := range members {
			c.Members = append(c.Members, statusCallMember{UserID: m.UserID, DeviceID: m.DeviceID,
				Application: m.Application, CallID: m.CallID, SlotID: m.SlotID, FocusActive: m.FocusActive,
				CreatedTS: m.CreatedTS, ExpiresTS: m.ExpiresTS})
		}
		out = append(out, c)
	}
	return out, nil
}
