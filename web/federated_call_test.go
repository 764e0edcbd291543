package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/plexus-chat/plexus/internal/fedtest"
)

// focusInfo is one room's entry of window.plexusDebug.callFoci(): the
// LiveKit focus the tab's call goes through.
type focusInfo struct {
	Service string `json:"service"`
	Alias   string `json:"alias"`
	URL     string `json:"url"`
	Own     bool   `json:"own"`
}

// callFocus is the focus the page's call in the room goes through.
func callFocus(p *page, roomID string) focusInfo {
	p.t.Helper()
	raw := eval[string](p, `JSON.stringify(window.plexusDebug.callFoci())`)
	var m map[string]focusInfo
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		p.t.Fatalf("%s: call foci %q: %v", p.name, raw, err)
	}
	f, ok := m[roomID]
	if !ok {
		p.t.Fatalf("%s: no focus for %s in %s", p.name, roomID, raw)
	}
	return f
}

// memberContent is a call membership's content, read over the
// Client-Server API with the token.
func memberContent(t *testing.T, base, token, roomID, stateKey string) map[string]any {
	t.Helper()
	res := apiDo(t, http.MethodGet, base+"/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+
		"/state/org.matrix.msc3401.call.member/"+url.PathEscape(stateKey), token, nil)
	defer res.Body.Close()
	var c map[string]any
	if err := json.NewDecoder(res.Body).Decode(&c); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("membership %s: status %d, %v", stateKey, res.StatusCode, err)
	}
	return c
}

// preferredServices lists the livekit_service_urls of a membership's foci_preferred.
func preferredServices(c map[string]any) []string {
	var out []string
	list, _ := c["foci_preferred"].([]any)
	for _, f := range list {
		m, _ := f.(map[string]any)
		s, _ := m["livekit_service_url"].(string)
		out = append(out, s)
	}
	return out
}

// myStateKey is the page's own call membership state key, from the
// session the web client keeps in localStorage.
func myStateKey(p *page, user string) string {
	p.t.Helper()
	device := eval[string](p, `JSON.parse(localStorage.getItem('plexus.session') || '{}').device_id || ''`)
	if device == "" {
		p.t.Fatalf("%s: no device ID", p.name)
	}
	return "_" + user + "_" + device + "_m.call"
}

