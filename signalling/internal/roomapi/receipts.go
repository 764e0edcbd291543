package roomapi

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

// Receipt and marker types (Client-Server API, "Receipts", "Fully read
// markers").
const (
	receiptRead        = "m.read"
	receiptReadPrivate = "m.read.private"
	markerFullyRead    = "m.fully_read"
)

// eventPos is the stream position of a servable event of roomID; 404
// M_NOT_FOUND if there is none.
func (a *API) eventPos(ctx context.Context, roomID, eventID string) (int64, error) {
	recs, err := a.deps.DB.Events(ctx, []string{eventID})
	if err != nil {
		return 0, err
	}
	rec := recs[eventID]
	if rec == nil || rec.RoomID != roomID || !servable(rec) {
		return 0, mxerr.NotFound(fmt.Sprintf("Event %s not found in room %s", eventID, roomID))
	}
	return rec.StreamPos, nil
}

// storeReceipt records userID's receipt. A receipt for an event earlier
// than the one the same (type, thread) receipt already names is ignored,
// as Synapse does: receipts are "up to" markers and do not move back.
func (a *API) storeReceipt(ctx context.Context, roomID, userID, typ, threadID, eventID string) error {
	newPos, err := a.eventPos(ctx, roomID, eventID)
	if err != nil {
		return err
	}
	stored := false
	ts := a.deps.Now().UnixMilli()
	err = a.deps.DB.Update(ctx, func(tx *storage.Tx) error {
		var oldPos int64
		err := tx.QueryRow(ctx, `SELECT e.stream_pos FROM receipts r JOIN events e ON e.event_id = r.event_id
			WHERE r.room_id = ? AND r.receipt_type = ? AND r.user_id = ? AND r.thread_id = ?`,
			roomID, typ, userID, threadID).Scan(&oldPos)
		if err == nil && oldPos >= newPos {
			return nil
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, pos)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (room_id, receipt_type, user_id, thread_id)
			DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos`,
			roomID, typ, userID, threadID, eventID, ts, tx.NextPos())
		stored = err == nil
		return err
	})
	if err != nil || !stored {
		return err
	}
	if typ == receiptRead && a.deps.OnReceipt != nil && a.isLocal(userID) {
		a.deps.OnReceipt(ctx, roomID, userID, typ, threadID, eventID, ts)
	}
	if (typ == receiptRead || typ == receiptReadPrivate) && threadID == "" && a.deps.OnRead != nil {
		a.deps.OnRead(userID, roomID, newPos)
	}
	if typ == receiptReadPrivate {
		// "Servers MUST NOT send the m.read.private receipt to any other
		// user than the one which originally sent it."
		a.deps.Hub.Wake(userID)
	} else {
		a.deps.Hub.WakeRoom(roomID)
		a.deps.Hub.Wake(userID)
	}
	return nil
}

// setFullyRead moves the fully read marker: room account data, which the
// client may not set directly ("Fully read markers", server behaviour).
func (a *API) setFullyRead(ctx context.Context, roomID, userID, eventID string) error {
	if _, err := a.eventPos(ctx, roomID, eventID); err != nil {
		return err
	}
	content, _ := json.Marshal(map[string]string{"event_id": eventID})
	return a.deps.SetRoomAccountData(ctx, userID, roomID, markerFullyRead, content)
}

func (a *API) postReceipt(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID, typ, eventID := r.PathValue("roomId"), r.PathValue("receiptType"), r.PathValue("eventId")
	var body map[string]json.RawMessage
	if err := endpoint.Decode(r, 0, &body); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if typ != receiptRead && typ != receiptReadPrivate && typ != markerFullyRead {
		endpoint.Fail(w, mxerr.InvalidParam(fmt.Sprintf("Receipt type must be %s, %s or %s", receiptRead, receiptReadPrivate, markerFullyRead)))
		return
	}
	threadID := ""
	if raw, ok := body["thread_id"]; ok {
		// The thread_id is invalid if it "is not a string", "is empty" or
		// "is provided for an incompatible receipt type".
		if err := json.Unmarshal(raw, &threadID); err != nil || threadID == "" {
			endpoint.Fail(w, mxerr.InvalidParam("thread_id must be a non-empty string"))
			return
		}
		if typ == markerFullyRead {
			endpoint.Fail(w, mxerr.InvalidParam("thread_id is not allowed for m.fully_read"))
			return
		}
	}
	if err := a.receipt(ctx, s, roomID, typ, threadID, eventID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, struct{}{})
}

// receipt is POST /rooms/{roomId}/receipt/{receiptType}/{eventId} once
// the request is decoded and checked.
func (a *API) receipt(ctx context.Context, s *endpoint.Session, roomID, typ, threadID, eventID string) error {
	if err := a.requireJoined(ctx, roomID, s.UserID); err != nil {
		return err
	}
	if typ == markerFullyRead {
		return a.setFullyRead(ctx, roomID, s.UserID, eventID)
	}
	return a.storeReceipt(ctx, roomID, s.UserID, typ, threadID, eventID)
}

func (a *API) readMarkers(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID := r.PathValue("roomId")
	var body struct {
		FullyRead   string `json:"m.fully_read"`
		Read        string `json:"m.read"`
		ReadPrivate string `json:"m.read.private"`
	}
	if err := endpoint.Decode(r, 0, &body); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := a.requireJoined(ctx, roomID, s.UserID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	// Check every event first so a bad one changes nothing.
	for _, id := range []string{body.FullyRead, body.Read, body.ReadPrivate} {
		if id != "" {
			if _, err := a.eventPos(ctx, roomID, id); err != nil {
				endpoint.Fail(w, err)
				return
			}
		}
	}
	if body.FullyRead != "" {
		if err := a.setFullyRead(ctx, roomID, s.UserID, body.FullyRead); err != nil {
			endpoint.Fail(w, err)
			return
		}
	}
	for typ, id := range map[string]string{receiptRead: body.Read, receiptReadPrivate: body.ReadPrivate} {
		if id == "" {
			continue
		}
		if err := a.storeReceipt(ctx, roomID, s.UserID, typ, "", id); err != nil {
			endpoint.Fail(w, err)
			return
		}
	}
	endpoint.Write(w, struct{}{})
}

// ReceiptsSince returns, for each of roomIDs with receipts at aux
// positions in (since, upto], the m.receipt event /sync puts in the
// room's ephemeral events: {"type":"m.receipt","content":{...}}. Since 0
// gives every room's current receipts (the latest of each user, type and
// thread); upto 0 means no upper bound. Private receipts appear only for
// their own user.
func (a *API) ReceiptsSince(ctx context.Context, userID string, roomIDs []string, since, upto int64) (map[string]json.RawMessage, error) {
	type receipt struct {
		TS       int64  `json:"ts"`
		ThreadID string `json:"thread_id,omitempty"`
	}
	// room -> event -> type -> user -> receipt
	content := map[string]map[string]map[string]map[string]receipt{}
	if upto <= 0 {
		upto = 1<<63 - 1
	}
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		for start := 0; start < len(roomIDs); start += 500 {
			chunk := roomIDs[start:min(start+500, len(roomIDs))]
			args := make([]any, 0, len(chunk)+2)
			for _, id := range chunk {
				args = append(args, id)
			}
			args = append(args, since, upto)
			rows, err := tx.Query(ctx, `SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts
				WHERE room_id IN (`+placeholders(len(chunk))+`) AND pos > ? AND pos <= ?`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var room, typ, user, thread, event string
				var ts int64
				if err := rows.Scan(&room, &typ, &user, &thread, &event, &ts); err != nil {
					rows.Close()
					return err
				}
				if typ == receiptReadPrivate && user != userID {
					continue
				}
				byEvent := content[room]
				if byEvent == nil {
					byEvent = map[string]map[string]map[string]receipt{}
					content[room] = byEvent
				}
				byType := byEvent[event]
				if byType == nil {
					byType = map[string]map[string]receipt{}
					byEvent[event] = byType
				}
				byUser := byType[typ]
				if byUser == nil {
					byUser = map[string]receipt{}
					byType[typ] = byUser
				}
				byUser[user] = receipt{TS: ts, ThreadID: thread}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(content))
	for room, c := range content {
		b, err := json.Marshal(map[string]any{"type": "m.receipt", "content": c})
		if err != nil {
			return nil, err
		}
		out[room] = b
	}
	return out, nil
}
