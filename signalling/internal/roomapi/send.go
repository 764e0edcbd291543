package roomapi

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Transaction scopes: a transaction ID is scoped to one device and one
// endpoint (Client-Server API, "Transaction identifiers").
const (
	txnSend   = "send"
	txnRedact = "redact"
)

type eventIDResponse struct {
	EventID string `json:"event_id"`
}

// checkRate applies the per-device send limit.
func (a *API) checkRate(s *endpoint.Session) error {
	return a.limiter.Check(s.UserID + "|" + s.DeviceID)
}

// withTxn runs send once per (device, endpoint, txnID): a retransmission
// gets the event ID of the first request without a new event. Requests
// with one key are serialised, so two identical requests racing still
// make one event.
func (a *API) withTxn(ctx context.Context, s *endpoint.Session, scope, txnID, roomID string, send func() (string, error)) (string, error) {
	key := strings.Join([]string{s.UserID, s.DeviceID, scope, txnID}, "\x00")
	unlock := a.txnLocks.lock(key)
	defer unlock()
	var prior string
	err := a.deps.DB.View(ctx, func(tx *storage.Tx) error {
		return tx.QueryRow(ctx, `SELECT event_id FROM room_txns WHERE user_id = ? AND device_id = ? AND endpoint = ? AND txn_id = ?`,
			s.UserID, s.DeviceID, scope, txnID).Scan(&prior)
	})
	if err == nil {
		return prior, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", err
	}
	id, err := send()
	if err != nil {
		return "", err
	}
	// The event is stored; if recording the transaction fails, a retry
	// would send it again, so report the failure but keep the ID.
	err = a.deps.DB.Exec(ctx, `INSERT INTO room_txns (user_id, device_id, endpoint, txn_id, room_id, event_id, created_ts)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, endpoint, txn_id) DO NOTHING`,
		s.UserID, s.DeviceID, scope, txnID, roomID, id, a.deps.Now().UnixMilli())
	if err != nil {
		a.log.Warn("recording transaction ID failed", "room", roomID, "event", id, "err", err)
	}
	return id, nil
}

