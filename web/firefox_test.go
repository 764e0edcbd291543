package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/web/internal/bidi"
)

// Issue 7: the web client works in Firefox as in Chromium. These tests
// drive headless Firefox through WebDriver BiDi (web/internal/bidi), with
// the other side of each conversation, call and scene in Chromium, so
// that they prove the two interoperate, not just that each works alone.

// firefoxPath finds Firefox; without it the test skips, except where a
// browser is required (CI), where it fails.
func firefoxPath(t *testing.T) string {
	t.Helper()
	return browserPath(t, "firefox", ".ci/firefox.sh", "firefox-esr", "firefox")
}

// firefoxPrefs are what newBrowser's Chromium flags are for Chromium.
var firefoxPrefs = map[string]any{
	// A fake camera (moving colours) and microphone (a tone), granted
	// without a prompt.
	"media.navigator.streams.fake":        true,
	"media.navigator.permission.disabled": true,
	// Media plays without a user gesture.
	"media.autoplay.default":         0,
	"media.autoplay.blocking_policy": 0,
	// ICE on the loopback interface (which Firefox leaves out by
	// default), and host candidates as plain addresses, not mDNS names.
	"media.peerconnection.ice.loopback":                 true,
	"media.peerconnection.ice.obfuscate_host_addresses": false,
	// WebGL on a headless machine's software renderer (with
	// firefoxEnv): Firefox's GPU blocklist refuses Mesa's llvmpipe.
	"webgl.force-enabled": true,
}

// firefoxEnv: headless Firefox on Linux finds no GL through GLX (there is
// no X display); through EGL it gets Mesa's llvmpipe.
var firefoxEnv = []string{"MOZ_WEBGL_FORCE_EGL=1"}

// firefox is one headless Firefox; its pages are tabs in user contexts
// of their own.
type firefox struct {
	b     *bidi.Firefox
	mu    sync.Mutex       // guards pages
	pages map[string]*page // by browsing context, for console messages
}

func newFirefox(t *testing.T) *firefox {
	t.Helper()
	path := firefoxPath(t)
	f := &firefox{pages: map[string]*page{}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := bidi.Launch(ctx, bidi.Options{Path: path, Prefs: firefoxPrefs, Env: firefoxEnv, OnLog: f.console})
	if err != nil {
		t.Fatalf("starting firefox: %v", err)
	}
	f.b = b
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- firefox's output (tail) ----\n%s", tail(b.Stderr(), 40))
		}
		b.Close()
	})
	return f
}

func (f *firefox) console(tab, level, text string) {
	f.mu.Lock()
	p := f.pages[tab]
	f.mu.Unlock()
	if p != nil {
		p.logConsole(level + ": " + text)
	}
}

// newPage opens a tab in a user context of its own.
func (f *firefox) newPage(t *testing.T, name string, shots *int) *page {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	openCtx, cancelOpen := context.WithTimeout(ctx, 30*time.Second)
	defer cancelOpen()
	tab, err := f.b.NewTab(openCtx)
	if err != nil {
		cancel()
		t.Fatalf("opening a tab for %s: %v", name, err)
	}
	p := &page{t: t, name: name, ctx: ctx, ff: tab, dir: artifactDir(t), shots: shots}
	f.mu.Lock()
	f.pages[tab.ID()] = p
	f.mu.Unlock()
	t.Cleanup(func() {
		p.printConsole()
		cancel()
	})
	return p
}

// firefoxAndChromium starts a Firefox and a Chromium and opens a tab in
// each, named ffName and crName: the two sides of an interop test.
func firefoxAndChromium(t *testing.T, ffName, crName string) (inFirefox, inChromium *page) {
	t.Helper()
	ff := newFirefox(t)
	cr := newBrowser(t)
	steps := new(int) // the test's screenshot counter
	return ff.newPage(t, ffName, steps), cr.newPage(t, crName, steps)
}

// pairAcross signs up alice in Firefox and bob in Chromium and puts
// them in one room as pair does (alice creates it, in Firefox).
func pairAcross(t *testing.T, s *server) (alice, bob *page) {
	t.Helper()
	alice, bob = firefoxAndChromium(t, "alice-firefox", "bob-chromium")
	pair(t, s, alice, bob)
	return alice, bob
}

