package pdu

import (
	"fmt"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// MaxEventSize is the limit on an event in federation format, encoded as
// canonical JSON with its signatures (client-server API, "Size limits").
const MaxEventSize = 65536

// Limits on the number of graph edges an event may carry. The spec sets
// none; these are Synapse's long-standing receive limits, which keep one
// event from dragging unbounded fetches behind it. Events we create never
// reach them.
const (
	MaxPrevEvents = 20
	MaxAuthEvents = 10
)

// FormatError says why bytes are not a valid event of a room version. An
// event failing this way is dropped (server-server API, "Checks performed
// on receipt of a PDU", step 1).
type FormatError struct {
	Field  string
	Reason string
}

func (e *FormatError) Error() string {
	if e.Field == "" {
		return "invalid event: " + e.Reason
	}
	return fmt.Sprintf("invalid event: %s: %s", e.Field, e.Reason)
}

func formatErr(field, format string, args ...any) error {
	return &FormatError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Event is a parsed, format-checked PDU. It is immutable; the fields below
// are derived once from obj, which keeps every received byte's meaning.
type Event struct {
	v        *Version
	obj      cjson.Value
	id       EventID
	roomID   RoomID
	typ      string
	stateKey *string
	sender   UserID
	content  cjson.Value
	prevs    []EventID
	auths    []EventID
	depth    int64
	ts       int64
	redacts  EventID
	json     []byte // canonical encoding of obj
}

// ParseEvent parses bytes in the federation event format of room version v,
// checks the format and size limits, and computes the event ID.
func ParseEvent(data []byte, v *Version) (*Event, error) {
	if len(data) > 4*MaxEventSize {
		// Cheap early refusal before parsing; the exact limit is checked on
		// the canonical form below.
		return nil, formatErr("", "larger than %d bytes", MaxEventSize)
	}
	obj, err := cjson.Parse(data)
	if err != nil {
		return nil, &FormatError{Reason: err.Error()}
	}
	return NewEvent(obj, v)
}

// NewEvent is ParseEvent on an already parsed object.
func NewEvent(obj cjson.Value, v *Version) (*Event, error) {
	return newEvent(obj, v, "")
}

// newEvent checks the format; a non-empty id is trusted instead of
// computing the reference hash.
func newEvent(obj cjson.Value, v *Version, id EventID) (*Event, error) {
	if obj.Kind() != cjson.Object {
		return nil, formatErr("", "not a JSON object")
	}
	// An event_id key is not part of the v4+ format: the ID is derived.
	// Some software still sends it; it is not covered by any hash (it is
	// removed by redaction) so dropping it loses nothing.
	obj = obj.Without("event_id")
	e := &Event{v: v, obj: obj}
	var err error
	e.json = cjson.Marshal(obj)
	if len(e.json) > MaxEventSize {
		return nil, formatErr("", "larger than %d bytes", MaxEventSize)
	}
	var ok bool
	if e.typ, ok = obj.GetStr("type"); !ok {
		return nil, formatErr("type", "missing or not a string")
	}
	if len(e.typ) > 255 {
		return nil, formatErr("type", "longer than 255 bytes")
	}
	if sk, present := obj.Get("state_key"); present {
		s, isStr := sk.Str()
		if !isStr {
			return nil, formatErr("state_key", "not a string")
		}
		if len(s) > 255 {
			return nil, formatErr("state_key", "longer than 255 bytes")
		}
		e.stateKey = &s
	}
	sender, ok := obj.GetStr("sender")
	if !ok {
		return nil, formatErr("sender", "missing or not a string")
	}
	if e.sender, err = ParseUserID(sender); err != nil {
		return nil, formatErr("sender", "%v", err)
	}
	if e.content, ok = obj.Get("content"); !ok || e.content.Kind() != cjson.Object {
		return nil, formatErr("content", "missing or not an object")
	}
	if e.depth, ok = obj.GetInt("depth"); !ok || e.depth < 0 {
		return nil, formatErr("depth", "missing or not a non-negative integer")
	}
	if e.ts, ok = obj.GetInt("origin_server_ts"); !ok {
		return nil, formatErr("origin_server_ts", "missing or not an integer")
	}
	if e.prevs, err = eventIDList(obj, "prev_events", MaxPrevEvents); err != nil {
		return nil, err
	}
	if e.auths, err = eventIDList(obj, "auth_events", MaxAuthEvents); err != nil {
		return nil, err
	}
	if h, ok := obj.Path("hashes", "sha256"); !ok || h.Kind() != cjson.String {
		return nil, formatErr("hashes.sha256", "missing or not a string")
	}
	if s, ok := obj.Get("signatures"); !ok || s.Kind() != cjson.Object {
		return nil, formatErr("signatures", "missing or not an object")
	}
	if u, ok := obj.Get("unsigned"); ok && u.Kind() != cjson.Object {
		return nil, formatErr("unsigned", "not an object")
	}
	if err := e.parseRedacts(); err != nil {
		return nil, err
	}
	e.id = id
	if e.id == "" {
		e.id = EventID("$" + referenceHashB64(v, obj))
	}
	if err := e.parseRoomID(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Event) parseRoomID() error {
	rid, present := e.obj.Get("room_id")
	v12Create := e.v.RoomIDIsCreateHash && e.typ == TypeCreate && e.stateKey != nil && *e.stateKey == ""
	if v12Create && !present {
		// Room version 12: the create event has no room_id; the room ID is
		// its event ID with the '!' sigil (rooms v12, auth rule 1.2). A
		// create event that has one is well-formed JSON but is rejected by
		// the auth rules, so it is kept for them to judge.
		e.roomID = RoomID("!" + string(e.id[1:]))
		return nil
	}
	s, ok := rid.Str()
	if !present || !ok {
		return formatErr("room_id", "missing or not a string")
	}
	r, err := ParseRoomID(s)
	if err != nil {
		return formatErr("room_id", "%v", err)
	}
	// The room ID's form follows the room version (appendices, "Room
	// IDs"): "!opaque:domain" before v12, "!" + the create event's hash
	// from v12 on. The v12 create event carrying any room_id is left to
	// auth rule 1.2, as above.
	if hashForm := r.Domain() == ""; hashForm != e.v.RoomIDIsCreateHash && !v12Create {
		return formatErr("room_id", "%q is not a room ID of room version %s", s, e.v.ID)
	}
	e.roomID = r
	return nil
}

func (e *Event) parseRedacts() error {
	if e.typ != TypeRedaction {
		return nil
	}
	var (
		r  cjson.Value
		ok bool
	)
	if e.v.RedactsInContent {
		r, ok = e.content.Get("redacts")
	} else {
		r, ok = e.obj.Get("redacts")
	}
	if !ok {
		return nil // a redaction without a target redacts nothing
	}
	s, isStr := r.Str()
	if !isStr {
		return formatErr("redacts", "not a string")
	}
	id, err := ParseEventID(s)
	if err != nil {
		return formatErr("redacts", "%v", err)
	}
	e.redacts = id
	return nil
}

func eventIDList(obj cjson.Value, field string, max int) ([]EventID, error) {
	arr, ok := obj.Get(field)
	if !ok || arr.Kind() != cjson.Array {
		return nil, formatErr(field, "missing or not an array")
	}
	if arr.Len() > max {
		return nil, formatErr(field, "more than %d entries", max)
	}
	out := make([]EventID, 0, arr.Len())
	for _, el := range arr.Array() {
		s, ok := el.Str()
		if !ok {
			return nil, formatErr(field, "entry not a string")
		}
		id, err := ParseEventID(s)
		if err != nil {
			return nil, formatErr(field, "%v", err)
		}
		out = append(out, id)
	}
	return out, nil
}

// ID is the event ID, derived from the reference hash.
func (e *Event) ID() EventID { return e.id }

// RoomID of the room the event belongs to.
func (e *Event) RoomID() RoomID { return e.roomID }

// Version is the room version the event was parsed under.
func (e *Event) Version() *Version { return e.v }

// Type is the event type.
func (e *Event) Type() string { return e.typ }

// StateKey returns the state key; nil for a non-state event.
func (e *Event) StateKey() *string { return e.stateKey }

// IsState reports whether the event has a state key.
func (e *Event) IsState() bool { return e.stateKey != nil }

// StateKeyIs reports whether the event is a state event with state key s.
func (e *Event) StateKeyIs(s string) bool { return e.stateKey != nil && *e.stateKey == s }

// Sender is the user who sent the event.
func (e *Event) Sender() UserID { return e.sender }

// Content is the content object.
func (e *Event) Content() cjson.Value { return e.content }

// PrevEvents are the events this one follows in the room graph.
func (e *Event) PrevEvents() []EventID { return e.prevs }

// AuthEvents are the events that authorise this one.
func (e *Event) AuthEvents() []EventID { return e.auths }

// Depth is the event's depth in the graph.
func (e *Event) Depth() int64 { return e.depth }

// OriginServerTS is the sending server's timestamp, in milliseconds.
func (e *Event) OriginServerTS() int64 { return e.ts }

// Redacts is the target of an m.room.redaction event, or "".
func (e *Event) Redacts() EventID { return e.redacts }

// Object is the whole event as parsed.
func (e *Event) Object() cjson.Value { return e.obj }

// JSON is the canonical encoding of the whole event, as stored and sent.
// Callers must not modify it.
func (e *Event) JSON() []byte { return e.json }

// Membership returns content.membership of an m.room.member event.
func (e *Event) Membership() string {
	s, _ := e.content.GetStr("membership")
	return s
}

// Origin is the server that created the event: the sender's domain.
func (e *Event) Origin() ServerName { return e.sender.Domain() }

// StateTuple is the (type, state_key) pair of a state event.
type StateTuple struct{ Type, StateKey string }

// Tuple returns the state tuple; only meaningful for state events.
func (e *Event) Tuple() StateTuple {
	if e.stateKey == nil {
		return StateTuple{Type: e.typ}
	}
	return StateTuple{Type: e.typ, StateKey: *e.stateKey}
}

// Well-known event types used by the auth rules and state resolution.
const (
	TypeCreate            = "m.room.create"
	TypeMember            = "m.room.member"
	TypePowerLevels       = "m.room.power_levels"
	TypeJoinRules         = "m.room.join_rules"
	TypeThirdPartyInvite  = "m.room.third_party_invite"
	TypeRedaction         = "m.room.redaction"
	TypeHistoryVisibility = "m.room.history_visibility"
)
