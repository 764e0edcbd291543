package web_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestCall: alice video-calls bob in their room (m.call.invite, answer,
// candidates, select_answer, hangup as room events), both decode the
// other's video, once on whatever path ICE picks and once with "relay
// only" set, forced through the server's TURN relay.
func TestCall(t *testing.T) {
	for _, tc := range []struct {
		name  string
		relay bool
	}{
		{"direct", false},
		{"relay", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, alice, bob, roomID := startPair(t)
			if tc.relay {
				for _, p := range []*page{alice, bob} {
					p.do("open settings", chromedp.Click(chromedp.ID("open-settings")), chromedp.WaitVisible(chromedp.ID("setting-relay-only")))
					p.do("turn relay only on", chromedp.Click(chromedp.ID("setting-relay-only")))
					p.shot("settings")
					p.checkNames("settings dialog")
					p.do("close settings", chromedp.Click(chromedp.ID("settings-close")), chromedp.WaitNotPresent(chromedp.CSS("dialog.settings")))
				}
			}

			alice.do("call bob", chromedp.Click(chromedp.ID("call-start")))
			alice.waitJS("calling", `document.getElementById('call-status')?.textContent === 'Calling bob…'`, 20*time.Second)
			bob.waitJS("ringing", `document.getElementById('call-status')?.textContent === 'Incoming video call from alice'`, 20*time.Second)
			bob.shot("ringing")
			bob.checkNames("incoming call")
			bob.do("answer", chromedp.Click(chromedp.ID("call-answer")))

			for _, p := range []*page{alice, bob} {
				p.waitJS("connected", `document.getElementById('call-status')?.textContent.startsWith('In call with')`, 30*time.Second)
				first := framesDecoded(p, 0)
				// Rising: frames keep arriving, not a single keyframe.
				framesDecoded(p, first+10)
				typ := eval[string](p, `document.getElementById('call-stats').dataset.localCandidateType`)
				switch {
				case tc.relay && typ != "relay":
					t.Errorf("%s: relay only, but the selected pair's local candidate is %q", p.name, typ)
				case !tc.relay && typ == "relay":
					t.Errorf("%s: a direct call went through the relay", p.name)
				}
				p.shot("in-call")
				p.checkNames("call view")
			}

			// The toggles turn the local tracks off and say so.
			alice.do("camera off", chromedp.Click(chromedp.ID("call-cam")))
			alice.waitJS("camera off", `document.getElementById('call-cam').getAttribute('aria-pressed') === 'true' &&
				document.getElementById('local-video').srcObject.getVideoTracks().every(t => !t.enabled)`, 5*time.Second)
			alice.do("microphone off", chromedp.Click(chromedp.ID("call-mic")))
			alice.waitJS("microphone off", `document.getElementById('call-mic').getAttribute('aria-label') === 'Unmute microphone' &&
				document.getElementById('local-video').srcObject.getAudioTracks().every(t => !t.enabled)`, 5*time.Second)
			alice.shot("muted")

			alice.do("hang up", chromedp.Click(chromedp.ID("call-hangup")))
			bob.waitJS("call over", `document.getElementById('call-status')?.textContent === 'The other side hung up'`, 20*time.Second)
			bob.shot("hung-up")
			bob.do("close", chromedp.Click(chromedp.ID("call-close")))
			bob.waitJS("the call in the timeline", `[...document.querySelectorAll('.ev.notice .body')].some(e => e.textContent === 'alice ended the call')`, 20*time.Second)
			bob.shot("after-call")

			// What they signalled, as the room's timeline has it: one
			// invite, answered by bob and selected by alice.
			token := s.login(t, "alice", "alice-password")
			aliceID, bobID := "@alice:"+s.ServerName, "@bob:"+s.ServerName
			s.waitCallEvents(t, token, roomID, "the call's signalling", func(evs []callEvent) error {
				var invites []callEvent
				for _, ev := range evs {
					if ev.Type == "m.call.invite" {
						invites = append(invites, ev)
					}
				}
				if len(invites) != 1 {
					return fmt.Errorf("%d invites, want 1", len(invites))
				}
				_, _, err := answeredCall(evs, invites[0].Content.CallID, aliceID, bobID, aliceID)
				return err
			})
		})
	}
}

// framesDecoded waits until the call view reports more than min video
// frames decoded (from getStats) and returns the count.
func framesDecoded(p *page, min int) int {
	p.t.Helper()
	p.waitJS("frames decoded > "+strconv.Itoa(min),
		`Number(document.getElementById('call-stats')?.dataset.framesDecoded || 0) > `+strconv.Itoa(min), 30*time.Second)
	return eval[int](p, `Number(document.getElementById('call-stats').dataset.framesDecoded)`)
}

// debugCall is a call as window.plexusDebug.calls describes it (src/call/debug.js).
type debugCall struct {
	CallID        string `json:"callId"`
	PartyID       string `json:"partyId"`
	Outgoing      bool   `json:"outgoing"`
	State         string `json:"state"`
	EndReason     string `json:"endReason"`
	LocalStreamID string `json:"localStreamId"`
}

