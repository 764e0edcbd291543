package roomapi

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
)

// Actions are the room actions of the realtime connection's room channel:
// the same operations as the HTTP endpoints, with the same checks, errors
// and transaction scope.
type Actions struct{ a *API }

// Actions returns the room channel's view of the API.
func (a *API) Actions() Actions { return Actions{a} }

// CanSee reports whether userID may follow roomID live: only joined
// members see a room's timeline as it happens.
func (x Actions) CanSee(ctx context.Context, userID, roomID string) (bool, error) {
	m, err := x.a.deps.Members.Membership(ctx, roomID, userID)
	return m == "join", err
}

// Send is PUT /rooms/{roomId}/send/{eventType}/{txnId}.
func (x Actions) Send(ctx context.Context, s *endpoint.Session, roomID, eventType string, content json.RawMessage, txnID string) (string, error) {
	if err := validRoomID(roomID); err != nil {
		return "", err
	}
	if eventType == "" || txnID == "" {
		return "", mxerr.MissingParam("type and txn_id are required")
	}
	if len(content) > maxEventBody {
		return "", mxerr.TooLarge("Event content is too large")
	}
	c, err := cjson.Parse(content)
	if err != nil {
		return "", mxerr.BadJSON(fmt.Sprintf("content: %v", err))
	}
	if c.Kind() != cjson.Object {
		return "", mxerr.BadJSON("content must be an object")
	}
	return x.a.sendEvent(ctx, s, roomID, eventType, txnID, c)
}

// Typing is PUT /rooms/{roomId}/typing/{userId} for the caller.
func (x Actions) Typing(ctx context.Context, s *endpoint.Session, roomID string, typing bool, timeoutMS int64) error {
	var t *int64
	if timeoutMS > 0 {
		t = &timeoutMS
	}
	return x.a.setTyping(ctx, s, roomID, typing, t)
}

// Receipt is POST /rooms/{roomId}/receipt/{receiptType}/{eventId}
// (unthreaded).
func (x Actions) Receipt(ctx context.Context, s *endpoint.Session, roomID, receiptType, eventID string) error {
	if receiptType == "" {
		receiptType = receiptRead
	}
	if receiptType != receiptRead && receiptType != receiptReadPrivate && receiptType != markerFullyRead {
		return mxerr.InvalidParam(fmt.Sprintf("Receipt type must be %s, %s or %s", receiptRead, receiptReadPrivate, markerFullyRead))
	}
	return x.a.receipt(ctx, s, roomID, receiptType, "", eventID)
}
