package clientevent

import (
	"strconv"
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
	obj := clientObject(src, ev, o.OmitRoomID)
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

// clientObject is the client form of ev without unsigned, built from src
// (ev itself, or its redacted form).
func clientObject(src, ev *rooms.Event, omitRoomID bool) cjson.Value {
	obj := src.Object().Only(clientKeys...)
	// Event IDs of room versions 3 and later are not part of the PDU; the
	// client form carries them.
	obj = obj.With("event_id", cjson.Str(string(ev.ID())))
	if omitRoomID {
		obj = obj.Without("room_id")
	}
	if r := ev.Redacts(); r != "" && !obj.Has("redacts") {
		// From room version 11 redacts lives in content; clients written
		// for older versions read it at the top level, so serve both.
		obj = obj.With("redacts", cjson.Str(string(r)))
	}
	return obj
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

// Prepared is an event's client form without unsigned, rendered once and
// shared by every recipient: only unsigned (age, transaction_id) differs
// between them, and it is appended per delivery by Render.
type Prepared struct {
	// head is the canonical JSON of the client form without "unsigned"
	// and without its closing brace. "unsigned" sorts after every other
	// top-level key, so appending it keeps the object canonical.
	head []byte
	ts   int64
	// prevContent is the canonical JSON of unsigned.prev_content, or nil.
	prevContent []byte
}

// WithPrevContent sets the content of the state event ev replaced
// (unsigned.prev_content); a null content is ignored.
func (p *Prepared) WithPrevContent(c cjson.Value) *Prepared {
	if !c.IsNull() {
		p.prevContent = cjson.Marshal(c)
	}
	return p
}

// Prepare renders ev for Render, with room_id omitted or kept.
func Prepare(ev *rooms.Event, omitRoomID bool) *Prepared {
	b := cjson.Marshal(clientObject(ev, ev, omitRoomID))
	return &Prepared{head: b[:len(b)-1], ts: ev.OriginServerTS()}
}

// Render returns the prepared event with unsigned.age at now and, when
// not empty, unsigned.transaction_id. It equals Format with the same
// options (and the same prev_content) and no redaction.
func (p *Prepared) Render(now time.Time, txnID string) []byte {
	age := max(now.UnixMilli()-p.ts, 0)
	out := make([]byte, 0, len(p.head)+48+len(txnID)+len(p.prevContent))
	out = append(out, p.head...)
	out = append(out, `,"unsigned":{"age":`...)
	out = strconv.AppendInt(out, age, 10)
	if p.prevContent != nil {
		out = append(out, `,"prev_content":`...)
		out = append(out, p.prevContent...)
	}
	if txnID != "" {
		out = append(out, `,"transaction_id":`...)
		out = cjson.AppendString(out, txnID)
	}
	return append(out, "}}"...)
}
