package signalling

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/accounts"
	"github.com/plexus-chat/plexus/signalling/internal/invites"
	"github.com/plexus-chat/plexus/signalling/internal/roomapi"
)

// HandleInvite keeps an invite of a local user that another server had
// us countersign (server-server API, "Inviting to a room"), so the
// invitee's /sync shows it in rooms.invite with state (invite_room_state)
// as its stripped state. Federation's invite endpoint calls it after its
// checks; event is the countersigned invite. An unknown invitee is 404.
func (s *Signalling) HandleInvite(ctx context.Context, roomID, version string, event []byte, state []json.RawMessage) error {
	v, ok := rooms.LookupVersion(version)
	if !ok {
		return fmt.Errorf("signalling: invite of unsupported room version %q", version)
	}
	ev, err := rooms.ParseEvent(event, v)
	if err != nil {
		return err
	}
	if ev.StateKey() == nil || ev.Membership() != "invite" || string(ev.RoomID()) != roomID {
		return mxerr.InvalidParam("Not an invite to the room")
	}
	invitee := *ev.StateKey()
	if _, _, err := s.accounts.Profile(ctx, invitee); err == accounts.ErrUnknownUser {
		return mxerr.NotFound("Unknown user")
	} else if err != nil {
		return err
	}
	return s.invites.Put(ctx, &invites.Invite{
		UserID: invitee, RoomID: roomID, Version: version,
		EventID: string(ev.ID()), Sender: string(ev.Sender()), Event: event, State: state,
	})
}

// roomRemote is federation as roomapi sees it; nil without federation.
func roomRemote(f Federation) roomapi.Remote {
	if f == nil {
		return nil
	}
	return f
}

// remoteProfile adapts federation's query/profile to the accounts hook;
// nil without federation.
func remoteProfile(f Federation) func(ctx context.Context, userID string) (map[string]json.RawMessage, error) {
	if f == nil {
		return nil
	}
	return func(ctx context.Context, userID string) (map[string]json.RawMessage, error) {
		return f.QueryProfile(ctx, userID, "")
	}
}
