package pdu

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
)

// TestContentHash checks what the content hash covers (server-server API,
// "Calculating the content hash for an event"): everything but
// "unsigned", "signatures" and "hashes".
func TestContentHash(t *testing.T) {
	base := mustJSON(t, `{"type":"m.room.message","content":{"body":"hi"},"depth":1}`)
	want := sha256.Sum256(cjson.Marshal(base))
	tests := []struct {
		name string
		obj  cjson.Value
		same bool
	}{
		{"as is", base, true},
		{"unsigned ignored", base.With("unsigned", mustJSON(t, `{"age":1}`)), true},
		{"signatures ignored", base.With("signatures", mustJSON(t, `{"x":{"ed25519:1":"s"}}`)), true},
		{"hashes ignored", base.With("hashes", mustJSON(t, `{"sha256":"x"}`)), true},
		{"content covered", withContent(base, "body", cjson.Str("bye")), false},
		{"unknown key covered", base.With("foo", cjson.Integer(1)), false},
		{"event_id covered", base.With("event_id", cjson.Str("$x")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ContentHash(tt.obj); (got == want) != tt.same {
				t.Errorf("ContentHash = %x, base %x, want same=%v", got, want, tt.same)
			}
		})
	}
}

// TestCheckContentHash checks hashes.sha256 against the content
// (server-server API, "Validating hashes and signatures on received
// events").
func TestCheckContentHash(t *testing.T) {
	v := MustVersion("12")
	base := validEventObject(t, v)
	h := ContentHash(base)
	good := signing.Base64.EncodeToString(h[:])
	setHash := func(s string) func(cjson.Value) cjson.Value {
		return func(o cjson.Value) cjson.Value {
			return o.With("hashes", cjson.Obj(cjson.M("sha256", cjson.Str(s))))
		}
	}
	tests := []struct {
		name   string
		mutate func(cjson.Value) cjson.Value
		want   bool
	}{
		{"good", func(o cjson.Value) cjson.Value { return o }, true},
		{"padded base64 accepted", setHash(good + "="), true},
		{"unsigned changed", func(o cjson.Value) cjson.Value { return o.With("unsigned", mustJSON(t, `{"age":99}`)) }, true},
		{"signatures changed", func(o cjson.Value) cjson.Value { return o.With("signatures", cjson.Obj()) }, true},
		{"other hash algorithms ignored", func(o cjson.Value) cjson.Value {
			return o.With("hashes", cjson.Obj(cjson.M("sha256", cjson.Str(good)), cjson.M("sha512", cjson.Str("x"))))
		}, true},
		{"content tampered", func(o cjson.Value) cjson.Value { return withContent(o, "body", cjson.Str("evil")) }, false},
		{"content key added", func(o cjson.Value) cjson.Value { return withContent(o, "extra", cjson.Integer(1)) }, false},
		{"top-level key added", func(o cjson.Value) cjson.Value { return o.With("foo", cjson.Str("bar")) }, false},
		{"other event's hash", setHash(signing.Base64.EncodeToString(make([]byte, 32))), false},
		{"URL-safe base64", setHash(strings.NewReplacer("+", "-", "/", "_").Replace(good) + "-"), false},
		{"not base64", setHash("not base64!"), false},
		{"too short", setHash(good[:20]), false},
		{"too long", setHash(good + "AAAA"), false},
		{"empty", setHash(""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := NewEvent(tt.mutate(base), v)
			if err != nil {
				t.Fatalf("NewEvent: %v", err)
			}
			if got := e.CheckContentHash(); got != tt.want {
				t.Errorf("CheckContentHash = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestReferenceHash checks the reference hash is over the redacted event
// without signatures and unsigned (server-server API, "Calculating the
// reference hash for an event"), per room version.
func TestReferenceHash(t *testing.T) {
	obj := mustJSON(t, `{
		"type": "m.room.power_levels", "state_key": "", "origin": "domain",
		"content": {"invite": 50, "ban": 50, "notifications": {"room": 50}},
		"hashes": {"sha256": "aGFzaA"}, "signatures": {"domain": {"ed25519:1": "c2ln"}},
		"unsigned": {"age": 1}, "depth": 1, "prev_events": [], "auth_events": [],
		"room_id": "!r:domain", "sender": "@u:domain", "origin_server_ts": 1
	}`)
	tests := []struct {
		version string
		want    string // the redacted form, without signatures and unsigned
	}{
		{"10", `{"auth_events":[],"content":{"ban":50},"depth":1,"hashes":{"sha256":"aGFzaA"},"origin":"domain","origin_server_ts":1,"prev_events":[],"room_id":"!r:domain","sender":"@u:domain","state_key":"","type":"m.room.power_levels"}`},
		{"11", `{"auth_events":[],"content":{"ban":50,"invite":50},"depth":1,"hashes":{"sha256":"aGFzaA"},"origin_server_ts":1,"prev_events":[],"room_id":"!r:domain","sender":"@u:domain","state_key":"","type":"m.room.power_levels"}`},
		{"12", `{"auth_events":[],"content":{"ban":50,"invite":50},"depth":1,"hashes":{"sha256":"aGFzaA"},"origin_server_ts":1,"prev_events":[],"room_id":"!r:domain","sender":"@u:domain","state_key":"","type":"m.room.power_levels"}`},
	}
	for _, tt := range tests {
		t.Run("v"+tt.version, func(t *testing.T) {
			want := sha256.Sum256([]byte(tt.want))
			if got := ReferenceHash(MustVersion(tt.version), obj); got != want {
				t.Errorf("ReferenceHash = %x, want sha256(%s) = %x", got, tt.want, want)
			}
		})
	}
}
