package web_test

import (
	"bytes"
	"context"
	endian "encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// newVoiceBrowser is newBrowser with a voice-like fake microphone.
// Chromium's default fake microphone beeps for a few milliseconds a
// second, which no active-speaker detector (LiveKit's: 40 % of a 500 ms
// window at -35 dBov or louder) counts as speech.
func newVoiceBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	wav := filepath.Join(t.TempDir(), "voice.wav")
	if err := os.WriteFile(wav, voiceWAV(4*time.Second), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.WindowSize(1100, 760),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-audio-capture", wav), // looped
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return &browser{ctx: ctx}
}

// voiceWAV is a 48 kHz mono 16-bit WAV file of a buzzy voice whose pitch
// glides and whose loudness pulses at a syllable rate: loud enough, and
// unsteady enough that noise suppression leaves it be.
func voiceWAV(d time.Duration) []byte {
	const rate = 48000
	n := int(d.Seconds() * rate)
	var b bytes.Buffer
	le := func(v any) { _ = endian.Write(&b, endian.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + 2*n))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1)) // PCM
	le(uint16(1)) // mono
	le(uint32(rate))
	le(uint32(2 * rate))
	le(uint16(2))
	le(uint16(16))
	b.WriteString("data")
	le(uint32(2 * n))
	phase := 0.0
	for i := range n {
		t := float64(i) / rate
		f0 := 160 + 60*math.Sin(2*math.Pi*t/1.3)
		phase += 2 * math.Pi * f0 / rate
		var v float64
		for k := 1.0; k <= 8; k++ {
			v += math.Sin(k*phase) / k
		}
		v *= 0.25 * (0.65 + 0.35*math.Sin(2*math.Pi*4*t))
		le(int16(math.Max(-1, math.Min(1, v)) * 32767))
	}
	return b.Bytes()
}

// callStats is window.plexusDebug.callStats(): video frames decoded so
// far per remote LiveKit identity, from the receivers' getStats.
func callStats(p *page) map[string]int {
	p.t.Helper()
	raw := evalAsync[string](p, `window.plexusDebug.callStats().then(JSON.stringify)`)
	var m map[string]int
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		p.t.Fatalf("%s: call stats %q: %v", p.name, raw, err)
	}
	return m
}

// waitStats polls callStats until ok accepts them, and returns them.
func waitStats(p *page, what string, timeout time.Duration, ok func(map[string]int) bool) map[string]int {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		m := callStats(p)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			p.shot("failed-" + what)
			p.t.Fatalf("%s: waiting for %s: last stats %v", p.name, what, m)
		}
		<-tick.C // the poll interval of a wait with a deadline
	}
}

// decodedFrom sums the frames decoded from the user's devices.
func decodedFrom(m map[string]int, user string) (int, bool) {
	n, found := 0, false
	for id, f := range m {
		if strings.HasPrefix(id, user+":") {
			n, found = n+f, true
		}
	}
	return n, found
}

// tileJS is a JavaScript selector expression for the user's tile in the call grid.
func tileJS(user string) string {
	return `[...document.querySelectorAll('#gc-grid .gc-tile')].find(t => t.dataset.identity.startsWith(` + js(user+":") + `))`
}

