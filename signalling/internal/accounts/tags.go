package accounts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Room tagging (Client-Server API, "Room Tagging"): a room's tags are its
// m.tag room account data, {"tags": {tag: {"order": n}, ...}}, delivered
// by /sync like any account data. The endpoints edit that one entry.

const maxTagLen = 255 // "The name of a tag MUST NOT exceed 255 bytes."

// tagsContent is the content of an m.tag event.
type tagsContent struct {
	Tags map[string]json.RawMessage `json:"tags"`
}

// tagTarget checks the user and room of a tags request.
func tagTarget(r *http.Request, s *endpoint.Session) (string, error) {
	if r.PathValue("userId") != s.UserID {
		return "", mxerr.Forbidden("Cannot access another user's tags")
	}
	roomID := r.PathValue("roomId")
	if !validRoomID(roomID) {
		return "", mxerr.InvalidParam(fmt.Sprintf("%q is not a valid room ID", roomID))
	}
	return roomID, nil
}

// readTags reads a room's tags; none is an empty map.
func readTags(ctx context.Context, tx *storage.Tx, userID, roomID string) (map[string]json.RawMessage, error) {
	var content string
	err := tx.QueryRow(ctx, `SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = 'm.tag'`,
		userID, roomID).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: read tags: %w", err)
	}
	var c tagsContent
	if json.Unmarshal([]byte(content), &c) != nil || c.Tags == nil {
		// Written by some other means in another shape: start over.
		return map[string]json.RawMessage{}, nil
	}
	return c.Tags, nil
}

// handleGetTags is GET /user/{userId}/rooms/{roomId}/tags.
func (a *Accounts) handleGetTags(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	roomID, err := tagTarget(r, s)
	if err != nil {
		fail(w, err)
		return
	}
	ctx := r.Context()
	var tags map[string]json.RawMessage
	err = a.db.View(ctx, func(tx *storage.Tx) error {
		tags, err = readTags(ctx, tx, s.UserID, roomID)
		return err
	})
	if err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, tagsContent{Tags: tags})
}

// handlePutTag is PUT /user/{userId}/rooms/{roomId}/tags/{tag}: the body
// (e.g. {"order": 0.5}) becomes the tag's object.
func (a *Accounts) handlePutTag(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	var body map[string]json.RawMessage
	if err := endpoint.Decode(r, 0, &body); err != nil {
		fail(w, err)
		return
	}
	if raw, ok := body["order"]; ok {
		var order float64
		if json.Unmarshal(raw, &order) != nil {
			fail(w, mxerr.BadJSON("order must be a number"))
			return
		}
	}
	if body == nil {
		body = map[string]json.RawMessage{}
	}
	value, err := json.Marshal(body)
	if err != nil {
		fail(w, err)
		return
	}
	a.editTags(w, r, s, func(tags map[string]json.RawMessage, tag string) { tags[tag] = value })
}

// handleDeleteTag is DELETE /user/{userId}/rooms/{roomId}/tags/{tag}.
func (a *Accounts) handleDeleteTag(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	a.editTags(w, r, s, func(tags map[string]json.RawMessage, tag string) { delete(tags, tag) })
}

// editTags applies edit to the room's tags in one transaction, so that
// concurrent edits of different tags do not lose each other.
func (a *Accounts) editTags(w http.ResponseWriter, r *http.Request, s *endpoint.Session, edit func(map[string]json.RawMessage, string)) {
	roomID, err := tagTarget(r, s)
	if err != nil {
		fail(w, err)
		return
	}
	tag := r.PathValue("tag")
	if tag == "" || len(tag) > maxTagLen {
		fail(w, mxerr.InvalidParam(fmt.Sprintf("Tag names must be 1 to %d bytes", maxTagLen)))
		return
	}
	ctx := r.Context()
	err = a.db.Update(ctx, func(tx *storage.Tx) error {
		tags, err := readTags(ctx, tx, s.UserID, roomID)
		if err != nil {
			return err
		}
		edit(tags, tag)
		content, err := json.Marshal(tagsContent{Tags: tags})
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES (?, ?, 'm.tag', ?, ?)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos`,
			s.UserID, roomID, string(content), tx.NextPos())
		return err
	})
	if err != nil {
		fail(w, fmt.Errorf("accounts: write tags: %w", err))
		return
	}
	a.wake(s.UserID)
	endpoint.Write(w, empty)
}
