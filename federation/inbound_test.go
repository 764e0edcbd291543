package federation

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/rooms"
)

// TestSendRefusesBadTransactions: a transaction that is not a well-formed
// Transaction (Server-Server API, PUT /_matrix/federation/v1/send) is
// refused whole with the standard error body, and nothing of it is
// stored, handled or recorded as processed (so a corrected retry under
// the same txnId is processed).
func TestSendRefusesBadTransactions(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, envOptions{}, "hs2.test")
		hs2 := e.peers["hs2.test"]
		msg := e.message(hs2, "valid")
		pdu := json.RawMessage(msg.Event.JSON())
		typing := map[string]any{"edu_type": "m.typing", "content": map[string]any{"room_id": string(e.room), "user_id": string(hs2.user()), "typing": true}}

		var many []json.RawMessage
		for i := range 51 {
			many = append(many, json.RawMessage(e.message(hs2, fmt.Sprint("many ", i)).Event.JSON()))
		}
		manyEDUs := make([]map[string]any, 101)
		for i := range manyEDUs {
			manyEDUs[i] = typing
		}
		with := func(k string, v any) map[string]any {
			b := txn(hs2, []json.RawMessage{pdu}, []map[string]any{typing})
			if v == nil {
				delete(b, k)
			} else {
				b[k] = v
			}
			return b
		}
		cases := []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"array", []byte(`[]`), 400, "M_BAD_JSON"},
			{"null", []byte(`null`), 400, "M_BAD_JSON"},
			{"string", []byte(`"txn"`), 400, "M_BAD_JSON"},
			{"origin of another server", with("origin", "hs3.test"), 403, "M_FORBIDDEN"},
			{"origin missing", with("origin", nil), 400, "M_MISSING_PARAM"},
			{"origin not a string", with("origin", 7), 400, "M_BAD_JSON"},
			{"origin_server_ts missing", with("origin_server_ts", nil), 400, "M_MISSING_PARAM"},
			{"origin_server_ts a string", with("origin_server_ts", "now"), 400, "M_BAD_JSON"},
			{"pdus missing", with("pdus", nil), 400, "M_MISSING_PARAM"},
			{"pdus not an array", with("pdus", map[string]any{}), 400, "M_BAD_JSON"},
			{"edus not an array", with("edus", "typing"), 400, "M_BAD_JSON"},
			{"51 PDUs", txn(hs2, many, nil), 400, "M_BAD_JSON"},
			{"101 EDUs", txn(hs2, nil, manyEDUs), 400, "M_BAD_JSON"},
		}
		before := e.eventCount()
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				txnID := fmt.Sprint("bad", i)
				_, err := e.send(context.Background(), hs2, txnID, c.body)
				wantMatrixError(t, err, c.status, c.code)
				if e.recordedTxn(hs2.name, txnID) {
					t.Fatal("the refused transaction was recorded as processed")
				}
			})
		}
		if n := e.eventCount(); n != before {
			t.Fatalf("refused transactions stored %d events", n-before)
		}
		for _, p := range append(many, pdu) {
			if ev, _ := rooms.ParseEvent(p, mustVersion(t, e)); e.stored(ev.ID()) != nil {
				t.Fatalf("%s was stored", ev.ID())
			}
		}
		if n := e.edus.count(); n != 0 {
			t.Fatalf("%d EDUs of refused transactions were handled", n)
		}

		// A corrected retry under a refused txnId is processed.
		raw, err := e.send(context.Background(), hs2, "bad0", txn(hs2, []json.RawMessage{pdu}, []map[string]any{typing}))
		if err != nil {
			t.Fatal(err)
		}
		wantPDUResult(t, raw, msg.Event.ID(), "")
		if e.edus.count() != 1 {
			t.Fatalf("EDUs handled: %d, want 1", e.edus.count())
		}
	})
}

