package roomapi

import (
	"context"
	"time"

	"github.com/plexus-chat/plexus/rooms"
)

// partialStateWait bounds how long /members, /joined_members and a
// backfilling /messages wait for a partial-state room's members (a room joined over federation with
// omit_members; see federation's partial.go) before answering with what
// is known, as Synapse waits for the resync before answering them.
const partialStateWait = 30 * time.Second

// awaitMembers returns once the room's member list is complete here, or
// after partialStateWait, or when ctx ends (the caller then fails on ctx
// anyway).
func (a *API) awaitMembers(ctx context.Context, roomID string) {
	if a.deps.Rooms == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, partialStateWait)
	defer cancel()
	_ = a.deps.Rooms.AwaitFullState(ctx, rooms.RoomID(roomID))
}
