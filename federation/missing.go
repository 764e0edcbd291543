package federation

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/rooms"
)

var sqlNoRows = sql.ErrNoRows

func pathEscape(s string) string { return url.PathEscape(s) }

const (
	// gapBatch is how many events one get_missing_events asks for. The
	// spec's default is 10; a larger page makes catching up after a long
	// outage take fewer round trips.
	gapBatch = 100
	// maxGapRounds bounds the walk back through a gap before falling back
	// to the state at the gap's edge: 500 pages of 100 events.
	maxGapRounds = 500
)

// gapTimeout bounds one background walk through a gap.
const gapTimeout = 10 * time.Minute

// fillGapLater fetches what a received event is missing in the
// background: the transaction that brought the event is answered at once
// (the event is held, which is its result), so a long gap after an
// outage neither holds the sender's request open past its timeout nor
// delays the PDUs behind it. Walks in one room run one at a time; one
// that finds its event already placed by the walk before it stops.
func (f *Federation) fillGapLater(origin string, roomID rooms.RoomID, eventID rooms.EventID) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		unlock := f.gaps.lock(string(roomID))
		defer unlock()
		if placed, err := f.placed(f.ctx, eventID); err != nil || placed {
			return
		}
		ctx, cancel := context.WithTimeout(f.ctx, gapTimeout)
		defer cancel()
		if err := f.fillGap(ctx, origin, roomID, eventID); err != nil && f.ctx.Err() == nil {
			f.log.Warn("could not fetch the events before a PDU", "origin", origin, "room", roomID, "event", eventID, "err", err)
		}
	}()
}

// roomLocks serialises work per room; entries go when unused.
type roomLocks struct {
	mu    sync.Mutex
	rooms map[string]*roomLock
}

type roomLock struct {
	mu   sync.Mutex
	refs int
}

func (l *roomLocks) lock(room string) (unlock func()) {
	l.mu.Lock()
	if l.rooms == nil {
		l.rooms = map[string]*roomLock{}
	}
	rl := l.rooms[room]
	if rl == nil {
		rl = &roomLock{}
		l.rooms[room] = rl
	}
	rl.refs++
	l.mu.Unlock()
	rl.mu.Lock()
	return func() {
		rl.mu.Unlock()
		l.mu.Lock()
		if rl.refs--; rl.refs == 0 {
			delete(l.rooms, room)
		}
		l.mu.Unlock()
	}
}

// fillGap fetches the events between our copy of a room and an event
// whose prev events we lack (Server-Server API, "Retrieving missing
// events"), walking back with get_missing_events until the event is
// placed. The fetched events are admitted as they come: those whose own
// prevs are still missing are held by the room worker, and placing the
// oldest places the rest. If the walk cannot close the gap, the events at
// its edge are placed with the state a remote server reports for them
// (state at the event, then state resolution with our own extremities).
func (f *Federation) fillGap(ctx context.Context, origin string, roomID rooms.RoomID, eventID rooms.EventID) error {
	servers := f.candidates(ctx, origin, string(roomID))
	latest := []string{string(eventID)}
	for round := 0; round < maxGapRounds && len(latest) > 0; round++ {
		info, err := f.deps.DB.Room(ctx, string(roomID))
		if err != nil {
			return err
		}
		body := map[string]any{
			"earliest_events": nonNil(info.Extremities),
			"latest_events":   latest,
			"limit":           gapBatch,
			"min_depth":       0,
		}
		var resp struct {
			Events []json.RawMessage `json:"events"`
		}
		err = f.tryServers(ctx, servers, func(dest string) error {
			return f.client.Do(ctx, dest, "POST", "/_matrix/federation/v1/get_missing_events/"+pathEscape(string(roomID)), body, &resp)
		})
		if err != nil || len(resp.Events) == 0 {
			break
		}
		if err := f.admitOrdered(ctx, roomID, resp.Events); err != nil {
			return err
		}
		placed, err := f.placed(ctx, eventID)
		if err != nil || placed {
			return err
		}
		if latest, err = f.frontier(ctx, info.Version, resp.Events); err != nil {
			return err
		}
	}
	placed, err := f.placed(ctx, eventID)
	if err != nil || placed {
		return err
	}
	return f.placeWithState(ctx, servers, roomID, eventID)
}

