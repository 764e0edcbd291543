package fedapi

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/plexus-chat/plexus/federation/internal/fedhttp"
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

var errUnknownEvent = mxerr.NotFound("Unknown event")

// roomParam reads and checks the {roomId} path value.
func roomParam(r *http.Request) (string, error) {
	id := r.PathValue("roomId")
	if _, err := rooms.ParseRoomID(id); err != nil {
		return "", mxerr.InvalidParam("Invalid room ID")
	}
	return id, nil
}

// servable returns the stored event id of roomID ("" for any room) that
// may be served: 404 M_NOT_FOUND for an event we do not have, that is of
// another room, or that was rejected (rejected events are never passed on:
// Server-Server API, "Rejection").
func (a *API) servable(ctx context.Context, roomID, id string) (*storage.EventRecord, error) {
	if _, err := rooms.ParseEventID(id); err != nil {
		return nil, errUnknownEvent
	}
	evs, err := a.store.Events(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	rec := evs[id]
	if rec == nil || rec.Rejected != "" || (roomID != "" && rec.RoomID != roomID) {
		return nil, errUnknownEvent
	}
	return rec, nil
}

// event is GET /event/{eventId}: a transaction holding the one PDU.
func (a *API) event(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	ctx := r.Context()
	rec, err := a.servable(ctx, "", r.PathValue("eventId"))
	if err == nil {
		err = a.checkRoomAccess(ctx, req.Origin, rec.RoomID, []string{rec.EventID})
	}
	var out []*storage.EventRecord
	if err == nil {
		out, err = a.redacted(ctx, []*storage.EventRecord{rec})
	}
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, a.transaction(out))
}

// stateRequest checks a /state or /state_ids request and returns the
// state before the event and its auth chain.
func (a *API) stateRequest(r *http.Request, req *fedhttp.Request) (state, chain []string, err error) {
	ctx := r.Context()
	roomID, err := roomParam(r)
	if err != nil {
		return nil, nil, err
	}
	eventID := r.URL.Query().Get("event_id")
	if eventID == "" {
		return nil, nil, mxerr.MissingParam("Missing event_id")
	}
	rec, err := a.servable(ctx, roomID, eventID)
	if err != nil {
		return nil, nil, err
	}
	if err := a.checkRoomAccess(ctx, req.Origin, roomID, []string{rec.EventID}); err != nil {
		return nil, nil, err
	}
	st, ch, err := a.graph.StateBefore(ctx, rooms.RoomID(roomID), rooms.EventID(eventID))
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, rooms.ErrUnknownRoom) {
		// An outlier: we never knew the state around it.
		return nil, nil, mxerr.NotFound("The state at this event is not known")
	}
	if err != nil {
		return nil, nil, err
	}
	return idStrings(st), idStrings(ch), nil
}

// state is GET /state/{roomId}?event_id=: the state before the event and
// its auth chain, as PDUs.
func (a *API) state(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	st, ch, err := a.stateRequest(r, req)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	evs, err := a.store.Events(r.Context(), append(slices.Clip(st), ch...))
	if err == nil {
		evs, err = a.RedactedMap(r.Context(), evs)
	}
	if err != nil {
		server.WriteError(w, err)
		return
	}
	var b bytes.Buffer
	b.WriteString(`{"auth_chain":`)
	writePDUs(&b, ch, evs)
	b.WriteString(`,"pdus":`)
	writePDUs(&b, st, evs)
	b.WriteByte('}')
	server.WriteRawJSON(w, http.StatusOK, b.Bytes())
}

// stateIDs is GET /state_ids/{roomId}?event_id=: the same as /state, as
// event IDs.
func (a *API) stateIDs(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	st, ch, err := a.stateRequest(r, req)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, map[string][]string{"auth_chain_ids": nonNil(ch), "pdu_ids": nonNil(st)})
}

