package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestGraphLayout runs the History panel's layout tests in Node
// (src/graph/layout.test.mjs): forks, merges, rejected, soft-failed and
// outlier events, prev events not loaded, malformed depths and random
// graphs, none of which one server makes for a browser to see.
func TestGraphLayout(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("PLEXUS_REQUIRE_BROWSER") == "1" || os.Getenv("CI") != "" {
			t.Fatal("node is not installed (run .ci/node.sh)")
		}
		t.Skip("node is not installed (run .ci/node.sh)")
	}
	out, err := exec.Command(node, "--no-warnings", filepath.Join("src", "graph", "layout.test.mjs")).CombinedOutput()
	if err != nil {
		t.Fatalf("layout tests: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// graphEvent is what the test reads of GET .../graph.
type graphEvent struct {
	EventID    string   `json:"event_id"`
	Type       string   `json:"type"`
	Sender     string   `json:"sender"`
	Status     string   `json:"status"`
	PrevEvents []string `json:"prev_events"`
}

// roomGraph reads the whole graph of a room over the API, as the user
// with token sees it.
func (s *server) roomGraph(t *testing.T, token, roomID string) []graphEvent {
	t.Helper()
	res := apiDo(t, http.MethodGet, s.URL+"/_plexus/client/v1/rooms/"+url.PathEscape(roomID)+"/graph?limit=1000", token, nil)
	defer res.Body.Close()
	var out struct {
		Events []graphEvent `json:"events"`
		Next   string       `json:"next"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK || out.Next != "" {
		t.Fatalf("graph: status %d, %v, next %q", res.StatusCode, err, out.Next)
	}
	return out.Events
}

// drawnGraph is what the History panel drew: its nodes and its edges
// between two drawn events, as "child>prev".
type drawnGraph struct {
	Nodes    []string `json:"nodes"`
	Statuses []string `json:"statuses"`
	Edges    []string `json:"edges"`
	Missing  int      `json:"missing"`
}

const drawnGraphJS = `(() => {
	const nodes = [...document.querySelectorAll('#graph-svg .gnode')];
	const edges = [...document.querySelectorAll('#graph-svg .gedge')];
	return {
		nodes: nodes.map((n) => n.dataset.eventId),
		statuses: nodes.map((n) => n.dataset.status),
		edges: edges.filter((e) => !e.classList.contains('missing')).map((e) => e.dataset.from + '>' + e.dataset.to),
		missing: edges.filter((e) => e.classList.contains('missing')).length,
	};
})()`

// TestGraphView: alice opens the History panel of a room of more events
// than one page: every event is drawn once, with one edge per prev
// event, after loading the older page; focusing an event tells its type,
// sender and status; a new message appears without a reload; and the
// panel fits a phone.
func TestGraphView(t *testing.T) {
	clearArtifacts(t)
	s := startServer(t)
	b := newBrowser(t)
	steps := 0
	alice := b.newPage(t, "alice", &steps)
	alice.register(s, "alice", "alice-password")
	alice.do("create a room",
		chromedp.SendKeys(chromedp.ID("new-room-name"), "Graph"),
		chromedp.Click(chromedp.ID("create-room")))
	alice.waitJS("the room open", `document.getElementById('room-title')?.textContent === 'Graph'`, 20*time.Second)
	roomID := eval[string](alice, `document.querySelector('.room.active .room-open')?.dataset.roomId || ''`)
	if roomID == "" {
		t.Fatal("no active room")
	}
	// More events than the panel's page of 100, so that "Load older" has
	// work to do.
	token := s.login(t, "alice", "alice-password")
	for i := 1; i <= 110; i++ {
		s.send(t, token, roomID, fmt.Sprintf("graph-%d", i), fmt.Sprintf("event %d", i))
	}
	want := s.roomGraph(t, token, roomID)
	if len(want) <= 110 {
		t.Fatalf("the room has %d events, want more than 110", len(want))
	}

	alice.do("open the History panel", chromedp.Click(chromedp.CSS(`.tabs button[data-panel="graph"]`)))
	alice.waitJS("the first page drawn", `document.querySelectorAll('#graph-svg .gnode').length === 100`, 30*time.Second)
	first := eval[drawnGraph](alice, drawnGraphJS)
	if first.Missing == 0 {
		t.Error("the first page shows no edge to an event not loaded yet")
	}
	alice.shot("graph-first-page")
	alice.do("load older events", chromedp.Click(chromedp.ID("graph-older")))
	alice.waitJS("the whole graph drawn", fmt.Sprintf(`document.querySelectorAll('#graph-svg .gnode').length === %d`, len(want)), 30*time.Second)
	alice.waitJS("no more pages", `document.getElementById('graph-older').hidden`, 10*time.Second)

	checkDrawn(t, eval[drawnGraph](alice, drawnGraphJS), want)

	// Focus an event: its details show.
	create := want[len(want)-1]
	if create.Type != "m.room.create" {
		t.Fatalf("oldest event is %s, want m.room.create", create.Type)
	}
	alice.do("focus the create event", chromedp.Focus(chromedp.CSS(`#graph-svg .gnode[data-event-id="`+create.EventID+`"]`)))
	alice.waitJS("its details", `(() => { const d = document.getElementById('graph-details').textContent;
		return d.includes('m.room.create') && d.includes('@alice:`+s.ServerName+`') && d.includes('accepted') && d.includes(`+js(create.EventID)+`); })()`, 10*time.Second)
	label := eval[string](alice, `document.querySelector('#graph-svg .gnode[data-event-id="`+create.EventID+`"]').getAttribute('aria-label')`)
	if label == "" {
		t.Error("an event node has no accessible name")
	}
	alice.shot("graph-details")
	alice.checkNames("history graph")

	// A new event arrives: the panel refreshes by itself.
	s.send(t, token, roomID, "graph-live", "live event")
	alice.waitJS("the new event drawn", fmt.Sprintf(`document.querySelectorAll('#graph-svg .gnode').length === %d`, len(want)+1), 30*time.Second)
	checkDrawn(t, eval[drawnGraph](alice, drawnGraphJS), s.roomGraph(t, token, roomID))
	alice.do("scroll to the oldest events", chromedp.Evaluate[chromedp.Void](`document.getElementById('graph-canvas').scrollTop = 1e6`))
	alice.shot("graph-oldest")

	// A fork, a merge, rejected, soft-failed and outlier events: one
	// server never makes them for a browser, so the page is served this
	// graph (the layout's own tests are TestGraphLayout's) to show that
	// the drawing marks them in the browser, not colour alone.
	alice.do("serve a forked graph", chromedp.Evaluate[chromedp.Void](forkedGraphJS))
	alice.do("refresh", chromedp.Click(chromedp.ID("graph-refresh")))
	alice.waitJS("the forked graph drawn", `document.querySelectorAll('#graph-svg .gnode').length === 10`, 20*time.Second)
	forked := eval[struct {
		Columns  bool
		Rejected string
		Soft     string
		Outlier  string
		Missing  int
	}](alice, `(() => {
		const at = (id) => document.querySelector('#graph-svg .gnode[data-event-id="' + id + '"] .dot');
		const label = (id) => document.querySelector('#graph-svg .gnode[data-event-id="' + id + '"] .label').textContent;
		return {
			columns: at('$a').getAttribute('cx') !== at('$b').getAttribute('cx'),
			rejected: label('$rej'), soft: label('$soft'), outlier: label('$out'),
			missing: document.querySelectorAll('#graph-svg .gedge.missing').length,
		};
	})()`)
	if !forked.Columns {
		t.Errorf("the fork is not drawn side by side: %+v", forked)
	}
	for _, c := range []struct{ label, word string }{{forked.Rejected, "✕ rejected"}, {forked.Soft, "! soft-failed"}, {forked.Outlier, "? outlier"}} {
		if !strings.Contains(c.label, c.word) {
			t.Errorf("label %q lacks %q", c.label, c.word)
		}
	}
	if forked.Missing != 1 {
		t.Errorf("%d edges to events not loaded, want 1", forked.Missing)
	}
	if got := eval[int](alice, `document.querySelectorAll('#graph-svg .gedge:not(.missing)').length`); got != 11 {
		t.Errorf("%d edges between drawn events, want 11", got)
	}
	alice.do("focus the rejected event", chromedp.Focus(chromedp.CSS(`#graph-svg .gnode[data-event-id="$rej"]`)))
	alice.waitJS("why it was rejected", `document.getElementById('graph-details').textContent.includes('rejected: not allowed by the auth rules')`, 10*time.Second)
	alice.shot("graph-forked")

	alice.do("phone viewport", chromedp.EmulateViewport(390, 844))
	alice.do("scroll to the top", chromedp.Evaluate[chromedp.Void](`document.getElementById('graph-canvas').scrollTop = 0`))
	alice.shot("graph-phone")
	if w := eval[int](alice, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the page is %d px wide on a 390 px screen", w)
	}
}

// checkDrawn compares the drawing with the graph the API gives: one
// node per event, all accepted, one edge per prev event, none dangling.
func checkDrawn(t *testing.T, got drawnGraph, want []graphEvent) {
	t.Helper()
	var wantNodes, wantEdges []string
	for _, ev := range want {
		wantNodes = append(wantNodes, ev.EventID)
		for _, p := range ev.PrevEvents {
			wantEdges = append(wantEdges, ev.EventID+">"+p)
		}
		if ev.Status != "accepted" {
			t.Errorf("%s is %s in a plain room", ev.EventID, ev.Status)
		}
	}
	sort.Strings(wantNodes)
	sort.Strings(wantEdges)
	sort.Strings(got.Nodes)
	sort.Strings(got.Edges)
	if fmt.Sprint(got.Nodes) != fmt.Sprint(wantNodes) {
		t.Errorf("drawn %d nodes, want %d (the room's events)", len(got.Nodes), len(wantNodes))
	}
	if fmt.Sprint(got.Edges) != fmt.Sprint(wantEdges) {
		t.Errorf("drawn %d edges, want %d (the prev event links)", len(got.Edges), len(wantEdges))
	}
	if got.Missing != 0 {
		t.Errorf("%d edges to events not loaded, with the whole graph loaded", got.Missing)
	}
	for _, st := range got.Statuses {
		if st != "accepted" {
			t.Errorf("a node drawn as %s", st)
		}
	}
}

// forkedGraphJS makes the page's fetch answer the graph endpoint with a
// graph with a fork ($a, $b), a merge ($merge), a rejected, a
// soft-failed and an outlier event, and a prev event not loaded.
const forkedGraphJS = `(() => {
	let ts = Date.now() - 60000;
	const ev = (id, type, depth, prev, status = 'accepted', extra = {}) => ({
		event_id: id, type, sender: '@alice:plexus.test', origin_server_ts: ts += 1000, depth,
		prev_events: prev, auth_events: [], status, ...extra,
	});
	const body = {
		events: [
			ev('$power', 'm.room.power_levels', 3, ['$older'], 'accepted', { state_key: '' }),
			ev('$a', 'm.room.message', 4, ['$power']),
			ev('$b', 'm.room.message', 4, ['$power']),
			ev('$rej', 'm.room.name', 5, ['$a'], 'rejected', { state_key: '', rejected_reason: 'not allowed by the auth rules' }),
			ev('$merge', 'm.room.message', 5, ['$a', '$b']),
			ev('$soft', 'm.room.message', 6, ['$merge'], 'soft_failed'),
			ev('$next', 'm.room.message', 6, ['$merge']),
			ev('$top', 'm.room.message', 7, ['$next', '$soft']),
			ev('$top2', 'm.room.message', 8, ['$top', '$rej']),
			ev('$out', 'm.room.member', 3, [], 'outlier', { state_key: '@bob:other.test' }),
		].reverse(),
		forward_extremities: ['$top2'],
	};
	const real = window.fetch;
	window.fetch = (url, opts) => String(url).includes('/graph')
		? Promise.resolve(new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } }))
		: real(url, opts);
})()`
