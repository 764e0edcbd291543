package web_test

import (
	"context"
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
			clearArtifacts(t)
			s := startServer(t)
			b := newBrowser(t)
			steps := 0
			alice := b.newPage(t, "alice", &steps)
			bob := b.newPage(t, "bob", &steps)
			pair(t, s, alice, bob)
			if tc.relay {
				for _, p := range []*page{alice, bob} {
					p.do("open settings", chromedp.Click(chromedp.ID("open-settings")), chromedp.WaitVisible(chromedp.ID("setting-relay-only")))
					p.do("turn relay only on", chromedp.Click(chromedp.ID("setting-relay-only")))
					p.shot("settings")
					p.do("close settings", chromedp.Click(chromedp.ID("settings-close")), chromedp.WaitNotPresent(chromedp.CSS("dialog.settings")))
				}
			}

			alice.do("call bob", chromedp.Click(chromedp.ID("call-start")))
			alice.waitJS("calling", `document.getElementById('call-status')?.textContent === 'Calling bob…'`, 20*time.Second)
			bob.waitJS("ringing", `document.getElementById('call-status')?.textContent === 'Incoming video call from alice'`, 20*time.Second)
			bob.shot("ringing")
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

// TestCallGlare: alice and bob call each other at the same moment. Each
// client applies the spec's glare rule (Client-Server API, "Voice over
// IP", "Glare"): the call with the lesser call_id survives and is answered
// automatically, the other is dropped, so they end up in one call.
func TestCallGlare(t *testing.T) {
	clearArtifacts(t)
	s := startServer(t)
	b := newBrowser(t)
	steps := 0
	alice := b.newPage(t, "alice", &steps)
	bob := b.newPage(t, "bob", &steps)
	pair(t, s, alice, bob)

	errs := make(chan error, 2)
	for _, p := range []*page{alice, bob} {
		go func() {
			ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
			defer cancel()
			errs <- chromedp.Do(ctx, chromedp.Click(chromedp.ID("call-start")))
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("pressing call: %v", err)
		}
	}
	for _, p := range []*page{alice, bob} {
		p.waitJS("connected", `document.getElementById('call-status')?.textContent.startsWith('In call with')`, 30*time.Second)
		framesDecoded(p, framesDecoded(p, 0)+10)
		p.shot("in-call")
	}
	// One or two invites are in the room (whether the second was still
	// being prepared or already sent decides which rule applied), and
	// exactly one call was answered.
	bob.do("hang up", chromedp.Click(chromedp.ID("call-hangup")))
	alice.waitJS("call over", `document.getElementById('call-status')?.textContent === 'The other side hung up'`, 20*time.Second)
	for _, p := range []*page{alice, bob} {
		p.waitJS("the calls in the timeline", `(() => {
			const n = (text) => [...document.querySelectorAll('.ev.notice .body')].filter(e => e.textContent.endsWith(text)).length;
			const invites = n('started a video call');
			return invites >= 1 && invites <= 2 && n('answered the call') === 1 && n('ended the call') >= 1;
		})()`, 20*time.Second)
	}
	alice.do("close", chromedp.Click(chromedp.ID("call-close")))
	alice.shot("after-glare")
}
