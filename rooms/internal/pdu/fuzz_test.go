package pdu

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// FuzzParseEvent feeds bytes from the network to ParseEvent under every
// supported room version. It must not panic, must fail only with a
// FormatError, and an event it accepts must survive re-encoding: parsing
// its canonical JSON gives the same event ID, room ID and bytes, and so
// does its redacted form (redaction keeps everything the reference hash
// covers). The seed corpus is testdata/fuzz/FuzzParseEvent plus the
// spec's event signing vectors.
func FuzzParseEvent(f *testing.F) {
	vectors, err := filepath.Glob(filepath.Join("testdata", "spec-event-signing", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range vectors {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	bases := map[string]cjson.Value{}
	for _, v := range versions() {
		bases[v.ID] = validEventObject(f, v)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range versions() {
			e, err := ParseEvent(data, v)
			if err != nil {
				var fe *FormatError
				if !errors.As(err, &fe) {
					t.Fatalf("v%s: ParseEvent error %v is %T, want *FormatError", v.ID, err, err)
				}
				continue
			}
			checkAccepted(t, v, e, data)
		}
		// Mutated bytes rarely make a whole valid event, so also use an
		// object input as the content of a valid event of each type
		// whose content redaction treats specially.
		content, err := cjson.Parse(data)
		if err != nil || content.Kind() != cjson.Object {
			return
		}
		for _, v := range versions() {
			for _, typ := range []string{TypeCreate, TypeMember, TypePowerLevels, TypeJoinRules, TypeHistoryVisibility, TypeRedaction, "m.room.message"} {
				obj := bases[v.ID].With("type", cjson.Str(typ)).With("content", content)
				if typ != "m.room.message" {
					obj = obj.With("state_key", cjson.Str(""))
				}
				e, err := NewEvent(obj, v)
				if err != nil {
					continue // e.g. a bad content.redacts, or too large
				}
				checkAccepted(t, v, e, data)
			}
		}
	})
}

func checkAccepted(t *testing.T, v *Version, e *Event, data []byte) {
	t.Helper()
	noKeys := func(ServerName, string) (VerifyKey, bool) { return VerifyKey{}, false }
	if len(e.JSON()) > MaxEventSize {
		t.Fatalf("v%s: accepted a %d-byte event", v.ID, len(e.JSON()))
	}
	again, err := ParseEvent(cjson.Marshal(e.Object()), v)
	if err != nil {
		t.Fatalf("v%s: ParseEvent(Marshal(event)) failed: %v\ninput %q", v.ID, err, data)
	}
	if again.ID() != e.ID() || again.RoomID() != e.RoomID() || !bytes.Equal(again.JSON(), e.JSON()) {
		t.Fatalf("v%s: round trip changed the event\nfirst  %s %s\nsecond %s %s", v.ID, e.ID(), e.JSON(), again.ID(), again.JSON())
	}
	r := e.Redacted()
	if r.ID() != e.ID() || r.RoomID() != e.RoomID() {
		t.Fatalf("v%s: redaction changed ID %s -> %s or room %s -> %s\nevent %s", v.ID, e.ID(), r.ID(), e.RoomID(), r.RoomID(), e.JSON())
	}
	if rr := Redact(v, r.Object()); !rr.Equal(r.Object()) {
		t.Fatalf("v%s: Redact not idempotent\nonce  %s\ntwice %s", v.ID, r.Object(), rr)
	}
	e.CheckContentHash()
	if err := VerifySignatures(e, noKeys); err == nil {
		t.Fatalf("v%s: VerifySignatures succeeded without any keys", v.ID)
	}
}
