package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// TestSceneWorld runs the scene's pure world module's own tests
// (web/src/scene/world.test.js: the LWW merge, the wire format, integer
// conversion, the 30 Hz pacer) with Node's built-in test runner.
func TestSceneWorld(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("PLEXUS_REQUIRE_BROWSER") == "1" {
			t.Fatal("node is not installed (make node-setup)")
		}
		t.Skip("node is not installed (make node-setup)")
	}
	// world.js is an ES module in a package without "type": "module":
	// run copies named .mjs, which every Node with node:test loads as such
	// (no flag that only some versions know).
	dir := t.TempDir()
	for _, f := range []string{"world.js", "world.test.js"} {
		b, err := os.ReadFile(filepath.Join("src", "scene", f))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(`from './world.js'`), []byte(`from './world.mjs'`))
		if err := os.WriteFile(filepath.Join(dir, strings.TrimSuffix(f, ".js")+".mjs"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(node, "--test", filepath.Join(dir, "world.test.mjs")).CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "# fail 0") || strings.Contains(string(out), "# pass 0") {
		t.Fatalf("node --test ran no tests or reported failures:\n%s", out)
	}
}

// waitTrue evaluates expr until it is true or timeout passes, and
// reports whether it became true (for a test that explains a failure).
func waitTrue(p *page, expr string, timeout time.Duration) bool {
	p.t.Helper()
	ok, _ := pollTrue(p, expr, timeout)
	return ok
}

// scenePos is a world position in millimetres.
type scenePos [3]int

// openScene opens the room's 3D scene tab (joining the call data-only)
// and waits until the page is in the call with want others.
func (p *page) openScene(others int) {
	p.t.Helper()
	p.click("open the 3D scene", `button[role=tab][data-panel=scene]`)
	p.waitSceneJoined(others)
}

func (p *page) waitSceneJoined(others int) {
	p.t.Helper()
	want := "In the scene, alone so far"
	if others > 0 {
		want = fmt.Sprintf("In the scene with %d other", others)
	}
	p.waitJS("in the scene", `window.plexusDebug?.scene?.state() === 'joined' &&
		document.getElementById('scene-status')?.textContent.startsWith(`+js(want)+`)`, 90*time.Second)
}

// objectAt is a JavaScript test that the page sees the object at pos.
func objectAt(key string, pos scenePos) string {
	b, _ := json.Marshal(pos)
	return `JSON.stringify(window.plexusDebug?.scene?.objectPosition(` + js(key) + `)) === ` + js(string(b))
}

func (p *page) objectPosition(key string) scenePos {
	p.t.Helper()
	v := eval[[]int](p, `window.plexusDebug.scene.objectPosition(`+js(key)+`)`)
	if len(v) != 3 {
		p.t.Fatalf("%s: %s position %v", p.name, key, v)
	}
	return scenePos(v)
}

// joinByAlias joins the public room through the room list's join form.
func (p *page) joinByAlias(alias, title string) {
	p.t.Helper()
	p.typeInto("type the address "+alias, "#join-room-id", alias)
	p.click("join "+alias, "#join-room")
	p.waitJS("the room open", `document.getElementById('room-title')?.textContent === `+js(title), 30*time.Second)
}

// drag presses the left button at from, moves to to in steps and
// releases: real pointer input, as a person's drag.
func (p *page) drag(from, to [2]float64, steps int) {
	p.t.Helper()
	held := func(q *input.DispatchMouseEventParams) { q.Button, q.Buttons = input.MouseButtonLeft, 1 }
	acts := []chromedp.Action[chromedp.Void]{
		chromedp.MouseEvent(chromedp.MouseMoved, from[0], from[1]),
		chromedp.MouseEvent(chromedp.MousePressed, from[0], from[1], held, chromedp.ClickCount(1)),
	}
	for i := 1; i <= steps; i++ {
		f := float64(i) / float64(steps)
		acts = append(acts, chromedp.MouseEvent(chromedp.MouseMoved, from[0]+(to[0]-from[0])*f, from[1]+(to[1]-from[1])*f, held))
	}
	acts = append(acts, chromedp.MouseEvent(chromedp.MouseReleased, to[0], to[1], chromedp.ButtonLeft, chromedp.ClickCount(1)))
	p.do("drag", acts...)
}

