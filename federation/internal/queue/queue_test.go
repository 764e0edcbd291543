package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
)

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestBatching: 120 PDUs and 150 EDUs go out as transactions of at most
// 50 PDUs and 100 EDUs, in order, each under its own ID; this server and
// repeated names are never sent to.
func TestBatching(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, h *harness) {
		ids := h.storeEvents(t, "!r:hs1.test", 120)
		h.enqueuePDUs([]string{remote, us, remote}, "!r:hs1.test", ids)
		for i := range 150 {
			h.enqueueEDU([]string{remote, us}, "m.direct_to_device", fmt.Sprintf(`{"i":%d}`, i))
		}
		if p, e := h.q.Backlog(remote); p != 120 || e != 150 {
			t.Fatalf("Backlog before Start = %d, %d; want 120, 150", p, e)
		}
		h.start()
		h.waitFor("three transactions", func() bool { return len(h.sender.sent(remote, true)) == 3 })
		h.waitFor("an empty backlog", func() bool { p, e := h.q.Backlog(remote); return p == 0 && e == 0 })

		calls := h.sender.sent(remote, false)
		var pdus, edus []int
		txnIDs := map[string]bool{}
		for _, c := range calls {
			pdus, edus = append(pdus, len(c.txn.PDUs)), append(edus, len(c.txn.EDUs))
			txnIDs[c.txnID] = true
			if c.txn.Origin != us || c.txn.OriginServerTS != t0.UnixMilli() {
				t.Errorf("origin, ts = %q, %d; want %q, %d", c.txn.Origin, c.txn.OriginServerTS, us, t0.UnixMilli())
			}
		}
		if want := []int{50, 50, 20}; !reflect.DeepEqual(pdus, want) {
			t.Errorf("PDUs per transaction = %v, want %v", pdus, want)
		}
		if want := []int{100, 50, 0}; !reflect.DeepEqual(edus, want) {
			t.Errorf("EDUs per transaction = %v, want %v", edus, want)
		}
		if len(txnIDs) != 3 {
			t.Errorf("transaction IDs %v are not distinct", txnIDs)
		}
		if got := h.sender.pduNumbers(t, remote); !reflect.DeepEqual(got, seq(1, 120)) {
			t.Errorf("PDUs delivered = %v, want 1..120 in order", got)
		}
		if got := h.sender.sent(us, false); len(got) != 0 {
			t.Errorf("sent %d transactions to ourselves", len(got))
		}
	})
}

