package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// addAdmin makes a server admin with `plexus user add --admin`, which
// writes to the database of a running server as an operator would.
func addAdmin(t *testing.T, s *server, data, user, password string) {
	t.Helper()
	out, err := exec.Command(binary(t), "user", "add", user, "--admin", "--password", password,
		"--data", data, "--server-name", s.ServerName).CombinedOutput()
	if err != nil {
		t.Fatalf("plexus user add --admin: %v\n%s", err, out)
	}
}

// login signs in through the sign-in screen.
func (p *page) login(s *server, user, password string) {
	p.t.Helper()
	p.do("open the client", chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible(chromedp.ID("login-user")))
	p.do("sign in",
		chromedp.SendKeys(chromedp.ID("login-user"), user),
		chromedp.SendKeys(chromedp.ID("login-pass"), password),
		chromedp.Click(chromedp.ID("login-submit")))
	p.waitJS("signed in", `document.getElementById('me')?.textContent === `+js("@"+user+":"+s.ServerName), 20*time.Second)
}

// turnAllocationJS makes a TURN allocation from the page as a call
// would: credentials from /voip/turnServer, then a relay-only peer
// connection gathering candidates. It resolves with the relay
// candidate's type once one is gathered, and keeps the connection (and
// so the allocation) open on window.
const turnAllocationJS = `(async () => {
	const { access_token } = JSON.parse(localStorage.getItem('plexus.session'));
	const res = await fetch('/_matrix/client/v3/voip/turnServer', { headers: { Authorization: 'Bearer ' + access_token } });
	const turn = await res.json();
	const pc = new RTCPeerConnection({
		iceServers: [{ urls: turn.uris, username: turn.username, credential: turn.password }],
		iceTransportPolicy: 'relay',
	});
	window.__turnTestPC = pc;
	const relayed = new Promise((resolve) => {
		pc.onicecandidate = (e) => { if (e.candidate && e.candidate.type === 'relay') resolve(e.candidate.type); };
	});
	pc.createDataChannel('probe');
	await pc.setLocalDescription(await pc.createOffer());
	return relayed;
})()`

// figureJS reads a figure of an operator page section: the number under
// the label, or null.
func figureJS(section, label string) string {
	return `(() => { const f = [...document.querySelectorAll('#admin-` + section + ` .figure')]
		.find((x) => x.querySelector('dt').textContent === ` + js(label) + `);
		return f ? Number(f.querySelector('dd').textContent) : null; })()`
}