// TestSendRefusesUnreadableBodies: bodies that are not JSON, or larger
// than any transaction can be, are refused before the handler runs.
func TestSendRefusesUnreadableBodies(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, envOptions{}, "hs2.test")
		hs2 := e.peers["hs2.test"]
		before := e.eventCount()

		// Not JSON: the request cannot even be signed over it; the
		// header signs an empty body.
		status, body := e.rawSend(hs2, "notjson", []byte(`{"origin": "hs2.test", "pdus": [`))
		wantErrorBody(t, status, body, 400, "M_NOT_JSON")

		// Larger than DefaultMaxBody, properly signed: 413.
		big := fmt.Appendf(nil, `{"origin":%q,"origin_server_ts":1,"pdus":[],"pad":"%s"}`, hs2.name, strings.Repeat("x", 17<<20))
		_, err := e.send(context.Background(), hs2, "big", big)
		wantMatrixError(t, err, 413, "M_TOO_LARGE")

		if n := e.eventCount(); n != before {
			t.Fatalf("stored %d events", n-before)
		}
		for _, id := range []string{"notjson", "big"} {
			if e.recordedTxn(hs2.name, id) {
				t.Fatalf("transaction %s was recorded", id)
			}
		}
	})
}

// TestSendBadPDUs: PDUs that are not valid events of the room's version,
// or are for a room we are not in, each get an error in the answer keyed
// by their event ID, the transaction's other PDUs are processed, and
// nothing of the bad ones is stored.
func TestSendBadPDUs(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, envOptions{}, "hs2.test")
		hs2 := e.peers["hs2.test"]
		v := mustVersion(t, e)
		before := e.eventCount()

		// Every bad PDU is a mutation of base, which cites our latest
		// event; good comes after base.
		base := e.message(hs2, "base")
		good := e.message(hs2, "good")
		mutate := func(f func(m map[string]any)) json.RawMessage {
			var m map[string]any
			if err := json.Unmarshal(base.Event.JSON(), &m); err != nil {
				t.Fatal(err)
			}
			f(m)
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		bad := map[string]json.RawMessage{
			"sender missing":         mutate(func(m map[string]any) { delete(m, "sender") }),
			"depth a string":         mutate(func(m map[string]any) { m["depth"] = "5" }),
			"prev_events not a list": mutate(func(m map[string]any) { m["prev_events"] = "$x" }),
			// Content is not covered by a message's reference hash:
			// another timestamp gives it an ID of its own.
			"content not an object": mutate(func(m map[string]any) {
				m["content"] = "hello"
				m["origin_server_ts"] = m["origin_server_ts"].(float64) + 1
			}),
			"hashes missing": mutate(func(m map[string]any) { delete(m, "hashes") }),
			// Client-Server API, "Size limits": 65536 bytes per event.
			"larger than 64 KiB": mutate(func(m map[string]any) {
				m["content"] = map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", 70000)}
				m["origin_server_ts"] = m["origin_server_ts"].(float64) + 2
			}),
			// v11+ carries redacts in content (rooms fragment v11,
			// MSC2174): a non-string one is malformed.
			"redaction with a non-string redacts": mutate(func(m map[string]any) {
				m["type"] = "m.room.redaction"
				m["content"] = map[string]any{"redacts": 7}
			}),
			"unknown room": mutate(func(m map[string]any) { m["room_id"] = "!nowhere:hs2.test" }),
		}
		// A claimed event_id is not how v4+ events are named: the ID is
		// the reference hash, whatever the PDU claims, and a claim to be
		// another event is not believed.
		claim := mutate(func(m map[string]any) { m["event_id"] = string(good.Event.ID()) })
		claimEv, err := rooms.ParseEvent(claim, v)
		if err != nil {
			t.Fatal(err)
		}

		pdus := []json.RawMessage{claim}
		for _, p := range bad {
			pdus = append(pdus, p)
		}
		noRoom := mutate(func(m map[string]any) { delete(m, "room_id") })
		pdus = append(pdus, noRoom, json.RawMessage(`"not an object"`), json.RawMessage(`[]`))
		raw, err := e.send(context.Background(), hs2, "t1", txn(hs2, pdus, nil))
		if err != nil {
			t.Fatal(err)
		}
		for name, p := range bad {
			id, ok := rooms.ReferenceID(v, p)
			if !ok {
				t.Fatalf("%s: no reference hash", name)
			}
			wantPDUResult(t, raw, id, "error")
			if e.stored(id) != nil {
				t.Fatalf("%s: stored", name)
			}
		}
		noRoomID, _ := rooms.ReferenceID(v, noRoom)
		wantPDUResult(t, raw, noRoomID, "error")
		wantPDUResult(t, raw, claimEv.ID(), "")
		if claimEv.ID() != base.Event.ID() {
			t.Fatalf("the PDU claiming an event_id is %s, want %s", claimEv.ID(), base.Event.ID())
		}
		if e.stored(good.Event.ID()) != nil {
			t.Fatal("the event a PDU claimed to be was stored")
		}
		if n := e.eventCount(); n != before+1 {
			t.Fatalf("stored %d events, want 1 (the PDU claiming an event_id)", n-before)
		}
		if rec := e.stored(base.Event.ID()); rec == nil || rec.Outlier || rec.Rejected != "" {
			t.Fatalf("the PDU claiming an event_id was not placed: %+v", rec)
		}

		// The valid event alone, afterwards, is processed normally.
		raw, err = e.send(context.Background(), hs2, "t2", txn(hs2, []json.RawMessage{good.Event.JSON()}, nil))
		if err != nil {
			t.Fatal(err)
		}
		wantPDUResult(t, raw, good.Event.ID(), "")
	})
}

