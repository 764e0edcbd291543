package syncer

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// txnAnnotations gives every event of @bob:hs1's device BOB a
// transaction ID, and redacts nothing.
type txnAnnotations struct{}

func (txnAnnotations) TxnID(_ context.Context, user, device, eventID string) string {
	if user == "@bob:hs1" && device == "BOB" {
		return "txn-" + eventID
	}
	return ""
}

func (txnAnnotations) RedactedBecause(context.Context, string, []*rooms.Event) (map[string][]byte, error) {
	return nil, nil
}

// TestSharedSections checks that members joined throughout a section get
// it built once, that what differs between members stays theirs, and
// that a member the section is particular to gets its own.
func TestSharedSections(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			// An hour ahead of the events, so that their ages are positive.
			clock := time.Now().Add(time.Hour)
			eng, err := New(Config{}, Deps{Index: f.index, DB: f.db, Hub: stream.NewHub(), Annotations: txnAnnotations{},
				Now: func() time.Time { return clock }})
			if err != nil {
				t.Fatal(err)
			}
			room := f.newRoom()
			for _, u := range []string{"@bob:hs1", "@carol:hs1", "@dan:hs1"} {
				f.member(room, u, u, "join")
			}
			f.caughtUp()
			since := eng.Positions()
			f.member(room, "@erin:hs1", "@erin:hs1", "join")
			f.message(room, "@alice:hs1", "one")
			f.message(room, "@bob:hs1", "two")
			f.caughtUp()
			sync := func(user, device string, since stream.Token) *JoinedRoom {
				t.Helper()
				resp, _, err := eng.Sync(f.ctx, Request{UserID: user, DeviceID: device, Since: &since})
				if err != nil {
					t.Fatal(err)
				}
				jr := resp.Rooms.Join[string(room)]
				if jr == nil {
					t.Fatalf("%s: no section for the room: %+v", user, resp.Rooms)
				}
				return jr
			}

			carol, dan := sync("@carol:hs1", "CAROL", since), sync("@dan:hs1", "DAN", since)
			if got := bodies(t, carol.Timeline.Events); strings.Join(got, ",") != "one,two" {
				t.Fatalf("carol's timeline bodies %v", got)
			}
			if joinRaw(carol.Timeline.Events) != joinRaw(dan.Timeline.Events) || joinRaw(carol.State.Events) != joinRaw(dan.State.Events) {
				t.Fatalf("carol and dan see different sections:\n%s\n%s", joinRaw(carol.Timeline.Events), joinRaw(dan.Timeline.Events))
			}
			if &carol.Timeline.Events[0][0] != &dan.Timeline.Events[0][0] {
				t.Fatal("dan's timeline was rendered again, not shared")
			}
			// Appending to one member's lists (as receipts and account
			// data do) leaves the other's alone.
			n := len(dan.Timeline.Events)
			carol.Timeline.Events = append(carol.Timeline.Events, json.RawMessage(`{}`))
			carol.Ephemeral.Events = append(carol.Ephemeral.Events, json.RawMessage(`{}`))
			if again := sync("@dan:hs1", "DAN", since); len(again.Timeline.Events) != n || len(again.Ephemeral.Events) != 0 {
				t.Fatalf("dan's section changed with carol's: %d timeline, %d ephemeral events", len(again.Timeline.Events), len(again.Ephemeral.Events))
			}

			// Bob's device sent "two": his section carries its
			// transaction ID, which no one else's may.
			bob := sync("@bob:hs1", "BOB", since)
			if s := joinRaw(bob.Timeline.Events); !strings.Contains(s, `"transaction_id":"txn-`) {
				t.Fatalf("bob's timeline lacks his transaction ID: %s", s)
			}
			if s := joinRaw(sync("@carol:hs1", "CAROL", since).Timeline.Events); strings.Contains(s, "transaction_id") {
				t.Fatalf("carol's timeline carries bob's transaction ID: %s", s)
			}

			// Erin joined within the section: hers is a newly joined
			// room's, as an initial sync has it (with a summary).
			if carol.Summary != nil {
				t.Fatalf("carol's incremental section has a summary: %+v", carol.Summary)
			}
			if erin := sync("@erin:hs1", "ERIN", since); erin.Summary == nil {
				t.Fatal("erin's section is not a newly joined room's")
			}

			// A section is handed out only while its ages are fresh.
			clock = clock.Add(maxShareAge + time.Millisecond)
			late := sync("@dan:hs1", "DAN", since)
			if &late.Timeline.Events[0][0] == &dan.Timeline.Events[0][0] {
				t.Fatal("a section older than maxShareAge was handed out")
			}
			if joinRaw(late.Timeline.Events) == joinRaw(dan.Timeline.Events) {
				t.Fatal("the section built later has the same ages")
			}
		})
	}
}
