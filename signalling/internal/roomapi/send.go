package roomapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

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

// txnDelayed scopes the transaction IDs of delayed sends, whose answer is
// a delay ID, not an event ID.
const txnDelayed = "delayed"

// delayParam is MSC4140's query parameter on /send and /state: the event
// is scheduled, not sent ("Scheduling a delayed event").
const delayParam = "org.matrix.msc4140.delay"

// DelayedEvent is an event to send later, or, handed to SendAs, now.
// StateKey is nil for a message event.
type DelayedEvent struct {
	UserID, DeviceID, RoomID, Type string
	StateKey                       *string
	Content                        json.RawMessage
}

// Delayer schedules the events sent with ?org.matrix.msc4140.delay=.
type Delayer interface {
	Schedule(ctx context.Context, ev DelayedEvent, delay time.Duration) (delayID string, err error)
}

type delayIDResponse struct {
	DelayID string `json:"delay_id"`
}

// delayOf reads the delay parameter in milliseconds; ok is false without
// one.
func delayOf(r *http.Request) (delay time.Duration, ok bool, err error) {
	q := r.URL.Query()
	if !q.Has(delayParam) {
		return 0, false, nil
	}
	ms, err := strconv.ParseInt(q.Get(delayParam), 10, 64)
	if err != nil || ms <= 0 || ms > math.MaxInt64/int64(time.Millisecond) {
		return 0, false, mxerr.InvalidParam(delayParam + " must be a positive integer of milliseconds")
	}
	return time.Duration(ms) * time.Millisecond, true, nil
}

// schedule hands an event sent with a delay to Deps.Delayed, charging the
// send rate now: the event is sent later without it.
func (a *API) schedule(ctx context.Context, s *endpoint.Session, roomID, typ string, stateKey *string, content cjson.Value, delay time.Duration) (string, error) {
	if a.deps.Delayed == nil {
		return "", mxerr.Forbidden("Delayed events are not enabled on this server")
	}
	if err := a.checkRate(s); err != nil {
		return "", err
	}
	return a.deps.Delayed.Schedule(ctx, DelayedEvent{UserID: s.UserID, DeviceID: s.DeviceID, RoomID: roomID,
		Type: typ, StateKey: stateKey, Content: cjson.Marshal(content)}, delay)
}

// SendAs sends ev as its user and device through the checks of PUT /send
// (a message event, scoped by txnID like a client's transaction ID) or PUT
// /state, without the send rate limit: it is how delayed events are sent,
// whose scheduling was rate-limited.
func (a *API) SendAs(ctx context.Context, ev DelayedEvent, txnID string) (string, error) {
	if err := validRoomID(ev.RoomID); err != nil {
		return "", err
	}
	content, err := cjson.Parse(ev.Content)
	if err != nil || content.Kind() != cjson.Object {
		return "", mxerr.BadJSON("Content must be a JSON object")
	}
	s := &endpoint.Session{UserID: ev.UserID, DeviceID: ev.DeviceID}
	if ev.StateKey != nil {
		return a.putStateEvent(ctx, s, ev.RoomID, ev.Type, *ev.StateKey, content)
	}
	return a.withTxn(ctx, s, txnSend, txnID, ev.RoomID, func() (string, error) {
		return a.appendMessage(ctx, s, ev.RoomID, ev.Type, content)
	})
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
	if delay, ok, err := delayOf(r); err != nil || ok {
		var id string
		if err == nil {
			id, err = a.withTxn(ctx, s, txnDelayed, txnID, roomID, func() (string, error) {
				return a.schedule(ctx, s, roomID, typ, nil, content, delay)
			})
		}
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		endpoint.Write(w, delayIDResponse{DelayID: id})
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
		return a.appendMessage(ctx, s, roomID, typ, content)
	})
}

// appendMessage appends a message event for sendEvent and SendAs.
func (a *API) appendMessage(ctx context.Context, s *endpoint.Session, roomID, typ string, content cjson.Value) (string, error) {
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
	if delay, ok, err := delayOf(r); err != nil || ok {
		var id string
		if err == nil {
			id, err = a.schedule(ctx, s, roomID, typ, &stateKey, content, delay)
		}
		if err != nil {
			endpoint.Fail(w, err)
			return
		}
		endpoint.Write(w, delayIDResponse{DelayID: id})
		return
	}
	if err := a.checkRate(s); err != nil {
		endpoint.Fail(w, err)
		return
	}
	id, err := a.putStateEvent(ctx, s, roomID, typ, stateKey, content)
	if err != nil {
		endpoint.Fail(w, err)
		return
	}
	endpoint.Write(w, eventIDResponse{EventID: id})
}

// putStateEvent appends a state event for putState and SendAs.
func (a *API) putStateEvent(ctx context.Context, s *endpoint.Session, roomID, typ, stateKey string, content cjson.Value) (string, error) {
	if typ == "m.room.canonical_alias" {
		if err := a.checkCanonicalAlias(ctx, roomID, content); err != nil {
			return "", err
		}
	}
	st, err := a.deps.Rooms.Append(ctx, rooms.RoomID(roomID), rooms.LocalEvent{
		Type: typ, StateKey: &stateKey, Sender: rooms.UserID(s.UserID), Content: content,
	})
	if err != nil {
		return "", a.sendErr(ctx, roomID, s.UserID, err)
	}
	if typ == "m.room.member" {
		if m, _ := content.GetStr("membership"); m == "join" || m == "invite" || m == "knock" {
			if err := a.unforget(ctx, stateKey, roomID); err != nil {
				a.log.Warn("unforget failed", "room", roomID, "err", err)
			}
		}
	}
	return string(st.Event.ID()), nil
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