func (a *API) send(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID, typ, txnID := r.PathValue("roomId"), r.PathValue("eventType"), r.PathValue("txnId")
	content, err := parseContent(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := validRoomID(roomID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	id, err := a.sendEvent(ctx, s, roomID, typ, txnID, content)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, eventIDResponse{EventID: id})
}

// sendEvent is PUT /rooms/{roomId}/send/{eventType}/{txnId} once the
// request is decoded; the realtime connection's room channel sends
// through it too, so both share one transaction scope per device.
func (a *API) sendEvent(ctx context.Context, s *endpoint.Session, roomID, typ, txnID string, content cjson.Value) (string, error) {
	return a.withTxn(ctx, s, txnSend, txnID, roomID, func() (string, error) {
		if err := a.checkRate(s); err != nil {
			return "", err
		}
		le := rooms.LocalEvent{Type: typ, Sender: rooms.UserID(s.UserID), Content: content}
		if typ == "m.room.redaction" {
			// "Homeservers MUST allow clients to send m.room.redaction
			// events with this endpoint for all room versions. In rooms
			// with a version older than 11 they MUST move the redacts
			// property inside the content to the top level."
			target, _ := content.GetStr("redacts")
			if _, err := rooms.ParseEventID(target); err != nil {
				return "", mxerr.BadJSON("content.redacts must be an event ID")
			}
			v, err := a.roomVersion(ctx, roomID)
			if err != nil {
				return "", a.sendErr(ctx, roomID, s.UserID, err)
			}
			if !v.RedactsInContent {
				le.Content = content.Without("redacts")
			}
			return a.appendRedaction(ctx, roomID, s, le, target)
		}
		// m.call.* and every other type pass through unchanged.
		st, err := a.deps.Rooms.Append(ctx, rooms.RoomID(roomID), le)
		if err != nil {
			return "", a.sendErr(ctx, roomID, s.UserID, err)
		}
		return string(st.Event.ID()), nil
	})
}

// sendErr maps a failed append, telling a sender who is not in the room
// (403) from a room we do not know, which for the sender is the same
// thing: they are not in it.
func (a *API) sendErr(ctx context.Context, roomID, userID string, err error) error {
	if errors.Is(err, rooms.ErrUnknownRoom) {
		return mxerr.Forbidden(fmt.Sprintf("User %s is not in room %s", userID, roomID))
	}
	var na *rooms.NotAllowedError
	if errors.As(err, &na) {
		if m, merr := a.membership(ctx, roomID, userID); merr == nil && m != "join" {
			return mxerr.Forbidden(fmt.Sprintf("User %s is not in room %s", userID, roomID))
		}
	}
	return appendErr(err)
}

// appendRedaction checks that the sender may redact target, appends the
// redaction and records its target so the target is served redacted.
func (a *API) appendRedaction(ctx context.Context, roomID string, s *endpoint.Session, le rooms.LocalEvent, target string) (string, error) {
	le.Redacts = rooms.EventID(target)
	evs, err := a.parsedEvents(ctx, roomID, []string{target})
	if err != nil {
		if errors.Is(err, rooms.ErrUnknownRoom) {
			return "", a.sendErr(ctx, roomID, s.UserID, err)
		}
		return "", err
	}
	if t := evs[target]; t != nil && string(t.Sender()) != s.UserID {
		// Redacting someone else's event needs the redact level (room
		// versions, "Redactions"); the auth rules check only the level
		// for sending m.room.redaction, so this is checked here.
		info, err := a.deps.DB.Room(ctx, roomID)
		if err != nil {
			return "", err
		}
		p, err := a.powerIn(ctx, roomID, info.Current)
		if err != nil {
			return "", err
		}
		if p.userLevel(s.UserID) < p.redact {
			return "", mxerr.Forbidden("You don't have permission to redact events")
		}
	}
	st, err := a.deps.Rooms.Append(ctx, rooms.RoomID(roomID), le)
	if err != nil {
		return "", a.sendErr(ctx, roomID, s.UserID, err)
	}
	id := string(st.Event.ID())
	if st.Rejected == "" && !st.SoftFailed {
		if err := a.NoteRedaction(ctx, roomID, id, target); err != nil {
			return "", err
		}
	}
	return id, nil
}

func (a *API) redact(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID, target, txnID := r.PathValue("roomId"), r.PathValue("eventId"), r.PathValue("txnId")
	var body struct {
		Reason *string `json:"reason"`
	}
	if err := endpoint.Decode(r, maxEventBody, &body); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := validRoomID(roomID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if _, err := rooms.ParseEventID(target); err != nil {
		endpoint.Fail(w, mxerr.InvalidParam(fmt.Sprintf("Invalid event ID %q", target)))
		return
	}
	id, err := a.withTxn(ctx, s, txnRedact, txnID, roomID, func() (string, error) {
		if err := a.checkRate(s); err != nil {
			return "", err
		}
		content := cjson.Obj()
		if body.Reason != nil {
			content = content.With("reason", cjson.Str(*body.Reason))
		}
		le := rooms.LocalEvent{Type: "m.room.redaction", Sender: rooms.UserID(s.UserID), Content: content}
		return a.appendRedaction(ctx, roomID, s, le, target)
	})
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, eventIDResponse{EventID: id})
}

func (a *API) putState(w http.ResponseWriter, r *http.Request, s *endpoint.Session) {
	ctx := r.Context()
	roomID, typ, stateKey := r.PathValue("roomId"), r.PathValue("eventType"), r.PathValue("stateKey")
	content, err := parseContent(r)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := validRoomID(roomID); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if err := a.checkRate(s); err != nil {
		endpoint.Fail(w, err)
		return
	}
	if typ == "m.room.canonical_alias" {
		if err := a.checkCanonicalAlias(ctx, roomID, content); err != nil {
			endpoint.Fail(w, err)
			return
		}
	}
	st, err := a.deps.Rooms.Append(ctx, rooms.RoomID(roomID), rooms.LocalEvent{
		Type: typ, StateKey: &stateKey, Sender: rooms.UserID(s.UserID), Content: content,
	})
	if err != nil {
		endpoint.Fail(w, a.sendErr(ctx, roomID, s.UserID, err))
		return
	}
	if typ == "m.room.member" {
		if m, _ := content.GetStr("membership"); m == "join" || m == "invite" || m == "knock" {
			if err := a.unforget(ctx, stateKey, roomID); err != nil {
				a.log.Warn("unforget failed", "room", roomID, "err", err)
			}
		}
	}
	endpoint.Write(w, eventIDResponse{EventID: string(st.Event.ID())})
}

// checkCanonicalAlias validates the aliases an m.room.canonical_alias
// event adds: valid grammar (400 M_INVALID_PARAM) and, for our own
// aliases, pointing at this room (400 M_BAD_ALIAS). Aliases already in
// the current event are not checked again (Client-Server API, PUT
// /rooms/{roomId}/state).
func (a *API) checkCanonicalAlias(ctx context.Context, roomID string, content cjson.Value) error {
	old := map[string]bool{}
	if cur, err := a.currentState(ctx, roomID, "m.room.canonical_alias", ""); err != nil && !errors.Is(err, rooms.ErrUnknownRoom) {
		return err
	} else if cur != nil {
		for _, s := range aliasesIn(cur.Content()) {
			old[s] = true
		}
	}
	if v, ok := content.Get("alias"); ok && !v.IsNull() {
		if _, isStr := v.Str(); !isStr {
			return mxerr.InvalidParam("alias must be a string")
		}
	}
	if v, ok := content.Get("alt_aliases"); ok && v.Kind() != cjson.Array {
		return mxerr.InvalidParam("alt_aliases must be an array")
	} else if ok {
		for _, e := range v.Array() {
			if _, isStr := e.Str(); !isStr {
				return mxerr.InvalidParam("alt_aliases must hold strings")
			}
		}
	}
	for _, s := range aliasesIn(content) {
		if old[s] {
			continue
		}
		alias, err := parseAlias(s)
		if err != nil {
			return err
		}
		if alias.server != a.cfg.ServerName {
			continue // FEDERATION: remote aliases need a directory query
		}
		id, err := a.resolveAlias(ctx, alias)
		if err != nil || id != roomID {
			return mxerr.New(http.StatusBadRequest, "M_BAD_ALIAS", fmt.Sprintf("Room alias %s does not point to the room", s))
		}
	}
	return nil
}

// aliasesIn lists alias and alt_aliases of canonical alias content.
func aliasesIn(c cjson.Value) []string {
	var out []string
	if s, ok := c.GetStr("alias"); ok && s != "" {
		out = append(out, s)
	}
	if v, ok := c.Get("alt_aliases"); ok {
		for _, e := range v.Array() {
			if s, ok := e.Str(); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
