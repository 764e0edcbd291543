package cable

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/plexus-chat/plexus/internal/mxerr"
)

// Subprotocol is the WebSocket subprotocol spoken: ActionCable's JSON
// protocol, the first entry of the JavaScript consumer's protocols list
// (["actioncable-v1-json", "actioncable-unsupported"]). A consumer that
// is not offered it (it gets no subprotocol back) closes the socket itself.
const Subprotocol = "actioncable-v1-json"

// Disconnect reasons (ActionCable's INTERNAL.disconnect_reasons plus our
// own slow_consumer).
const (
	ReasonServerRestart  = "server_restart"
	ReasonSlowConsumer   = "slow_consumer"
	ReasonUnauthorized   = "unauthorized"
	ReasonInvalidRequest = "invalid_request"
)

// Channel names, the "channel" key of a subscription identifier.
const (
	SyncChannel = "SyncChannel"
	RoomChannel = "RoomChannel"
)

// Commands a consumer sends.
const (
	cmdSubscribe   = "subscribe"
	cmdUnsubscribe = "unsubscribe"
	cmdMessage     = "message"
)

// command is one frame from the consumer: {"command": ..., "identifier":
// "<JSON string>", "data": "<JSON string>"}. Identifier and data are JSON
// documents encoded as strings, as the JavaScript consumer sends them
// (Subscription.identifier is JSON.stringify(params); perform sends
// data: JSON.stringify({action, ...})).
type command struct {
	Command    string `json:"command"`
	Identifier string `json:"identifier"`
	Data       string `json:"data"`
}

// params are the subscription parameters carried by the identifier.
type params struct {
	Channel string `json:"channel"`
	RoomID  string `json:"room_id"`
	Since   string `json:"since"`
	Filter  string `json:"filter"`
}

// parseParams decodes an identifier. A filter may be given as a JSON
// object as well as a string (a filter ID or the object's text), since a
// JavaScript caller naturally passes the object.
func parseParams(identifier string) (params, error) {
	var raw struct {
		Channel string          `json:"channel"`
		RoomID  string          `json:"room_id"`
		Since   string          `json:"since"`
		Filter  json.RawMessage `json:"filter"`
	}
	if err := json.Unmarshal([]byte(identifier), &raw); err != nil {
		return params{}, mxerr.BadJSON("identifier is not a JSON object of strings")
	}
	p := params{Channel: raw.Channel, RoomID: raw.RoomID, Since: raw.Since}
	switch {
	case len(raw.Filter) == 0 || string(raw.Filter) == "null":
	case raw.Filter[0] == '"':
		if err := json.Unmarshal(raw.Filter, &p.Filter); err != nil {
			return params{}, mxerr.BadJSON("filter is not a string")
		}
	case raw.Filter[0] == '{':
		p.Filter = string(raw.Filter)
	default:
		return params{}, mxerr.BadJSON("filter must be a filter ID or a filter object")
	}
	return p, nil
}

// action is the "action" key every perform() data object carries.
type action struct {
	Action string `json:"action"`
}

// Pre-encoded server frames that carry no data.
var (
	frameWelcome = []byte(`{"type":"welcome"}`)
)

// pingFrame is {"type":"ping","message":<unix seconds>}, the heartbeat the
// consumer's ConnectionMonitor expects (it reopens the socket when no
// message arrived for its stale threshold of 6 s, two missed beats).
func pingFrame(unix int64) []byte {
	b := make([]byte, 0, 48)
	b = append(b, `{"type":"ping","message":`...)
	b = strconv.AppendInt(b, unix, 10)
	return append(b, '}')
}

// disconnectFrame is {"type":"disconnect","reason":...,"reconnect":...}:
// the consumer closes the socket and, when reconnect is true, its monitor
// opens a new one.
func disconnectFrame(reason string, reconnect bool) []byte {
	b, _ := json.Marshal(struct {
		Type      string `json:"type"`
		Reason    string `json:"reason"`
		Reconnect bool   `json:"reconnect"`
	}{"disconnect", reason, reconnect})
	return b
}

// quoteIdentifier returns the identifier as a JSON string, ready to be
// spliced into frames.
func quoteIdentifier(identifier string) []byte {
	b, _ := json.Marshal(identifier)
	return b
}

// typedFrame is {"identifier": ..., "type": typ}: confirm_subscription and
// reject_subscription. extra, if not nil, goes in as "message" (a
// rejection's reason; the JavaScript consumer ignores it).
func typedFrame(quotedID []byte, typ string, extra json.RawMessage) []byte {
	b := make([]byte, 0, len(quotedID)+len(typ)+len(extra)+48)
	b = append(b, `{"identifier":`...)
	b = append(b, quotedID...)
	b = append(b, `,"type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	if extra != nil {
		b = append(b, `,"message":`...)
		b = append(b, extra...)
	}
	return append(b, '}')
}

// messageFrame is {"identifier": ..., "message": payload}: a broadcast to
// one subscription, which the consumer hands to its received() callback.
func messageFrame(quotedID []byte, payload []byte) []byte {
	b := appendMessageHead(make([]byte, 0, len(quotedID)+len(payload)+28), quotedID)
	b = append(b, payload...)
	return append(b, '}')
}

// appendMessageHead writes a message frame up to its payload.
func appendMessageHead(b, quotedID []byte) []byte {
	b = append(b, `{"identifier":`...)
	b = append(b, quotedID...)
	return append(b, `,"message":`...)
}

// errorBody is the errcode/error pair of an error message; any error that
// is not a *mxerr.MatrixError is reported as M_UNKNOWN without its text.
func errorBody(err error) (code, msg string) {
	var me *mxerr.MatrixError
	if errors.As(err, &me) {
		return me.Code, me.Msg
	}
	u := mxerr.Unknown()
	return u.Code, u.Msg
}

// rejectReason encodes err as a rejection's message.
func rejectReason(err error) json.RawMessage {
	code, msg := errorBody(err)
	b, _ := json.Marshal(struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}{code, msg})
	return b
}

func isMatrixError(err error) bool {
	var me *mxerr.MatrixError
	return errors.As(err, &me)
}