// TestRetrySameTxn: a transaction that is not accepted is retried with
// the same ID and byte-for-byte the same contents until it is.
func TestRetrySameTxn(t *testing.T) {
	cfg := Config{MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
	forEachBackend(t, cfg, func(t *testing.T, h *harness) {
		h.sender.setBehaviour(func(_ context.Context, _ string, n int) error {
			if n <= 4 {
				return errDown
			}
			return nil
		})
		ids := h.storeEvents(t, "!r:hs1.test", 3)
		h.enqueuePDUs([]string{remote}, "!r:hs1.test", ids)
		h.enqueueEDU([]string{remote}, "m.receipt", `{"x":1}`)
		h.start()
		// The clock moves on between attempts: the transaction must not.
		h.waitFor("acceptance", func() bool {
			h.advance(time.Second)
			return len(h.sender.sent(remote, true)) == 1
		})
		calls := h.sender.sent(remote, false)
		if len(calls) != 5 {
			t.Fatalf("%d attempts, want 5", len(calls))
		}
		for i, c := range calls[1:] {
			if c.txnID != calls[0].txnID || c.body != calls[0].body {
				t.Errorf("attempt %d: txn %s %s; want %s %s", i+2, c.txnID, c.body, calls[0].txnID, calls[0].body)
			}
		}
		if len(calls[0].txn.PDUs) != 3 || len(calls[0].txn.EDUs) != 1 {
			t.Errorf("transaction = %s, want 3 PDUs and 1 EDU", calls[0].body)
		}
		h.waitFor("an empty backlog", func() bool { p, e := h.q.Backlog(remote); return p == 0 && e == 0 })
		if st := h.state(remote); st != (destState{}) {
			t.Errorf("state after delivery = %+v, want zero", st)
		}
	})
}

// TestBackoffGrowth: each failure in a row doubles the stored wait, up to
// the cap.
func TestBackoffGrowth(t *testing.T) {
	cfg := Config{MinBackoff: time.Minute, MaxBackoff: 8 * time.Minute}
	forEachBackend(t, cfg, func(t *testing.T, h *harness) {
		// The clock moves only here, an hour per attempt, so attempt i
		// (from 0) starts at t0+i hours and each retry time is due when
		// the next attempt starts: the worker never waits in real time.
		h.sender.probe = func(dest string) destState { return h.state(dest) }
		h.sender.setBehaviour(func(_ context.Context, _ string, n int) error {
			h.advance(time.Hour)
			if n <= 6 {
				return errDown
			}
			return nil
		})
		h.enqueueEDU([]string{remote}, "m.receipt", `{}`)
		h.start()
		h.waitFor("acceptance", func() bool { return len(h.sender.sent(remote, true)) == 1 })
		var got []string
		for i, c := range h.sender.sent(remote, false)[1:] {
			// The state stored by the failure of attempt i, at t0+i hours.
			failedAt := t0.Add(time.Duration(i) * time.Hour).UnixMilli()
			got = append(got, fmt.Sprintf("%d:%v", c.failures, time.Duration(c.retryAt-failedAt)*time.Millisecond))
		}
		want := []string{"1:1m0s", "2:2m0s", "3:4m0s", "4:8m0s", "5:8m0s", "6:8m0s"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("failures:backoff seen at each retry = %v, want %v", got, want)
		}
	})
}

// TestReset: a destination that contacts us is retried at once, whatever
// its backoff, and its backoff starts over.
func TestReset(t *testing.T) {
	cfg := Config{MinBackoff: time.Hour, MaxBackoff: 4 * time.Hour}
	forEachBackend(t, cfg, func(t *testing.T, h *harness) {
		h.sender.setBehaviour(func(_ context.Context, _ string, n int) error {
			if n <= 2 {
				return errDown
			}
			return nil
		})
		h.q.Reset(remote) // no work: nothing happens
		ids := h.storeEvents(t, "!r:hs1.test", 2)
		h.start()
		h.enqueuePDUs([]string{remote}, "!r:hs1.test", ids[:1])
		hour := time.Hour.Milliseconds()
		h.waitFor("a stored backoff", func() bool { st := h.state(remote); return st.failures == 1 })
		if st := h.state(remote); st.retryAt != t0.UnixMilli()+hour || !st.catchUp || st.txnID == "" {
			t.Fatalf("state after a failure = %+v, want retry in 1h, catching up, a transaction", st)
		}
		// New work does not end the backoff...
		h.enqueuePDUs([]string{remote}, "!r:hs1.test", ids[1:])
		// ...but contact does. The attempt fails again: one failure, not
		// two, so the backoff is an hour again, from the new time.
		h.advance(time.Minute)
		h.q.Reset(remote)
		h.waitFor("a second failure", func() bool { return h.state(remote).retryAt != t0.UnixMilli()+hour })
		if st := h.state(remote); st.failures != 1 || st.retryAt != t0.UnixMilli()+hour+time.Minute.Milliseconds() {
			t.Errorf("state after Reset and a failure = %+v, want 1 failure, retry 1h from now", st)
		}
		if n := len(h.sender.sent(remote, false)); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
		h.q.Reset(remote)
		h.waitFor("an empty backlog", func() bool { p, _ := h.q.Backlog(remote); return p == 0 })
		if got := h.sender.pduNumbers(t, remote); !reflect.DeepEqual(got, []int{1, 2}) {
			t.Errorf("PDUs delivered = %v, want [1 2]", got)
		}
		if st := h.state(remote); st != (destState{}) {
			t.Errorf("state after delivery = %+v, want zero", st)
		}
	})
}

func TestBackoffSchedule(t *testing.T) {
	q := &Queue{cfg: Config{MinBackoff: time.Second, MaxBackoff: time.Minute}}
	for _, tc := range []struct {
		n    int64
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {6, 32 * time.Second}, {7, time.Minute}, {1000, time.Minute}} {
		if got := q.backoff(tc.n); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// TestRestart: closing the queue mid-backlog, during a send, loses
// nothing; the next queue on the database resends the interrupted
// transaction under its ID, then the rest.
func TestRestart(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, h *harness) {
		started := make(chan struct{}, 1)
		h.sender.setBehaviour(func(ctx context.Context, _ string, _ int) error {
			signal(started)
			<-ctx.Done() // hangs until Close cancels it
			return ctx.Err()
		})
		ids := h.storeEvents(t, "!r:hs1.test", 70)
		h.enqueuePDUs([]string{remote}, "!r:hs1.test", ids)
		for i := range 5 {
			h.enqueueEDU([]string{remote}, "m.direct_to_device", fmt.Sprintf(`{"i":%d}`, i))
		}
		h.start()
		<-started
		if err := h.q.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := h.q.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := h.q.EnqueueEDU(h.ctx, []string{remote}, EDU{Type: "m.receipt", Content: json.RawMessage(`{}`)}); err != ErrClosed {
			t.Errorf("EnqueueEDU after Close = %v, want ErrClosed", err)
		}
		first := h.sender.sent(remote, false)
		if len(first) != 1 {
			t.Fatalf("%d sends before Close, want 1", len(first))
		}
		st := h.state(remote)
		if st.txnID != first[0].txnID || st.failures != 0 {
			t.Fatalf("stored state %+v, want transaction %s and no failure (Close is not the peer's fault)", st, first[0].txnID)
		}

		h.sender.setBehaviour(nil)
		h.advance(time.Minute) // a restart later: the same transaction all the same
		h.q = h.open()
		h.start()
		h.waitFor("an empty backlog", func() bool { p, e := h.q.Backlog(remote); return p == 0 && e == 0 })
		calls := h.sender.sent(remote, false)
		if len(calls) != 3 {
			t.Fatalf("%d sends in all, want 3 (one cut short, its retry, the rest)", len(calls))
		}
		if calls[1].txnID != first[0].txnID || calls[1].body != first[0].body {
			t.Errorf("after restart sent %s %s; want the interrupted %s %s", calls[1].txnID, calls[1].body, first[0].txnID, first[0].body)
		}
		if got := h.sender.pduNumbers(t, remote); !reflect.DeepEqual(got, seq(1, 70)) {
			t.Errorf("PDUs delivered = %v, want 1..70", got)
		}
		var edus []string
		for _, c := range h.sender.sent(remote, true) {
			for _, e := range c.txn.EDUs {
				edus = append(edus, string(e.Content))
			}
		}
		if want := []string{`{"i":0}`, `{"i":1}`, `{"i":2}`, `{"i":3}`, `{"i":4}`}; !reflect.DeepEqual(edus, want) {
			t.Errorf("EDUs delivered = %v, want %v", edus, want)
		}
	})
}

// TestRestartKeepsBackoff: a queue opened on a database whose destination
// is backing off waits out the stored backoff (or a Reset).
func TestRestartKeepsBackoff(t *testing.T) {
	cfg := Config{MinBackoff: time.Hour, MaxBackoff: time.Hour}
	forEachBackend(t, cfg, func(t *testing.T, h *harness) {
		h.sender.setBehaviour(func(context.Context, string, int) error { return errDown })
		h.enqueueEDU([]string{remote}, "m.receipt", `{}`)
		h.start()
		h.waitFor("a stored backoff", func() bool { return h.state(remote).failures == 1 })
		h.q.Close()
		h.sender.setBehaviour(nil)
		h.q = h.open()
		h.start()
		// The restarted worker has read the backoff and waits on it: it
		// is running, and has sent nothing, once its destination is
		// registered and a Reset is needed to make it send.
		h.waitFor("a worker", func() bool {
			h.q.mu.Lock()
			defer h.q.mu.Unlock()
			return h.q.workers[remote] != nil
		})
		if n := len(h.sender.sent(remote, false)); n != 1 {
			t.Fatalf("%d sends, want only the failed one", n)
		}
		h.q.Reset(remote)
		h.waitFor("delivery", func() bool { return len(h.sender.sent(remote, true)) == 1 })
	})
}

// TestCatchUp: after a failure a long backlog is cut to the newest PDU of
// each room; the transaction in flight and every EDU are kept.
func TestCatchUp(t *testing.T) {
	cfg := Config{MinBackoff: time.Hour, MaxBackoff: time.Hour, CatchUpAfter: 10}
	forEachBackend(t, cfg, func(t *testing.T, h *harness) {
		rooms := []string{"!a:hs1.test", "!b:hs1.test", "!c:hs1.test"}
		for range 100 {
			for _, r := range rooms {
				h.enqueuePDUs([]string{remote}, r, h.storeEvents(t, r, 1))
			}
		}
		for i := range 120 {
			h.enqueueEDU([]string{remote}, "m.direct_to_device", fmt.Sprintf(`{"i":%d}`, i))
		}
		h.sender.setBehaviour(func(context.Context, string, int) error { return errDown })
		h.start()
		h.waitFor("a failure", func() bool { return h.state(remote).failures == 1 })
		if p, e := h.q.Backlog(remote); p != 53 || e != 120 {
			t.Fatalf("Backlog after a failure = %d, %d; want 53 (50 in flight, 1 per room), 120", p, e)
		}
		h.sender.setBehaviour(nil)
		h.q.Reset(remote)
		h.waitFor("an empty backlog", func() bool { p, e := h.q.Backlog(remote); return p == 0 && e == 0 })
		want := append(seq(1, 50), 298, 299, 300)
		if got := h.sender.pduNumbers(t, remote); !reflect.DeepEqual(got, want) {
			t.Errorf("PDUs delivered = %v, want %v", got, want)
		}
		var edus int
		for _, c := range h.sender.sent(remote, true) {
			edus += len(c.txn.EDUs)
		}
		if edus != 120 {
			t.Errorf("%d EDUs delivered, want 120", edus)
		}
		if st := h.state(remote); st.catchUp {
			t.Errorf("still catching up with an empty backlog: %+v", st)
		}
	})
}

// TestStaleTyping: a typing notification waiting longer than StaleTyping
// is dropped; other EDUs are not.
func TestStaleTyping(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, h *harness) {
		h.enqueueEDU([]string{remote}, "m.typing", `{"typing":true}`)
		h.enqueueEDU([]string{remote}, "m.direct_to_device", `{"old":true}`)
		h.advance(StaleTyping + time.Second)
		h.enqueueEDU([]string{remote}, "m.typing", `{"typing":false}`)
		h.start()
		h.waitFor("delivery", func() bool { return len(h.sender.sent(remote, true)) == 1 })
		var got []string
		for _, e := range h.sender.sent(remote, true)[0].txn.EDUs {
			got = append(got, e.Type+string(e.Content))
		}
		want := []string{`m.direct_to_device{"old":true}`, `m.typing{"typing":false}`}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("EDUs = %v, want %v", got, want)
		}
	})
}