// TestCallGlare: alice and bob call each other, and each sends its
// invite before it sees the other's: the test holds the call events back
// in both tabs (plexusDebug.calls.hold) until the server has both
// invites. The spec's rule (Client-Server API, "Voice over IP", "Glare")
// for an invite that arrives after ours was sent: the call with the
// lexicographically lesser call_id survives, and the client whose call
// is the greater aborts it and accepts the other on the user's behalf,
// moving its media over. The call IDs are fixed so that each side wins
// once: a rule that favours the caller, the callee, the greater call_id
// or the lesser user ID fails one of the cases.
func TestCallGlare(t *testing.T) {
	for _, tc := range []struct {
		name               string
		aliceCall, bobCall string
	}{
		{"alice's call is the lesser", "glare-1", "glare-2"},
		{"bob's call is the lesser", "glare-2", "glare-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, alice, bob, roomID := startPair(t)
			token := s.login(t, "alice", "alice-password")
			aliceID, bobID := "@alice:"+s.ServerName, "@bob:"+s.ServerName

			// winner placed the lesser call, which survives; loser placed
			// the greater, which it aborts.
			winner, loser := alice, bob
			winnerID, loserID := aliceID, bobID
			lesser, greater := tc.aliceCall, tc.bobCall
			if tc.bobCall < tc.aliceCall {
				winner, loser = bob, alice
				winnerID, loserID = bobID, aliceID
				lesser, greater = tc.bobCall, tc.aliceCall
			}

			for _, p := range []*page{alice, bob} {
				id := map[*page]string{alice: tc.aliceCall, bob: tc.bobCall}[p]
				eval[bool](p, `(plexusDebug.calls.hold(), plexusDebug.calls.setNextCallId(`+js(id)+`), true)`)
				p.do("call", chromedp.Click(chromedp.ID("call-start")))
			}
			for _, p := range []*page{alice, bob} {
				p.waitJS("invite sent", `plexusDebug.calls.inviteSent()`, 20*time.Second)
			}
			s.waitCallEvents(t, token, roomID, "both invites on the server", func(evs []callEvent) error {
				for id, sender := range map[string]string{lesser: winnerID, greater: loserID} {
					if got := onCall(evs, id, "m.call.invite"); len(got) != 1 || got[0].Sender != sender {
						return fmt.Errorf("no invite %s from %s", id, sender)
					}
				}
				return nil
			})
			// Neither has seen the other's invite yet: each still has only its own call.
			for _, p := range []*page{alice, bob} {
				if calls := eval[[]debugCall](p, `plexusDebug.calls.list()`); len(calls) != 1 || !calls[0].Outgoing || calls[0].State != "invite_sent" {
					t.Fatalf("%s before the release: calls %+v, want only its own, invite sent", p.name, calls)
				}
				p.shot("both-invites-sent")
			}
			for _, p := range []*page{alice, bob} {
				eval[bool](p, `(plexusDebug.calls.release(), true)`)
			}

			// Media flows in one call.
			for _, p := range []*page{alice, bob} {
				p.waitJS("connected", `document.getElementById('call-status')?.textContent.startsWith('In call with')`, 30*time.Second)
				framesDecoded(p, framesDecoded(p, 0)+10)
				p.shot("in-call")
			}

			// Both are in the lesser call. The winner never took up the
			// greater; the loser's own call ended as replaced, and its
			// camera and microphone stream went on into the lesser call.
			wc := eval[[]debugCall](winner, `plexusDebug.calls.list()`)
			if len(wc) != 1 || wc[0].CallID != lesser || !wc[0].Outgoing || wc[0].State != "connected" {
				t.Errorf("%s (placed the lesser call): calls %+v, want its own %s alone, connected", winner.name, wc, lesser)
			}
			lc := eval[[]debugCall](loser, `plexusDebug.calls.list()`)
			switch {
			case len(lc) != 2:
				t.Errorf("%s (placed the greater call): calls %+v, want its own and the lesser", loser.name, lc)
			case lc[0].CallID != greater || !lc[0].Outgoing || lc[0].State != "ended" || lc[0].EndReason != "replaced":
				t.Errorf("%s: its own call %+v, want %s ended as replaced", loser.name, lc[0], greater)
			case lc[1].CallID != lesser || lc[1].Outgoing || lc[1].State != "connected":
				t.Errorf("%s: the call %+v, want %s answered and connected", loser.name, lc[1], lesser)
			case lc[1].LocalStreamID == "" || lc[1].LocalStreamID != lc[0].LocalStreamID:
				t.Errorf("%s: the lesser call sends stream %q, not the greater's %q", loser.name, lc[1].LocalStreamID, lc[0].LocalStreamID)
			}

			bob.do("hang up", chromedp.Click(chromedp.ID("call-hangup")))
			alice.waitJS("call over", `document.getElementById('call-status')?.textContent === 'The other side hung up'`, 20*time.Second)
			alice.do("close", chromedp.Click(chromedp.ID("call-close")))
			alice.shot("after-glare")

			// The room's timeline: the lesser call answered by the loser and
			// selected by the winner; the greater hung up by the loser, who
			// placed it, and nothing else on it.
			s.waitCallEvents(t, token, roomID, "the glare's signalling", func(evs []callEvent) error {
				if _, _, err := answeredCall(evs, lesser, winnerID, loserID, bobID); err != nil {
					return err
				}
				var other []string
				for _, ev := range evs {
					if ev.Content.CallID == greater && ev.Type != "m.call.invite" && ev.Type != "m.call.candidates" && ev.Type != "m.call.hangup" {
						other = append(other, ev.Sender+" "+ev.Type)
					}
					if ev.Content.CallID == greater && ev.Sender != loserID {
						return fmt.Errorf("%s sent %s on the greater call %s", ev.Sender, ev.Type, greater)
					}
				}
				if len(other) > 0 {
					return fmt.Errorf("on the greater call %s: %v", greater, other)
				}
				inv := onCall(evs, greater, "m.call.invite")
				if len(inv) != 1 {
					return fmt.Errorf("%d invites of %s, want 1", len(inv), greater)
				}
				party := inv[0].Content.PartyID
				if h := onCall(evs, greater, "m.call.hangup"); len(h) != 1 || h[0].Content.PartyID != party {
					return fmt.Errorf("want one hangup of %s from the party that invited, %s, have %d", greater, party, len(h))
				}
				return nil
			})
		})
	}
}
