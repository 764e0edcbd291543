package rooms

import (
	"context"
	"errors"
	"fmt"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// ErrNotRemoteInvite is returned by Invite for anything but an invite of a
// user on another server.
var ErrNotRemoteInvite = errors.New("rooms: not an invite of a remote user")

// Invite builds our invite of a user on another server without storing
// it: the inviting side of "Inviting to a room" (server-server API), where
// the invitee's server must countersign the event (PUT /invite v2) before
// it enters the room. The event is linked to the current forward
// extremities, checked against the current state (a refusal is a
// *NotAllowedError, as for Append), hashed and signed. Store the
// countersigned event with Admit; until then nothing changed.
//
// le must be an m.room.member event with membership invite, from a local
// sender, whose state_key is a user on another server.
func (s *Service) Invite(ctx context.Context, roomID RoomID, le LocalEvent) (*Event, error) {
	if le.Sender.Domain() != s.cfg.Signer.Server {
		return nil, ErrNotLocal
	}
	if le.Type != pdu.TypeMember || le.StateKey == nil {
		return nil, ErrNotRemoteInvite
	}
	if m, _ := le.Content.GetStr("membership"); m != "invite" {
		return nil, ErrNotRemoteInvite
	}
	target, err := pdu.ParseUserID(*le.StateKey)
	if err != nil || target.Domain() == s.cfg.Signer.Server {
		return nil, ErrNotRemoteInvite
	}
	// Template builds the event on the room's worker and checks it
	// against the current state; only the signing is left, which needs
	// no room state.
	proto, version, err := s.Template(ctx, roomID, le)
	if err != nil {
		return nil, err
	}
	v, ok := pdu.LookupVersion(version)
	if !ok {
		return nil, fmt.Errorf("rooms: unsupported room version %q", version)
	}
	obj, err := cjson.Parse(proto)
	if err != nil {
		return nil, err
	}
	prevs, err := idList(obj, "prev_events")
	if err != nil {
		return nil, err
	}
	auths, err := idList(obj, "auth_events")
	if err != nil {
		return nil, err
	}
	depth, _ := obj.GetInt("depth")
	ts, _ := obj.GetInt("origin_server_ts")
	content, _ := obj.Get("content")
	p := &pdu.Proto{
		Type:           le.Type,
		StateKey:       le.StateKey,
		Sender:         le.Sender,
		RoomID:         roomID,
		Content:        content,
		PrevEvents:     prevs,
		AuthEvents:     auths,
		Depth:          depth,
		OriginServerTS: ts,
	}
	return p.Build(v, s.cfg.Signer)
}

// Countersigned checks the answer of the invitee's server to PUT /invite:
// data must be the event sent (the same event ID: the reference hash does
// not cover signatures) carrying a valid signature of server (the
// invitee's), with its key found through Deps.Keys. It returns the event
// as answered, ready for Admit.
func (s *Service) Countersigned(sent *Event, data []byte, server ServerName) (*Event, error) {
	ev, err := pdu.ParseEvent(data, sent.Version())
	if err != nil {
		return nil, err
	}
	if ev.ID() != sent.ID() {
		return nil, &pdu.FormatError{Field: "event", Reason: fmt.Sprintf("answered event %s is not the invite %s", ev.ID(), sent.ID())}
	}
	if err := pdu.VerifyServerSignature(ev, server, s.deps.Keys); err != nil {
		return nil, err
	}
	return ev, nil
}