// TestOperatorPage: an admin follows the header link to the operator
// page and sees every section filled (rooms, calls, the SFU, the TURN
// relay with the allocation the admin's own browser made, federation
// with a destination that cannot be reached, backing off) and the
// charts drawn from the status history; a non-admin gets no link, and
// at #/admin is told the page is for admins only.
func TestOperatorPage(t *testing.T) {
	clearArtifacts(t)
	s, data := startServerFlags(t,
		"--federation-listen", freeAddr(t, "tcp"),
		"--sfu=on", "--sfu-listen-ip", "127.0.0.1", "--sfu-udp-port", "0", "--sfu-tcp-port", "0")
	addAdmin(t, s, data, "root", "root-password")
	b := newBrowser(t)
	steps := 0
	root := b.newPage(t, "root", &steps)
	alice := b.newPage(t, "alice", &steps)

	// alice: no link; the page at #/admin says no.
	alice.register(s, "alice", "alice-password")
	alice.do("create a room",
		chromedp.SendKeys(chromedp.ID("new-room-name"), "Ops"),
		chromedp.Click(chromedp.ID("create-room")))
	alice.waitJS("the room open", `document.getElementById('room-title')?.textContent === 'Ops'`, 20*time.Second)
	alice.do("go to #/admin", chromedp.Navigate(s.URL+"/#/admin"))
	alice.waitJS("admins only", `document.getElementById('admin-denied')?.textContent.includes('server admins only')`, 20*time.Second)
	if eval[bool](alice, `!document.getElementById('admin-link').hidden`) {
		t.Error("a user who is not an admin sees the operator link")
	}
	alice.shot("admins-only")
	// Federation: a to-device message for a user of a server that does
	// not exist queues an EDU to it, which fails and backs off.
	token := s.login(t, "alice", "alice-password")
	apiPut(t, s.URL+"/_matrix/client/v3/sendToDevice/org.plexus.test/t1", token,
		strings.NewReader(`{"messages":{"@dave:nowhere.invalid":{"*":{"hello":"dave"}}}}`), "sendToDevice")

	// root: the link, then the page.
	root.login(s, "root", "root-password")
	root.waitJS("the operator link", `!document.getElementById('admin-link').hidden`, 20*time.Second)
	if got := eval[string](root, `location.hash`); got != "" {
		t.Fatalf("hash %q before following the link", got)
	}
	ctx, cancel := context.WithTimeout(root.ctx, 30*time.Second)
	typ, err := chromedp.Run(ctx, chromedp.Evaluate[string](turnAllocationJS, chromedp.EvalAwaitPromise))
	cancel()
	if err != nil || typ != "relay" {
		t.Fatalf("TURN allocation from the browser: %q, %v", typ, err)
	}
	root.do("open the operator page", chromedp.Click(chromedp.ID("admin-link")))
	root.waitJS("the page", `!!document.getElementById('admin-rooms')`, 20*time.Second)
	for _, sec := range []string{"rooms", "calls", "sfu", "turn", "federation"} {
		if eval[bool](root, `!!document.querySelector('#admin-`+sec+` .section-error')`) {
			t.Errorf("section %s: %s", sec, eval[string](root, `document.getElementById('admin-`+sec+`').textContent`))
		}
	}
	if n := eval[int](root, figureJS("rooms", "Rooms")); n != 1 {
		t.Errorf("rooms: %d, want 1", n)
	}
	if n := eval[int](root, figureJS("sfu", "Participants")); n != 0 {
		t.Errorf("SFU participants: %d, want 0", n)
	}
	root.waitJS("the allocation", `(`+figureJS("turn", "Allocations")+`) >= 1`, 30*time.Second)
	root.waitJS("root's allocation listed", `document.getElementById('admin-turn').textContent.includes('root')`, 5*time.Second)
	root.waitJS("the unreachable destination, backing off", `(() => {
		const row = [...document.querySelectorAll('#admin-federation tbody tr')].find((r) => r.cells[0].textContent === 'nowhere.invalid');
		return row && row.cells[4].textContent === 'backing off' && row.cells[5].textContent !== '–' && row.cells[7].textContent !== '–';
	})()`, 60*time.Second)
	root.shot("operator")
	root.checkNames("operator page")
	root.do("scroll to TURN and federation", chromedp.Evaluate[chromedp.Void](`document.getElementById('admin-turn').scrollIntoView()`))
	root.shot("operator-turn-federation")

	// The charts fill as the server samples its status, every 10 s; the
	// page refreshes itself as often.
	root.waitJS("charts with samples", `['chart-participants', 'chart-allocations', 'chart-pending']
		.every((id) => document.querySelector('#' + id + ' .chart-svg polyline, #' + id + ' .chart-svg circle'))`, 60*time.Second)
	if got := eval[string](root, `document.querySelector('#chart-allocations .chart-svg').getAttribute('aria-label')`); !strings.Contains(got, "TURN allocations over the last") {
		t.Errorf("allocations chart label %q", got)
	}
	root.shot("operator-charts")

	root.do("phone viewport", chromedp.EmulateViewport(390, 844))
	root.shot("operator-phone")
	root.checkNames("operator page on a phone")
	if w := eval[int](root, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the page is %d px wide on a 390 px screen", w)
	}
	root.do("desktop viewport", chromedp.EmulateViewport(1100, 760))

	// A live group call: alice and bob join Ops's call; the page lists
	// the call with both members, and the SFU with both participants,
	// their tracks and the sizes their cameras arrive in.
	bob := b.newPage(t, "bob", &steps)
	bob.register(s, "bob", "bob-password")
	alice.open(s.URL+"/", `.room-open`)
	alice.click("open Ops", `.room-open`)
	alice.waitJS("Ops open", `document.getElementById('room-title')?.textContent === 'Ops'`, 20*time.Second)
	alice.do("invite bob",
		chromedp.Click(chromedp.ID("invite-toggle")),
		chromedp.SendKeys(chromedp.ID("invite-user"), "@bob:"+s.ServerName),
		chromedp.Click(chromedp.ID("invite-send")))
	bob.waitJS("the invite", `!!document.querySelector('button[aria-label="Accept invite to Ops"]')`, 30*time.Second)
	bob.click("accept the invite", `button[aria-label="Accept invite to Ops"]`)
	bob.waitJS("Ops open", `document.getElementById('room-title')?.textContent === 'Ops'`, 30*time.Second)
	for _, p := range []*page{alice, bob} {
		p.do("join the call", chromedp.Click(chromedp.CSS(`.tabs button[data-panel="call"]`)), chromedp.WaitVisible(chromedp.ID("gc-join")),
			chromedp.Click(chromedp.ID("gc-join")))
		p.waitJS("in the call", `document.getElementById('gc-status')?.textContent === 'In the call'`, 60*time.Second)
	}
	for _, p := range []*page{alice, bob} {
		p.waitJS("two tiles", `document.querySelectorAll('#gc-grid .gc-tile').length === 2`, 60*time.Second)
	}
	users := []string{"@alice:" + s.ServerName, "@bob:" + s.ServerName}
	// The page refreshes every 10 s; while the condition is false, the
	// Refresh button refreshes it every second.
	refreshed := func(cond string) string {
		return `(() => { const ok = ` + cond + `;
			if (!ok && !(Date.now() - window.__refreshedAt < 1000)) {
				window.__refreshedAt = Date.now();
				document.getElementById('admin-refresh').click();
			}
			return ok; })()`
	}
	root.waitJS("the call listed", refreshed(`(`+figureJS("calls", "Calls")+`) === 1 && (`+figureJS("calls", "Participants")+`) === 2 &&
		[...document.querySelectorAll('#admin-calls tbody tr')].map((r) => r.cells[1].textContent).sort().join(' ') === `+js(strings.Join(users, " "))), 30*time.Second)
	root.waitJS("the SFU's load", refreshed(`(`+figureJS("sfu", "Participants")+`) === 2 && (`+figureJS("sfu", "Tracks")+`) >= 4 &&
		(`+figureJS("sfu", "Down tracks")+`) >= 2 &&
		[...document.querySelectorAll('#admin-sfu tbody tr')].filter((r) => /video \d+(\/\d+)* px/i.test(r.cells[3].textContent)).map((r) => r.cells[1].textContent.split(':').slice(0, 2).join(':')).sort().join(' ') === `+js(strings.Join(users, " "))), 60*time.Second)
	root.do("scroll to the calls", chromedp.Evaluate[chromedp.Void](`document.getElementById('admin-calls').scrollIntoView()`))
	root.shot("operator-live-call")
	root.checkNames("operator page in a call")

	// Opening a room leaves the page; the page stops refreshing.
	root.do("back to rooms", chromedp.Click(chromedp.ID("admin-back")))
	root.waitJS("the page closed", `!document.getElementById('admin-page') && location.hash === ''`, 10*time.Second)
}

