package pdu

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
)

// validEventObject is a signed m.room.message of room version v, as an
// object to mutate.
func validEventObject(t testing.TB, v *Version) cjson.Value {
	t.Helper()
	return mustBuild(t, v, messageProto(v), specSigner(t)).Object()
}

func withContent(obj cjson.Value, key string, val cjson.Value) cjson.Value {
	c, _ := obj.Get("content")
	return obj.With("content", c.With(key, val))
}

func strs(ss ...string) cjson.Value {
	vs := make([]cjson.Value, len(ss))
	for i, s := range ss {
		vs[i] = cjson.Str(s)
	}
	return cjson.Arr(vs...)
}

func idStrs(ids []EventID) cjson.Value {
	ss := make([]string, len(ids))
	for i, id := range ids {
		ss[i] = string(id)
	}
	return strs(ss...)
}

// TestParseEventFormat checks the event format of room versions 10 to 12
// (server-server API, "Checks performed on receipt of a PDU", step 1; the
// PDU schemas; client-server API, "Size limits"). wantField "" with ok
// false means a FormatError without a field (not JSON, not an object, too
// large).
func TestParseEventFormat(t *testing.T) {
	long := strings.Repeat("x", 256)
	tests := []struct {
		name      string
		mutate    func(cjson.Value) cjson.Value
		ok        bool
		wantField string
	}{
		{"valid", func(o cjson.Value) cjson.Value { return o }, true, ""},
		{"event_id key dropped", func(o cjson.Value) cjson.Value { return o.With("event_id", cjson.Str("$whatever:domain")) }, true, ""},
		{"unknown top-level key", func(o cjson.Value) cjson.Value { return o.With("origin", cjson.Str("domain")) }, true, ""},
		{"not an object", func(cjson.Value) cjson.Value { return cjson.Arr() }, false, ""},

		{"type missing", func(o cjson.Value) cjson.Value { return o.Without("type") }, false, "type"},
		{"type not a string", func(o cjson.Value) cjson.Value { return o.With("type", cjson.Integer(1)) }, false, "type"},
		{"type 255 bytes", func(o cjson.Value) cjson.Value { return o.With("type", cjson.Str(long[:255])) }, true, ""},
		{"type 256 bytes", func(o cjson.Value) cjson.Value { return o.With("type", cjson.Str(long)) }, false, "type"},

		{"state_key empty", func(o cjson.Value) cjson.Value { return o.With("state_key", cjson.Str("")) }, true, ""},
		{"state_key not a string", func(o cjson.Value) cjson.Value { return o.With("state_key", cjson.NullValue()) }, false, "state_key"},
		{"state_key 255 bytes", func(o cjson.Value) cjson.Value { return o.With("state_key", cjson.Str(long[:255])) }, true, ""},
		{"state_key 256 bytes", func(o cjson.Value) cjson.Value { return o.With("state_key", cjson.Str(long)) }, false, "state_key"},

		{"sender missing", func(o cjson.Value) cjson.Value { return o.Without("sender") }, false, "sender"},
		{"sender not a string", func(o cjson.Value) cjson.Value { return o.With("sender", cjson.Arr()) }, false, "sender"},
		{"sender without sigil", func(o cjson.Value) cjson.Value { return o.With("sender", cjson.Str("alice:domain")) }, false, "sender"},
		{"sender without server", func(o cjson.Value) cjson.Value { return o.With("sender", cjson.Str("@alice")) }, false, "sender"},
		{"sender with bad server", func(o cjson.Value) cjson.Value { return o.With("sender", cjson.Str("@alice:bad_host")) }, false, "sender"},
		{"sender with NUL", func(o cjson.Value) cjson.Value { return o.With("sender", cjson.Str("@a\x00b:domain")) }, false, "sender"},
		{"sender 256 bytes", func(o cjson.Value) cjson.Value { return o.With("sender", cjson.Str("@"+long[:248]+":domain")) }, false, "sender"},
		{"sender 255 bytes", func(o cjson.Value) cjson.Value { return o.With("sender", cjson.Str("@"+long[:247]+":domain")) }, true, ""},
		{"sender historical", func(o cjson.Value) cjson.Value { return o.With("sender", cjson.Str("@Alice Smith!:domain")) }, true, ""},

		{"content missing", func(o cjson.Value) cjson.Value { return o.Without("content") }, false, "content"},
		{"content an array", func(o cjson.Value) cjson.Value { return o.With("content", cjson.Arr()) }, false, "content"},
		{"content a string", func(o cjson.Value) cjson.Value { return o.With("content", cjson.Str("{}")) }, false, "content"},

		{"depth missing", func(o cjson.Value) cjson.Value { return o.Without("depth") }, false, "depth"},
		{"depth negative", func(o cjson.Value) cjson.Value { return o.With("depth", cjson.Integer(-1)) }, false, "depth"},
		{"depth a string", func(o cjson.Value) cjson.Value { return o.With("depth", cjson.Str("7")) }, false, "depth"},
		{"depth zero", func(o cjson.Value) cjson.Value { return o.With("depth", cjson.Integer(0)) }, true, ""},
		{"depth 2^53-1", func(o cjson.Value) cjson.Value { return o.With("depth", cjson.Integer(cjson.MaxSafeInt)) }, true, ""},

		{"origin_server_ts missing", func(o cjson.Value) cjson.Value { return o.Without("origin_server_ts") }, false, "origin_server_ts"},
		{"origin_server_ts a string", func(o cjson.Value) cjson.Value { return o.With("origin_server_ts", cjson.Str("1")) }, false, "origin_server_ts"},

		{"prev_events missing", func(o cjson.Value) cjson.Value { return o.Without("prev_events") }, false, "prev_events"},
		{"prev_events an object", func(o cjson.Value) cjson.Value { return o.With("prev_events", cjson.Obj()) }, false, "prev_events"},
		{"prev_events empty", func(o cjson.Value) cjson.Value { return o.With("prev_events", cjson.Arr()) }, true, ""},
		{"prev_events entry not a string", func(o cjson.Value) cjson.Value { return o.With("prev_events", cjson.Arr(cjson.Integer(1))) }, false, "prev_events"},
		{"prev_events v1 event ID", func(o cjson.Value) cjson.Value { return o.With("prev_events", strs("$abc:domain")) }, false, "prev_events"},
		{"prev_events short ID", func(o cjson.Value) cjson.Value { return o.With("prev_events", strs("$abc")) }, false, "prev_events"},
		{"prev_events standard base64 ID", func(o cjson.Value) cjson.Value {
			return o.With("prev_events", strs("$"+strings.Repeat("+", 43)))
		}, false, "prev_events"},
		{"prev_events 20 entries", func(o cjson.Value) cjson.Value { return o.With("prev_events", idStrs(fakeEventIDs(20))) }, true, ""},
		{"prev_events 21 entries", func(o cjson.Value) cjson.Value { return o.With("prev_events", idStrs(fakeEventIDs(21))) }, false, "prev_events"},

		{"auth_events missing", func(o cjson.Value) cjson.Value { return o.Without("auth_events") }, false, "auth_events"},
		{"auth_events a string", func(o cjson.Value) cjson.Value { return o.With("auth_events", cjson.Str("$x")) }, false, "auth_events"},
		{"auth_events bad ID", func(o cjson.Value) cjson.Value { return o.With("auth_events", strs("!notanevent:domain")) }, false, "auth_events"},
		{"auth_events 10 entries", func(o cjson.Value) cjson.Value { return o.With("auth_events", idStrs(fakeEventIDs(10))) }, true, ""},
		{"auth_events 11 entries", func(o cjson.Value) cjson.Value { return o.With("auth_events", idStrs(fakeEventIDs(11))) }, false, "auth_events"},

		{"hashes missing", func(o cjson.Value) cjson.Value { return o.Without("hashes") }, false, "hashes.sha256"},
		{"hashes empty", func(o cjson.Value) cjson.Value { return o.With("hashes", cjson.Obj()) }, false, "hashes.sha256"},
		{"hashes.sha256 not a string", func(o cjson.Value) cjson.Value {
			return o.With("hashes", cjson.Obj(cjson.M("sha256", cjson.Integer(0))))
		}, false, "hashes.sha256"},

		{"signatures missing", func(o cjson.Value) cjson.Value { return o.Without("signatures") }, false, "signatures"},
		{"signatures an array", func(o cjson.Value) cjson.Value { return o.With("signatures", cjson.Arr()) }, false, "signatures"},
		{"signatures empty", func(o cjson.Value) cjson.Value { return o.With("signatures", cjson.Obj()) }, true, ""},

		{"unsigned an object", func(o cjson.Value) cjson.Value { return o.With("unsigned", mustJSON(t, `{"age":1}`)) }, true, ""},
		{"unsigned not an object", func(o cjson.Value) cjson.Value { return o.With("unsigned", cjson.Integer(1)) }, false, "unsigned"},

		{"room_id missing", func(o cjson.Value) cjson.Value { return o.Without("room_id") }, false, "room_id"},
		{"room_id not a string", func(o cjson.Value) cjson.Value { return o.With("room_id", cjson.Integer(1)) }, false, "room_id"},
		{"room_id wrong sigil", func(o cjson.Value) cjson.Value { return o.With("room_id", cjson.Str("#room:domain")) }, false, "room_id"},
		{"room_id bad", func(o cjson.Value) cjson.Value { return o.With("room_id", cjson.Str("!")) }, false, "room_id"},
	}
	for _, v := range versions() {
		base := validEventObject(t, v)
		for _, tt := range tests {
			t.Run("v"+v.ID+"/"+tt.name, func(t *testing.T) {
				e, err := ParseEvent(cjson.Marshal(tt.mutate(base)), v)
				checkFormat(t, e, err, tt.ok, tt.wantField)
			})
		}
	}
}

