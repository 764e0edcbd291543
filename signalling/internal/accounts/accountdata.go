package accounts

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// serverManaged lists the account data types clients may read but not
// write (Client-Server API, "Client Config", server behaviour): the server
// maintains them through their own APIs.
var serverManaged = map[string]bool{"m.fully_read": true, "m.push_rules": true}

// maxIDLen bounds room IDs and account data types, as every identifier.
const maxIDLen = 255

// validRoomID accepts the room ID grammar loosely: "!" and an opaque
// part, with or without ":server" (room version 12 IDs have none).
func validRoomID(id string) bool {
	return len(id) > 1 && len(id) <= maxIDLen && id[0] == '!' && !strings.ContainsRune(id, 0)
}

// compactJSON returns b without insignificant whitespace.
func compactJSON(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, mxerr.NotJSON("Content not JSON")
	}
	return buf.Bytes(), nil
}

// accountDataTarget reads and checks the user, room and type of an
// account data request: only the user themself may use it (403), the room
// ID must be one (400 M_INVALID_PARAM).
func accountDataTarget(r *http.Request, s *endpoint.Session, verb string) (roomID, typ string, err error) {
	if r.PathValue("userId") != s.UserID {
		return "", "", mxerr.Forbidden("Cannot " + verb + " account data for other users.")
	}
	roomID, typ = r.PathValue("roomId"), r.PathValue("type")
	if r.Pattern != "" && strings.Contains(r.Pattern, "{roomId}") && !validRoomID(roomID) {
		return "", "", mxerr.InvalidParam(fmt.Sprintf("%q is not a valid room ID", roomID))
	}
	if typ == "" || len(typ) > maxIDLen {
		return "", "", mxerr.InvalidParam("Invalid account data type")
	}
	return roomID, typ, nil
}

// handlePutAccountData is PUT /user/{userId}/account_data/{type} and its
// per-room form.
func (a *Accounts) handlePutAccountData(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	roomID, typ, err := accountDataTarget(r, s, "add")
	if err != nil {
		fail(w, err)
		return
	}
	if serverManaged[typ] {
		fail(w, mxerr.New(http.StatusMethodNotAllowed, mxerr.CodeBadJSON, "Cannot set "+typ+" through this API."))
		return
	}
	b, err := endpoint.ReadBody(r, 0)
	if err != nil {
		fail(w, err)
		return
	}
	var obj map[string]json.RawMessage
	if err := endpoint.Unmarshal(b, &obj); err != nil {
		fail(w, err)
		return
	}
	if obj == nil { // the body was null
		fail(w, mxerr.BadJSON("Content must be a JSON object"))
		return
	}
	if err := a.setAccountData(r.Context(), s.UserID, roomID, typ, b); err != nil {
		fail(w, err)
		return
	}
	endpoint.Write(w, empty)
}

// handleGetAccountData is GET /user/{userId}/account_data/{type} and its
// per-room form.
func (a *Accounts) handleGetAccountData(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	roomID, typ, err := accountDataTarget(r, s, "get")
	if err != nil {
		fail(w, err)
		return
	}
	ctx := r.Context()
	var content string
	err = a.db.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?`,
			s.UserID, roomID, typ).Scan(&content)
	})
	if errors.Is(err, sql.ErrNoRows) {
		fail(w, mxerr.NotFound("Account data not found"))
		return
	}
	if err != nil {
		fail(w, fmt.Errorf("accounts: read account data: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(content))
}

// SetGlobalAccountData stores a user's global account data of a type,
// server-managed types included (for the slices that manage them), and
// wakes the user's /sync. content must be a JSON object.
func (a *Accounts) SetGlobalAccountData(ctx context.Context, userID, typ string, content json.RawMessage) error {
	return a.setAccountData(ctx, userID, "", typ, content)
}

// SetRoomAccountData stores a user's account data of a type for a room
// (m.fully_read from the read markers endpoint, for one) and wakes the
// user's /sync. content must be a JSON object.
func (a *Accounts) SetRoomAccountData(ctx context.Context, userID, roomID, typ string, content json.RawMessage) error {
	if roomID == "" {
		return errors.New("accounts: SetRoomAccountData without a room")
	}
	return a.setAccountData(ctx, userID, roomID, typ, content)
}

func (a *Accounts) setAccountData(ctx context.Context, userID, roomID, typ string, content json.RawMessage) error {
	c, err := compactJSON(content)
	if err != nil {
		return err
	}
	if len(c) == 0 || c[0] != '{' {
		return mxerr.BadJSON("Content must be a JSON object")
	}
	err = a.db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos`,
			userID, roomID, typ, string(c), tx.NextPos())
		return err
	})
	if err != nil {
		return fmt.Errorf("accounts: write account data: %w", err)
	}
	a.wake(userID)
	return nil
}

// accountDataEvent is an account data event as /sync delivers it.
type accountDataEvent struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// AccountDataSince returns the user's account data written at aux stream
// positions in (since, upto], each entry at most once, as
// {"type":..., "content":...} events in position order: global ones and,
// per room, the room's. since = 0 returns everything up to upto.
func (a *Accounts) AccountDataSince(ctx context.Context, userID string, since, upto int64) (global []json.RawMessage, rooms map[string][]json.RawMessage, err error) {
	err = a.db.View(ctx, func(tx *storage.Tx) error {
		rows, err := tx.Query(ctx, `SELECT room_id, type, content FROM account_data
			WHERE user_id = ? AND pos > ? AND pos <= ? ORDER BY pos`, userID, since, upto)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var roomID, typ, content string
			if err := rows.Scan(&roomID, &typ, &content); err != nil {
				return err
			}
			ev, err := json.Marshal(accountDataEvent{Type: typ, Content: json.RawMessage(content)})
			if err != nil {
				return err
			}
			if roomID == "" {
				global = append(global, ev)
				continue
			}
			if rooms == nil {
				rooms = map[string][]json.RawMessage{}
			}
			rooms[roomID] = append(rooms[roomID], ev)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("accounts: account data since %d: %w", since, err)
	}
	return global, rooms, nil
}