// sfuStatus is the part of the operator status's "sfu" section the tests read.
type sfuStatus struct {
	Participants int `json:"participants"`
	Tracks       int `json:"tracks"`
	RoomList     []struct {
		Participants []struct {
			Identity string `json:"identity"`
			Tracks   []struct {
				Kind   string `json:"kind"`
				Source string `json:"source"`
				Layers []struct {
					Layer   int    `json:"layer"`
					Width   int    `json:"width"`
					Height  int    `json:"height"`
					Packets uint64 `json:"packets"`
				} `json:"layers"`
			} `json:"tracks"`
		} `json:"participants"`
	} `json:"room_list"`
}

// sfuStatus reads the SFU section of GET /_plexus/admin/v1/status as the
// admin whose access token is given.
func (s *server) sfuStatus(t *testing.T, token string) sfuStatus {
	t.Helper()
	res := apiDo(t, http.MethodGet, s.URL+"/_plexus/admin/v1/status", token, nil)
	defer res.Body.Close()
	var out struct {
		SFU sfuStatus `json:"sfu"`
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status: HTTP %d", res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("status: %v", err)
	}
	return out.SFU
}

// cameraLayers are the sizes of the layers the SFU receives of the
// user's camera ("WxH", lowest layer first), from the status API.
func cameraLayers(st sfuStatus, user string) []string {
	for _, r := range st.RoomList {
		for _, p := range r.Participants {
			if !strings.HasPrefix(p.Identity, user+":") {
				continue
			}
			for _, tr := range p.Tracks {
				if tr.Source != "CAMERA" {
					continue
				}
				var out []string
				for _, l := range tr.Layers {
					out = append(out, fmt.Sprintf("%dx%d", l.Width, l.Height))
				}
				return out
			}
		}
	}
	return nil
}