func checkFormat(t *testing.T, e *Event, err error, ok bool, wantField string) {
	t.Helper()
	if ok {
		if err != nil {
			t.Fatalf("ParseEvent: %v, want success", err)
		}
		if e == nil {
			t.Fatalf("ParseEvent returned nil event and nil error")
		}
		return
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("ParseEvent error = %v (%T), want *FormatError for %q", err, err, wantField)
	}
	if fe.Field != wantField {
		t.Errorf("FormatError field = %q (%v), want %q", fe.Field, err, wantField)
	}
}

// TestParseEventNotJSON checks bytes that are not canonical-JSON-valid.
func TestParseEventNotJSON(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ``},
		{"truncated", `{"type":`},
		{"float", `{"type":"m.room.message","depth":1.5}`},
		{"duplicate key", `{"type":"a","type":"b"}`},
		{"invalid UTF-8", "{\"type\":\"\xff\"}"},
		{"trailing data", `{} {}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEvent([]byte(tt.in), MustVersion("12"))
			checkFormat(t, e, err, false, "")
		})
	}
}

// TestParseEventRoomID checks room IDs against the room version: the
// server part before v12, the create event's hash from v12 on
// (appendices, "Room IDs").
func TestParseEventRoomID(t *testing.T) {
	hashForm := string(testRoomID(MustVersion("12")))
	tests := []struct {
		version string
		roomID  string
		ok      bool
	}{
		{"10", "!room:domain", true},
		{"10", "!room:[::1]:8448", true},
		{"10", "!:domain", true},
		{"10", "!ro\u0001om:domain", true},
		{"10", hashForm, false},
		{"10", "!ro\x00om:domain", false},
		{"11", "!room:domain", true},
		{"11", hashForm, false},
		{"12", hashForm, true},
		{"12", "!room:domain", false},
		{"12", "!short", false},
		{"12", hashForm + "A", false},
		{"12", "$" + hashForm[1:], false},
	}
	for _, tt := range tests {
		t.Run("v"+tt.version+"/"+tt.roomID, func(t *testing.T) {
			v := MustVersion(tt.version)
			obj := validEventObject(t, v).With("room_id", cjson.Str(tt.roomID))
			e, err := ParseEvent(cjson.Marshal(obj), v)
			checkFormat(t, e, err, tt.ok, "room_id")
			if tt.ok && string(e.RoomID()) != tt.roomID {
				t.Errorf("RoomID = %q, want %q", e.RoomID(), tt.roomID)
			}
		})
	}
}

// TestParseEventRedacts checks where each room version reads the target
// of m.room.redaction: top level before v11, content from v11 on
// (MSC2174).
func TestParseEventRedacts(t *testing.T) {
	target := fakeEventID(99)
	tests := []struct {
		name    string
		version string
		typ     string
		top     cjson.Value // top-level redacts; zero Value: absent
		content cjson.Value // content.redacts; zero Value: absent
		ok      bool
		want    EventID
	}{
		{"v10 top level", "10", TypeRedaction, cjson.Str(string(target)), cjson.Value{}, true, target},
		{"v10 content ignored", "10", TypeRedaction, cjson.Value{}, cjson.Str(string(target)), true, ""},
		{"v10 bad ID", "10", TypeRedaction, cjson.Str("$bad"), cjson.Value{}, false, ""},
		{"v10 not a string", "10", TypeRedaction, cjson.Integer(1), cjson.Value{}, false, ""},
		{"v10 absent", "10", TypeRedaction, cjson.Value{}, cjson.Value{}, true, ""},
		{"v11 content", "11", TypeRedaction, cjson.Value{}, cjson.Str(string(target)), true, target},
		{"v11 top level ignored", "11", TypeRedaction, cjson.Str("junk"), cjson.Value{}, true, ""},
		{"v11 bad ID", "11", TypeRedaction, cjson.Value{}, cjson.Str("$bad"), false, ""},
		{"v12 content", "12", TypeRedaction, cjson.Value{}, cjson.Str(string(target)), true, target},
		{"v12 content not a string", "12", TypeRedaction, cjson.Value{}, cjson.Arr(), false, ""},
		{"not a redaction", "12", "m.room.message", cjson.Str("junk"), cjson.Str("junk"), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := MustVersion(tt.version)
			obj := validEventObject(t, v).With("type", cjson.Str(tt.typ))
			if tt.top.Kind() != cjson.Null {
				obj = obj.With("redacts", tt.top)
			}
			if tt.content.Kind() != cjson.Null {
				obj = withContent(obj, "redacts", tt.content)
			}
			e, err := ParseEvent(cjson.Marshal(obj), v)
			checkFormat(t, e, err, tt.ok, "redacts")
			if tt.ok && e.Redacts() != tt.want {
				t.Errorf("Redacts = %q, want %q", e.Redacts(), tt.want)
			}
		})
	}
}

// TestParseEventSize checks the 65,536-byte limit on the canonical
// federation form including signatures (client-server API, "Size
// limits"), and the cheap refusal of raw input over four times that.
func TestParseEventSize(t *testing.T) {
	v := MustVersion("12")
	base := validEventObject(t, v)
	padTo := func(n int) cjson.Value {
		o := withContent(base, "pad", cjson.Str(""))
		return withContent(base, "pad", cjson.Str(strings.Repeat("a", n-len(cjson.Marshal(o)))))
	}
	indented := func(o cjson.Value, extra int) []byte {
		b := cjson.Marshal(o)
		return append(b[:1:1], append(bytes.Repeat([]byte{' '}, extra), b[1:]...)...)
	}
	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"exactly 65536", cjson.Marshal(padTo(MaxEventSize)), true},
		{"65537", cjson.Marshal(padTo(MaxEventSize + 1)), false},
		{"unsigned counts", cjson.Marshal(padTo(MaxEventSize).With("unsigned", mustJSON(t, `{"age":1}`))), false},
		{"whitespace does not count", indented(padTo(MaxEventSize), 3*MaxEventSize-1), true},
		{"raw input over 4x refused early", indented(base, 4*MaxEventSize), false},
		{"huge string", cjson.Marshal(withContent(base, "pad", cjson.Str(strings.Repeat("a", 3*MaxEventSize)))), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEvent(tt.data, v)
			checkFormat(t, e, err, tt.ok, "")
			if tt.ok && len(e.JSON()) != MaxEventSize {
				t.Errorf("len(JSON) = %d, want %d", len(e.JSON()), MaxEventSize)
			}
		})
	}
	// NewEvent applies the same limit to objects built in memory.
	if _, err := NewEvent(padTo(MaxEventSize+1), v); err == nil {
		t.Errorf("NewEvent of a 65537-byte event succeeded")
	}
}

// TestEventID checks that the event ID is "$" + the URL-safe unpadded
// base64 reference hash (rooms v4+ event IDs; server-server API,
// "Calculating the reference hash for an event"), and which changes move
// it.
func TestEventID(t *testing.T) {
	for _, v := range versions() {
		t.Run("v"+v.ID, func(t *testing.T) {
			e := mustBuild(t, v, messageProto(v), specSigner(t))
			// For m.room.message with only kept top-level keys, redaction
			// empties the content and nothing else.
			redacted := e.Object().Without("signatures", "unsigned").With("content", cjson.Obj())
			sum := sha256.Sum256(cjson.Marshal(redacted))
			want := EventID("$" + signing.URLBase64.EncodeToString(sum[:]))
			if e.ID() != want {
				t.Errorf("ID = %s, want %s", e.ID(), want)
			}
			if _, err := ParseEventID(string(e.ID())); err != nil {
				t.Errorf("ID does not parse: %v", err)
			}
		})
	}
}

func TestEventIDStability(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(cjson.Value) cjson.Value
		versions []string // where the ID stays the same; others change
	}{
		{"unsigned added", func(o cjson.Value) cjson.Value { return o.With("unsigned", mustJSON(t, `{"age":5}`)) }, []string{"10", "11", "12"}},
		{"other server's signature added", func(o cjson.Value) cjson.Value {
			return o.With("signatures", mustJSON(t, `{"other":{"ed25519:x":"c2ln"}}`))
		}, []string{"10", "11", "12"}},
		{"content changed without rehashing", func(o cjson.Value) cjson.Value { return withContent(o, "body", cjson.Str("other")) }, []string{"10", "11", "12"}},
		{"unknown top-level key", func(o cjson.Value) cjson.Value { return o.With("foo", cjson.Str("bar")) }, []string{"10", "11", "12"}},
		{"event_id key", func(o cjson.Value) cjson.Value { return o.With("event_id", cjson.Str("$x:domain")) }, []string{"10", "11", "12"}},
		{"origin key kept by v10 only", func(o cjson.Value) cjson.Value { return o.With("origin", cjson.Str("domain")) }, []string{"11", "12"}},
		{"membership key kept by v10 only", func(o cjson.Value) cjson.Value { return o.With("membership", cjson.Str("join")) }, []string{"11", "12"}},
		{"type changed", func(o cjson.Value) cjson.Value { return o.With("type", cjson.Str("m.room.other")) }, nil},
		{"depth changed", func(o cjson.Value) cjson.Value { return o.With("depth", cjson.Integer(8)) }, nil},
		{"origin_server_ts changed", func(o cjson.Value) cjson.Value { return o.With("origin_server_ts", cjson.Integer(1)) }, nil},
		{"hash changed", func(o cjson.Value) cjson.Value {
			return o.With("hashes", cjson.Obj(cjson.M("sha256", cjson.Str("AAAA"))))
		}, nil},
		{"state key added", func(o cjson.Value) cjson.Value { return o.With("state_key", cjson.Str("")) }, nil},
		{"prev_events changed", func(o cjson.Value) cjson.Value { return o.With("prev_events", idStrs(fakeEventIDs(2))) }, nil},
		{"sender changed", func(o cjson.Value) cjson.Value { return o.With("sender", cjson.Str("@bob:domain")) }, nil},
	}
	for _, v := range versions() {
		base := validEventObject(t, v)
		e0, err := NewEvent(base, v)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run("v"+v.ID+"/"+tt.name, func(t *testing.T) {
				e, err := ParseEvent(cjson.Marshal(tt.mutate(base)), v)
				if err != nil {
					t.Fatalf("ParseEvent: %v", err)
				}
				same := false
				for _, id := range tt.versions {
					same = same || id == v.ID
				}
				if (e.ID() == e0.ID()) != same {
					t.Errorf("ID %s vs original %s: same=%v, want same=%v", e.ID(), e0.ID(), e.ID() == e0.ID(), same)
				}
			})
		}
	}
}

// TestParseEventNonCanonicalInput checks that whitespace and key order of
// the received bytes change neither the event nor its ID.
func TestParseEventNonCanonicalInput(t *testing.T) {
	v := MustVersion("11")
	e := mustBuild(t, v, messageProto(v), specSigner(t))
	pretty := "{\n  \"type\" : \"m.room.message\",\n" + strings.TrimPrefix(string(e.JSON()), "{")
	pretty = strings.Replace(pretty, `,"type":"m.room.message"`, "", 1)
	got, err := ParseEvent([]byte(pretty), v)
	if err != nil {
		t.Fatalf("ParseEvent(%s): %v", pretty, err)
	}
	if got.ID() != e.ID() || !bytes.Equal(got.JSON(), e.JSON()) {
		t.Errorf("reformatted input gives ID %s JSON %s, want %s %s", got.ID(), got.JSON(), e.ID(), e.JSON())
	}
}

// TestCreateEventRoomID checks room version 12's create event: it has no
// room_id and the room ID is "!" + its reference hash (rooms v12,
// MSC4291); one that has a room_id is still parsed, keeping that room_id,
// so that auth rule 1.2 can reject it.
func TestCreateEventRoomID(t *testing.T) {
	create := func(v *Version, roomID RoomID, stateKey *string) Proto {
		return Proto{
			Type:           TypeCreate,
			StateKey:       stateKey,
			Sender:         "@alice:domain",
			RoomID:         roomID,
			Content:        mustJSON(t, `{"room_version":"`+v.ID+`"}`),
			OriginServerTS: 1_700_000_000_000,
			Depth:          1,
		}
	}
	v12 := MustVersion("12")
	hashForm := testRoomID(v12)
	tests := []struct {
		name       string
		version    string
		roomID     RoomID
		stateKey   *string
		ok         bool
		wantRoomID RoomID // "" means derived from the event ID
	}{
		{"v12 without room_id", "12", "", strPtr(""), true, ""},
		{"v12 with domain room_id kept", "12", "!room:domain", strPtr(""), true, "!room:domain"},
		{"v12 with hash room_id kept", "12", hashForm, strPtr(""), true, hashForm},
		{"v12 non-empty state key needs room_id", "12", "", strPtr("x"), false, ""},
		{"v12 non-state create needs room_id", "12", "", nil, false, ""},
		{"v11 needs room_id", "11", "", strPtr(""), false, ""},
		{"v10 needs room_id", "10", "", strPtr(""), false, ""},
		{"v11 with room_id", "11", "!room:domain", strPtr(""), true, "!room:domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := MustVersion(tt.version)
			p := create(v, tt.roomID, tt.stateKey)
			e, err := p.Build(v, specSigner(t))
			checkFormat(t, e, err, tt.ok, "room_id")
			if !tt.ok {
				return
			}
			want := tt.wantRoomID
			if want == "" {
				want = RoomID("!" + strings.TrimPrefix(string(e.ID()), "$"))
				if e.Object().Has("room_id") {
					t.Errorf("built v12 create event has a room_id: %s", e.JSON())
				}
				if _, err := ParseRoomID(string(want)); err != nil {
					t.Errorf("derived room ID %s does not parse: %v", want, err)
				}
			}
			if e.RoomID() != want {
				t.Errorf("RoomID = %s, want %s", e.RoomID(), want)
			}
			again, err := ParseEvent(e.JSON(), v)
			if err != nil {
				t.Fatalf("ParseEvent(JSON): %v", err)
			}
			if again.RoomID() != e.RoomID() || again.ID() != e.ID() {
				t.Errorf("reparsed RoomID %s ID %s, want %s %s", again.RoomID(), again.ID(), e.RoomID(), e.ID())
			}
		})
	}
}

func TestEventAccessors(t *testing.T) {
	v := MustVersion("11")
	p := Proto{
		Type:           TypeMember,
		StateKey:       strPtr("@bob:other"),
		Sender:         "@bob:other",
		RoomID:         "!room:domain",
		Content:        mustJSON(t, `{"membership":"join","displayname":"Bob"}`),
		PrevEvents:     fakeEventIDs(2),
		AuthEvents:     fakeEventIDs(4),
		Depth:          42,
		OriginServerTS: 1234,
	}
	e := mustBuild(t, v, p, Signer{Server: "other", KeyID: "ed25519:k", Key: seededKey(1)})
	tests := []struct {
		name      string
		got, want any
	}{
		{"Version", e.Version(), v},
		{"Type", e.Type(), TypeMember},
		{"StateKey", *e.StateKey(), "@bob:other"},
		{"IsState", e.IsState(), true},
		{"StateKeyIs match", e.StateKeyIs("@bob:other"), true},
		{"StateKeyIs other", e.StateKeyIs(""), false},
		{"Sender", e.Sender(), UserID("@bob:other")},
		{"Origin", e.Origin(), ServerName("other")},
		{"RoomID", e.RoomID(), RoomID("!room:domain")},
		{"Membership", e.Membership(), "join"},
		{"Content displayname", first(e.Content().GetStr("displayname")), "Bob"},
		{"PrevEvents", len(e.PrevEvents()), 2},
		{"PrevEvents[1]", e.PrevEvents()[1], fakeEventID(1)},
		{"AuthEvents", len(e.AuthEvents()), 4},
		{"Depth", e.Depth(), int64(42)},
		{"OriginServerTS", e.OriginServerTS(), int64(1234)},
		{"Redacts", e.Redacts(), EventID("")},
		{"Tuple", e.Tuple(), StateTuple{Type: TypeMember, StateKey: "@bob:other"}},
		{"JSON is Marshal(Object)", string(e.JSON()), string(cjson.Marshal(e.Object()))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}

	msg := mustBuild(t, v, messageProto(v), specSigner(t))
	if msg.IsState() || msg.StateKey() != nil || msg.StateKeyIs("") {
		t.Errorf("message event reports a state key")
	}
	if got := msg.Tuple(); got != (StateTuple{Type: "m.room.message"}) {
		t.Errorf("message Tuple = %+v", got)
	}
	if msg.Membership() != "" {
		t.Errorf("message Membership = %q, want empty", msg.Membership())
	}
}

func first[A, B any](a A, _ B) A { return a }

func TestFormatErrorMessage(t *testing.T) {
	tests := []struct {
		err  *FormatError
		want string
	}{
		{&FormatError{Reason: "not a JSON object"}, "invalid event: not a JSON object"},
		{&FormatError{Field: "depth", Reason: "missing"}, "invalid event: depth: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}