// TestIndependentDestinations: a destination whose sends hang does not
// hold up another.
func TestIndependentDestinations(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, h *harness) {
		const dead = "dead.test"
		hung := make(chan struct{}, 1)
		h.sender.setBehaviour(func(ctx context.Context, dest string, _ int) error {
			if dest != dead {
				return nil
			}
			signal(hung)
			<-ctx.Done()
			return ctx.Err()
		})
		h.start()
		ids := h.storeEvents(t, "!r:hs1.test", 60)
		h.enqueuePDUs([]string{dead}, "!r:hs1.test", ids[:1])
		<-hung
		h.enqueuePDUs([]string{dead, remote}, "!r:hs1.test", ids[1:])
		h.waitFor("delivery to the live destination", func() bool { p, _ := h.q.Backlog(remote); return p == 0 })
		if got := h.sender.pduNumbers(t, remote); !reflect.DeepEqual(got, seq(2, 60)) {
			t.Errorf("PDUs delivered = %v, want 2..60", got)
		}
		if n := len(h.sender.sent(dead, false)); n != 0 {
			t.Errorf("the hanging send returned (%d calls finished)", n)
		}
		if p, _ := h.q.Backlog(dead); p != 60 {
			t.Errorf("dead destination's backlog = %d, want 60", p)
		}
	})
}

