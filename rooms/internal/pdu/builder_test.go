package pdu

import (
	"bytes"
	"errors"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// TestBuild checks that built events carry a correct content hash and a
// signature over the redacted form (server-server API, "Signing events"),
// and parse back to the same event.
func TestBuild(t *testing.T) {
	for _, v := range versions() {
		t.Run("v"+v.ID, func(t *testing.T) {
			s := specSigner(t)
			p := messageProto(v)
			e := mustBuild(t, v, p, s)
			if !e.CheckContentHash() {
				t.Errorf("CheckContentHash = false")
			}
			keys := keyring{specServer: {specKeyID: {Key: pub(s.Key), ValidUntilTS: p.OriginServerTS}}}
			if err := VerifySignatures(e, keys.find); err != nil {
				t.Errorf("VerifySignatures: %v", err)
			}
			again, err := ParseEvent(e.JSON(), v)
			if err != nil {
				t.Fatalf("ParseEvent(JSON): %v", err)
			}
			if again.ID() != e.ID() || !bytes.Equal(again.JSON(), e.JSON()) {
				t.Errorf("reparsed event differs: %s %s vs %s %s", again.ID(), again.JSON(), e.ID(), e.JSON())
			}
			if e.Type() != p.Type || e.Sender() != p.Sender || e.RoomID() != p.RoomID ||
				e.Depth() != p.Depth || e.OriginServerTS() != p.OriginServerTS ||
				!e.Content().Equal(p.Content) || len(e.PrevEvents()) != 1 || len(e.AuthEvents()) != 3 {
				t.Errorf("built event does not match the proto: %s", e.JSON())
			}
			if sigs, _ := e.Object().Get("signatures"); sigs.Len() != 1 {
				t.Errorf("signatures = %s, want only %s's", sigs, specServer)
			}
			// Ed25519 is deterministic, so is Build.
			if e2 := mustBuild(t, v, p, s); e2.ID() != e.ID() {
				t.Errorf("second Build gives ID %s, want %s", e2.ID(), e.ID())
			}
		})
	}
}

// TestBuildRedacts checks that the redaction target goes where the room
// version wants it: top level before v11, content from v11 on (MSC2174).
func TestBuildRedacts(t *testing.T) {
	target := fakeEventID(5)
	tests := []struct {
		version   string
		inContent bool
	}{
		{"10", false},
		{"11", true},
		{"12", true},
	}
	for _, tt := range tests {
		t.Run("v"+tt.version, func(t *testing.T) {
			v := MustVersion(tt.version)
			p := messageProto(v)
			p.Type = TypeRedaction
			p.Content = mustJSON(t, `{"reason":"spam"}`)
			p.Redacts = target
			e := mustBuild(t, v, p, specSigner(t))
			if e.Redacts() != target {
				t.Errorf("Redacts = %q, want %q", e.Redacts(), target)
			}
			_, top := e.Object().Get("redacts")
			_, inContent := e.Content().Get("redacts")
			if top == tt.inContent || inContent != tt.inContent {
				t.Errorf("redacts at top level: %v, in content: %v; want in content: %v", top, inContent, tt.inContent)
			}
			if !e.CheckContentHash() {
				t.Errorf("CheckContentHash = false")
			}
			if got, _ := e.Redacted().Content().GetStr("redacts"); tt.inContent && got != string(target) {
				t.Errorf("redaction dropped content.redacts (v11-redactions keeps it)")
			}
			if p.Content.Has("redacts") {
				t.Errorf("Build modified the proto's content")
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	v := MustVersion("12")
	tests := []struct {
		name      string
		mutate    func(*Proto)
		wantField string
	}{
		{"content not an object", func(p *Proto) { p.Content = cjson.Arr() }, "content"},
		{"bad sender", func(p *Proto) { p.Sender = "alice" }, "sender"},
		{"missing room ID", func(p *Proto) { p.RoomID = "" }, "room_id"},
		{"domain room ID in v12", func(p *Proto) { p.RoomID = "!room:domain" }, "room_id"},
		{"too many prev events", func(p *Proto) { p.PrevEvents = fakeEventIDs(MaxPrevEvents + 1) }, "prev_events"},
		{"too many auth events", func(p *Proto) { p.AuthEvents = fakeEventIDs(MaxAuthEvents + 1) }, "auth_events"},
		{"negative depth", func(p *Proto) { p.Depth = -1 }, "depth"},
		{"long state key", func(p *Proto) { p.StateKey = strPtr(string(make([]byte, 256))) }, "state_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := messageProto(v)
			tt.mutate(&p)
			_, err := p.Build(v, specSigner(t))
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Errorf("Build error = %v, want FormatError on %q", err, tt.wantField)
			}
		})
	}
}

func TestBuildNullContent(t *testing.T) {
	v := MustVersion("12")
	p := messageProto(v)
	p.Content = cjson.Value{}
	e := mustBuild(t, v, p, specSigner(t))
	if e.Content().Kind() != cjson.Object || e.Content().Len() != 0 {
		t.Errorf("content = %s, want {}", e.Content())
	}
}