// TestFederatedGroupCall: a group call across two federated Plexus
// servers, MatrixRTC's "oldest_membership" way. alice of hs1 starts the
// call on hs1's SFU; bob of hs2, in another browser context, picks the
// focus of the oldest membership (alice's), gets a token from hs1's
// token service with an OpenID token of hs2, and joins the same LiveKit
// room on hs1's SFU: each decodes the other's video. His membership
// names hs1's focus first, so that when alice (the oldest) leaves, later
// joiners still go to the SFU the call is on; bob stays connected.
func TestFederatedGroupCall(t *testing.T) {
	chromiumPath(t) // skip before building and starting servers
	clearArtifacts(t)
	f := fedtest.New(t, fedtest.Options{NoRace: true}, "hs1", "hs2")
	f.Start(t)
	hs1 := &server{URL: f.Servers["hs1"].ClientURL, ServerName: "hs1"}
	hs2 := &server{URL: f.Servers["hs2"].ClientURL, ServerName: "hs2"}
	b := newBrowser(t)
	steps := 0
	alice := b.newPage(t, "alice", &steps)
	bob := b.newPage(t, "bob", &steps)
	alice.register(hs1, "alice", "alice-password")
	bob.register(hs2, "bob", "bob-password")
	aliceID, bobID := "@alice:hs1", "@bob:hs2"

	// A room on hs1, bob invited and joined over federation.
	alice.typeInto("name the room", "#new-room-name", "Tea")
	alice.typeInto("invite bob", "#new-room-invite", bobID)
	alice.click("create the room", "#create-room")
	alice.waitJS("the new room open", `document.getElementById('room-title')?.textContent === 'Tea'`, 20*time.Second)
	roomID := eval[string](alice, `document.querySelector('.room.active .room-open')?.dataset.roomId || ''`)
	if roomID == "" {
		t.Fatal("no active room in alice's list")
	}
	bob.waitJS("the invite over federation", `!!document.querySelector('button[aria-label="Accept invite to Tea"]')`, 60*time.Second)
	bob.click("accept the invite", `button[aria-label="Accept invite to Tea"]`)
	bob.waitJS("the room open", `document.getElementById('room-title')?.textContent === 'Tea'`, 60*time.Second)
	alice.waitJS("bob joined", `[...document.querySelectorAll('.ev.notice')].some(e => e.textContent.includes('bob joined'))`, 60*time.Second)

	for _, p := range []*page{alice, bob} {
		p.do("open the call panel", chromedp.Click(chromedp.CSS(`.tabs button[data-panel="call"]`)), chromedp.WaitVisible(chromedp.ID("gc-join")))
		p.waitJS("an empty call", `document.getElementById('gc-present')?.textContent === 'No one is in the call.'`, 10*time.Second)
	}

	// alice starts the call: no one is in it, so her own server's focus.
	alice.do("join", chromedp.Click(chromedp.ID("gc-join")))
	alice.waitJS("joined", `document.getElementById('gc-status')?.textContent === 'In the call'`, 60*time.Second)
	aliceFocus := callFocus(alice, roomID)
	hs1Service := hs1.URL + "/livekit/jwt"
	if !aliceFocus.Own || aliceFocus.Service != hs1Service {
		t.Fatalf("alice's focus %+v, want her own (%s)", aliceFocus, hs1Service)
	}
	if u, err := url.Parse(aliceFocus.URL); err != nil || "http://"+u.Host != hs1.URL {
		t.Fatalf("alice's SFU URL %q is not on hs1 (%s)", aliceFocus.URL, hs1.URL)
	}

	// bob sees her membership over federation, and joins.
	bob.waitJS("alice in the call", `document.getElementById('gc-present')?.dataset.users === `+js(aliceID), 60*time.Second)
	bob.do("join", chromedp.Click(chromedp.ID("gc-join")))
	for _, p := range []*page{alice, bob} {
		p.waitJS("joined", `document.getElementById('gc-status')?.textContent === 'In the call'`, 60*time.Second)
		p.waitJS("two tiles", `document.querySelectorAll('#gc-grid .gc-tile').length === 2`, 60*time.Second)
		p.waitJS("both in the membership list", `document.getElementById('gc-present')?.dataset.users === `+js(aliceID+" "+bobID), 60*time.Second)
	}
	bobFocus := callFocus(bob, roomID)
	if bobFocus.Own || bobFocus.Service != hs1Service || bobFocus.Alias != roomID {
		t.Fatalf("bob's focus %+v, want hs1's (%s, alias %s)", bobFocus, hs1Service, roomID)
	}
	if bobFocus.URL != aliceFocus.URL {
		t.Fatalf("bob connected to %s, alice to %s: not the same SFU", bobFocus.URL, aliceFocus.URL)
	}
	if notice := eval[string](bob, `document.getElementById('gc-notice').textContent`); notice != "" {
		t.Errorf("bob was told %q", notice)
	}

	// Each decodes the other's video, and keeps decoding.
	for _, pair := range []struct {
		p     *page
		other string
	}{{alice, bobID}, {bob, aliceID}} {
		first := waitStats(pair.p, "video from the other server's user", 90*time.Second, func(m map[string]int) bool {
			n, _ := decodedFrom(m, pair.other)
			return n > 0 && len(m) == 1
		})
		waitStats(pair.p, "that video rising", 60*time.Second, func(m map[string]int) bool {
			n, _ := decodedFrom(m, pair.other)
			was, _ := decodedFrom(first, pair.other)
			return n >= was+10
		})
		pair.p.shot("in-call")
	}

	// bob's membership names hs1's focus first (the call's), then his own.
	bobToken := hs2.login(t, "bob", "bob-password")
	got := preferredServices(memberContent(t, hs2.URL, bobToken, roomID, myStateKey(bob, bobID)))
	if want := []string{hs1Service, hs2.URL + "/livekit/jwt"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("bob's foci_preferred %v, want %v", got, want)
	}

	// The oldest member leaves: bob stays on hs1's SFU, in the call.
	alice.do("leave", chromedp.Click(chromedp.ID("gc-leave")))
	alice.waitJS("left", `document.getElementById('gc-status')?.textContent === 'Not in the call'`, 30*time.Second)
	bob.waitJS("alice out of the membership list", `document.getElementById('gc-present')?.dataset.users === `+js(bobID), 60*time.Second)
	bob.waitJS("alice's tile gone", `document.querySelectorAll('#gc-grid .gc-tile').length === 1`, 60*time.Second)
	if s := eval[string](bob, `document.getElementById('gc-status').textContent`); s != "In the call" {
		t.Fatalf("bob after alice left: %q", s)
	}
	if f := callFocus(bob, roomID); f != bobFocus {
		t.Fatalf("bob's focus changed from %+v to %+v", bobFocus, f)
	}
	bob.shot("after-alice-left")

	// alice comes back: the oldest membership is now bob's, which names
	// hs1's focus, and she joins him there.
	alice.do("join again", chromedp.Click(chromedp.ID("gc-join")))
	alice.waitJS("joined again", `document.getElementById('gc-status')?.textContent === 'In the call'`, 60*time.Second)
	if f := callFocus(alice, roomID); f.URL != bobFocus.URL {
		t.Fatalf("alice rejoined through %+v, bob is on %s", f, bobFocus.URL)
	}
	waitStats(alice, "bob's video again", 90*time.Second, func(m map[string]int) bool {
		n, _ := decodedFrom(m, bobID)
		return n > 0
	})
	for _, p := range []*page{alice, bob} {
		p.do("leave", chromedp.Click(chromedp.ID("gc-leave")))
		p.waitJS("left", `document.getElementById('gc-status')?.textContent === 'Not in the call'`, 30*time.Second)
	}
}

