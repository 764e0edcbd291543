package roomapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// The event graph endpoint is Plexus's own (not in the Matrix spec): the
// web client draws a room's DAG from it, forks, merges, rejected and
// soft-failed events included, for the curious and for debugging
// federation. It shows the graph's shape, never content.

// Graph page sizes: the default suits one screen of drawing; the cap
// bounds one request's work as /messages' does.
const (
	defaultGraphLimit = 200
	maxGraphLimit     = 1000
)

// graphTokenPrefix marks a graph token; what follows is the stream
// position the next page starts below (negative inside backfilled
// history).
const graphTokenPrefix = "g"

// Event statuses in a graph page.
const (
	graphAccepted   = "accepted"
	graphRejected   = "rejected"
	graphSoftFailed = "soft_failed"
	graphOutlier    = "outlier"
)

// graphEvent is one node of the drawn graph: the event's place and
// edges, no content (so nothing a redaction removed can show).
type graphEvent struct {
	EventID        string   `json:"event_id"`
	Type           string   `json:"type"`
	StateKey       *string  `json:"state_key,omitempty"`
	Sender         string   `json:"sender"`
	OriginServerTS int64    `json:"origin_server_ts"`
	Depth          int64    `json:"depth"`
	PrevEvents     []string `json:"prev_events"`
	AuthEvents     []string `json:"auth_events"`
	Status         string   `json:"status"`
	RejectedReason string   `json:"rejected_reason,omitempty"`
}

// graphResponse is the answer of GET .../graph.
type graphResponse struct {
	Events             []graphEvent `json:"events"`
	ForwardExtremities []string     `json:"forward_extremities"`
	// Next, if set, is the from token of the next, older page.
	Next string `json:"next,omitempty"`
}

func (a *API) registerGraph(rt *endpoint.Router) {
	rt.Authed("GET /_plexus/client/v1/rooms/{roomId}/graph", a.graph)
}

// graph is GET /_plexus/client/v1/rooms/{roomId}/graph?limit=N&from=T:
// the room's most recent events (before T), newest first, that the
// caller may see under the history visibility rules /messages applies
// (Client-Server API, "Room History Visibility").
func (a *API) graph(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	if err := validRoomID(roomID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	q := r.URL.Query()
	limit := defaultGraphLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			endpoint.Fail(w, mxerr.InvalidParam("limit must be a positive integer"))
			return
		}
		limit = min(n, maxGraphLimit)
	}
	before := int64(storage.GraphTop)
	if from := q.Get("from"); from != "" {
		pos, err := parseGraphToken(from)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		before = pos
	}
	v, err := a.newViewer(ctx, roomID, s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	resp, err := a.graphPage(ctx, v, roomID, before, limit)
	if errors.Is(err, storage.ErrNotFound) {
		err = mxerr.Forbidden("User " + s.UserID + " is not in room " + roomID)
	}
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, resp)
}

// parseGraphToken reads a from token: 400 M_INVALID_PARAM if it is not
// one this endpoint issued.
func parseGraphToken(s string) (int64, error) {
	rest, ok := strings.CutPrefix(s, graphTokenPrefix)
	if ok {
		if pos, err := strconv.ParseInt(rest, 10, 64); err == nil {
			return pos, nil
		}
	}
	return 0, mxerr.InvalidParam("Invalid from token")
}

// graphPage collects up to limit events below before that v may see.
// Events the viewer may not see are skipped; the scan reads a bounded
// number of rows, so a page of a room mostly hidden from the user may
// come back short, with a token to go on from.
func (a *API) graphPage(ctx context.Context, v *viewer, roomID string, before int64, limit int) (*graphResponse, error) {
	vers, err := a.roomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	resp := &graphResponse{Events: []graphEvent{}}
	budget := limit*10 + 100
	more := true
	for len(resp.Events) < limit && more && budget > 0 {
		p, err := a.deps.DB.RoomGraph(ctx, roomID, before, min(limit-len(resp.Events), budget))
		if err != nil {
			return nil, err
		}
		resp.ForwardExtremities = p.Extremities
		budget -= len(p.Events)
		more = p.More
		for _, rec := range p.Events {
			before = rec.StreamPos
			ge, ok, err := a.graphNode(ctx, v, vers, rec)
			if err != nil {
				return nil, err
			}
			if ok {
				resp.Events = append(resp.Events, ge)
			}
		}
	}
	if resp.ForwardExtremities, err = a.visibleExtremities(ctx, v, vers, resp.ForwardExtremities); err != nil {
		return nil, err
	}
	if more {
		resp.Next = graphTokenPrefix + strconv.FormatInt(before, 10)
	}
	return resp, nil
}

