package roomapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// Pagination limits: the spec's default of 10 and a cap (the spec asks
// servers to impose one; Synapse's is of the same order).
const (
	defaultPageLimit = 10
	maxPageLimit     = 1000
)

// Backfill bounds: one /messages asks other servers for history at most
// backfillRounds times, each for between minBackfill and maxBackfill
// events (fedapi serves at most 100 per request).
const (
	backfillRounds = 3
	minBackfill    = 20
	maxBackfill    = 100
)

// lowest is the bottom of a backward scan: backfilled history sits at
// negative stream positions, below the live stream (storage.Batch.Backfill).
const lowest = math.MinInt64

// timelineEvent is a stored event with its parsed form.
type timelineEvent struct {
	rec *storage.EventRecord
	ev  *rooms.Event
}

// page is one pagination result.
type page struct {
	events []timelineEvent
	// next is the cursor to continue from: for dir=b, events at next and
	// below remain; for dir=f, events above next.
	next int64
	// done: the scan reached the bound, nothing remains.
	done bool
}

// paginate walks roomID's timeline in stream order, backward over
// positions (bound, from] or forward over (from, bound], collecting up to
// limit events that v lets the user see and f lets through. It scans a
// bounded number of events per request, so a sparse filter returns an
// early, shorter page with a token to go on from.
func (a *API) paginate(ctx context.Context, v *viewer, f *roomEventFilter, roomID string, from, bound int64, backward bool, limit int) (*page, error) {
	p := &page{next: from}
	if !f.allowsRoom(roomID) || limit <= 0 {
		p.done = limit > 0
		return p, nil
	}
	vers, err := a.roomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	budget := limit*10 + 100
	chunk := min(max(limit*2, 20), 500)
	for len(p.events) < limit && budget > 0 {
		q := `SELECT event_id, stream_pos, json, state_group, prev_events FROM events
			WHERE room_id = ? AND stream_pos > ? AND stream_pos <= ?
			AND outlier = FALSE AND rejected = '' AND soft_failed = FALSE`
		lo, hi := p.next, bound
		if backward {
			lo, hi = bound, p.next
			q += ` ORDER BY stream_pos DESC LIMIT ?`
		} else {
			q += ` ORDER BY stream_pos ASC LIMIT ?`
		}
		n := min(chunk, budget)
		var recs []*storage.EventRecord
		err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
			rows, err := tx.Query(ctx, q, roomID, lo, hi, n)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				rec := &storage.EventRecord{RoomID: roomID}
				var prev string
				if err := rows.Scan(&rec.EventID, &rec.StreamPos, &rec.JSON, &rec.StateGroup, &prev); err != nil {
					return err
				}
				if prev != "" && prev != "[]" {
					if err := json.Unmarshal([]byte(prev), &rec.PrevEvents); err != nil {
						return err
					}
				}
				recs = append(recs, rec)
			}
			return rows.Err()
		})
		if err != nil {
			return nil, err
		}
		budget -= len(recs)
		consumed := 0
		for _, rec := range recs {
			if len(p.events) == limit {
				break
			}
			consumed++
			if backward {
				p.next = rec.StreamPos - 1
			} else {
				p.next = rec.StreamPos
			}
			ev, err := rooms.ParseEvent(rec.JSON, vers)
			if err != nil {
				return nil, err
			}
			if !f.allows(ev) {
				continue
			}
			ok, err := v.visible(ctx, rec, ev)
			if err != nil {
				return nil, err
			}
			if ok {
				p.events = append(p.events, timelineEvent{rec: rec, ev: ev})
			}
		}
		if len(recs) < n && consumed == len(recs) {
			// The scan reached the bound and looked at every row.
			p.done = true
			break
		}
	}
	return p, nil
}