// TestEDUOrder: EDUs enqueued while the worker runs and fails now and
// then reach the destination exactly once each, in order.
func TestEDUOrder(t *testing.T) {
	cfg := Config{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxEDUs: 7, Now: time.Now}
	forEachBackend(t, cfg, func(t *testing.T, h *harness) {
		h.sender.setBehaviour(func(_ context.Context, _ string, n int) error {
			if n%3 == 0 {
				return errDown
			}
			return nil
		})
		h.start()
		const n = 120
		for i := range n {
			h.enqueueEDU([]string{remote, "other.test"}, "m.direct_to_device", fmt.Sprintf(`{"i":%d}`, i))
		}
		for _, dest := range []string{remote, "other.test"} {
			h.waitFor("an empty backlog", func() bool { _, e := h.q.Backlog(dest); return e == 0 })
			var got []int
			for _, c := range h.sender.sent(dest, true) {
				if len(c.txn.EDUs) > 7 {
					t.Errorf("transaction with %d EDUs, over MaxEDUs", len(c.txn.EDUs))
				}
				for _, e := range c.txn.EDUs {
					var v struct{ I int }
					if err := json.Unmarshal(e.Content, &v); err != nil {
						t.Fatal(err)
					}
					got = append(got, v.I)
				}
			}
			if !reflect.DeepEqual(got, seq(0, n-1)) {
				t.Errorf("%s: EDUs delivered = %v, want 0..%d in order", dest, got, n-1)
			}
		}
	})
}

