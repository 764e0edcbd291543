package clientevent

import (
	"bytes"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms"
)

// TestPreparedMatchesFormat checks the shared rendering against the
// one-shot one for the forms the sync engine serves.
func TestPreparedMatchesFormat(t *testing.T) {
	ev := testEvent(t)
	now := time.UnixMilli(ev.OriginServerTS() + 1234)
	for _, omit := range []bool{true, false} {
		for _, txn := range []string{"", "txn-\"1\"é"} {
			want := Format(ev, Options{Now: now, OmitRoomID: omit, TxnID: txn})
			got := Prepare(ev, omit).Render(now, txn)
			if !bytes.Equal(got, want) {
				t.Errorf("omit=%v txn=%q:\n got %s\nwant %s", omit, txn, got, want)
			}
		}
	}
	prev := cjson.MustFromGo(map[string]any{"membership": "invite"})
	if got, want := Prepare(ev, true).WithPrevContent(prev).Render(now, "t"), Format(ev, Options{Now: now, OmitRoomID: true, TxnID: "t", PrevContent: prev}); !bytes.Equal(got, want) {
		t.Errorf("with prev_content:\n got %s\nwant %s", got, want)
	}
	// A clock behind the event's timestamp gives age 0, not negative.
	if got := Prepare(ev, true).Render(now.Add(-time.Hour), ""); !bytes.Contains(got, []byte(`"age":0}`)) {
		t.Errorf("negative age not clamped: %s", got)
	}
}

func testEvent(t *testing.T) *rooms.Event {
	t.Helper()
	v, _ := rooms.LookupVersion("12")
	// A minimal v12 message event, parsed like a stored one.
	raw := []byte(`{"auth_events":[],"content":{"body":"hi","msgtype":"m.text"},"depth":3,"hashes":{"sha256":"x"},"origin_server_ts":1700000000000,"prev_events":["$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],"room_id":"!BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB","sender":"@a:hs1","signatures":{},"type":"m.room.message"}`)
	ev, err := rooms.ParseEvent(raw, v)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if _, err := cjson.Parse(raw); err != nil {
		t.Fatal(err)
	}
	return ev
}