// backfillMore goes on with a backward page that reached the bottom of the
// stored timeline while the room has history before it that this server
// lacks (it joined over federation): it has federation fetch that history
// (storage keeps it below the stored timeline) and reads on into it. If a
// round stored history but the page is still short, the page stays open
// (an end token) so the client asks again; if fetching fails or brings
// nothing, the page ends there, as at the room's creation.
func (a *API) backfillMore(ctx context.Context, v *viewer, f *roomEventFilter, roomID string, p *page, limit int) error {
	// History is checked against the state at it, members included: a
	// room joined with partial state waits for its full state first.
	a.awaitMembers(ctx, roomID)
	for range backfillRounds {
		from, err := a.deps.DB.BackwardExtremities(ctx, roomID)
		if err != nil || len(from) == 0 {
			return err
		}
		need := limit - len(p.events)
		if err := a.deps.Backfill(ctx, roomID, from, min(max(2*need, minBackfill), maxBackfill)); err != nil {
			a.log.Info("backfill failed", "room", roomID, "err", err)
			return nil
		}
		after, err := a.deps.DB.BackwardExtremities(ctx, roomID)
		if err != nil {
			return err
		}
		if slices.Equal(after, from) {
			return nil // nothing fetched: the history ends here for now
		}
		more, err := a.paginate(ctx, v, f, roomID, p.next, lowest, true, need)
		if err != nil {
			return err
		}
		p.events = append(p.events, more.events...)
		p.next, p.done = more.next, more.done
		if !p.done {
			return nil
		}
		if len(p.events) >= limit {
			// Everything stored is read, but history before it remains.
			p.done = len(after) == 0
			return nil
		}
		if len(after) == 0 {
			return nil
		}
	}
	p.done = false
	return nil
}

// parsePageToken reads a /messages token: a sync token, or one that
// /messages issued inside backfilled history, at a negative events
// position, which stream.ParseToken refuses so that /sync never takes it.
func parsePageToken(s string) (stream.Token, error) {
	rest, ok := strings.CutPrefix(s, "s-")
	if !ok {
		return stream.ParseToken(s)
	}
	t, err := stream.ParseToken("s" + rest)
	if err != nil || t.Events == 0 {
		return stream.Token{}, stream.ErrBadToken
	}
	t.Events = -t.Events
	return t, nil
}

// parseLimit reads a limit query parameter.
func parseLimit(s string, f *roomEventFilter) (int, error) {
	limit := defaultPageLimit
	if s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, mxerr.InvalidParam("limit must be a non-negative integer")
		}
		limit = n
	}
	if f.Limit != nil {
		limit = min(limit, *f.Limit)
	}
	return min(limit, maxPageLimit), nil
}

// currentToken is a sync token at the current end of every stream.
func (a *API) currentToken(ctx context.Context) (stream.Token, error) {
	pos, err := a.deps.DB.MaxStreamPos(ctx)
	if err != nil {
		return stream.Token{}, err
	}
	return stream.Token{Events: pos, Aux: a.deps.DB.AuxPos(), Typing: a.TypingPos()}, nil
}

