package syncer

import (
	"context"
	"encoding/json"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/clientevent"
	"github.com/plexus-chat/plexus/signalling/internal/invites"
)

// RemoteInvites serves a user's invites to rooms this server is not in,
// and their rejections (package invites): they have no event graph here,
// so they come from the aux stream rather than the event stream.
type RemoteInvites interface {
	// Since lists the rows for an initial sync (since < 0: the pending
	// invites) or those written in (since, upto].
	Since(ctx context.Context, userID string, since, upto int64) ([]*invites.Invite, error)
}

// remoteInvites adds the invites of rooms this server is not in to
// rooms.invite, and their rejections to rooms.leave (Client-Server API,
// "GET /sync"). A room the event stream already reported in this
// response, or in which the user's membership changed in the event stream
// after the row was written (the join that accepted the invite), is left
// to the event stream.
func (b *builder) remoteInvites(rp *RoomsPart) error {
	src := b.e.deps.RemoteInvites
	if src == nil || (!b.initial && b.upto.Aux <= b.since.Aux) {
		return nil
	}
	since := b.since.Aux
	if b.initial {
		since = -1
	}
	invs, err := src.Since(b.ctx, b.req.UserID, since, b.upto.Aux)
	if err != nil {
		return err
	}
	for _, inv := range invs {
		room := inv.RoomID
		if !b.req.Filter.wantRoom(room) || rp.Join[room] != nil || rp.Invite[room] != nil || rp.Leave[room] != nil {
			continue
		}
		if h := b.hist[room]; len(h) > 0 && h[len(h)-1].pos > inv.EventsPos {
			continue
		}
		v, ok := rooms.LookupVersion(inv.Version)
		if !ok {
			continue
		}
		switch inv.Membership {
		case "invite":
			rp.setInvite(room, b.remoteInvited(inv, v))
		case "leave":
			ev, err := rooms.ParseEvent(inv.Leave, v)
			if err != nil {
				b.e.log.Warn("stored rejection does not parse", "room", room, "user", inv.UserID, "err", err)
				continue
			}
			rp.setLeave(room, &LeftRoom{
				State:       EventList{Events: []json.RawMessage{}},
				Timeline:    Timeline{Events: []json.RawMessage{clientevent.Format(ev, clientevent.Options{Now: b.now, OmitRoomID: true})}},
				AccountData: EventList{Events: []json.RawMessage{}},
			})
		}
	}
	return nil
}

// remoteInvited is an invite's rooms.invite entry: invite_room_state as
// stripped state events ("Stripped state"), then the invite itself in
// full client form, as for a local invite.
func (b *builder) remoteInvited(inv *invites.Invite, v *rooms.Version) *InvitedRoom {
	ir := &InvitedRoom{InviteState: EventList{Events: []json.RawMessage{}}}
	for _, raw := range inv.State {
		if s := strippedOf(raw, v); s != nil {
			ir.InviteState.Events = append(ir.InviteState.Events, s)
		}
	}
	if ev, err := rooms.ParseEvent(inv.Event, v); err == nil {
		ir.InviteState.Events = append(ir.InviteState.Events, clientevent.Format(ev, clientevent.Options{Now: b.now, OmitRoomID: true}))
	}
	return ir
}

// strippedOf turns one invite_room_state entry into a stripped state
// event: a PDU of the room's version, or (from a server predating v1.16
// of the spec) an entry that is already stripped. Anything without a
// type, state key and sender is dropped.
func strippedOf(raw json.RawMessage, v *rooms.Version) json.RawMessage {
	if ev, err := rooms.ParseEvent(raw, v); err == nil && ev.StateKey() != nil {
		return clientevent.Stripped(ev)
	}
	obj, err := cjson.Parse(raw)
	if err != nil || obj.Kind() != cjson.Object {
		return nil
	}
	_, typeOK := obj.GetStr("type")
	_, skOK := obj.GetStr("state_key")
	_, senderOK := obj.GetStr("sender")
	if !typeOK || !skOK || !senderOK {
		return nil
	}
	s := obj.Only("type", "state_key", "sender", "content")
	if !s.Has("content") {
		s = s.With("content", cjson.Obj())
	}
	return cjson.Marshal(s)
}
