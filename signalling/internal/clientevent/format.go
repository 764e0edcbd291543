package clientevent

import (
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms"
)

// Options adjusts one event's client form.
type Options struct {
	// Now is the delivery time, for unsigned.age.
	Now time.Time
	// TxnID, set only when the event goes to the device that sent it,
	// becomes unsigned.transaction_id so the client can match its local
	// echo (Client-Server API, "Transaction identifiers").
	TxnID string
	// PrevContent, if not null, is the content of the state event this
	// one replaced (unsigned.prev_content).
	PrevContent cjson.Value
	// RedactedBecause, if not nil, is the redaction event that redacts
	// this one, already in client form: the event is served redacted
	// with unsigned.redacted_because.
	RedactedBecause []byte
	// OmitRoomID drops room_id, as /sync's timeline and state do
	// (ClientEventWithoutRoomID).
	OmitRoomID bool
}

// clientKeys are the top-level PDU fields that a ClientEvent keeps.
var clientKeys = []string{"content", "event_id", "origin_server_ts", "room_id", "sender", "state_key", "type", "redacts"}

// Format returns ev in client form, as canonical JSON bytes.
func Format(ev *rooms.Event, o Options) []byte {
	src := ev
	if o.RedactedBecause != nil {
		src = ev.Redacted()
	}
	obj := src.Object().Only(clientKeys...)
	// Event IDs of room versions 3 and later are not part of the PDU; the
	// client form carries them.
	obj = obj.With("event_id", cjson.Str(string(ev.ID())))
	if o.OmitRoomID {
		obj = obj.Without("room_id")
	}
	if r := ev.Redacts(); r != "" && !obj.Has("redacts") {
		// From room version 11 redacts lives in content; clients written
		// for older versions read it at the top level, so serve both.
		obj = obj.With("redacts", cjson.Str(string(r)))
	}
	var unsigned []cjson.Member
	age := o.Now.UnixMilli() - ev.OriginServerTS()
	if age < 0 {
		age = 0
	}
	unsigned = append(unsigned, cjson.M("age", cjson.Integer(age)))
	if !o.PrevContent.IsNull() {
		unsigned = append(unsigned, cjson.M("prev_content", o.PrevContent))
	}
	if o.TxnID != "" {
		unsigned = append(unsigned, cjson.M("transaction_id", cjson.Str(o.TxnID)))
	}
	if o.RedactedBecause != nil {
		if rb, err := cjson.Parse(o.RedactedBecause); err == nil {
			unsigned = append(unsigned, cjson.M("redacted_because", rb))
		}
	}
	obj = obj.With("unsigned", cjson.Obj(unsigned...))
	return cjson.Marshal(obj)
}

// Stripped returns ev as a stripped state event: type, state_key, sender
// and content only (Client-Server API, "Stripped state"), used for the
// room summary shown with an invite.
func Stripped(ev *rooms.Event) []byte {
	return cjson.Marshal(ev.Object().Only("content", "sender", "state_key", "type"))
}

// StrippedStateTypes are the state events an invite carries so the
// invitee can show the room before joining (the spec's recommended set).
var StrippedStateTypes = []string{
	"m.room.create", "m.room.name", "m.room.avatar", "m.room.topic",
	"m.room.join_rules", "m.room.canonical_alias", "m.room.encryption",
}