// refusingFocus is a LiveKit token service that refuses everyone, as
// another server's may (403, with lk-jwt-service's CORS headers), and
// counts the token requests it saw.
type refusingFocus struct {
	mu       sync.Mutex // guards requests
	requests []string   // the body of each POST /sfu/get
}

func (rf *refusingFocus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/sfu/get" {
		body, _ := io.ReadAll(r.Body)
		rf.mu.Lock()
		rf.requests = append(rf.requests, string(body))
		rf.mu.Unlock()
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"not for you"}`))
}

func (rf *refusingFocus) seen() []string {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return append([]string(nil), rf.requests...)
}

// TestGroupCallFocusFallback: the oldest membership of a room's call
// names a focus whose token service refuses us. Joining falls back to
// our own server's focus, says so on the panel, and the membership we
// announce names only the focus we reached.
func TestGroupCallFocusFallback(t *testing.T) {
	chromiumPath(t)
	clearArtifacts(t)
	s := startSFUServer(t)
	refusing := &refusingFocus{}
	rs := httptest.NewServer(refusing)
	t.Cleanup(rs.Close)
	b := newBrowser(t)
	steps := 0
	alice := b.newPage(t, "alice", &steps)
	alice.register(s, "alice", "alice-password")
	alice.typeInto("name the room", "#new-room-name", "Tea")
	alice.click("create the room", "#create-room")
	alice.waitJS("the new room open", `document.getElementById('room-title')?.textContent === 'Tea'`, 20*time.Second)
	roomID := eval[string](alice, `document.querySelector('.room.active .room-open')?.dataset.roomId || ''`)
	if roomID == "" {
		t.Fatal("no active room in alice's list")
	}
	aliceID := "@alice:" + s.ServerName

	// alice's other device (logged in over the API) has been in the call
	// for a minute, through the refusing focus.
	token := s.login(t, "alice", "alice-password")
	otherKey := "_" + aliceID + "_OTHERDEVICE_m.call"
	content, _ := json.Marshal(map[string]any{
		"application": "m.call", "call_id": "", "scope": "m.room", "device_id": "OTHERDEVICE",
		"expires":      4 * time.Hour / time.Millisecond,
		"created_ts":   time.Now().Add(-time.Minute).UnixMilli(),
		"focus_active": map[string]string{"type": "livekit", "focus_selection": "oldest_membership"},
		"foci_preferred": []map[string]string{{
			"type": "livekit", "livekit_service_url": rs.URL, "livekit_alias": roomID,
		}},
	})
	apiPut(t, s.URL+"/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+
		"/state/org.matrix.msc3401.call.member/"+url.PathEscape(otherKey), token, bytes.NewReader(content),
		"sending the other device's membership")

	alice.do("open the call panel", chromedp.Click(chromedp.CSS(`.tabs button[data-panel="call"]`)), chromedp.WaitVisible(chromedp.ID("gc-join")))
	alice.waitJS("the other device in the call", `document.getElementById('gc-present')?.dataset.users === `+js(aliceID), 30*time.Second)
	alice.do("join", chromedp.Click(chromedp.ID("gc-join")))
	alice.waitJS("joined", `document.getElementById('gc-status')?.textContent === 'In the call'`, 60*time.Second)
	alice.waitJS("told of the fallback", `(() => { const n = document.getElementById('gc-notice');
		return !n.hidden && n.textContent.includes('would not let you in (403 M_FORBIDDEN)') && n.textContent.includes('your own server'); })()`, 10*time.Second)
	alice.shot("fallback")

	seen := refusing.seen()
	if len(seen) != 1 {
		t.Fatalf("the refusing focus saw %d token requests, want 1", len(seen))
	}
	var asked struct {
		Room        string `json:"room"`
		OpenIDToken struct {
			AccessToken      string `json:"access_token"`
			MatrixServerName string `json:"matrix_server_name"`
		} `json:"openid_token"`
	}
	if err := json.Unmarshal([]byte(seen[0]), &asked); err != nil || asked.Room != roomID ||
		asked.OpenIDToken.AccessToken == "" || asked.OpenIDToken.MatrixServerName != s.ServerName {
		t.Fatalf("the refused token request %s (%v)", seen[0], err)
	}
	f := callFocus(alice, roomID)
	if !f.Own || f.Service != s.URL+"/livekit/jwt" {
		t.Fatalf("alice's focus %+v, want her own server's", f)
	}
	got := preferredServices(memberContent(t, s.URL, token, roomID, myStateKey(alice, aliceID)))
	if fmt.Sprint(got) != fmt.Sprint([]string{s.URL + "/livekit/jwt"}) {
		t.Errorf("alice's foci_preferred %v, want only her own server's focus", got)
	}

	// Leaving clears the notice.
	alice.do("leave", chromedp.Click(chromedp.ID("gc-leave")))
	alice.waitJS("left, notice gone", `document.getElementById('gc-status')?.textContent === 'Not in the call' &&
		document.getElementById('gc-notice').hidden`, 30*time.Second)
}