func (a *API) messages(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	q := r.URL.Query()
	dir := q.Get("dir")
	switch dir {
	case "b", "f":
	case "":
		endpoint.Fail(w, mxerr.MissingParam("Missing dir"))
		return
	default:
		endpoint.Fail(w, mxerr.InvalidParam("dir must be b or f"))
		return
	}
	backward := dir == "b"
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	limit, err := parseLimit(q.Get("limit"), f)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	var fromTok stream.Token
	start := q.Get("from")
	if start != "" {
		if fromTok, err = parsePageToken(start); err != nil {
			endpoint.Fail(w, mxerr.InvalidParam("Invalid from token"))
			return
		}
	} else {
		// Since v1.3 from is optional: start at the last (dir=b) or
		// first (dir=f) event.
		if backward {
			if fromTok, err = a.currentToken(ctx); err != nil {
				endpoint.Fail(w, err)
				return
			}
		}
		start = fromTok.String()
	}
	bound := int64(lowest)
	if !backward {
		bound = 1<<63 - 1
	}
	if to := q.Get("to"); to != "" {
		toTok, err := parsePageToken(to)
		if err != nil {
			endpoint.Fail(w, mxerr.InvalidParam("Invalid to token"))
			return
		}
		bound = toTok.Events
	}
	v, err := a.newViewer(ctx, roomID, s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	from := fromTok.Events
	if v.leftAt > 0 {
		// Nothing after the user left is visible (unless world readable,
		// which the viewer still allows): the scan need not go there.
		if backward {
			from = min(from, v.leftAt)
		} else {
			bound = min(bound, v.leftAt)
		}
	}
	resp := map[string]any{"start": start}
	var p *page
	if (backward && from > bound) || (!backward && from < bound) {
		if p, err = a.paginate(ctx, v, f, roomID, from, bound, backward, limit); err != nil {
			endpoint.Fail(w, err)
			return
		}
	} else {
		p = &page{done: true, next: from}
	}
	if backward && p.done && bound == lowest && len(p.events) < limit && a.deps.Backfill != nil {
		if err := a.backfillMore(ctx, v, f, roomID, p, limit); err != nil {
			endpoint.Fail(w, err)
			return
		}
	}
	evs := make([]*rooms.Event, len(p.events))
	for i, e := range p.events {
		evs[i] = e.ev
	}
	chunk, err := formatter{a: a, roomID: roomID}.format(ctx, evs)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	resp["chunk"] = chunk
	if !p.done {
		resp["end"] = stream.Token{Events: p.next, Aux: fromTok.Aux, Typing: fromTok.Typing}.String()
	}
	if f.LazyLoadMembers && len(p.events) > 0 {
		state, err := a.lazyMembers(ctx, roomID, p.events, f)
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		resp["state"] = state
	}
	endpoint.Write(w, resp)
}

// lazyMembers is the member events of the senders of evs, from the state
// at the latest of them ("Lazy-loading room members").
func (a *API) lazyMembers(ctx context.Context, roomID string, evs []timelineEvent, f *roomEventFilter) ([]json.RawMessage, error) {
	latest := evs[0].rec
	senders := map[string]bool{}
	for _, e := range evs {
		senders[string(e.ev.Sender())] = true
		if e.rec.StreamPos > latest.StreamPos {
			latest = e.rec
		}
	}
	state, err := a.deps.DB.StateOfGroup(ctx, latest.StateGroup)
	if err != nil {
		return nil, err
	}
	members, err := a.stateEvents(ctx, roomID, state, func(k storage.StateKey) bool {
		return k.Type == "m.room.member" && senders[k.StateKey]
	})
	if err != nil {
		return nil, err
	}
	return formatter{a: a, roomID: roomID}.format(ctx, members)
}

func (a *API) context(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID, eventID := r.PathValue("roomId"), r.PathValue("eventId")
	q := r.URL.Query()
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	limit, err := parseLimit(q.Get("limit"), f)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	v, err := a.newViewer(ctx, roomID, s.UserID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	rec, ev, err := a.visibleEvent(ctx, v, roomID, eventID)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	// "The limit applies to the sum of the events_before and
	// events_after arrays"; split as Synapse does.
	beforeLimit := limit / 2
	afterLimit := limit - beforeLimit
	before, err := a.paginate(ctx, v, f, roomID, rec.StreamPos-1, lowest, true, beforeLimit)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	after, err := a.paginate(ctx, v, f, roomID, rec.StreamPos, 1<<63-1, false, afterLimit)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	fm := formatter{a: a, roomID: roomID}
	format := func(tes []timelineEvent) ([]json.RawMessage, error) {
		evs := make([]*rooms.Event, len(tes))
		for i, e := range tes {
			evs[i] = e.ev
		}
		return fm.format(ctx, evs)
	}
	evBefore, err := format(before.events)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	evAfter, err := format(after.events)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	evOne, err := fm.one(ctx, ev)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	// "The state of the room at the last event returned."
	last := rec
	if n := len(after.events); n > 0 {
		last = after.events[n-1].rec
	}
	var state []json.RawMessage
	if f.LazyLoadMembers {
		all := append(append(append([]timelineEvent{}, before.events...), timelineEvent{rec: rec, ev: ev}), after.events...)
		sort.Slice(all, func(i, j int) bool { return all[i].rec.StreamPos < all[j].rec.StreamPos })
		state, err = a.lazyMembers(ctx, roomID, all, f)
	} else {
		state, err = a.contextState(ctx, roomID, last, f)
	}
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	cur, err := a.currentToken(ctx)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, map[string]any{
		"event":         evOne,
		"events_before": evBefore,
		"events_after":  evAfter,
		"state":         state,
		"start":         stream.Token{Events: before.next, Aux: cur.Aux, Typing: cur.Typing}.String(),
		"end":           stream.Token{Events: after.next, Aux: cur.Aux, Typing: cur.Typing}.String(),
	})
}

// contextState is the full state after rec, filtered by f.
func (a *API) contextState(ctx context.Context, roomID string, rec *storage.EventRecord, f *roomEventFilter) ([]json.RawMessage, error) {
	state, err := a.deps.DB.StateOfGroup(ctx, rec.StateGroup)
	if errors.Is(err, storage.ErrNotFound) {
		return []json.RawMessage{}, nil
	} else if err != nil {
		return nil, err
	}
	evs, err := a.stateEvents(ctx, roomID, state, nil)
	if err != nil {
		return nil, err
	}
	kept := evs[:0]
	for _, e := range evs {
		if f.allows(e) {
			kept = append(kept, e)
		}
	}
	return formatter{a: a, roomID: roomID}.format(ctx, kept)
}
