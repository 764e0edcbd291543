package fedapi

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// redactChunk bounds the IDs of one IN (...) query.
const redactChunk = 500

// redacted returns evs with every event that an accepted redaction
// applies to replaced by its redacted form, in the same order; evs itself
// is not changed. Room versions, "Redactions": "Upon receipt of a
// redaction event, the server must strip off any keys not in the
// following list", so we serve what we would hold had we stripped it.
// The redacted form keeps the hashes and signatures, and everything the
// signatures and the reference hash cover, so it still verifies and has
// the same event ID (Server-Server API, "Validating hashes and signatures
// on received events": "this step should succeed whether we have been
// sent the full event or a redacted copy").
//
// The candidates are the rows of table redactions (filled by the client
// side for every accepted m.room.redaction); whether one applies is
// decided here, with the rule the client side applies.
func (a *API) redacted(ctx context.Context, evs []*storage.EventRecord) ([]*storage.EventRecord, error) {
	byID := make(map[string]*storage.EventRecord, len(evs))
	ids := make([]string, 0, len(evs))
	for _, rec := range evs {
		if rec != nil && byID[rec.EventID] == nil {
			byID[rec.EventID] = rec
			ids = append(ids, rec.EventID)
		}
	}
	cands, err := a.redactionsOf(ctx, ids)
	if err != nil || len(cands) == 0 {
		return evs, err
	}
	var redactionIDs []string
	seen := map[string]bool{}
	for _, rs := range cands {
		for _, r := range rs {
			if !seen[r] {
				seen[r] = true
				redactionIDs = append(redactionIDs, r)
			}
		}
	}
	reds, err := a.store.Events(ctx, redactionIDs)
	if err != nil {
		return nil, err
	}
	versions := map[string]*rooms.Version{}
	replaced := map[string]*storage.EventRecord{}
	for target, rs := range cands {
		rec := byID[target]
		v, err := a.versionOf(ctx, versions, rec.RoomID)
		if err != nil {
			return nil, err
		}
		for _, rid := range rs {
			ok, err := a.redactionApplies(ctx, v, reds[rid], rec)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			ev, err := rooms.ParseEvent(rec.JSON, v)
			if err != nil {
				return nil, fmt.Errorf("fedapi: stored event %s: %w", target, err)
			}
			cp := *rec
			cp.JSON = ev.Redacted().JSON()
			replaced[target] = &cp
			break
		}
	}
	if len(replaced) == 0 {
		return evs, nil
	}
	out := make([]*storage.EventRecord, len(evs))
	for i, rec := range evs {
		out[i] = rec
		if rec != nil && replaced[rec.EventID] != nil {
			out[i] = replaced[rec.EventID]
		}
	}
	return out, nil
}

// RedactedMap returns evs with every event that has been redacted
// replaced by its redacted form, as the endpoints serve them; send_join
// answers use it too.
func (a *API) RedactedMap(ctx context.Context, evs map[string]*storage.EventRecord) (map[string]*storage.EventRecord, error) {
	list := make([]*storage.EventRecord, 0, len(evs))
	for _, rec := range evs {
		list = append(list, rec)
	}
	list, err := a.redacted(ctx, list)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*storage.EventRecord, len(list))
	for _, rec := range list {
		if rec != nil {
			out[rec.EventID] = rec
		}
	}
	return out, nil
}

