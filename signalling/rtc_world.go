package signalling

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// World persistence: the SFU keeps a last-writer-wins snapshot of a
// call's AR/VR world and hands it here periodically and when the call
// ends; it is written into the Matrix room as a state event, so it
// persists, federates to every server in the room, and is there for the
// next call in the room.
const (
	// WorldEventType is the state event (state key "") holding a room's
	// world snapshot. Its power level is the room's state_default (50
	// unless the room says otherwise): Plexus leaves the default power
	// levels alone, as Synapse does, and a room that wants every member
	// to persist the world sets "org.plexus.world": 0 in its power levels
	// (as Element Call does for org.matrix.msc3401.call.member).
	WorldEventType = "org.plexus.world"
	// MaxWorldBytes bounds a snapshot, well under the 64 KiB event limit
	// (Client-Server API, "Size limits") once wrapped in a PDU.
	MaxWorldBytes = 48 << 10
)

// ErrNoWorldWriter is SaveWorld's answer when none of the call's
// participants is a local user joined to the room and allowed by its
// power levels to send WorldEventType.
var ErrNoWorldWriter = errors.New("signalling: no participant may write the world state")

// CallWorld loads and saves call world snapshots; it implements the
// SFU's WorldStore interface.
type CallWorld struct{ s *Signalling }

// CallWorld returns the world store the SFU persists snapshots through.
func (s *Signalling) CallWorld() *CallWorld { return &CallWorld{s: s} }

// LoadWorld returns the content of the current WorldEventType state
// event of the Matrix room behind LiveKit room lkRoom, nil if there is
// none (or the room name was never minted here).
func (w *CallWorld) LoadWorld(ctx context.Context, lkRoom string) ([]byte, error) {
	roomID, err := w.s.rtc.store.Room(ctx, lkRoom)
	if err != nil || roomID == "" {
		return nil, err
	}
	return w.current(ctx, roomID)
}

// current is the content of roomID's world state event, nil if none.
func (w *CallWorld) current(ctx context.Context, roomID string) ([]byte, error) {
	var id string
	err := w.s.rtc.db.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT event_id FROM current_state WHERE room_id = ? AND type = ? AND state_key = ''`,
			roomID, WorldEventType).Scan(&id)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("signalling: world of %s: %w", roomID, err)
	}
	evs, err := w.s.stateEvents(ctx, []string{id})
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return evs[0].Content, nil
}

// SaveWorld writes snapshot (a JSON object of at most MaxWorldBytes, in
// canonical JSON's value range: integers, no floats) as the room's
// WorldEventType state unless it equals the current one. The event is
// sent as the first of identities (LiveKit identities of the call's
// participants) that is a local user joined to the room and allowed to
// send it; ErrNoWorldWriter if none is.
func (w *CallWorld) SaveWorld(ctx context.Context, lkRoom string, snapshot []byte, identities []string) error {
	if len(snapshot) > MaxWorldBytes {
		return fmt.Errorf("signalling: world snapshot of %d bytes is over %d", len(snapshot), MaxWorldBytes)
	}
	content, err := cjson.Parse(snapshot)
	if err != nil {
		return fmt.Errorf("signalling: world snapshot: %w", err)
	}
	if content.Kind() != cjson.Object {
		return errors.New("signalling: world snapshot is not a JSON object")
	}
	roomID, err := w.s.rtc.store.Room(ctx, lkRoom)
	if err != nil {
		return err
	}
	if roomID == "" {
		return fmt.Errorf("signalling: no Matrix room for LiveKit room %s", lkRoom)
	}
	cur, err := w.current(ctx, roomID)
	if err != nil {
		return err
	}
	if cur != nil {
		if c, err := cjson.Canonicalize(cur); err == nil && bytes.Equal(c, cjson.Marshal(content)) {
			return nil
		}
	}
	users, err := w.writers(ctx, lkRoom, roomID, identities)
	if err != nil {
		return err
	}
	empty := ""
	for _, u := range users {
		_, err := w.s.rtc.rooms.Append(ctx, rooms.RoomID(roomID), rooms.LocalEvent{
			Type: WorldEventType, StateKey: &empty, Sender: rooms.UserID(u), Content: content,
		})
		var na *rooms.NotAllowedError
		if errors.As(err, &na) {
			continue // not allowed by power levels: try the next participant
		}
		if err != nil {
			return fmt.Errorf("signalling: save world of %s as %s: %w", roomID, u, err)
		}
		return nil
	}
	return fmt.Errorf("%w: room %s", ErrNoWorldWriter, roomID)
}

// writers maps identities to the distinct local users joined to roomID,
// in order. An identity minted here is looked up; otherwise the legacy
// form "@user:server:DEVICE" is read (the part before the last ':').
func (w *CallWorld) writers(ctx context.Context, lkRoom, roomID string, identities []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, id := range identities {
		u, err := w.s.rtc.store.User(ctx, lkRoom, id)
		if err != nil {
			return nil, err
		}
		if u == "" && strings.HasPrefix(id, "@") {
			if i := strings.LastIndexByte(id, ':'); i > 0 && strings.Contains(id[:i], ":") {
				u = id[:i]
			}
		}
		if u == "" || seen[u] || !strings.HasSuffix(u, ":"+w.s.cfg.ServerName) {
			continue
		}
		seen[u] = true
		m, err := w.s.feed.index.Membership(ctx, roomID, u)
		if err != nil {
			return nil, err
		}
		if m == "join" {
			out = append(out, u)
		}
	}
	return out, nil
}