// bidiEvaluate evaluates expr in the tab and converts the value to T
// through JSON, as chromedp does with what Chromium returns.
func bidiEvaluate[T any](ctx context.Context, tab *bidi.Tab, expr string, await bool) (T, error) {
	var out T
	v, err := tab.Evaluate(ctx, expr, await)
	if err != nil {
		return out, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return out, err
	}
	err = json.Unmarshal(b, &out)
	return out, err
}

// pollJS is waitJS for Firefox, which has no in-page polling command.
func (p *page) pollJS(what, expr string, timeout time.Duration) {
	p.t.Helper()
	if ok, err := pollTrue(p, expr, timeout); !ok {
		p.shot("failed-" + what)
		p.t.Fatalf("%s: waiting for %s: not within %v (last error: %v)", p.name, what, timeout, err)
	}
}

// shownJS is a JavaScript test that the selector finds an element that
// takes up room on the page and is not hidden.
func shownJS(css string) string {
	return `(() => { const e = document.querySelector(` + js(css) + `); if (!e) return false;
		const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden'; })()`
}

// bidiClick is a real mouse click at the middle of the element, once it
// is shown, scrolled into view first (as chromedp's Click does).
func (p *page) bidiClick(what, css string) {
	p.t.Helper()
	p.waitJS(what+": "+css+" shown", shownJS(css), 45*time.Second)
	at := eval[[]float64](p, `(() => { const e = document.querySelector(`+js(css)+`);
		e.scrollIntoView({block: 'center', inline: 'center'});
		const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()`)
	ctx, cancel := context.WithTimeout(p.ctx, 45*time.Second)
	defer cancel()
	if err := p.ff.Click(ctx, at[0], at[1]); err != nil {
		p.shot("failed-" + what)
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// bidiType focuses the element, once shown, and types the text as key presses.
func (p *page) bidiType(what, css, text string) {
	p.t.Helper()
	p.waitJS(what+": "+css+" shown", shownJS(css), 45*time.Second)
	eval[any](p, `document.querySelector(`+js(css)+`).focus()`)
	ctx, cancel := context.WithTimeout(p.ctx, 45*time.Second)
	defer cancel()
	if err := p.ff.Type(ctx, text); err != nil {
		p.shot("failed-" + what)
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// bidiOpen loads the URL and waits until the element is shown.
func (p *page) bidiOpen(url, css string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 45*time.Second)
	defer cancel()
	if err := p.ff.Navigate(ctx, url); err != nil {
		p.t.Fatalf("%s: open %s: %v", p.name, url, err)
	}
	p.waitJS(css+" shown", shownJS(css), 45*time.Second)
}

// TestFirefoxChat: alice in Firefox and bob in Chromium sign up, share
// a room (alice creates it in Firefox), and chat live both ways, each
// seeing the other typing and the other's read receipt.
func TestFirefoxChat(t *testing.T) {
	clearArtifacts(t)
	s := startServer(t)
	alice, bob := pairAcross(t, s)
	alice.shot("room")

	// Each way: typing shows on the other side before the message
	// arrives, and stops showing when it has.
	for _, m := range []struct {
		from, to  *page
		who, text string
	}{
		{alice, bob, "alice", "hello from firefox"},
		{bob, alice, "bob", "hello from chromium"},
	} {
		m.from.typeInto("type", "#composer", m.text)
		m.to.waitJS(m.who+" typing", `document.getElementById('typing')?.textContent === `+js(m.who+" is typing…"), 20*time.Second)
		m.to.shot(m.who + "-typing")
		m.from.click("send", "#send")
		m.to.waitJS(m.who+"'s message", messageShown(m.text), 20*time.Second)
		m.to.waitJS("typing over", `document.getElementById('typing')?.textContent === ''`, 20*time.Second)
	}
	alice.waitJS("bob's receipt", receiptShown("hello from firefox", "bob"), 20*time.Second)
	bob.waitJS("alice's receipt", receiptShown("hello from chromium", "alice"), 20*time.Second)
	alice.shot("chat")
	bob.shot("chat")
}

// TestFirefoxCall: 1:1 video calls between Firefox and Chromium, each
// way round (so Firefox both makes the offer and answers one), with
// video decoded and rising on both sides.
func TestFirefoxCall(t *testing.T) {
	clearArtifacts(t)
	s := startServer(t)
	alice, bob := pairAcross(t, s)

	for _, c := range []struct {
		caller, callee *page
		callerName     string
		calleeName     string
	}{
		{alice, bob, "alice", "bob"},
		{bob, alice, "bob", "alice"},
	} {
		c.caller.click("call "+c.calleeName, "#call-start")
		c.caller.waitJS("calling", `document.getElementById('call-status')?.textContent === `+js("Calling "+c.calleeName+"…"), 20*time.Second)
		c.callee.waitJS("ringing", `document.getElementById('call-status')?.textContent === `+js("Incoming video call from "+c.callerName), 20*time.Second)
		c.callee.shot("ringing")
		c.callee.click("answer", "#call-answer")
		for _, p := range []*page{c.caller, c.callee} {
			p.waitJS("connected", `document.getElementById('call-status')?.textContent.startsWith('In call with')`, 30*time.Second)
			framesDecoded(p, framesDecoded(p, 0)+10) // rising: frames keep arriving
			p.shot("in-call")
		}
		c.caller.click("hang up", "#call-hangup")
		c.callee.waitJS("call over", `document.getElementById('call-status')?.textContent === 'The other side hung up'`, 20*time.Second)
		c.callee.shot("hung-up")
		for _, p := range []*page{c.caller, c.callee} {
			p.click("close the call", "#call-close")
			p.waitJS("the call closed", `document.querySelector('.call-layer')?.hidden === true`, 10*time.Second)
		}
	}
	for _, p := range []*page{alice, bob} {
		p.waitJS("both calls in the timeline", `[...document.querySelectorAll('.ev.notice .body')].filter(e => e.textContent.endsWith('ended the call')).length === 2`, 20*time.Second)
	}
	alice.shot("after-calls")
}

// TestFirefoxGroupCall: alice in Firefox and bob in Chromium join the
// room's group call through the SFU (livekit-client in both); each
// decodes the other's video, and keeps decoding.
func TestFirefoxGroupCall(t *testing.T) {
	clearArtifacts(t)
	s := startSFUServer(t)
	alice, bob := pairAcross(t, s)

	users := map[*page]string{alice: "@alice:" + s.ServerName, bob: "@bob:" + s.ServerName}
	for _, p := range []*page{alice, bob} {
		p.click("open the call panel", `.tabs button[data-panel="call"]`)
		p.waitJS("an empty call", `document.getElementById('gc-present')?.textContent === 'No one is in the call.'`, 10*time.Second)
	}
	alice.click("join", "#gc-join")
	alice.waitJS("joined", `document.getElementById('gc-status')?.textContent === 'In the call'`, 60*time.Second)
	bob.waitJS("alice in the call", `document.getElementById('gc-present')?.dataset.users === `+js(users[alice]), 30*time.Second)
	bob.click("join", "#gc-join")
	for _, p := range []*page{alice, bob} {
		p.waitJS("joined", `document.getElementById('gc-status')?.textContent === 'In the call'`, 60*time.Second)
		p.waitJS("two tiles", `document.querySelectorAll('#gc-grid .gc-tile').length === 2`, 60*time.Second)
	}
	for p, other := range map[*page]string{alice: users[bob], bob: users[alice]} {
		first := waitStats(p, "video from the other", 90*time.Second, func(m map[string]int) bool {
			n, _ := decodedFrom(m, other)
			return n > 0 && len(m) == 1
		})
		waitStats(p, "video from the other rising", 60*time.Second, func(m map[string]int) bool {
			n, _ := decodedFrom(m, other)
			was, _ := decodedFrom(first, other)
			return n >= was+10
		})
		p.shot("in-call")
	}

	// Mute in Firefox shows on bob's tile in Chromium.
	alice.click("mute", "#gc-mic")
	alice.waitJS("muted", `document.getElementById('gc-mic').getAttribute('aria-pressed') === 'true'`, 10*time.Second)
	bob.waitJS("alice's tile muted", tileJS(users[alice])+`?.querySelector('.gc-badge')?.hidden === false`, 30*time.Second)
	bob.shot("alice-muted")

	alice.click("leave", "#gc-leave")
	alice.waitJS("left", `document.getElementById('gc-status')?.textContent === 'Not in the call'`, 30*time.Second)
	bob.waitJS("alice's tile gone", `!`+tileJS(users[alice])+` && document.querySelectorAll('#gc-grid .gc-tile').length === 1`, 30*time.Second)
	bob.shot("alice-left")
}

// TestFirefoxScene: alice in Chromium and bob in Firefox open the room's
// 3D scene (WebGL in headless Firefox draws on the software renderer);
// alice moves an object and bob sees it, bob taps the floor in Firefox
// (real pointer input) and alice sees his avatar walk there.
func TestFirefoxScene(t *testing.T) {
	clearArtifacts(t)
	s := startSFUServer(t)
	bob, alice := firefoxAndChromium(t, "bob-firefox", "alice-chromium")
	alice.register(s, "alice", "alice-password")
	bob.register(s, "bob", "bob-password")
	alice.typeInto("name the room", "#new-room-name", "Scene")
	alice.typeInto("give it an address", "#new-room-alias", "scene")
	alice.click("create the room", "#create-room")
	alice.waitJS("the new room open", `document.getElementById('room-title')?.textContent === 'Scene'`, 30*time.Second)
	bob.joinByAlias("#scene:"+s.ServerName, "Scene")

	alice.openScene(0)
	bob.openScene(1)
	alice.waitSceneJoined(1)
	if msg := eval[string](bob, `document.querySelector('.scene-nogl')?.textContent ?? ''`); msg != "" {
		t.Fatalf("Firefox draws no scene: %s", msg)
	}
	bob.waitJS("the scene drawn", `!!document.querySelector('#scene-stage canvas') && window.plexusDebug.scene.screenPoint('obj/1') !== null`, 30*time.Second)
	for _, p := range []*page{alice, bob} {
		p.waitJS("own avatar announced", `window.plexusDebug.scene.avatarPosition() !== null`, 30*time.Second)
		p.shot("scene-joined")
	}

	// alice moves obj/1 in Chromium; bob sees it in Firefox.
	home := alice.objectPosition("obj/1")
	moved := scenePos{home[0] + 900, home[1], home[2] + 600}
	sent := eval[float64](alice, fmt.Sprintf(`window.plexusDebug.scene.moveObject('obj/1', %d, %d, %d)`, moved[0], moved[1], moved[2]))
	bob.waitJS("obj/1 moved", objectAt("obj/1", moved), 30*time.Second)
	// Both pages read one machine clock (performance.timeOrigin + now).
	t.Logf("obj/1's move seen in Firefox %.1f ms after Chromium sent it", eval[float64](bob, `window.plexusDebug.scene.changedAt('obj/1')`)-sent)
	bob.shot("obj1-moved")

	// bob taps the floor in Firefox and walks there; alice sees him arrive.
	bobID := eval[string](bob, `window.plexusDebug.scene.identity()`)
	spot := eval[[]float64](bob, `window.plexusDebug.scene.floorPoint(2200, -300)`)
	ctx, cancel := context.WithTimeout(bob.ctx, 30*time.Second)
	err := bob.ff.Click(ctx, spot[0], spot[1])
	cancel()
	if err != nil {
		t.Fatalf("tapping the floor: %v", err)
	}
	arrived := fmt.Sprintf(`(() => { const p = window.plexusDebug.scene.avatarPosition(%s);
		return !!p && Math.hypot(p[0] - 2200, p[2] + 300) < 150; })()`, js(bobID))
	bob.waitJS("walked to the spot", arrived, 30*time.Second)
	alice.waitJS("bob's avatar where he walked", arrived, 30*time.Second)
	bob.shot("walked")
	alice.shot("bob-walked")

	for _, p := range []*page{alice, bob} {
		p.click("leave the scene", "#scene-leave")
		p.waitJS("out of the scene", `window.plexusDebug.scene.state() === 'idle'`, 30*time.Second)
	}
}
