package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage"
)

const pSend = "/_matrix/client/v3/sendToDevice/"

func (e *env) pending(user, device string) []string {
	e.t.Helper()
	evs, last, err := e.k.ToDevice(context.Background(), user, device, 0, e.db.AuxPos(), 100)
	if err != nil {
		e.t.Fatal(err)
	}
	if last != e.db.AuxPos() {
		e.t.Fatalf("last = %d below the limit, want upto %d", last, e.db.AuxPos())
	}
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = string(ev)
	}
	return out
}

func TestSendToDevice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		subBob, subAlice, subCarol := e.hub.Subscribe(bob), e.hub.Subscribe(alice), e.hub.Subscribe(carol)
		defer subBob.Close()
		defer subAlice.Close()
		defer subCarol.Close()
		body := `{"messages": {
			"@bob:test.local": {"BOB1": {"n": 1, "html": "<b>&amp;</b>"}, "GONE": {"n": 2}},
			"@alice:test.local": {"*": {"n": 3}, "ALICE2": {"n": 4}},
			"@zed:other.example": {"Z1": {"n": 5}}
		}}`
		e.ok("PUT", pSend+"m.test/txn1", "alice1", body, nil)
		waitWake(t, subBob, "bob")
		waitWake(t, subAlice, "alice")
		noWake(t, subCarol, "carol")

		tests := []struct {
			user, device string
			want         []string
		}{
			{bob, "BOB1", []string{`{"content":{"n": 1, "html": "<b>&amp;</b>"},"sender":"@alice:test.local","type":"m.test"}`}},
			{bob, "GONE", nil},
			{alice, "ALICE1", []string{`{"content":{"n": 3},"sender":"@alice:test.local","type":"m.test"}`}},
			{alice, "ALICE2", []string{`{"content":{"n": 4},"sender":"@alice:test.local","type":"m.test"}`}},
		}
		for _, tt := range tests {
			got := e.pending(tt.user, tt.device)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("%s %s: got %q, want %q", tt.user, tt.device, got, tt.want)
			}
		}
		var outbox []string
		if err := e.db.View(context.Background(), func(tx *storage.Tx) error {
			rows, err := tx.Query(context.Background(), `SELECT destination, sender, event_type, messages FROM to_device_outbox`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var dest, sender, typ string
				var msgs []byte
				if err := rows.Scan(&dest, &sender, &typ, &msgs); err != nil {
					return err
				}
				outbox = append(outbox, dest+" "+sender+" "+typ+" "+string(msgs))
			}
			return rows.Err()
		}); err != nil {
			t.Fatal(err)
		}
		if want := `[other.example @alice:test.local m.test {"@zed:other.example":{"Z1":{"n": 5}}}]`; fmt.Sprint(outbox) != want {
			t.Errorf("outbox = %v, want %s", outbox, want)
		}

		// The same transaction again changes nothing; the same txnId for
		// another event type is another endpoint path, so it is new.
		pos := e.db.AuxPos()
		e.ok("PUT", pSend+"m.test/txn1", "alice1", body, nil)
		if e.db.AuxPos() != pos || len(e.pending(bob, "BOB1")) != 1 {
			t.Fatalf("retransmission stored messages again")
		}
		noWake(t, subBob, "a retransmission")
		e.ok("PUT", pSend+"m.other/txn1", "alice1", `{"messages": {"@bob:test.local": {"BOB1": {}}}}`, nil)
		// From another device the txnId is new as well.
		e.ok("PUT", pSend+"m.test/txn1", "alice2", `{"messages": {"@bob:test.local": {"BOB1": {}}}}`, nil)
		if n := len(e.pending(bob, "BOB1")); n != 3 {
			t.Fatalf("bob has %d messages, want 3", n)
		}

		// Deleting a device drops what waits for it.
		if err := e.k.DeleteDevice(context.Background(), alice, "ALICE2"); err != nil {
			t.Fatal(err)
		}
		if got := e.pending(alice, "ALICE2"); len(got) != 0 {
			t.Fatalf("deleted device still has %v", got)
		}
	})
}

func TestToDevicePagingAndAck(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		start := e.db.AuxPos()
		for i := 1; i <= 5; i++ {
			e.ok("PUT", fmt.Sprintf("%sm.test/p%d", pSend, i), "alice1",
				fmt.Sprintf(`{"messages": {"@bob:test.local": {"BOB1": {"i": %d}}}}`, i), nil)
		}
		upto := e.db.AuxPos()
		type page struct {
			ids  []int
			last int64
		}
		read := func(since int64, limit int) page {
			t.Helper()
			evs, last, err := e.k.ToDevice(ctx, bob, "BOB1", since, upto, limit)
			if err != nil {
				t.Fatal(err)
			}
			var p page
			p.last = last
			for _, ev := range evs {
				var m struct {
					Content struct{ I int } `json:"content"`
				}
				if err := json.Unmarshal(ev, &m); err != nil {
					t.Fatal(err)
				}
				p.ids = append(p.ids, m.Content.I)
			}
			return p
		}
		p1 := read(start, 2)
		if fmt.Sprint(p1.ids) != "[1 2]" || p1.last >= upto {
			t.Fatalf("page 1 = %+v", p1)
		}
		p2 := read(p1.last, 2)
		if fmt.Sprint(p2.ids) != "[3 4]" {
			t.Fatalf("page 2 = %+v", p2)
		}
		p3 := read(p2.last, 2)
		if fmt.Sprint(p3.ids) != "[5]" || p3.last != upto {
			t.Fatalf("page 3 = %+v (upto %d)", p3, upto)
		}
		// Acknowledging the first page deletes exactly it.
		if err := e.k.AckToDevice(ctx, bob, "BOB1", p1.last); err != nil {
			t.Fatal(err)
		}
		if all := read(0, 100); fmt.Sprint(all.ids) != "[3 4 5]" {
			t.Fatalf("after ack: %+v", all)
		}
		if err := e.k.AckToDevice(ctx, bob, "BOB1", upto); err != nil {
			t.Fatal(err)
		}
		if all := read(0, 100); len(all.ids) != 0 || all.last != upto {
			t.Fatalf("after full ack: %+v", all)
		}
	})
}
