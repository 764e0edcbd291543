package interop

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/fedtest"
)

// TestHostileServer is issue 4's hostile fourth server, against real
// Plexus processes on both storage backends: hs4, driven by
// gomatrixserverlib, joins a room hosted on hs1 through hs1's federation
// listener, then sends hs1 an event with a bad signature, a transaction
// with a bad X-Matrix signature, an event with a bad content hash and,
// once banned, events that evade the ban or cite it. Each is handled as
// the Server-Server API's "Checks performed on receipt of a PDU" says,
// and no client on hs1 or hs2 is shown anything hs4 forged.
func TestHostileServer(t *testing.T) {
	onBackends(t, testHostileServer)
}

// tokens are the clients' /sync positions before a case.
type tokens map[*mautrix.Client]string

func (x *fourth) tokens(t *testing.T) tokens {
	t.Helper()
	out := tokens{}
	for _, c := range []*mautrix.Client{x.alice, x.bob} {
		_, next := syncSince(t, c, x.room, "")
		out[c] = next
	}
	return out
}

// unseen checks, once a marker shows that hs1 and hs2 are past a case,
// that no client on hs1 or hs2 was sent any of the events live (an
// incremental /sync since the case began) or is shown them in the room's
// history (/sync and /messages), that hs2 never stored them, and that no
// forged body reached a client.
func (x *fourth) unseen(t *testing.T, since tokens, ids ...string) {
	t.Helper()
	x.marker(t)
	for _, c := range []*mautrix.Client{x.alice, x.bob} {
		live, _ := syncSince(t, c, x.room, since[c])
		history := clientView(t, c, x.room)
		for _, id := range ids {
			if ev, ok := live[id]; ok {
				t.Errorf("%s was sent hs4's %s live: %s", c.UserID, id, ev.Content.VeryRaw)
			}
			if ev, ok := history[id]; ok {
				t.Errorf("%s is shown hs4's %s in the timeline: %s", c.UserID, id, ev.Content.VeryRaw)
			}
		}
		noHostileBodies(t, c.UserID.String()+" (live)", live)
		noHostileBodies(t, c.UserID.String(), history)
	}
	g2 := x.hs2.Graph(t, x.room.String())
	for _, id := range ids {
		if g2.Has(id) {
			t.Errorf("hs2 stored hs4's %s, which only hs1 was sent", id)
		}
	}
}

// pduError is the error of one PDU in a transaction's answer; ok is false
// when the answer does not name the PDU.
func pduError(res txnResult, eventID string) (msg string, ok bool) {
	r, ok := res.PDUs[eventID]
	if !ok {
		return "", false
	}
	if r.Error == nil {
		return "", true
	}
	return *r.Error, true
}

// rewriteContent changes an event's content after it was hashed and
// signed: the signatures (over the redacted event, which has no message
// content) still hold, the content hash does not.
func rewriteContent(t *testing.T, data []byte, content map[string]any) []byte {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	obj["content"] = c
	out, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	canon, err := gmsl.CanonicalJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	return canon
}

