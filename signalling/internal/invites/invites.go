package invites

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/plexus-chat/plexus/internal/storage"
)

// Invite is a local user's membership of a room this server is not in.
type Invite struct {
	UserID, RoomID string
	// Version is the room's version.
	Version string
	// Membership is "invite" while pending and "leave" once rejected.
	Membership string
	// EventID, Sender and Event are the invite: its ID, the inviting
	// user and the PDU as countersigned by us.
	EventID, Sender string
	Event           []byte
	// State is invite_room_state as received: PDUs (formatted for the
	// room version since v1.16 of the spec; older senders send stripped
	// state events).
	State []json.RawMessage
	// Leave is our leave PDU once rejected.
	Leave []byte
	// EventsPos is the event stream's head when the row was last
	// written: a membership of the user in the room stored later
	// supersedes it.
	EventsPos int64
	// Pos is the row's aux stream position.
	Pos int64
}

// Store reads and writes the invites.
type Store struct {
	db *storage.DB
	// wake, if set, wakes the syncs of the given users.
	wake func(users ...string)
}

// New returns a Store on db; wake, if not nil, is called with the user
// after each change so their waiting syncs answer.
func New(db *storage.DB, wake func(users ...string)) *Store {
	return &Store{db: db, wake: wake}
}

// Put records a pending invite, replacing whatever the user had in the
// room (an older invite, or a rejection).
func (s *Store) Put(ctx context.Context, inv *Invite) error {
	state, err := json.Marshal(inv.State)
	if err != nil {
		return err
	}
	if inv.State == nil {
		state = []byte("[]")
	}
	head, err := s.db.MaxStreamPos(ctx)
	if err != nil {
		return err
	}
	err = s.db.Update(ctx, func(tx *storage.Tx) error {
		pos := tx.NextPos()
		_, err := tx.Exec(ctx, `INSERT INTO remote_invites
			(user_id, room_id, version, membership, event_id, sender, invite, state, event, events_pos, pos)
			VALUES (?, ?, ?, 'invite', ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id, room_id) DO UPDATE SET version = excluded.version, membership = 'invite',
				event_id = excluded.event_id, sender = excluded.sender, invite = excluded.invite,
				state = excluded.state, event = excluded.event, events_pos = excluded.events_pos, pos = excluded.pos`,
			inv.UserID, inv.RoomID, inv.Version, inv.EventID, inv.Sender, inv.Event, string(state), []byte{}, head, pos)
		return err
	})
	if err != nil {
		return fmt.Errorf("invites: store %s's invite to %s: %w", inv.UserID, inv.RoomID, err)
	}
	s.notify(inv.UserID)
	return nil
}

// Reject records that userID rejected their invite to roomID with the
// leave event leave. It is an error if there is no invite.
func (s *Store) Reject(ctx context.Context, userID, roomID string, leave []byte) error {
	head, err := s.db.MaxStreamPos(ctx)
	if err != nil {
		return err
	}
	err = s.db.Update(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE remote_invites SET membership = 'leave', event = ?, events_pos = ?, pos = ?
			WHERE user_id = ? AND room_id = ?`, leave, head, tx.NextPos(), userID, roomID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return storage.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("invites: reject %s's invite to %s: %w", userID, roomID, err)
	}
	s.notify(userID)
	return nil
}

// Get returns userID's row for roomID, nil if there is none.
func (s *Store) Get(ctx context.Context, userID, roomID string) (*Invite, error) {
	var out []*Invite
	err := s.db.View(ctx, func(tx *storage.Tx) error {
		var err error
		out, err = query(ctx, tx, `WHERE user_id = ? AND room_id = ?`, userID, roomID)
		return err
	})
	if err != nil || len(out) == 0 {
		return nil, err
	}
	return out[0], nil
}

// Since lists userID's rows for a sync: for an initial sync (since < 0)
// the pending invites at positions up to upto, else every row written in
// (since, upto], pending or rejected.
func (s *Store) Since(ctx context.Context, userID string, since, upto int64) ([]*Invite, error) {
	var out []*Invite
	err := s.db.View(ctx, func(tx *storage.Tx) error {
		var err error
		if since < 0 {
			out, err = query(ctx, tx, `WHERE user_id = ? AND membership = 'invite' AND pos <= ?`, userID, upto)
		} else {
			out, err = query(ctx, tx, `WHERE user_id = ? AND pos > ? AND pos <= ?`, userID, since, upto)
		}
		return err
	})
	return out, err
}

func query(ctx context.Context, tx *storage.Tx, where string, args ...any) ([]*Invite, error) {
	rows, err := tx.Query(ctx, `SELECT user_id, room_id, version, membership, event_id, sender, invite, state, event, events_pos, pos
		FROM remote_invites `+where+` ORDER BY pos`, args...)
	if err != nil {
		return nil, fmt.Errorf("invites: read: %w", err)
	}
	defer rows.Close()
	var out []*Invite
	for rows.Next() {
		inv := &Invite{}
		var state string
		if err := rows.Scan(&inv.UserID, &inv.RoomID, &inv.Version, &inv.Membership, &inv.EventID, &inv.Sender,
			&inv.Event, &state, &inv.Leave, &inv.EventsPos, &inv.Pos); err != nil {
			return nil, fmt.Errorf("invites: read: %w", err)
		}
		if err := json.Unmarshal([]byte(state), &inv.State); err != nil {
			return nil, fmt.Errorf("invites: stored state of %s in %s: %w", inv.UserID, inv.RoomID, err)
		}
		if len(inv.Leave) == 0 {
			inv.Leave = nil
		}
		out = append(out, inv)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("invites: read: %w", err)
	}
	return out, nil
}

func (s *Store) notify(user string) {
	if s.wake != nil {
		s.wake(user)
	}
}
