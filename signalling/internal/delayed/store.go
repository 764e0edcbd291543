package delayed

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
)

// record is one row of delayed_events.
type record struct {
	id, userID, deviceID, roomID, typ string
	stateKey                          *string
	content                           string
	delayMS, sendAt, claimedTS        int64
}

func (r *record) event() Event {
	return Event{UserID: r.userID, DeviceID: r.deviceID, RoomID: r.roomID, Type: r.typ,
		StateKey: r.stateKey, Content: json.RawMessage(r.content)}
}

const recordColumns = `delay_id, user_id, device_id, room_id, event_type, state_key, content, delay_ms, send_at, claimed_ts`

func scanRecord(sc interface{ Scan(...any) error }) (*record, error) {
	r := &record{}
	var sk sql.NullString
	if err := sc.Scan(&r.id, &r.userID, &r.deviceID, &r.roomID, &r.typ, &sk, &r.content, &r.delayMS, &r.sendAt, &r.claimedTS); err != nil {
		return nil, err
	}
	if sk.Valid {
		r.stateKey = &sk.String
	}
	return r, nil
}

// errNotFound is the answer for an unknown delay ID, and for another
// user's (MSC4140, "Managing scheduled delayed events").
var errNotFound = mxerr.NotFound("Delayed event not found")

// errBeingSent answers restart and cancel of an event already being sent:
// the outcome conflicts with the action (MSC4140: 409 M_UNKNOWN).
var errBeingSent = mxerr.New(http.StatusConflict, mxerr.CodeUnknown, "Delayed event is already being sent")

// lookupTx reads delayID's row; owner, if not empty, must own it.
func lookupTx(ctx context.Context, tx *storage.Tx, delayID, owner string) (*record, error) {
	r, err := scanRecord(tx.QueryRow(ctx, `SELECT `+recordColumns+` FROM delayed_events WHERE delay_id = ?`, delayID))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != "" && r.userID != owner) {
		return nil, errNotFound
	}
	return r, err
}

// restart moves delayID's send time to now + its delay.
func (s *Service) restart(ctx context.Context, delayID, owner string) error {
	now := s.deps.Now().UnixMilli()
	return s.deps.DB.Update(ctx, func(tx *storage.Tx) error {
		r, err := lookupTx(ctx, tx, delayID, owner)
		if err != nil {
			return err
		}
		if r.claimedTS != 0 {
			return errBeingSent
		}
		// A restart only postpones, so the timer needs no poke: it wakes
		// at the old time, finds nothing due and sleeps again.
		_, err = tx.Exec(ctx, `UPDATE delayed_events SET send_at = ? WHERE delay_id = ?`, now+r.delayMS, delayID)
		return err
	})
}

// cancel deletes delayID unless it is being sent.
func (s *Service) cancel(ctx context.Context, delayID, owner string) error {
	var r *record
	err := s.deps.DB.Update(ctx, func(tx *storage.Tx) error {
		var err error
		if r, err = lookupTx(ctx, tx, delayID, owner); err != nil {
			return err
		}
		if r.claimedTS != 0 {
			return errBeingSent
		}
		_, err = tx.Exec(ctx, `DELETE FROM delayed_events WHERE delay_id = ?`, delayID)
		return err
	})
	if err == nil {
		s.forget(r)
	}
	return err
}

// claim marks delayID as being sent and returns its row; nil if it is
// already claimed (by the timer or another "send").
func (s *Service) claim(ctx context.Context, delayID, owner string) (*record, error) {
	var r *record
	err := s.deps.DB.Update(ctx, func(tx *storage.Tx) error {
		var err error
		if r, err = lookupTx(ctx, tx, delayID, owner); err != nil {
			return err
		}
		if r.claimedTS != 0 {
			r = nil
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE delayed_events SET claimed_ts = ? WHERE delay_id = ?`, s.deps.Now().UnixMilli(), delayID)
		return err
	})
	return r, err
}

// unclaim puts a claimed row back on the schedule.
func (s *Service) unclaim(ctx context.Context, delayID string) error {
	return s.deps.DB.Exec(ctx, `UPDATE delayed_events SET claimed_ts = 0 WHERE delay_id = ?`, delayID)
}

// remove deletes a sent (or failed) row.
func (s *Service) remove(ctx context.Context, r *record) error {
	s.forget(r)
	return s.deps.DB.Exec(ctx, `DELETE FROM delayed_events WHERE delay_id = ?`, r.id)
}

// dueIDs lists up to limit unclaimed delay IDs due at or before now.
func (s *Service) dueIDs(ctx context.Context, now int64, limit int) ([]string, error) {
	var ids []string
	err := s.deps.DB.View(ctx, func(tx *storage.Tx) error {
		var err error
		ids, err = tx.Strings(ctx, `SELECT delay_id FROM delayed_events WHERE send_at <= ? AND claimed_ts = 0
			ORDER BY send_at LIMIT ?`, now, limit)
		return err
	})
	return ids, err
}

// nextSendAt is the earliest unclaimed send time, 0 if none.
func (s *Service) nextSendAt(ctx context.Context) (int64, error) {
	var next sql.NullInt64
	err := s.deps.DB.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT MIN(send_at) FROM delayed_events WHERE claimed_ts = 0`).Scan(&next)
	})
	return next.Int64, err
}

// deleteIDs deletes the unclaimed rows of ids (state cancellations).
func (s *Service) deleteIDs(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := `DELETE FROM delayed_events WHERE claimed_ts = 0 AND delay_id IN (?` + strings.Repeat(", ?", len(ids)-1) + `)`
	if err := s.deps.DB.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("delayed: cancel superseded: %w", err)
	}
	return nil
}

// Scheduled is one entry of GET /delayed_events (MSC4140, "Getting
// delayed events"; the fields Synapse and mautrix-go use).
type Scheduled struct {
	DelayID      string          `json:"delay_id"`
	RoomID       string          `json:"room_id"`
	Type         string          `json:"type"`
	StateKey     *string         `json:"state_key,omitempty"`
	Delay        int64           `json:"delay"`
	RunningSince int64           `json:"running_since"`
	Content      json.RawMessage `json:"content"`
}

// List returns userID's scheduled events in send order, only those of
// delayIDs if it is not empty.
func (s *Service) List(ctx context.Context, userID string, delayIDs []string) ([]Scheduled, error) {
	want := map[string]bool{}
	for _, id := range delayIDs {
		want[id] = true
	}
	out := []Scheduled{}
	err := s.deps.DB.View(ctx, func(tx *storage.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+recordColumns+` FROM delayed_events WHERE user_id = ? ORDER BY send_at, delay_id`, userID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				return err
			}
			if len(want) > 0 && !want[r.id] {
				continue
			}
			out = append(out, Scheduled{DelayID: r.id, RoomID: r.roomID, Type: r.typ, StateKey: r.stateKey,
				Delay: r.delayMS, RunningSince: r.sendAt - r.delayMS, Content: json.RawMessage(r.content)})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("delayed: list: %w", err)
	}
	return out, nil
}