// eventAuth is GET /event_auth/{roomId}/{eventId}: every event of the
// event's auth chain.
func (a *API) eventAuth(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	ctx := r.Context()
	roomID, err := roomParam(r)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	rec, err := a.servable(ctx, roomID, r.PathValue("eventId"))
	if err == nil {
		err = a.checkRoomAccess(ctx, req.Origin, roomID, []string{rec.EventID})
	}
	if err != nil {
		server.WriteError(w, err)
		return
	}
	chain, err := a.store.AuthChain(ctx, []string{rec.EventID})
	if err != nil {
		server.WriteError(w, err)
		return
	}
	evs, err := a.store.Events(ctx, chain)
	if err == nil {
		evs, err = a.RedactedMap(ctx, evs)
	}
	if err != nil {
		server.WriteError(w, err)
		return
	}
	var b bytes.Buffer
	b.WriteString(`{"auth_chain":`)
	writePDUs(&b, chain, evs)
	b.WriteByte('}')
	server.WriteRawJSON(w, http.StatusOK, b.Bytes())
}

// backfill is GET /backfill/{roomId}?v=...&limit=: the events given and
// those before them, latest first, at most limit (capped at MaxLimit).
func (a *API) backfill(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	ctx := r.Context()
	roomID, err := roomParam(r)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	from := r.URL.Query()["v"]
	if len(from) == 0 {
		server.WriteError(w, mxerr.MissingParam("Missing v"))
		return
	}
	if r.URL.Query().Get("limit") == "" {
		server.WriteError(w, mxerr.MissingParam("Missing limit"))
		return
	}
	limit, err := queryInt(r, "limit", 0)
	if err == nil {
		limit, err = clampLimit(limit)
	}
	if err != nil {
		server.WriteError(w, err)
		return
	}
	if len(from) > MaxLimit {
		from = from[:MaxLimit]
	}
	start, err := a.startEvents(ctx, roomID, from)
	if err == nil {
		err = a.checkRoomAccess(ctx, req.Origin, roomID, recIDs(start))
	}
	if err != nil {
		server.WriteError(w, err)
		return
	}
	out, err := a.walkBack(ctx, roomID, start, nil, 0, limit, true)
	if err == nil {
		out, err = a.redacted(ctx, out)
	}
	if err != nil {
		server.WriteError(w, err)
		return
	}
	server.WriteRawJSON(w, http.StatusOK, a.transaction(out))
}

// getMissingEvents is POST /get_missing_events/{roomId}: a walk back
// through the prev events of latest_events, skipping earliest_events and
// events below min_depth, at most limit (default 10, capped at MaxLimit)
// events, oldest first.
func (a *API) getMissingEvents(w http.ResponseWriter, r *http.Request, req *fedhttp.Request) {
	ctx := r.Context()
	roomID, err := roomParam(r)
	if err != nil {
		server.WriteError(w, err)
		return
	}
	var body struct {
		Limit    *int      `json:"limit"`
		MinDepth int64     `json:"min_depth"`
		Earliest *[]string `json:"earliest_events"`
		Latest   *[]string `json:"latest_events"`
	}
	if err := decodeBody(req.Body, &body); err != nil {
		server.WriteError(w, err)
		return
	}
	if body.Earliest == nil || body.Latest == nil {
		server.WriteError(w, mxerr.BadJSON("earliest_events and latest_events are required"))
		return
	}
	limit := 10
	if body.Limit != nil {
		if limit, err = clampLimit(*body.Limit); err != nil {
			server.WriteError(w, err)
			return
		}
	}
	latest := *body.Latest
	if len(latest) > MaxLimit {
		latest = latest[:MaxLimit]
	}
	start, err := a.startEvents(ctx, roomID, latest)
	if err == nil {
		err = a.checkRoomAccess(ctx, req.Origin, roomID, recIDs(start))
	}
	if err != nil {
		server.WriteError(w, err)
		return
	}
	skip := make(map[string]bool, len(*body.Earliest))
	for _, id := range *body.Earliest {
		skip[id] = true
	}
	out, err := a.walkBack(ctx, roomID, start, skip, body.MinDepth, limit, false)
	if err == nil {
		out, err = a.redacted(ctx, out)
	}
	if err != nil {
		server.WriteError(w, err)
		return
	}
	slices.Reverse(out)
	var b bytes.Buffer
	b.WriteString(`{"events":`)
	writeRecords(&b, out)
	b.WriteByte('}')
	server.WriteRawJSON(w, http.StatusOK, b.Bytes())
}

