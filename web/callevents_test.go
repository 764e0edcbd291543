package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The 1:1 call tests read what the clients signalled from the room's
// timeline on the server (GET /rooms/{roomId}/messages), not from the
// pages: what another client would see.

// callEvent is one m.call.* event of a room's timeline.
type callEvent struct {
	Type    string `json:"type"`
	Sender  string `json:"sender"`
	Content struct {
		CallID          string          `json:"call_id"`
		PartyID         string          `json:"party_id"`
		Version         json.RawMessage `json:"version"`
		SelectedPartyID string          `json:"selected_party_id"`
		Reason          *string         `json:"reason"`
		Lifetime        int             `json:"lifetime"`
	} `json:"content"`
}

// callEvents reads the room's m.call.* events, oldest first, as the
// user whose token it is sees them.
func (s *server) callEvents(t *testing.T, token, roomID string) ([]callEvent, error) {
	t.Helper()
	var out []callEvent
	from := ""
	for range 50 { // pages of 100: far more than any test sends
		q := url.Values{"dir": {"b"}, "limit": {"100"}}
		if from != "" {
			q.Set("from", from)
		}
		req, err := http.NewRequest(http.MethodGet, s.URL+"/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			Chunk []callEvent `json:"chunk"`
			End   string      `json:"end"`
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || err != nil {
			return nil, fmt.Errorf("/messages: status %d, %v", res.StatusCode, err)
		}
		for _, ev := range page.Chunk { // newest first
			if strings.HasPrefix(ev.Type, "m.call.") {
				out = append(out, ev)
			}
		}
		if page.End == "" || len(page.Chunk) == 0 {
			for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
				out[i], out[j] = out[j], out[i]
			}
			return out, nil
		}
		from = page.End
	}
	return nil, fmt.Errorf("/messages: no end after 50 pages")
}

// waitCallEvents reads the room's call events until check accepts them,
// failing the test with check's last complaint after 20 seconds.
func (s *server) waitCallEvents(t *testing.T, token, roomID, what string, check func([]callEvent) error) []callEvent {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		evs, err := s.callEvents(t, token, roomID)
		if err == nil {
			if err = check(evs); err == nil {
				return evs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v\ncall events:\n%s", what, err, describeCallEvents(evs))
		}
		<-tick.C // the poll interval of a wait with a deadline
	}
}

func describeCallEvents(evs []callEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		reason := ""
		if ev.Content.Reason != nil {
			reason = " reason=" + *ev.Content.Reason
		}
		fmt.Fprintf(&b, "  %s %s call_id=%s party_id=%s version=%s%s\n",
			ev.Sender, ev.Type, ev.Content.CallID, ev.Content.PartyID, ev.Content.Version, reason)
	}
	return b.String()
}

// hangupReasons are the m.call.hangup reasons of version 1 (spec: event
// schema m.call.hangup, where reason is required).
var hangupReasons = map[string]bool{
	"ice_timeout": true, "ice_failed": true, "invite_timeout": true, "user_hangup": true,
	"user_media_failed": true, "user_busy": true, "unknown_error": true,
}

// checkCommonFields holds every call event to the common fields of
// version 1 (spec: "Voice over IP", Common Fields; the CallEvent schema
// requires call_id, party_id and version, and version is the string "1").
func checkCommonFields(evs []callEvent) error {
	for _, ev := range evs {
		c := ev.Content
		if c.CallID == "" || c.PartyID == "" {
			return fmt.Errorf("%s from %s without call_id or party_id", ev.Type, ev.Sender)
		}
		if string(c.Version) != `"1"` {
			return fmt.Errorf("%s from %s on %s: version %s, want the string \"1\"", ev.Type, ev.Sender, c.CallID, c.Version)
		}
		if ev.Type == "m.call.hangup" && (c.Reason == nil || !hangupReasons[*c.Reason]) {
			return fmt.Errorf("m.call.hangup from %s on %s without a version 1 reason", ev.Sender, c.CallID)
		}
	}
	return nil
}

// onCall returns the events of the call of that type, in timeline order.
func onCall(evs []callEvent, callID, typ string) []callEvent {
	var out []callEvent
	for _, ev := range evs {
		if ev.Content.CallID == callID && ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// answeredCall checks the signalling of one answered call (spec: "Voice
// over IP", Client behaviour): caller invited, callee answered, and then
// the caller sent m.call.select_answer with its own party_id and the
// answer's party_id as selected_party_id; candidates come from those two
// parties; hungUpBy (if not empty) ended it with reason user_hangup.
// It returns the caller's and the callee's party_ids.
func answeredCall(evs []callEvent, callID, caller, callee, hungUpBy string) (callerParty, calleeParty string, err error) {
	if err := checkCommonFields(evs); err != nil {
		return "", "", err
	}
	one := func(typ, sender string) (callEvent, error) {
		got := onCall(evs, callID, typ)
		if len(got) != 1 || got[0].Sender != sender {
			return callEvent{}, fmt.Errorf("call %s: want one %s from %s, have %d", callID, typ, sender, len(got))
		}
		return got[0], nil
	}
	invite, err := one("m.call.invite", caller)
	if err != nil {
		return "", "", err
	}
	if invite.Content.Lifetime <= 0 {
		return "", "", fmt.Errorf("call %s: invite without a lifetime", callID)
	}
	answer, err := one("m.call.answer", callee)
	if err != nil {
		return "", "", err
	}
	sel, err := one("m.call.select_answer", caller)
	if err != nil {
		return "", "", err
	}
	callerParty, calleeParty = invite.Content.PartyID, answer.Content.PartyID
	if sel.Content.PartyID != callerParty {
		return "", "", fmt.Errorf("call %s: select_answer party_id %q, but the invite's is %q", callID, sel.Content.PartyID, callerParty)
	}
	if sel.Content.SelectedPartyID != calleeParty {
		return "", "", fmt.Errorf("call %s: select_answer selected_party_id %q, but the answer's party_id is %q", callID, sel.Content.SelectedPartyID, calleeParty)
	}
	answered := false
	for _, ev := range evs {
		if ev.Content.CallID != callID {
			continue
		}
		switch {
		case ev.Type == "m.call.answer":
			answered = true
		case ev.Type == "m.call.select_answer" && !answered:
			return "", "", fmt.Errorf("call %s: select_answer before the answer", callID)
		case ev.Type == "m.call.candidates" &&
			!(ev.Sender == caller && ev.Content.PartyID == callerParty) && !(ev.Sender == callee && ev.Content.PartyID == calleeParty):
			return "", "", fmt.Errorf("call %s: candidates from %s party %q, neither the caller's nor the chosen answer's", callID, ev.Sender, ev.Content.PartyID)
		}
	}
	if hungUpBy != "" {
		party := map[string]string{caller: callerParty, callee: calleeParty}[hungUpBy]
		h, err := one("m.call.hangup", hungUpBy)
		if err != nil {
			return "", "", err
		}
		if h.Content.PartyID != party || *h.Content.Reason != "user_hangup" {
			return "", "", fmt.Errorf("call %s: hangup from %s with party_id %q reason %q, want %q user_hangup", callID, hungUpBy, h.Content.PartyID, *h.Content.Reason, party)
		}
	}
	return callerParty, calleeParty, nil
}