func testHostileServer(t *testing.T, backend string) {
	ctx := context.Background()
	x := newFourth(t, backend)
	x.foreignJoinReal(t)
	h, room := x.h, x.room.String()
	own := h.foreign.priv
	seed := sha256.Sum256([]byte("not hs4's key"))
	forgedKey := ed25519.NewKeyFromSeed(seed[:])

	// a. An event whose signature does not verify: "Passes signature
	// checks, otherwise it is dropped" (step 2). Nothing is stored, and
	// the answer names the PDU with an error.
	t.Run("bad signature", func(t *testing.T) {
		since := x.tokens(t)
		ev := h.build(t, room, hs4User, "m.room.message", nil, text("hostile: forged signature"), h.snapshot())
		res := h.sendTxn(t, "hs1", "", own, replaceSignature(t, ev.JSON()))
		if res.status != http.StatusOK {
			t.Fatalf("PUT /send with a badly signed PDU: %d %s; a bad PDU is not an error of the transaction", res.status, res.body)
		}
		if msg, ok := pduError(res, ev.EventID()); !ok || msg == "" {
			t.Errorf("the answer %s has no error for the badly signed %s", res.body, ev.EventID())
		}
		t.Logf("hs1 answered %d %s", res.status, res.body)
		x.unseen(t, since, ev.EventID())
		if x.hs1.Graph(t, room).Has(ev.EventID()) {
			t.Errorf("hs1 stored the badly signed %s; it must be dropped", ev.EventID())
		}
	})

	// b. A transaction whose X-Matrix signature does not verify: 401
	// M_UNAUTHORIZED ("Request Authentication"), nothing processed. The
	// same transaction signed properly is then accepted: the event was
	// refused for the request's signature alone, and the refusal left no
	// record of the transaction ID that would answer the retry.
	t.Run("bad X-Matrix signature", func(t *testing.T) {
		since := x.tokens(t)
		ev := h.build(t, room, hs4User, "m.room.message", nil, text("hs4 after a forged request"), h.snapshot())
		txnID := "hs4-forged-request"
		res := h.sendTxn(t, "hs1", txnID, forgedKey, ev.JSON())
		if res.status != http.StatusUnauthorized || res.errcode() != "M_UNAUTHORIZED" {
			t.Fatalf("PUT /send signed with a key that is not hs4's: %d %s, want 401 M_UNAUTHORIZED", res.status, res.body)
		}
		t.Logf("hs1 answered %d %s", res.status, res.body)
		x.unseen(t, since, ev.EventID())
		if x.hs1.Graph(t, room).Has(ev.EventID()) {
			t.Fatalf("hs1 stored %s from a request it refused", ev.EventID())
		}

		res = h.sendTxn(t, "hs1", txnID, own, ev.JSON())
		if msg, ok := pduError(res, ev.EventID()); res.status != http.StatusOK || !ok || msg != "" {
			t.Fatalf("the same transaction properly signed: %d %s, want the event accepted", res.status, res.body)
		}
		h.place(ev, "")
		placed(t, x.hs1, x.room, ev.EventID())
		fedtest.Eventually(t, 30*time.Second, "alice to see hs4's message", func() (bool, error) {
			_, ok := clientView(t, x.alice, x.room)[ev.EventID()]
			return ok, nil
		})
	})

	// d. An event whose content was rewritten after it was signed: "Passes
	// hash checks, otherwise it is redacted before being processed
	// further" (step 3). It passes the auth rules, so it is accepted in
	// its redacted form, and the redacted form is all anyone is given:
	// clients see the event with empty content, and hs1 serves it
	// redacted to other servers.
	var rewritten string
	t.Run("bad content hash", func(t *testing.T) {
		since := x.tokens(t)
		ev := h.build(t, room, hs4User, "m.room.message", nil, text("what hs4 signed"), h.snapshot())
		rewritten = ev.EventID()
		data := rewriteContent(t, ev.JSON(), map[string]any{"msgtype": "m.text", "body": "hostile: rewritten history"})
		res := h.sendTxn(t, "hs1", "", own, data)
		if msg, ok := pduError(res, rewritten); res.status != http.StatusOK || !ok || msg != "" {
			t.Fatalf("PUT /send with a rewritten PDU: %d %s, want it accepted (redacted)", res.status, res.body)
		}
		t.Logf("hs1 answered %d %s", res.status, res.body)
		redacted, err := h.gv.NewEventFromUntrustedJSON(data)
		if err != nil || !redacted.Redacted() {
			t.Fatalf("gomatrixserverlib does not see the rewritten event as redacted: %v", err)
		}
		h.place(redacted, "")
		g1 := placed(t, x.hs1, x.room, rewritten)
		if g1.SoftFailed[rewritten] {
			t.Errorf("hs1 soft-failed %s; with its content redacted it passes the auth rules", rewritten)
		}
		x.marker(t)
		for _, c := range []*mautrix.Client{x.alice, x.bob} {
			live, _ := syncSince(t, c, x.room, since[c])
			history := clientView(t, c, x.room)
			noHostileBodies(t, c.UserID.String()+" (live)", live)
			noHostileBodies(t, c.UserID.String(), history)
			ev, ok := history[rewritten]
			if !ok {
				t.Errorf("%s is not shown the accepted (redacted) %s", c.UserID, rewritten)
				continue
			}
			if len(ev.Content.Raw) != 0 {
				t.Errorf("%s is shown %s with content %s, want the redacted form's empty content", c.UserID, rewritten, ev.Content.VeryRaw)
			}
		}
		// What hs1 gives other servers (GET /event) is the redacted
		// form too.
		got := h.request(t, "hs1", http.MethodGet, "/_matrix/federation/v1/event/"+url.PathEscape(rewritten), nil, own)
		var txn struct {
			PDUs []json.RawMessage `json:"pdus"`
		}
		if got.status != http.StatusOK || json.Unmarshal(got.body, &txn) != nil || len(txn.PDUs) != 1 {
			t.Fatalf("GET /event/%s from hs1: %d %s", rewritten, got.status, got.body)
		}
		var served struct {
			Content map[string]any `json:"content"`
		}
		if err := json.Unmarshal(txn.PDUs[0], &served); err != nil || len(served.Content) != 0 {
			t.Errorf("hs1 serves %s with content %v, want the redacted form", rewritten, served.Content)
		}
	})

	// c. hs1's admin bans hs4's user; hs1 sends hs4 the ban.
	preBan := h.snapshot()
	if _, err := x.alice.BanUser(ctx, x.room, &mautrix.ReqBanUser{UserID: id.UserID(hs4User), Reason: "hostile server"}); err != nil {
		t.Fatal(err)
	}
	var postBan view
	fedtest.Eventually(t, 30*time.Second, "hs4 to receive the ban", func() (bool, error) {
		postBan = h.snapshot()
		return postBan.state["m.room.member\x00"+hs4User] != preBan.state["m.room.member\x00"+hs4User], nil
	})
	ban := postBan.state["m.room.member\x00"+hs4User]
	if !h.received(ban, "hs1") {
		t.Fatalf("hs4's membership changed to %s, which hs1 did not send", ban)
	}

	// c1. Ban evasion: an event on the DAG before the ban, citing the
	// pre-ban join. It passes the auth rules on its auth events (step 4)
	// and on the state before it (step 5), and fails on the current state
	// (step 6): soft-failed. "When an event is 'soft failed' it should not
	// be relayed to the client nor be referenced by new events created by
	// the homeserver."
	t.Run("ban evasion soft-fails", func(t *testing.T) {
		since := x.tokens(t)
		ev := h.build(t, room, hs4User, "m.room.message", nil, text("hostile: evading the ban"), preBan)
		res := h.sendTxn(t, "hs1", "", own, ev.JSON())
		if msg, ok := pduError(res, ev.EventID()); res.status != http.StatusOK || !ok || msg != "" {
			t.Errorf("PUT /send with a soft-failing PDU: %d %s; soft-failed events are otherwise handled as usual", res.status, res.body)
		}
		g1 := x.hs1.Graph(t, room)
		t.Logf("hs1 answered %d %s; stored soft-failed=%v rejected=%q", res.status, res.body, g1.SoftFailed[ev.EventID()], g1.Rejected[ev.EventID()])
		switch {
		case g1.Rejected[ev.EventID()] != "":
			t.Errorf("hs1 rejected %s (%s); it passes the auth rules at its auth events and prev events, and must be soft-failed", ev.EventID(), g1.Rejected[ev.EventID()])
		case !g1.SoftFailed[ev.EventID()]:
			t.Errorf("hs1 did not soft-fail %s (stored: %v)", ev.EventID(), g1.Has(ev.EventID()))
		}
		x.unseen(t, since, ev.EventID())
		for _, e := range x.hs1.Graph(t, room).Extremities {
			if e == ev.EventID() {
				t.Errorf("hs1 keeps the soft-failed %s as a forward extremity", ev.EventID())
			}
		}
	})

	// c2. An event whose auth events include the ban: "Passes
	// authorisation rules based on the event's auth events, otherwise it
	// is rejected" (step 4). A rejected PDU does not make the
	// transaction an error ("Rejection").
	t.Run("event citing the ban is rejected", func(t *testing.T) {
		since := x.tokens(t)
		ev := h.build(t, room, hs4User, "m.room.message", nil, text("hostile: banned and saying so"), postBan)
		res := h.sendTxn(t, "hs1", "", own, ev.JSON())
		if res.status != http.StatusOK {
			t.Errorf("PUT /send with a rejected PDU: %d %s, want 200", res.status, res.body)
		}
		g1 := x.hs1.Graph(t, room)
		t.Logf("hs1 answered %d %s; stored rejected=%q", res.status, res.body, g1.Rejected[ev.EventID()])
		if g1.Rejected[ev.EventID()] == "" {
			t.Errorf("hs1 did not reject %s (soft-failed %v, placed %v)", ev.EventID(), g1.SoftFailed[ev.EventID()], g1.Prevs[ev.EventID()] != nil)
		}
		x.unseen(t, since, ev.EventID())
	})

	// c3. An event after the ban that cites the pre-ban join: allowed by
	// its auth events (step 4), refused by the state before it, where the
	// user is banned: "Passes authorisation rules based on the state
	// before the event, otherwise it is rejected" (step 5).
	t.Run("event after the ban citing the join is rejected", func(t *testing.T) {
		since := x.tokens(t)
		ev := h.build(t, room, hs4User, "m.room.message", nil, text("hostile: pretending the ban never happened"), view{prev: postBan.prev, state: preBan.state})
		res := h.sendTxn(t, "hs1", "", own, ev.JSON())
		if res.status != http.StatusOK {
			t.Errorf("PUT /send with a rejected PDU: %d %s, want 200", res.status, res.body)
		}
		g1 := x.hs1.Graph(t, room)
		t.Logf("hs1 answered %d %s; stored rejected=%q", res.status, res.body, g1.Rejected[ev.EventID()])
		if g1.Rejected[ev.EventID()] == "" {
			t.Errorf("hs1 did not reject %s (soft-failed %v, placed %v)", ev.EventID(), g1.SoftFailed[ev.EventID()], g1.Prevs[ev.EventID()] != nil)
		}
		x.unseen(t, since, ev.EventID())
	})

	// Everything the Plexus servers sent hs4 passed gomatrixserverlib's
	// checks.
	h.checkProblems(t)
}