// key presses (down) or releases a key on the focused element.
func key(code string, vk int64, down bool) chromedp.Action[chromedp.Void] {
	typ := input.DispatchKeyEventTypeKeyUp
	if down {
		typ = input.DispatchKeyEventTypeRawKeyDown
	}
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Code: code, Key: code, WindowsVirtualKeyCode: vk,
		})
		return err
	})
}

// TestScene: three users open the room's 3D scene; one walks with the
// keyboard and the others see her avatar move; she moves an object and
// the other two see it within 200 ms; a real pointer drag carries
// another; a fourth user (on a phone-sized screen) joins late and sees
// both where they were left, walks by tapping the floor and carries an
// object by keyboard. Then all leave, the SFU closes the call and saves
// the world into the room, and in the next call (fresh pages) the
// objects are still where they were.
func TestScene(t *testing.T) {
	r := startSceneRoom(t)
	s, alice, bob, carol, roomID := r.s, r.alice, r.bob, r.carol, r.roomID

	alice.openScene(0)
	bob.openScene(1)
	carol.openScene(2)
	for _, p := range []*page{alice, bob} {
		p.waitSceneJoined(2)
	}
	home := alice.objectPosition("obj/1")
	for _, p := range []*page{alice, bob, carol} {
		p.waitJS("own avatar announced", `window.plexusDebug.scene.avatarPosition() !== null`, 30*time.Second)
	}
	for _, p := range []*page{alice, bob, carol} {
		p.shot("scene-joined")
	}
	alice.checkNames("scene")

	// Keyboard: alice walks right; the others see her avatar move.
	aliceID := eval[string](alice, `window.plexusDebug.scene.identity()`)
	startX := eval[int](alice, `window.plexusDebug.scene.avatarPosition()[0]`)
	alice.do("focus the scene", chromedp.Focus(chromedp.ID("scene-stage")))
	alice.do("hold the right arrow", key("ArrowRight", 39, true))
	alice.waitJS("alice walked", fmt.Sprintf(`window.plexusDebug.scene.avatarPosition()[0] > %d`, startX+500), 30*time.Second)
	alice.do("release the right arrow", key("ArrowRight", 39, false))
	// Stopped: once her last position reached bob, every send of the walk is out.
	stopped := eval[string](alice, `JSON.stringify(window.plexusDebug.scene.avatarPosition())`)
	bob.waitJS("alice's last step", fmt.Sprintf(`JSON.stringify(window.plexusDebug.scene.avatarPosition(%s)) === %s`, js(aliceID), js(stopped)), 30*time.Second)
	// The walk went out on the lossy channel, at most 30 times a second.
	lossy := func() []float64 {
		return eval[[]float64](alice, `window.plexusDebug.scene.sends().filter(s => !s[1]).map(s => s[0])`)
	}
	walk := lossy()
	if len(walk) < 2 {
		t.Fatalf("alice's walk went out in %d lossy sends", len(walk))
	}
	for i := 1; i < len(walk); i++ {
		// 1000/30 ms apart, less a millisecond for the timer's rounding.
		if d := walk[i] - walk[i-1]; d < 1000.0/30-1 {
			t.Errorf("lossy sends %.1f ms apart: over 30 Hz", d)
		}
	}
	t.Logf("alice's walk: %d lossy sends over %.0f ms", len(walk), walk[len(walk)-1]-walk[0])
	for _, p := range []*page{bob, carol} {
		p.waitJS("alice's avatar moved", fmt.Sprintf(`(window.plexusDebug.scene.avatarPosition(%s)?.[0] ?? -1e9) > %d`, js(aliceID), startX+500), 30*time.Second)
	}

	// Latency: alice moves obj/1 several times; each move's send time in
	// her page against the time bob's and carol's pages apply it, on the
	// one machine clock (performance.timeOrigin + performance.now()).
	var worst float64
	var latencies []float64
	var moved scenePos
	for i := range 5 {
		moved = scenePos{1200 - 300*i, home[1], 800 + 200*i}
		sent := eval[float64](alice, fmt.Sprintf(`window.plexusDebug.scene.moveObject('obj/1', %d, %d, %d)`, moved[0], moved[1], moved[2]))
		for _, p := range []*page{bob, carol} {
			p.waitJS("obj/1 moved", objectAt("obj/1", moved), 30*time.Second)
			seen := eval[float64](p, `window.plexusDebug.scene.changedAt('obj/1')`)
			d := seen - sent
			latencies = append(latencies, d)
			worst = max(worst, d)
			if d < 0 || d >= 200 {
				t.Errorf("move %d: %s saw obj/1 move %.1f ms after alice sent it, want under 200 ms", i, p.name, d)
			}
		}
	}
	// Standing still sends nothing: no transform went out since the walk.
	if n := len(lossy()); n != len(walk) {
		t.Errorf("alice sent %d lossy updates while standing still", n-len(walk))
	}
	slices.Sort(latencies)
	t.Logf("obj/1 moves seen by 2 peers: latency median %.1f ms, max %.1f ms (%d samples)", latencies[len(latencies)/2], worst, len(latencies))
	for _, p := range []*page{alice, bob, carol} {
		p.shot("obj1-moved")
	}
	t.Logf("world packets bob received, by topic: %s", eval[string](bob, `JSON.stringify(window.plexusDebug.scene.received())`))

	// A real drag: bob carries obj/2 across the floor.
	from := eval[[]float64](bob, `window.plexusDebug.scene.screenPoint('obj/2')`)
	home2 := bob.objectPosition("obj/2")
	bob.drag([2]float64{from[0], from[1]}, [2]float64{from[0] - 160, from[1] + 120}, 12)
	dragged := bob.objectPosition("obj/2")
	if dragged == home2 {
		t.Fatalf("bob's drag did not move obj/2 (still at %v)", dragged)
	}
	for _, p := range []*page{alice, carol} {
		p.waitJS("obj/2 dropped where bob left it", objectAt("obj/2", dragged), 30*time.Second)
	}
	for _, p := range []*page{alice, bob, carol} {
		p.shot("obj2-dragged")
	}

	// Carol looks at the chat and comes back: she stayed in the call, and
	// the scene is as it was.
	carol.do("open the chat", chromedp.Click(chromedp.CSS(`button[role=tab][data-panel=chat]`)))
	carol.waitJS("the chat shown", `!!document.getElementById('composer') && !document.getElementById('scene-stage')`, 30*time.Second)
	if st := eval[string](carol, `window.plexusDebug.scene?.state() ?? 'no scene'`); st != "no scene" {
		t.Errorf("the scene's debug hook outlived its panel (state %q)", st)
	}
	carol.openScene(2)
	carol.waitJS("obj/2 still where bob left it", objectAt("obj/2", dragged), 30*time.Second)
	// Had she left and joined again, the SFU would have sent her a second snapshot.
	if n := eval[int](carol, `window.plexusDebug.scene.snapshots()`); n != 1 {
		t.Errorf("carol received %d world snapshots, want 1: switching tabs left the call", n)
	}

	// A late joiner sees both where they were left (the SFU's snapshot).
	// Dave is on a phone-sized screen.
	dave := r.b.newPage(t, "dave", &r.steps)
	dave.do("phone screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	dave.register(s, "dave", "dave-password")
	dave.joinByAlias(r.alias, "Scene")
	dave.openScene(3)
	dave.waitJS("obj/1 where alice left it", objectAt("obj/1", moved), 30*time.Second)
	dave.waitJS("obj/2 where bob left it", objectAt("obj/2", dragged), 30*time.Second)
	dave.waitJS("alice's avatar", fmt.Sprintf(`(window.plexusDebug.scene.avatarPosition(%s)?.[0] ?? -1e9) > %d`, js(aliceID), startX+500), 30*time.Second)
	dave.shot("late-joiner")

	// Pointer input moves the avatar too: dave taps the floor (a spot no
	// object is on) and walks there.
	daveID := eval[string](dave, `window.plexusDebug.scene.identity()`)
	spot := eval[[]float64](dave, `window.plexusDebug.scene.floorPoint(2200, -300)`)
	dave.do("tap the floor", chromedp.MouseClickXY(spot[0], spot[1]))
	arrived := fmt.Sprintf(`(() => { const p = window.plexusDebug.scene.avatarPosition(%s);
		return !!p && Math.hypot(p[0] - 2200, p[2] + 300) < 150; })()`, js(daveID))
	if !waitTrue(dave, arrived, 30*time.Second) {
		t.Fatalf("dave did not walk to the spot %v: his avatar is at %s (drawn: %s)", spot,
			eval[string](dave, `JSON.stringify(window.plexusDebug.scene.avatarPosition())`),
			eval[string](dave, `JSON.stringify(window.plexusDebug.scene.avatars())`))
	}
	alice.waitJS("dave's avatar where he walked", arrived, 30*time.Second)
	dave.shot("walked")
	alice.shot("dave-walked")

	// Keyboard only: dave picks up the nearest object with Space, walks
	// with it, and puts it down; alice sees it where he put it.
	dave.do("focus the scene", chromedp.Focus(chromedp.ID("scene-stage")))
	dave.do("pick up", key("Space", 32, true), key("Space", 32, false))
	carried := eval[string](dave, `window.plexusDebug.scene.carrying() ?? ''`)
	if carried == "" {
		t.Fatalf("Space picked nothing up: %q", eval[string](dave, `document.getElementById('scene-note').textContent`))
	}
	before := dave.objectPosition(carried)
	dave.do("hold the up arrow", key("ArrowUp", 38, true))
	dave.waitJS("carried along", fmt.Sprintf(`window.plexusDebug.scene.objectPosition(%s)[2] < %d`, js(carried), before[2]-500), 30*time.Second)
	dave.do("release the up arrow", key("ArrowUp", 38, false))
	dave.do("put down", key("Space", 32, true), key("Space", 32, false))
	dave.waitJS("put down", `window.plexusDebug.scene.carrying() === null`, 10*time.Second)
	put := dave.objectPosition(carried)
	alice.waitJS(carried+" where dave put it", objectAt(carried, put), 30*time.Second)
	dave.shot("carried")

	// What the next call must show: the objects moved (the others never
	// left home, so the world holds nothing of them).
	final := map[string]scenePos{"obj/1": moved, "obj/2": dragged, carried: put}
	for k, want := range final {
		for _, p := range []*page{alice, bob, carol, dave} {
			p.waitJS(k+" where it was left", objectAt(k, want), 30*time.Second)
		}
	}

	// Everyone leaves; after its empty timeout the SFU closes the room
	// and saves the world into the Matrix room as org.plexus.world.
	closedBefore := strings.Count(s.logText(), "room closed")
	for _, p := range []*page{alice, bob, carol, dave} {
		p.do("leave the scene", chromedp.Click(chromedp.ID("scene-leave")))
		p.waitJS("out of the scene", `window.plexusDebug.scene.state() === 'idle'`, 30*time.Second)
	}
	dave.shot("left")
	deadline := time.Now().Add(90 * time.Second)
	for strings.Count(s.logText(), "room closed") == closedBefore {
		if time.Now().After(deadline) {
			t.Fatal("the SFU did not close the empty room")
		}
		time.Sleep(200 * time.Millisecond) // polling the server's log, with a deadline
	}
	token := eval[string](alice, `JSON.parse(localStorage.getItem('plexus.session')).access_token`)
	saved := worldState(t, s, token, roomID)
	for k, want := range final {
		if got := saved.Entries[k].Value.P; got != want {
			t.Errorf("saved world: %s at %v, want %v", k, got, want)
		}
	}
	for k := range saved.Entries {
		if strings.HasPrefix(k, "avatar/") {
			t.Errorf("saved world holds %s: avatars leave with their people", k)
		}
	}

	// The next call: fresh pages (nothing of the last call in memory)
	// see the objects where they were left, from the world the SFU loads.
	for _, p := range []*page{bob, carol} {
		p.do("reload", chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`.room-open[data-room-id="`+roomID+`"]`)))
		p.do("open the room", chromedp.Click(chromedp.CSS(`.room-open[data-room-id="`+roomID+`"]`)))
	}
	bob.openScene(0)
	carol.openScene(1)
	for _, p := range []*page{bob, carol} {
		p.waitJS("the world loaded", `window.plexusDebug.scene.snapshots() > 0`, 30*time.Second)
		for k, want := range final {
			p.waitJS(k+" where it was left", objectAt(k, want), 30*time.Second)
		}
		p.shot("next-call")
	}
}

