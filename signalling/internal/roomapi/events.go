package roomapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/clientevent"
)

// parsedEvents loads and parses the stored events among ids that belong
// to roomID; others are absent from the result.
func (a *API) parsedEvents(ctx context.Context, roomID string, ids []string) (map[string]*rooms.Event, error) {
	out := map[string]*rooms.Event{}
	if len(ids) == 0 {
		return out, nil
	}
	recs, err := a.deps.DB.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	v, err := a.roomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	for id, rec := range recs {
		if rec.RoomID != roomID {
			continue
		}
		ev, err := rooms.ParseEvent(rec.JSON, v)
		if err != nil {
			return nil, fmt.Errorf("roomapi: parse stored event %s: %w", id, err)
		}
		out[id] = ev
	}
	return out, nil
}

// servable reports whether a stored event may be shown to clients: not
// an outlier (no place in the timeline), not rejected, not soft-failed.
func servable(rec *storage.EventRecord) bool {
	return !rec.Outlier && rec.Rejected == "" && !rec.SoftFailed
}

// formatter turns events into client form for one response, applying
// redactions (Client-Server API, "Redactions").
type formatter struct {
	a      *API
	roomID string
	omitID bool
}

// format returns evs in client form, in order.
func (f formatter) format(ctx context.Context, evs []*rooms.Event) ([]json.RawMessage, error) {
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = string(e.ID())
	}
	because, err := f.a.redactedBecause(ctx, f.roomID, evs)
	if err != nil {
		return nil, err
	}
	now := f.a.deps.Now()
	out := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		out[i] = clientevent.Format(e, clientevent.Options{Now: now, RedactedBecause: because[ids[i]], OmitRoomID: f.omitID})
	}
	return out, nil
}

// one formats a single event.
func (f formatter) one(ctx context.Context, ev *rooms.Event) (json.RawMessage, error) {
	out, err := f.format(ctx, []*rooms.Event{ev})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// redactedBecause finds, for each of evs that an accepted, valid
// redaction targets, that redaction in client form.
func (a *API) redactedBecause(ctx context.Context, roomID string, evs []*rooms.Event) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(evs) == 0 {
		return out, nil
	}
	byID := make(map[string]*rooms.Event, len(evs))
	ids := make([]string, 0, len(evs))
	for _, e := range evs {
		byID[string(e.ID())] = e
		ids = append(ids, string(e.ID()))
	}
	targets := map[string][]string{} // redaction ID -> targets
	var redactionIDs []string
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		for start := 0; start < len(ids); start += 500 {
			chunk := ids[start:min(start+500, len(ids))]
			args := make([]any, 0, len(chunk)+1)
			args = append(args, roomID)
			for _, id := range chunk {
				args = append(args, id)
			}
			rows, err := tx.Query(ctx, `SELECT redacts, redaction_id FROM redactions WHERE room_id = ? AND redacts IN (`+placeholders(len(chunk))+`)`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var t, r string
				if err := rows.Scan(&t, &r); err != nil {
					rows.Close()
					return err
				}
				if _, seen := targets[r]; !seen {
					redactionIDs = append(redactionIDs, r)
				}
				targets[r] = append(targets[r], t)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(redactionIDs) == 0 {
		return out, err
	}
	recs, err := a.deps.DB.Events(ctx, redactionIDs)
	if err != nil {
		return nil, err
	}
	v, err := a.roomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	now := a.deps.Now()
	for _, rid := range redactionIDs {
		rec := recs[rid]
		if rec == nil || !servable(rec) || rec.RoomID != roomID {
			continue
		}
		red, err := rooms.ParseEvent(rec.JSON, v)
		if err != nil {
			return nil, err
		}
		for _, t := range targets[rid] {
			target := byID[t]
			if target == nil || out[t] != nil || red.Type() != "m.room.redaction" || string(red.Redacts()) != t {
				continue
			}
			ok, err := a.redactionApplies(ctx, roomID, red, target)
			if err != nil {
				return nil, err
			}
			if ok {
				out[t] = clientevent.Format(red, clientevent.Options{Now: now})
			}
		}
	}
	return out, nil
}

// redactionApplies is the rule of room versions 3 and later ("Redactions"
// in the room version specifications): a redaction is applied if its
// sender is on the same server as the target's, or had the redact power
// level when it was sent.
func (a *API) redactionApplies(ctx context.Context, roomID string, red, target *rooms.Event) (bool, error) {
	if red.Sender().Domain() == target.Sender().Domain() {
		return true, nil
	}
	state, err := a.deps.DB.StateAfter(ctx, string(red.ID()))
	if err != nil {
		return false, err
	}
	p, err := a.powerIn(ctx, roomID, state)
	if err != nil {
		return false, err
	}
	return p.userLevel(string(red.Sender())) >= p.redact, nil
}

// NoteRedaction records that redactionID (an accepted m.room.redaction in
// roomID) targets targetID, so that the target is served redacted. The
// event tailer calls it for redactions this API did not send itself
// (from federation); calling it twice is harmless. Whether the redaction
// applies is decided when the target is served.
func (a *API) NoteRedaction(ctx context.Context, roomID, redactionID, targetID string) error {
	return a.deps.DB.Exec(ctx, `INSERT INTO redactions (redacts, redaction_id, room_id) VALUES (?, ?, ?)
		ON CONFLICT (redacts, redaction_id) DO NOTHING`, targetID, redactionID, roomID)
}

// placeholders returns "?, ?, ..." with n marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