// TestUnsignedDropped: a stored event's "unsigned" is not sent, and a PDU
// whose event is gone is skipped.
func TestUnsignedDropped(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, h *harness) {
		room := "!r:hs1.test"
		b := []byte(`{"content":{"body":"\"unsigned\""},"room_id":"!r:hs1.test","type":"m.room.message","unsigned":{"age":5}}`)
		ids := h.storeEvents(t, room, 1)
		if err := h.db.Commit(h.ctx, &storage.Batch{RoomID: room, Events: []storage.PersistEvent{{
			Record: storage.EventRecord{EventID: "$u", RoomID: room, Type: "m.room.message", Outlier: true, JSON: b},
		}}}); err != nil {
			t.Fatal(err)
		}
		h.enqueuePDUs([]string{remote}, room, []string{ids[0], "$missing", "$u"})
		h.start()
		h.waitFor("delivery", func() bool { return len(h.sender.sent(remote, true)) == 1 })
		pdus := h.sender.sent(remote, true)[0].txn.PDUs
		if len(pdus) != 2 {
			t.Fatalf("%d PDUs sent, want 2", len(pdus))
		}
		if want := `{"content":{"body":"\"unsigned\""},"room_id":"!r:hs1.test","type":"m.room.message"}`; string(pdus[1]) != want {
			t.Errorf("PDU = %s, want %s", pdus[1], want)
		}
		if !strings.Contains(string(pdus[0]), `"n":1`) {
			t.Errorf("PDU = %s, want the first event as stored", pdus[0])
		}
	})
}

func TestEnqueueValidation(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, h *harness) {
		for _, e := range []EDU{
			{Type: "", Content: json.RawMessage(`{}`)},
			{Type: "m.receipt", Content: json.RawMessage(`[]`)},
			{Type: "m.receipt", Content: json.RawMessage(`{"a":`)},
			{Type: "m.receipt", Content: json.RawMessage(`{"a":"` + strings.Repeat("x", maxTxnEDUBytes) + `"}`)},
		} {
			if err := h.q.EnqueueEDU(h.ctx, []string{remote}, e); err == nil {
				t.Errorf("EnqueueEDU(%s, %.20s) succeeded", e.Type, e.Content)
			}
		}
		if err := h.q.EnqueuePDU(h.ctx, []string{remote}, "", "$e"); err == nil {
			t.Error("EnqueuePDU without a room succeeded")
		}
		// Only ourselves: nothing is queued.
		if err := h.q.EnqueuePDU(h.ctx, []string{us}, "!r:hs1.test", "$e"); err != nil {
			t.Fatal(err)
		}
		dests, err := h.q.pendingDestinations(h.ctx)
		if err != nil || len(dests) != 0 {
			t.Errorf("pending destinations = %v, %v; want none", dests, err)
		}
		if _, err := New(Config{ServerName: us}, nil, h.sender, nil); err == nil {
			t.Error("New without a database succeeded")
		}
		for _, bad := range []Config{{}, {ServerName: us, MaxPDUs: 51}, {ServerName: us, MaxEDUs: 101},
			{ServerName: us, MinBackoff: time.Hour, MaxBackoff: time.Second}} {
			if _, err := New(bad, h.db, h.sender, nil); err == nil {
				t.Errorf("New(%+v) succeeded", bad)
			}
		}
	})
}

func TestFederationPDU(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":1}`, `{"a":1}`},
		{`{"a":"unsigned"}`, `{"a":"unsigned"}`},
		{`{"a":"\"unsigned\""}`, `{"a":"\"unsigned\""}`},
		{`{"b":{"unsigned":1},"a":2}`, `{"b":{"unsigned":1},"a":2}`}, // passed through as stored
		{`{"unsigned":{"age":1},"a":2}`, `{"a":2}`},
	} {
		got, err := federationPDU([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("federationPDU(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := federationPDU([]byte(`{"unsigned":`)); err == nil {
		t.Error("federationPDU of bad JSON succeeded")
	}
}