// redactionsOf returns, for those of ids that a redaction names, the IDs
// of those redactions.
func (a *API) redactionsOf(ctx context.Context, ids []string) (map[string][]string, error) {
	out := map[string][]string{}
	err := a.store.View(ctx, func(tx *storage.Tx) error {
		for start := 0; start < len(ids); start += redactChunk {
			chunk := ids[start:min(start+redactChunk, len(ids))]
			args := make([]any, len(chunk))
			for i, id := range chunk {
				args[i] = id
			}
			marks := strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ")
			rows, err := tx.Query(ctx, `SELECT redacts, redaction_id FROM redactions WHERE redacts IN (`+marks+`) ORDER BY redaction_id`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var target, redaction string
				if err := rows.Scan(&target, &redaction); err != nil {
					rows.Close()
					return err
				}
				out[target] = append(out[target], redaction)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

func (a *API) versionOf(ctx context.Context, cache map[string]*rooms.Version, roomID string) (*rooms.Version, error) {
	if v := cache[roomID]; v != nil {
		return v, nil
	}
	info, err := a.store.Room(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("fedapi: room %s: %w", roomID, err)
	}
	v, ok := rooms.LookupVersion(info.Version)
	if !ok {
		return nil, fmt.Errorf("fedapi: room %s has unknown version %q", roomID, info.Version)
	}
	cache[roomID] = v
	return v, nil
}

// redactionApplies decides whether the stored event red redacts target.
// It must be an accepted m.room.redaction of the target's room that names
// the target; then room versions 3 and later, "Handling redactions":
// "the server applies the redaction if ... the power level of the
// redaction event's sender is greater than or equal to the redact level"
// or "the domain of the redaction event's sender matches that of the
// original event's sender". Soft-failed and outlier redactions are not
// applied, as on the client side (they never reached the timeline).
func (a *API) redactionApplies(ctx context.Context, v *rooms.Version, red, target *storage.EventRecord) (bool, error) {
	if red == nil || red.RoomID != target.RoomID || red.Rejected != "" || red.SoftFailed || red.Outlier ||
		red.Type != "m.room.redaction" {
		return false, nil
	}
	rev, err := rooms.ParseEvent(red.JSON, v)
	if err != nil {
		return false, nil // not a valid redaction: it redacts nothing
	}
	tev, err := rooms.ParseEvent(target.JSON, v)
	if err != nil {
		return false, fmt.Errorf("fedapi: stored event %s: %w", target.EventID, err)
	}
	if string(rev.Redacts()) != target.EventID {
		return false, nil
	}
	if rev.Sender().Domain() == tev.Sender().Domain() {
		return true, nil
	}
	// The redaction changes no state, so the state after it is the
	// state it was sent in.
	state, err := a.store.StateAfter(ctx, red.EventID)
	if err != nil {
		return false, err
	}
	user, redact, err := a.redactLevels(ctx, v, state, string(rev.Sender()))
	if err != nil {
		return false, err
	}
	return user >= redact, nil
}

// redactLevels returns user's power level and the redact level in state
// (Client-Server API, "m.room.power_levels": redact defaults to 50,
// users_default to 0; without a power_levels event the creator has 100;
// in room version 12 the creators have infinite power).
func (a *API) redactLevels(ctx context.Context, v *rooms.Version, state storage.StateMap, user string) (userLevel, redact int64, err error) {
	createID := state[storage.StateKey{Type: "m.room.create"}]
	plID := state[storage.StateKey{Type: "m.room.power_levels"}]
	evs, err := a.store.Events(ctx, []string{createID, plID})
	if err != nil {
		return 0, 0, err
	}
	parse := func(id string) *rooms.Event {
		if rec := evs[id]; rec != nil {
			if ev, err := rooms.ParseEvent(rec.JSON, v); err == nil {
				return ev
			}
		}
		return nil
	}
	create, pl := parse(createID), parse(plID)
	if create != nil && v.PrivilegedCreators {
		if string(create.Sender()) == user {
			return math.MaxInt64, 50, nil
		}
		if ac, ok := create.Content().Get("additional_creators"); ok {
			for _, u := range ac.Array() {
				if s, ok := u.Str(); ok && s == user {
					return math.MaxInt64, 50, nil
				}
			}
		}
	}
	if pl == nil {
		if create != nil && !v.PrivilegedCreators {
			creator := string(create.Sender())
			if !v.CreatorIsSender {
				creator, _ = create.Content().GetStr("creator")
			}
			if creator == user {
				return 100, 50, nil
			}
		}
		return 0, 50, nil
	}
	c := pl.Content()
	redact = 50
	if n, ok := c.Get("redact"); ok {
		if i, ok := n.Int(); ok {
			redact = i
		}
	}
	if n, ok := c.Get("users_default"); ok {
		if i, ok := n.Int(); ok {
			userLevel = i
		}
	}
	if n, ok := c.Path("users", user); ok {
		if i, ok := n.Int(); ok {
			userLevel = i
		}
	}
	return userLevel, redact, nil
}