// TestSendReplayedTxnID: the same txnId from the same origin is processed
// once, whether it is replayed after the first answer or at the same time
// as the first attempt, and every attempt gets the same answer. Another
// origin's transaction with the same ID is its own.
func TestSendReplayedTxnID(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, envOptions{}, "hs2.test", "hs3.test")
		hs2, hs3 := e.peers["hs2.test"], e.peers["hs3.test"]
		typing := map[string]any{"edu_type": "m.typing", "content": map[string]any{"room_id": string(e.room), "user_id": string(hs2.user()), "typing": true}}
		before := e.eventCount()

		msg := e.message(hs2, "once")
		body := txn(hs2, []json.RawMessage{msg.Event.JSON()}, []map[string]any{typing})
		first, err := e.send(context.Background(), hs2, "same", body)
		if err != nil {
			t.Fatal(err)
		}
		wantPDUResult(t, first, msg.Event.ID(), "")
		again, err := e.send(context.Background(), hs2, "same", body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("replay answered %s, first %s", again, first)
		}
		if e.edus.count() != 1 {
			t.Fatalf("EDUs handled %d times, want 1", e.edus.count())
		}

		// Concurrent attempts at one new transaction.
		msg2 := e.message(hs2, "concurrent")
		body = txn(hs2, []json.RawMessage{msg2.Event.JSON()}, []map[string]any{typing})
		const n = 8
		answers := make([]json.RawMessage, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[i], errs[i] = e.send(context.Background(), hs2, "concurrent", body)
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if !bytes.Equal(answers[i], answers[0]) {
				t.Fatalf("attempt %d answered %s, attempt 0 %s", i, answers[i], answers[0])
			}
		}
		wantPDUResult(t, answers[0], msg2.Event.ID(), "")
		if e.edus.count() != 2 {
			t.Fatalf("EDUs handled %d times, want 2", e.edus.count())
		}

		// hs3's "same" is another transaction.
		e.sync(hs3)
		msg3 := e.message(hs3, "hs3 same")
		if _, err := e.send(context.Background(), hs3, "same", txn(hs3, []json.RawMessage{msg3.Event.JSON()}, []map[string]any{typing})); err != nil {
			t.Fatal(err)
		}
		if e.edus.count() != 3 {
			t.Fatalf("EDUs handled %d times, want 3", e.edus.count())
		}
		if n := e.eventCount(); n != before+3 {
			t.Fatalf("stored %d events, want 3", n-before)
		}
	})
}

