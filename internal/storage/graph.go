package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// This file holds the reads behind the operator's views: a room's event
// graph, page by page, for the web client's graph drawing, and the
// counts of the operator page.

// GraphPage is one page of a room's event graph, newest first.
type GraphPage struct {
	// Events are every stored event of the room below the page's bound,
	// in descending stream order: accepted, rejected, soft-failed and
	// outliers alike (check the flags).
	Events []*EventRecord
	// Extremities are the room's forward extremities, sorted, read in the
	// same snapshot as Events.
	Extremities []string
	// More says that older events remain, below the last one's
	// StreamPos.
	More bool
}

// GraphTop is the bound of the first page of RoomGraph: above every
// stream position.
const GraphTop = math.MaxInt64

// RoomGraph returns up to limit of roomID's events with a stream position
// below before (GraphTop for the newest), newest first, with the room's
// forward extremities. The scan walks the (room_id, stream_pos) index
// backwards, so its cost is the page, not the room. Backfilled history
// sits at negative positions and comes last. It returns ErrNotFound if
// the room is not stored.
func (db *DB) RoomGraph(ctx context.Context, roomID string, before int64, limit int) (*GraphPage, error) {
	if limit <= 0 {
		return nil, errors.New("storage: RoomGraph: limit must be positive")
	}
	p := &GraphPage{}
	err := db.View(ctx, func(tx *Tx) error {
		var version string
		if err := tx.QueryRow(ctx, `SELECT version FROM rooms WHERE room_id = ?`, roomID).Scan(&version); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		ext, err := tx.Strings(ctx, `SELECT event_id FROM room_extremities WHERE room_id = ?`, roomID)
		if err != nil {
			return err
		}
		sort.Strings(ext)
		p.Extremities = ext
		// One row more than asked says whether another page follows.
		rows, err := tx.Query(ctx, `SELECT `+eventCols+` FROM events
			WHERE room_id = ? AND stream_pos < ? ORDER BY stream_pos DESC LIMIT ?`, roomID, before, limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				return err
			}
			p.Events = append(p.Events, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("storage: graph of %s: %w", roomID, err)
	}
	if len(p.Events) > limit {
		p.Events, p.More = p.Events[:limit], true
	}
	return p, nil
}

// RoomCounts are the operator page's figures about rooms.
type RoomCounts struct {
	// Rooms is how many rooms are stored.
	Rooms int `json:"total"`
	// Joined and Invited count the members of every room with that
	// current membership, each room counting its members once.
	Joined  int `json:"joined_members"`
	Invited int `json:"invited_members"`
	// LocalJoined counts the joined members whose user ID ends in the
	// local suffix given (":" + server name).
	LocalJoined int `json:"local_joined_members"`
	// Active counts the rooms with at least one local joined member.
	Active int `json:"rooms_with_local_members"`
}

// CountRooms counts rooms and members from the current state.
//
// Membership lives only in the member events' JSON, so this reads one
// event per current member of every room: fine for an operator page
// that is asked now and then, not for a hot path. localSuffix is
// ":" + this server's name.
func (db *DB) CountRooms(ctx context.Context, localSuffix string) (RoomCounts, error) {
	var c RoomCounts
	err := db.View(ctx, func(tx *Tx) error {
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM rooms`).Scan(&c.Rooms); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT cs.room_id, cs.state_key, e.json FROM current_state cs
			JOIN events e ON e.event_id = cs.event_id WHERE cs.type = ?`, "m.room.member")
		if err != nil {
			return err
		}
		defer rows.Close()
		active := map[string]struct{}{}
		for rows.Next() {
			var room, user string
			var raw []byte
			if err := rows.Scan(&room, &user, &raw); err != nil {
				return err
			}
			var ev struct {
				Content struct {
					Membership string `json:"membership"`
				} `json:"content"`
			}
			if json.Unmarshal(raw, &ev) != nil {
				continue // stored events parsed when admitted; skip anything odd
			}
			switch ev.Content.Membership {
			case "join":
				c.Joined++
				if localSuffix != "" && strings.HasSuffix(user, localSuffix) {
					c.LocalJoined++
					active[room] = struct{}{}
				}
			case "invite":
				c.Invited++
			}
		}
		c.Active = len(active)
		return rows.Err()
	})
	if err != nil {
		return RoomCounts{}, fmt.Errorf("storage: count rooms: %w", err)
	}
	return c, nil
}

// RoomsWithState lists, sorted, the rooms whose current state holds an
// event of one of types (the MatrixRTC call member types, for the
// operator page's list of calls). It reads current_state once, without
// touching events.
func (db *DB) RoomsWithState(ctx context.Context, types ...string) ([]string, error) {
	if len(types) == 0 {
		return nil, nil
	}
	args := make([]any, len(types))
	for i, t := range types {
		args[i] = t
	}
	var out []string
	err := db.View(ctx, func(tx *Tx) error {
		var err error
		out, err = tx.Strings(ctx, `SELECT DISTINCT room_id FROM current_state WHERE type IN (`+
			strings.TrimSuffix(strings.Repeat("?,", len(types)), ",")+`)`, args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: rooms with state: %w", err)
	}
	sort.Strings(out)
	return out, nil
}
