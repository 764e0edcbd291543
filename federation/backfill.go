package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/plexus-chat/plexus/rooms"
)

// maxBackfillRoots bounds the GET /state requests one backfill makes: one
// per fetched event whose prev events are neither fetched nor stored. A
// linear history has one; more are left for the next round.
const maxBackfillRoots = 8

// Backfill fetches up to limit events of roomID's history from before
// from (the room's backward extremities) and stores them (server-server
// API, "Backfilling and retrieving missing events"): GET /backfill from a
// server in the room, then, for the events whose prev events it did not
// return and we do not have, GET /state at them from the same server, as
// the state before them. The room service checks every event and stores
// the history below the room's live stream, where /messages finds it and
// /sync and the federation sender do not.
func (f *Federation) Backfill(ctx context.Context, roomID string, from []string, limit int) error {
	if len(from) == 0 || limit <= 0 {
		return nil
	}
	rid := rooms.RoomID(roomID)
	servers, err := f.servers.get(ctx, roomID)
	if err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	for _, id := range from {
		q.Add("v", id)
	}
	return f.tryServers(ctx, servers, func(dest string) error {
		var resp struct {
			PDUs []json.RawMessage `json:"pdus"`
		}
		if err := f.client.Do(ctx, dest, "GET", "/_matrix/federation/v1/backfill/"+pathEscape(roomID)+"?"+q.Encode(), nil, &resp); err != nil {
			return err
		}
		if len(resp.PDUs) == 0 {
			return fmt.Errorf("no events before %v", from)
		}
		pdus := rawList(resp.PDUs)
		roots, err := f.deps.Rooms.BackfillRoots(ctx, rid, pdus)
		if err != nil {
			return err
		}
		states := make(map[rooms.EventID]*rooms.ReportedState, len(roots))
		for _, r := range roots[:min(len(roots), maxBackfillRoots)] {
			var state struct {
				PDUs      []json.RawMessage `json:"pdus"`
				AuthChain []json.RawMessage `json:"auth_chain"`
			}
			path := "/_matrix/federation/v1/state/" + pathEscape(roomID) + "?event_id=" + url.QueryEscape(string(r))
			if err := f.client.Do(ctx, dest, "GET", path, nil, &state); err != nil {
				return fmt.Errorf("state at %s: %w", r, err)
			}
			states[r] = &rooms.ReportedState{State: rawList(state.PDUs), AuthChain: rawList(state.AuthChain)}
		}
		stored, err := f.deps.Rooms.Backfill(ctx, rid, pdus, states)
		if err != nil {
			return err
		}
		f.log.Debug("backfilled", "room", roomID, "from", dest, "fetched", len(pdus), "stored", len(stored))
		return nil
	})
}