// graphNode turns a stored event into a node, if v may see it.
func (a *API) graphNode(ctx context.Context, v *viewer, vers *rooms.Version, rec *storage.EventRecord) (graphEvent, bool, error) {
	ge := graphEvent{
		EventID: rec.EventID, Type: rec.Type, StateKey: rec.StateKey,
		OriginServerTS: rec.OriginServerTS, Depth: rec.Depth,
		PrevEvents: nonNil(rec.PrevEvents), AuthEvents: nonNil(rec.AuthEvents),
		Status: graphAccepted,
	}
	switch {
	case rec.Rejected != "":
		ge.Status, ge.RejectedReason = graphRejected, rec.Rejected
	case rec.SoftFailed:
		ge.Status = graphSoftFailed
	case rec.Outlier:
		ge.Status = graphOutlier
	}
	ev, err := rooms.ParseEvent(rec.JSON, vers)
	if err != nil {
		// Stored events were parsed when they arrived; one that no longer
		// parses still has a place in the graph, so read only its sender.
		var raw struct {
			Sender string `json:"sender"`
		}
		if json.Unmarshal(rec.JSON, &raw) != nil {
			return graphEvent{}, false, nil
		}
		ge.Sender = raw.Sender
	} else {
		ge.Sender = string(ev.Sender())
	}
	ok, err := a.graphVisible(ctx, v, rec, ev)
	if err != nil || !ok {
		return graphEvent{}, false, err
	}
	return ge, true, nil
}

// graphVisible applies the history visibility rules to any stored event.
// Timeline events are judged as /messages judges them. The others have
// no place in the timeline: a rejected or soft-failed event is judged
// by the state it was stored with, or else the state before it (its
// first prev event's); an event with neither (an outlier fetched to
// check another's auth chain) only by current membership: a joined user
// sees the room's current state, which is where such events come from.
func (a *API) graphVisible(ctx context.Context, v *viewer, rec *storage.EventRecord, ev *rooms.Event) (bool, error) {
	if ev != nil && servable(rec) && rec.StateGroup != 0 {
		return v.visible(ctx, rec, ev)
	}
	g := rec.StateGroup
	if g == 0 && len(rec.PrevEvents) > 0 {
		var err error
		g, err = a.deps.DB.StateGroupOf(ctx, rec.PrevEvents[0])
		if errors.Is(err, storage.ErrNotFound) {
			g = 0
		} else if err != nil {
			return false, err
		}
	}
	if g == 0 {
		return v.joinedNow, nil
	}
	at, err := v.atGroup(ctx, g)
	if err != nil {
		return false, err
	}
	if v.leftAt > 0 && rec.StreamPos > v.leftAt && at.hv != hvWorldReadable {
		return false, nil
	}
	return v.allows(at), nil
}

// visibleExtremities keeps the forward extremities v may see. A joined
// user sees them all; a user who left (or is only invited) sees only
// those the history visibility rules let them see, so that the graph
// does not show them the room's newest event IDs after they left.
func (a *API) visibleExtremities(ctx context.Context, v *viewer, vers *rooms.Version, ids []string) ([]string, error) {
	out := []string{}
	if v.joinedNow {
		return append(out, ids...), nil
	}
	if len(ids) == 0 {
		return out, nil
	}
	recs, err := a.deps.DB.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		rec := recs[id]
		if rec == nil {
			continue
		}
		if _, ok, err := a.graphNode(ctx, v, vers, rec); err != nil {
			return nil, err
		} else if ok {
			out = append(out, id)
		}
	}
	return out, nil
}

func nonNil(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
}