// TestSendMissingEventsRefused: a PDU whose prev events we lack, from an
// origin that refuses to tell us about them, is answered promptly and
// held (stored as an outlier, not placed), and placed once its prev
// event arrives. One whose auth events we lack, when the origin refuses
// /event_auth, is refused and not stored (Server-Server API, "Checks
// performed on receipt of a PDU", step 4: the auth events must be known).
func TestSendMissingEventsRefused(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, envOptions{}, "hs2.test")
		hs2 := e.peers["hs2.test"]
		hs2.setOverride(refuse)
		ext, err := e.svc.Extremities(context.Background(), e.room)
		if err != nil {
			t.Fatal(err)
		}

		gap := e.message(hs2, "gap")
		after := e.message(hs2, "after the gap")
		start := time.Now()
		raw, err := e.send(context.Background(), hs2, "t1", txn(hs2, []json.RawMessage{after.Event.JSON()}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("answered after %v", d)
		}
		wantPDUResult(t, raw, after.Event.ID(), "")
		if rec := e.stored(after.Event.ID()); rec == nil || !rec.Outlier {
			t.Fatalf("the event after the gap is not held: %+v", rec)
		}
		if now, _ := e.svc.Extremities(context.Background(), e.room); !equalIDs(now, ext) {
			t.Fatalf("extremities moved to %v", now)
		}
		raw, err = e.send(context.Background(), hs2, "t2", txn(hs2, []json.RawMessage{gap.Event.JSON()}, nil))
		if err != nil {
			t.Fatal(err)
		}
		wantPDUResult(t, raw, gap.Event.ID(), "")
		eventually(t, 10*time.Second, "the held event to be placed", func() bool {
			rec := e.stored(after.Event.ID())
			return rec != nil && !rec.Outlier
		})

		// Missing auth events: bob changes his displayname (not sent to
		// us) and then speaks; the message's auth events cite the
		// unknown member event.
		before := e.eventCount()
		member := e.build(hs2, "m.room.member", ptr(string(hs2.user())), `{"membership":"join","displayname":"Bob"}`)
		msg := e.message(hs2, "as Bob")
		raw, err = e.send(context.Background(), hs2, "t3", txn(hs2, []json.RawMessage{msg.Event.JSON()}, nil))
		if err != nil {
			t.Fatal(err)
		}
		wantPDUResult(t, raw, msg.Event.ID(), "error")
		for _, id := range []rooms.EventID{member.Event.ID(), msg.Event.ID()} {
			if e.stored(id) != nil {
				t.Fatalf("%s was stored", id)
			}
		}
		if n := e.eventCount(); n != before {
			t.Fatalf("stored %d events", n-before)
		}
	})
}

// TestSendHangingOrigin: an origin that hangs when asked for missing
// events or auth chains holds up only its own transaction, and only for
// our request timeout: other servers' transactions in the same room go
// through meanwhile.
func TestSendHangingOrigin(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		const timeout = 2 * time.Second
		e := newEnv(t, backend, envOptions{requestTimeout: timeout}, "hs2.test", "hs3.test")
		hs2, hs3 := e.peers["hs2.test"], e.peers["hs3.test"]
		entered := make(chan string, 8)
		release := make(chan struct{})
		defer close(release)
		hs2.setOverride(hangOn(entered, release, "/_matrix/federation/v1/get_missing_events/", "/_matrix/federation/v1/event_auth/",
			"/_matrix/federation/v1/event/", "/_matrix/federation/v1/state"))

		e.message(hs2, "gap")
		after := e.message(hs2, "after the gap")
		type result struct {
			raw json.RawMessage
			err error
			d   time.Duration
		}
		done := make(chan result, 1)
		go func() {
			start := time.Now()
			raw, err := e.send(context.Background(), hs2, "hang", txn(hs2, []json.RawMessage{after.Event.JSON()}, nil))
			done <- result{raw, err, time.Since(start)}
		}()
		// Whether the gap is walked while the transaction waits or after
		// it is answered, hs2 is asked, and hangs.
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("hs2 was never asked for the missing events")
		}

		// hs2's transaction is stuck on hs2; hs3's goes through.
		e.sync(hs3)
		other := e.message(hs3, "meanwhile")
		start := time.Now()
		raw, err := e.send(context.Background(), hs3, "other", txn(hs3, []json.RawMessage{other.Event.JSON()}, nil))
		if err != nil {
			t.Fatal(err)
		}
		wantPDUResult(t, raw, other.Event.ID(), "")
		if d := time.Since(start); d >= timeout {
			t.Fatalf("hs3's transaction took %v, as long as hs2's hang", d)
		}
		if rec := e.stored(other.Event.ID()); rec == nil || rec.Outlier {
			t.Fatalf("hs3's event was not placed: %+v", rec)
		}

		// hs2's own transaction ends, bounded by our timeouts (at most:
		// each server asked once for the gap and once for the state).
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatal(r.err)
			}
			wantPDUResult(t, r.raw, after.Event.ID(), "")
			if r.d > 6*timeout {
				t.Fatalf("hs2's transaction took %v", r.d)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("hs2's transaction never ended")
		}
		if rec := e.stored(after.Event.ID()); rec == nil || !rec.Outlier {
			t.Fatalf("the event after the gap is not held: %+v", rec)
		}
	})
}