// placed reports whether an event is stored and placed in the graph.
func (f *Federation) placed(ctx context.Context, id rooms.EventID) (bool, error) {
	recs, err := f.deps.DB.Events(ctx, []string{string(id)})
	if err != nil {
		return false, err
	}
	rec, ok := recs[string(id)]
	return ok && !rec.Outlier, nil
}

// frontier returns the fetched events that still cite prev events we do
// not have: where the next get_missing_events continues from.
func (f *Federation) frontier(ctx context.Context, version string, fetched []json.RawMessage) ([]string, error) {
	v, ok := rooms.LookupVersion(version)
	if !ok {
		return nil, fmt.Errorf("unknown room version %q", version)
	}
	got := map[string]bool{}
	var evs []*rooms.Event
	for _, p := range fetched {
		ev, err := rooms.ParseEvent(p, v)
		if err != nil {
			continue
		}
		got[string(ev.ID())] = true
		evs = append(evs, ev)
	}
	var prevs []string
	for _, ev := range evs {
		for _, p := range ev.PrevEvents() {
			if !got[string(p)] {
				prevs = append(prevs, string(p))
			}
		}
	}
	have, err := f.deps.DB.HaveEvents(ctx, prevs)
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, ev := range evs {
		for _, p := range ev.PrevEvents() {
			if !got[string(p)] && !have[string(p)] && !seen[string(ev.ID())] {
				seen[string(ev.ID())] = true
				out = append(out, string(ev.ID()))
			}
		}
	}
	return out, nil
}

// placeWithState closes a gap that walking back could not: for each prev
// event still missing under the held events, it fetches that event and
// the room state at it (GET /state) and places it with that state; the
// held events after it are then placed by the room worker.
func (f *Federation) placeWithState(ctx context.Context, servers []string, roomID rooms.RoomID, eventID rooms.EventID) error {
	missing, err := f.deps.DB.MissingPrevs(ctx, string(roomID))
	if err != nil {
		return err
	}
	var firstErr error
	done := map[string]bool{}
	for _, m := range missing {
		if done[m.EventID] {
			continue
		}
		done[m.EventID] = true
		var ev json.RawMessage
		var state struct {
			PDUs      []json.RawMessage `json:"pdus"`
			AuthChain []json.RawMessage `json:"auth_chain"`
		}
		err := f.tryServers(ctx, servers, func(dest string) error {
			var wrapped struct {
				PDUs []json.RawMessage `json:"pdus"`
			}
			if err := f.client.Do(ctx, dest, "GET", "/_matrix/federation/v1/event/"+pathEscape(m.EventID), nil, &wrapped); err != nil {
				return err
			}
			if len(wrapped.PDUs) != 1 {
				return errors.New("the event response holds no PDU")
			}
			ev = wrapped.PDUs[0]
			return f.client.Do(ctx, dest, "GET", "/_matrix/federation/v1/state/"+pathEscape(string(roomID))+"?event_id="+url.QueryEscape(m.EventID), nil, &state)
		})
		if err == nil {
			_, err = f.deps.Rooms.AdmitWithState(ctx, roomID, ev, rawList(state.PDUs), rawList(state.AuthChain))
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("placing %s with the state at it: %w", m.EventID, err)
		}
	}
	if placed, err := f.placed(ctx, eventID); err == nil && !placed && firstErr == nil {
		firstErr = fmt.Errorf("event %s is still held after fetching the state before it", eventID)
	}
	return firstErr
}

// candidates lists the servers to ask for a room's events: the origin
// first, then the other servers in the room.
func (f *Federation) candidates(ctx context.Context, origin, roomID string) []string {
	out := []string{origin}
	others, _ := f.servers.get(ctx, roomID)
	for _, s := range others {
		if s != origin {
			out = append(out, s)
		}
	}
	return out
}

// tryServers calls fn for each server until one succeeds ("several
// servers tried when one refuses").
func (f *Federation) tryServers(ctx context.Context, servers []string, fn func(dest string) error) error {
	var errs []error
	for _, s := range servers {
		if s == f.cfg.ServerName || s == "" {
			continue
		}
		err := fn(s)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", s, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return errors.New("no server to ask")
	}
	return errors.Join(errs...)
}

func rawList(in []json.RawMessage) [][]byte {
	out := make([][]byte, len(in))
	for i, p := range in {
		out[i] = p
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