// sceneWorld is the org.plexus.world state content: the SFU's snapshot.
type sceneWorld struct {
	Entries map[string]struct {
		By    string `json:"by"`
		TS    int64  `json:"ts"`
		Value struct {
			P scenePos `json:"p"`
		} `json:"value"`
	} `json:"entries"`
}

// sceneRoom is where the scene tests start: a server with the SFU, and
// alice, bob and carol signed up in pages of one browser and in the
// public room "Scene", which alice created and the others joined by its
// address.
type sceneRoom struct {
	s                 *server
	b                 *browser
	steps             int // counts the screenshots of every page, for pages opened later
	alice, bob, carol *page
	roomID, alias     string
}

func startSceneRoom(t *testing.T) *sceneRoom {
	t.Helper()
	clearArtifacts(t)
	r := &sceneRoom{s: startSFUServer(t), b: newBrowser(t)}
	r.alice = r.b.newPage(t, "alice", &r.steps)
	r.bob = r.b.newPage(t, "bob", &r.steps)
	r.carol = r.b.newPage(t, "carol", &r.steps)
	for _, p := range []*page{r.alice, r.bob, r.carol} {
		p.register(r.s, p.name, p.name+"-password")
	}

	// A public room: the others join by its address. Rooms the client
	// creates let every member write the world (org.plexus.world at 0).
	r.alias = "#scene:" + r.s.ServerName
	r.alice.do("create the room",
		chromedp.SendKeys(chromedp.ID("new-room-name"), "Scene"),
		chromedp.SendKeys(chromedp.ID("new-room-alias"), "scene"),
		chromedp.Click(chromedp.ID("create-room")))
	r.alice.waitJS("the new room open", `document.getElementById('room-title')?.textContent === 'Scene'`, 30*time.Second)
	r.roomID = eval[string](r.alice, `document.querySelector('.room.active .room-open')?.dataset.roomId || ''`)
	if r.roomID == "" {
		t.Fatal("no active room in alice's list")
	}
	r.bob.joinByAlias(r.alias, "Scene")
	r.carol.joinByAlias(r.alias, "Scene")
	return r
}

func worldState(t *testing.T, s *server, token, roomID string) sceneWorld {
	t.Helper()
	res := apiDo(t, http.MethodGet, s.URL+"/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/org.plexus.world/", token, nil)
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET org.plexus.world: status %d", res.StatusCode)
	}
	var w sceneWorld
	if err := json.NewDecoder(res.Body).Decode(&w); err != nil {
		t.Fatal(err)
	}
	return w
}