// TestGroupCall: three users in a group call through the built-in SFU,
// the MatrixRTC way (membership state, token service, livekit-client):
// each decodes the other two's video, sees who speaks and who muted, and
// when one leaves, that one's tile goes from the others' grids and the
// membership from the room.
func TestGroupCall(t *testing.T) {
	clearArtifacts(t)
	s, data := startServerFlags(t, "--sfu=on", "--sfu-listen-ip", "127.0.0.1", "--sfu-udp-port", "0", "--sfu-tcp-port", "0")
	addAdmin(t, s, data, "root", "root-password") // reads the SFU's status
	b := newVoiceBrowser(t)
	steps := 0
	alice := b.newPage(t, "alice", &steps)
	bob := b.newPage(t, "bob", &steps)
	carol := b.newPage(t, "carol", &steps)
	pair(t, s, alice, bob)
	carol.register(s, "carol", "carol-password")
	alice.do("invite carol",
		chromedp.Click(chromedp.ID("invite-toggle")),
		chromedp.SendKeys(chromedp.ID("invite-user"), "@carol:"+s.ServerName),
		chromedp.Click(chromedp.ID("invite-send")))
	carol.waitJS("the invite", `!!document.querySelector('button[aria-label="Accept invite to Tea"]')`, 30*time.Second)
	carol.do("accept the invite", chromedp.Click(chromedp.CSS(`button[aria-label="Accept invite to Tea"]`)))
	carol.waitJS("the room open", `document.getElementById('room-title')?.textContent === 'Tea'`, 30*time.Second)

	users := map[*page]string{alice: "@alice:" + s.ServerName, bob: "@bob:" + s.ServerName, carol: "@carol:" + s.ServerName}
	all := []*page{alice, bob, carol}
	for _, p := range all {
		p.do("open the call panel", chromedp.Click(chromedp.CSS(`.tabs button[data-panel="call"]`)), chromedp.WaitVisible(chromedp.ID("gc-join")))
		p.waitJS("an empty call", `document.getElementById('gc-present')?.textContent === 'No one is in the call.'`, 10*time.Second)
	}
	alice.shot("before-call")

	// alice joins; the others see her in the call from the membership
	// state, before joining themselves.
	alice.do("join", chromedp.Click(chromedp.ID("gc-join")))
	alice.waitJS("joined", `document.getElementById('gc-status')?.textContent === 'In the call'`, 60*time.Second)
	bob.waitJS("alice in the call", `document.getElementById('gc-present')?.dataset.users === `+js(users[alice]), 30*time.Second)
	bob.shot("alice-in-call")
	for _, p := range []*page{bob, carol} {
		p.do("join", chromedp.Click(chromedp.ID("gc-join")))
	}
	for _, p := range all {
		p.waitJS("joined", `document.getElementById('gc-status')?.textContent === 'In the call'`, 60*time.Second)
		p.waitJS("three tiles", `document.querySelectorAll('#gc-grid .gc-tile').length === 3`, 60*time.Second)
		p.waitJS("everyone in the membership list", `document.getElementById('gc-present')?.dataset.users === `+
			js(users[alice]+" "+users[bob]+" "+users[carol]), 30*time.Second)
	}

	// Each decodes the other two's video, and keeps decoding.
	for _, p := range all {
		var others []string
		for q, u := range users {
			if q != p {
				others = append(others, u)
			}
		}
		first := waitStats(p, "video from both others", 90*time.Second, func(m map[string]int) bool {
			for _, u := range others {
				if n, _ := decodedFrom(m, u); n == 0 {
					return false
				}
			}
			return len(m) == 2
		})
		waitStats(p, "video from both others rising", 60*time.Second, func(m map[string]int) bool {
			for _, u := range others {
				n, _ := decodedFrom(m, u)
				if was, _ := decodedFrom(first, u); n < was+10 {
					return false
				}
			}
			return true
		})
		p.shot("in-call")
	}
	alice.checkNames("group call")

	// Simulcast, as the SFU receives it: alice's camera arrives in three
	// layers, each of its own size (read from the layers' VP8 key
	// frames, not from what the client announced). The client captures
	// 960x540 and asks for 320x180 and 640x360 layers below it; Chromium
	// sends three simulcast layers from 960x540 up (two from 640x360),
	// so all three go out unless its CPU adaptation scales the capture
	// down, which the sizes would show.
	sizes := waitCameraLayers(t, s, s.login(t, "root", "root-password"), users[alice], 3, 30*time.Second)
	t.Logf("the SFU receives alice's camera in layers %v", sizes)

	// Mute shows on the others' tiles; with bob and carol muted, alice
	// is the active speaker everywhere (everyone's fake microphone talks).
	for _, p := range []*page{bob, carol} {
		p.do("mute", chromedp.Click(chromedp.ID("gc-mic")))
		p.waitJS("muted", `document.getElementById('gc-mic').getAttribute('aria-pressed') === 'true' &&
			document.getElementById('gc-mic').getAttribute('aria-label') === 'Unmute microphone'`, 10*time.Second)
	}
	alice.waitJS("bob's and carol's tiles muted", `[`+tileJS(users[bob])+`, `+tileJS(users[carol])+`].every(t => t && !t.querySelector('.gc-badge').hidden)`, 30*time.Second)
	for _, p := range all {
		p.waitJS("alice the only active speaker", `(() => {
			const s = [...document.querySelectorAll('#gc-grid .gc-tile.speaking')];
			return s.length === 1 && s[0].dataset.identity.startsWith(`+js(users[alice]+":")+`) &&
				s[0].getAttribute('aria-label').endsWith(', speaking');
		})()`, 60*time.Second)
	}
	bob.shot("alice-speaking")

	// Camera off shows as such on the others' tiles, and back on.
	alice.do("camera off", chromedp.Click(chromedp.ID("gc-cam")))
	alice.waitJS("camera off", `document.getElementById('gc-cam').getAttribute('aria-pressed') === 'true'`, 10*time.Second)
	bob.waitJS("alice's camera off", tileJS(users[alice])+`?.classList.contains('no-video')`, 30*time.Second)
	bob.shot("alice-camera-off")
	alice.do("camera on", chromedp.Click(chromedp.ID("gc-cam")))
	alice.waitJS("camera on", `document.getElementById('gc-cam').getAttribute('aria-pressed') === 'false'`, 10*time.Second)
	bob.waitJS("alice's camera back", `!`+tileJS(users[alice])+`?.classList.contains('no-video')`, 30*time.Second)
	waitStats(bob, "alice's video again", 60*time.Second, func(m map[string]int) bool {
		n, _ := decodedFrom(m, users[alice])
		return n > 0
	})

	// carol leaves: her tile goes from the others' grids, her membership
	// from the room.
	carol.do("leave", chromedp.Click(chromedp.ID("gc-leave")))
	carol.waitJS("left", `document.getElementById('gc-status')?.textContent === 'Not in the call' &&
		document.getElementById('gc-grid').hidden`, 30*time.Second)
	carol.shot("left")
	for _, p := range []*page{alice, bob} {
		p.waitJS("carol's tile gone", `!`+tileJS(users[carol])+` && document.querySelectorAll('#gc-grid .gc-tile').length === 2`, 30*time.Second)
		p.waitJS("carol out of the membership list", `document.getElementById('gc-present')?.dataset.users === `+
			js(users[alice]+" "+users[bob]), 30*time.Second)
		p.shot("after-carol-left")
	}
	carol.waitJS("carol sees the others still in the call", `document.getElementById('gc-present')?.dataset.users === `+
		js(users[alice]+" "+users[bob]), 30*time.Second)

	// On a phone the grid is one column.
	bob.do("phone width", chromedp.EmulateViewport(390, 844))
	bob.waitJS("one column", `(() => { const ts = [...document.querySelectorAll('#gc-grid .gc-tile')];
		return ts.length === 2 && ts[0].getBoundingClientRect().left === ts[1].getBoundingClientRect().left; })()`, 10*time.Second)
	bob.shot("phone")
	bob.checkNames("group call on a phone")

	// bob's tab crashes: no leave is sent, so the SFU drops him when his
	// connection dies and the delayed leave (MSC4140) that his heartbeat
	// no longer restarts ends his membership.
	crashCtx, cancelCrash := context.WithTimeout(bob.ctx, 10*time.Second)
	_, _ = chromedp.Call(crashCtx, cdppage.Crash, cdp.Empty{}) // no answer from a crashed tab
	cancelCrash()
	alice.waitJS("bob's tile gone", `!`+tileJS(users[bob])+` && document.querySelectorAll('#gc-grid .gc-tile').length === 1`, 60*time.Second)
	alice.waitJS("bob out of the membership list", `document.getElementById('gc-present')?.dataset.users === `+js(users[alice]), 60*time.Second)
	alice.shot("after-bob-crashed")

	// alice leaves; the room's call is over.
	alice.do("leave", chromedp.Click(chromedp.ID("gc-leave")))
	for _, p := range []*page{alice, carol} {
		p.waitJS("the call over", `document.getElementById('gc-present')?.textContent === 'No one is in the call.'`, 30*time.Second)
	}
	carol.shot("call-over")
	if logs := s.logText(); strings.Contains(logs, "level=ERROR") {
		t.Errorf("the server logged errors:\n%s", grepLines(logs, "level=ERROR"))
	}
}

// waitCameraLayers polls the operator status (as the admin whose token
// is given) until the SFU receives the user's camera in n layers of
// distinct sizes, and returns the sizes.
func waitCameraLayers(t *testing.T, s *server, token, user string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		sizes := cameraLayers(s.sfuStatus(t, token), user)
		if distinctSizes(sizes) == n {
			return sizes
		}
		if time.Now().After(deadline) {
			t.Fatalf("the SFU receives %s's camera in layers %v, want %d of distinct sizes", user, sizes, n)
		}
		<-tick.C // the poll interval of a wait with a deadline
	}
}

// distinctSizes counts the layers of known, distinct sizes that grow
// from each layer to the next; 0 if any is unknown or out of order.
func distinctSizes(sizes []string) int {
	prev := 0
	for _, s := range sizes {
		var w, h int
		if _, err := fmt.Sscanf(s, "%dx%d", &w, &h); err != nil || w == 0 || h == 0 || w <= prev {
			return 0
		}
		prev = w
	}
	return len(sizes)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(strings.Join(out, "\n"))
}
