package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"time"

	"github.com/plexus-chat/plexus/rooms"
)

// Partial-state joins ("faster joins", MSC3706 and MSC3902; Server-Server
// API, PUT /send_join v2 with omit_members). With Config.PartialStateJoins
// a join asks the resident to leave the member events out of the state
// before the join, which for a room of thousands of members is most of the
// answer. The room is stored as partial-state (rooms.JoinPartial) and the
// join returns at once; then, in the background:
//
//   - the full state before the join is fetched with GET /state at the
//     join from the servers in the room (servers_in_room), retrying with
//     a growing pause until one answers, and completes the room
//     (rooms.CompleteState); a restart resumes it (Start);
//   - meanwhile our events go to servers_in_room as well as to the
//     servers of the members we know;
//   - PDUs of other servers for the room wait in PUT /send until the state
//     is complete (receiveRoomPDUs): checked against the partial state,
//     every event whose sender's membership was left out would be
//     rejected. The sender's transaction is answered late rather than
//     wrongly; one still waiting when the sender gives up is not recorded,
//     so its retry is processed in full.

// resyncBackoff bounds the pause between two rounds of asking every server
// for the full state.
const (
	resyncFirstPause = time.Second
	resyncMaxPause   = 5 * time.Minute
)

// joinPartial stores a room from a send_join answer with members_omitted
// and starts fetching its full state.
func (f *Federation) joinPartial(ctx context.Context, dest, roomID string, joinJSON []byte, resp *sendJoinResponse) (string, error) {
	servers := f.partialServers(dest, resp.ServersInRoom)
	a, err := f.deps.Rooms.JoinPartial(ctx, rooms.RoomID(roomID), joinJSON, rawList(resp.State), rawList(resp.AuthChain), servers)
	if err != nil {
		return "", fmt.Errorf("storing the room from %s's partial send_join answer: %w", dest, err)
	}
	f.servers.forget(roomID)
	joinID := string(a.Event.ID())
	if err := f.servers.addServers(ctx, roomID, servers); err != nil {
		f.log.Warn("cannot note the servers of a partial-state room", "room", roomID, "err", err)
	}
	f.resyncLater(roomID, joinID, servers)
	return joinID, nil
}

// partialServers orders the servers to ask for the full state: the
// resident that answered first, then servers_in_room; never ourselves.
func (f *Federation) partialServers(dest string, inRoom []string) []string {
	rest := make([]string, 0, len(inRoom))
	for _, s := range inRoom {
		if s != dest && s != f.cfg.ServerName && s != "" && !contains(rest, s) {
			rest = append(rest, s)
		}
	}
	sort.Strings(rest)
	return append([]string{dest}, rest...)
}

// resumePartialStates restarts the background completion of the rooms a
// previous run left partial.
func (f *Federation) resumePartialStates(ctx context.Context) error {
	rs, err := f.deps.DB.PartialStateRooms(ctx)
	if err != nil {
		return err
	}
	for _, p := range rs {
		if err := f.servers.addServers(ctx, p.RoomID, p.Servers); err != nil {
			f.log.Warn("cannot note the servers of a partial-state room", "room", p.RoomID, "err", err)
		}
		f.resyncLater(p.RoomID, p.JoinEvent, p.Servers)
	}
	return nil
}

// resyncLater completes a partial-state room in the background, until it
// succeeds or federation closes.
func (f *Federation) resyncLater(roomID, joinID string, servers []string) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		pause := resyncFirstPause
		for {
			start := time.Now()
			err := f.resync(f.ctx, roomID, joinID, servers)
			if err == nil {
				f.log.Info("partial-state room completed", "room", roomID, "took", time.Since(start))
				return
			}
			if f.ctx.Err() != nil {
				return
			}
			f.log.Warn("cannot fetch the full state of a partial-state room yet", "room", roomID, "err", err, "retry_in", pause)
			t := time.NewTimer(pause)
			select {
			case <-f.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			pause = min(2*pause, resyncMaxPause)
		}
	}()
}

// resync asks the servers in turn for the state before the join (GET
// /state at the join: the state events and their auth chain, as PDUs) and
// completes the room with the first answer the room service accepts.
func (f *Federation) resync(ctx context.Context, roomID, joinID string, servers []string) error {
	path := "/_matrix/federation/v1/state/" + pathEscape(roomID) + "?event_id=" + url.QueryEscape(joinID)
	err := f.tryServers(ctx, servers, func(dest string) error {
		var state struct {
			PDUs      []json.RawMessage `json:"pdus"`
			AuthChain []json.RawMessage `json:"auth_chain"`
		}
		if err := f.client.Do(ctx, dest, "GET", path, nil, &state); err != nil {
			return err
		}
		return f.deps.Rooms.CompleteState(ctx, rooms.RoomID(roomID), rooms.EventID(joinID), rawList(state.PDUs), rawList(state.AuthChain))
	})
	if err != nil {
		return err
	}
	// The members are known now: the room's servers come from them.
	f.servers.forget(roomID)
	return nil
}

// partialServerKey marks, among a room's members in roomServers, a server
// from servers_in_room rather than a user: not a user ID, but serverOf
// finds the server in it.
const partialServerKey = "\x00partial-state:"

// addServers adds servers to a room's destinations until the room is
// forgotten (resync does it once the members are known).
func (r *roomServers) addServers(ctx context.Context, roomID string, servers []string) error {
	if _, err := r.get(ctx, roomID); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	members := r.rooms[roomID]
	if members == nil {
		return nil // forgotten meanwhile: reloaded from the full state
	}
	for _, s := range servers {
		members[partialServerKey+s] = "join"
	}
	return nil
}