// TestOutboundHangingDestination: a destination that accepts TCP and then
// never answers does not delay delivery to the other servers in the room:
// the queue sends to each destination on its own.
func TestOutboundHangingDestination(t *testing.T) {
	onBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, envOptions{requestTimeout: time.Minute}, "hs2.test", "hs3.test")
		hs2, hs3 := e.peers["hs2.test"], e.peers["hs3.test"]
		hs3.holdConnections()
		entered := make(chan string, 8)
		release := make(chan struct{})
		defer close(release)
		// A connection already open when holding began is held too.
		hs3.setOverride(hangOn(entered, release, "/_matrix/federation/v1/send/"))

		first := e.append("m.room.message", nil, `{"msgtype":"m.text","body":"one"}`)
		select {
		case <-hs3.ln.held:
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("we never tried to reach hs3")
		}
		second := e.append("m.room.message", nil, `{"msgtype":"m.text","body":"two"}`)
		start := time.Now()
		eventually(t, 10*time.Second, "hs2 to receive both messages", func() bool {
			got := strings.Join(toStrings(hs2.sentBodies()), "\n")
			return strings.Contains(got, string(first.Event.ID())) && strings.Contains(got, string(second.Event.ID())) ||
				strings.Contains(got, eventIDless(first)) && strings.Contains(got, eventIDless(second))
		})
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("delivery to hs2 took %v", d)
		}
		if len(hs3.sentBodies()) != 0 {
			t.Fatal("hs3 received a transaction")
		}
	})
}

// eventIDless is a fragment of an event's JSON that a transaction
// carrying it contains (v4+ PDUs carry no event_id).
func eventIDless(st *rooms.Stored) string {
	h, _ := st.Event.Object().Path("hashes", "sha256")
	s, _ := h.Str()
	return s
}

func toStrings(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

func equalIDs(a, b []rooms.EventID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustVersion(t *testing.T, e *env) *rooms.Version {
	t.Helper()
	info, err := e.db.Room(context.Background(), string(e.room))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := rooms.LookupVersion(info.Version)
	if !ok {
		t.Fatalf("unknown version %s", info.Version)
	}
	return v
}

// wantPDUResult checks one PDU's entry in a /send answer: "" for
// processed, "error" for an error.
func wantPDUResult(t *testing.T, raw json.RawMessage, id rooms.EventID, want string) {
	t.Helper()
	var resp txnResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	r, ok := resp.PDUs[string(id)]
	switch {
	case !ok:
		t.Fatalf("no result for %s in %s", id, raw)
	case want == "" && r.Error != nil:
		t.Fatalf("%s: error %q, want processed", id, *r.Error)
	case want == "error" && (r.Error == nil || *r.Error == ""):
		t.Fatalf("%s: processed, want an error (%s)", id, raw)
	}
}

// rawSend PUTs body to /send as the peer over HTTPS, with an
// Authorization header signed over no body (a body that is not JSON
// cannot be signed), and returns the status and answer.
func (e *env) rawSend(p *peer, txnID string, body []byte) (int, []byte) {
	e.t.Helper()
	uri := "/_matrix/federation/v1/send/" + txnID
	auth, err := transport.SignRequest(p.name, usName, testKeyID, p.key, http.MethodPut, uri, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, "https://"+e.addr+uri, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: usName, RootCAs: e.roots}}, Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.StatusCode, b
}

// wantErrorBody checks a status and standard error body.
func wantErrorBody(t *testing.T, status int, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	var me struct {
		Code string `json:"errcode"`
		Msg  string `json:"error"`
	}
	if status != wantStatus || json.Unmarshal(body, &me) != nil || me.Code != wantCode || me.Msg == "" {
		t.Fatalf("got %d %s, want %d %s", status, body, wantStatus, wantCode)
	}
}
