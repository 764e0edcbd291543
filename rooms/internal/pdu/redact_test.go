package pdu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// TestRedact runs the cases of testdata/redaction. Each file holds an
// event, the room versions the case is for and the redacted event those
// versions must produce (rooms fragments "v9-redactions" for room version
// 10, "v11-redactions" for 11 and 12); "comment" says which rule it pins.
func TestRedact(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "redaction", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no redaction cases in testdata/redaction")
	}
	covered := map[string]bool{}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		c, err := cjson.Parse(raw)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		event, _ := c.Get("event")
		want, _ := c.Get("redacted")
		comment, _ := c.GetStr("comment")
		vs, _ := c.Get("versions")
		for _, vid := range vs.Array() {
			id, _ := vid.Str()
			covered[id] = true
			name := strings.TrimSuffix(filepath.Base(file), ".json") + "/v" + id
			t.Run(name, func(t *testing.T) {
				v := MustVersion(id)
				got := Redact(v, event)
				if !got.Equal(want) {
					t.Errorf("%s\nRedact:\n got %s\nwant %s", comment, got, want)
				}
				if again := Redact(v, got); !again.Equal(got) {
					t.Errorf("Redact is not idempotent:\nonce  %s\ntwice %s", got, again)
				}
			})
		}
	}
	for _, id := range SupportedVersions() {
		if !covered[id] {
			t.Errorf("no redaction case for room version %s", id)
		}
	}
}

// TestRedacted checks Event.Redacted: the event ID is unchanged, the
// signature still verifies (it covers the redacted form), and the content
// hash no longer matches, as for a redacted copy received over federation.
func TestRedacted(t *testing.T) {
	for _, v := range versions() {
		t.Run("v"+v.ID, func(t *testing.T) {
			s := specSigner(t)
			e := mustBuild(t, v, messageProto(v), s)
			r := e.Redacted()
			if r.ID() != e.ID() {
				t.Errorf("redacted ID = %s, want %s", r.ID(), e.ID())
			}
			if r.Content().Len() != 0 {
				t.Errorf("redacted content = %s, want {}", r.Content())
			}
			if r.CheckContentHash() {
				t.Errorf("CheckContentHash on redacted message = true, want false")
			}
			keys := keyring{specServer: {specKeyID: {Key: pub(s.Key), ValidUntilTS: 1 << 50}}}
			if err := VerifySignatures(r, keys.find); err != nil {
				t.Errorf("VerifySignatures on redacted event: %v", err)
			}
			if r.RoomID() != e.RoomID() || r.Type() != e.Type() || r.Depth() != e.Depth() {
				t.Errorf("redacted event lost essential fields: %s", r.JSON())
			}
			if e.Content().Len() == 0 {
				t.Errorf("Redacted modified the original event")
			}
		})
	}
}