// startEvents loads the servable events of roomID among ids: unknown
// ones are ignored, but if none is known the answer is 404 (after 404 for
// an unknown room).
func (a *API) startEvents(ctx context.Context, roomID string, ids []string) ([]*storage.EventRecord, error) {
	if _, err := a.store.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		return nil, errUnknownRoom
	} else if err != nil {
		return nil, err
	}
	evs, err := a.store.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []*storage.EventRecord
	seen := map[string]bool{}
	for _, id := range ids {
		rec := evs[id]
		if rec != nil && rec.RoomID == roomID && rec.Rejected == "" && !seen[id] {
			seen[id] = true
			out = append(out, rec)
		}
	}
	if len(out) == 0 {
		return nil, errUnknownEvent
	}
	return out, nil
}

// walkBack walks the prev_events graph of roomID backwards from start,
// deepest first, and returns up to limit events, deepest first. The start
// events are part of the result when withStart is set (backfill) and only
// the walk's starting points otherwise (get_missing_events). Events in
// skip are neither returned nor walked through, nor are rejected events,
// events of another room or events below minDepth.
func (a *API) walkBack(ctx context.Context, roomID string, start []*storage.EventRecord, skip map[string]bool,
	minDepth int64, limit int, withStart bool) ([]*storage.EventRecord, error) {
	var out []*storage.EventRecord
	seen := map[string]bool{}
	q := &depthQueue{}
	var pending []string // prev events to load before the next pop
	push := func(rec *storage.EventRecord) {
		for _, p := range rec.PrevEvents {
			if !seen[p] && !skip[p] {
				seen[p] = true
				pending = append(pending, p)
			}
		}
	}
	for _, rec := range start {
		seen[rec.EventID] = true
		if withStart {
			heap.Push(q, rec)
		} else {
			push(rec)
		}
	}
	for len(out) < limit {
		if len(pending) > 0 {
			evs, err := a.store.Events(ctx, pending)
			if err != nil {
				return nil, err
			}
			for _, id := range pending {
				if rec := evs[id]; rec != nil && rec.RoomID == roomID && rec.Rejected == "" && rec.Depth >= minDepth {
					heap.Push(q, rec)
				}
			}
			pending = pending[:0]
		}
		if q.Len() == 0 {
			break
		}
		rec := heap.Pop(q).(*storage.EventRecord)
		out = append(out, rec)
		push(rec)
	}
	return out, nil
}

// depthQueue is a max-heap of events by depth, then by event ID, so a
// walk back returns the latest events first and the same events for the
// same request.
type depthQueue []*storage.EventRecord

func (q depthQueue) Len() int { return len(q) }
func (q depthQueue) Less(i, j int) bool {
	if q[i].Depth != q[j].Depth {
		return q[i].Depth > q[j].Depth
	}
	return q[i].EventID < q[j].EventID
}
func (q depthQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *depthQueue) Push(x any)   { *q = append(*q, x.(*storage.EventRecord)) }
func (q *depthQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// transaction wraps PDUs in the Transaction object the spec answers
// /event and /backfill with: origin, origin_server_ts and pdus. The PDUs
// are the stored bytes, redacted if a redaction applies (redact.go) and
// otherwise unchanged: they are signed.
func (a *API) transaction(evs []*storage.EventRecord) []byte {
	var b bytes.Buffer
	b.WriteString(`{"origin":`)
	b.Write(cjson.AppendString(nil, a.cfg.ServerName))
	b.WriteString(`,"origin_server_ts":`)
	b.WriteString(strconv.FormatInt(a.now().UnixMilli(), 10))
	b.WriteString(`,"pdus":`)
	writeRecords(&b, evs)
	b.WriteByte('}')
	return b.Bytes()
}

// writeRecords writes evs as a JSON array of their stored PDUs.
func writeRecords(b *bytes.Buffer, evs []*storage.EventRecord) {
	b.WriteByte('[')
	for i, rec := range evs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(rec.JSON)
	}
	b.WriteByte(']')
}

// writePDUs writes the PDUs of ids found in evs as a JSON array, leaving
// out events not stored and rejected ones.
func writePDUs(b *bytes.Buffer, ids []string, evs map[string]*storage.EventRecord) {
	out := make([]*storage.EventRecord, 0, len(ids))
	for _, id := range ids {
		if rec := evs[id]; rec != nil && rec.Rejected == "" {
			out = append(out, rec)
		}
	}
	writeRecords(b, out)
}

func recIDs(evs []*storage.EventRecord) []string {
	out := make([]string, len(evs))
	for i, rec := range evs {
		out[i] = rec.EventID
	}
	return out
}

func idStrings(ids []rooms.EventID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
