package difftest

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
	"github.com/plexus-chat/plexus/rooms/internal/stateres"
)

// tally counts what was compared, across all graphs.
type tally struct {
	mu sync.Mutex
	// counts is keyed by comparison kind ("event-id", "auth/state-before",
	// ...); exceptions by exception name; fails by comparison kind.
	counts     map[string]int
	exceptions map[string]int
	fails      map[string]int
	graphs     int
	events     int
	rejected   int
}

func newTally() *tally {
	return &tally{counts: map[string]int{}, exceptions: map[string]int{}, fails: map[string]int{}}
}

func (t *tally) merge(c *checker, rejected int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.graphs++
	t.events += c.events
	t.rejected += rejected
	for k, n := range c.counts {
		t.counts[k] += n
	}
	for k, n := range c.exceptions {
		t.exceptions[k] += n
	}
	for k, n := range c.fails {
		t.fails[k] += n
	}
}

func (t *tally) log(tb testing.TB) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "differential summary: %d graphs, %d events (%d rejected)\n", t.graphs, t.events, t.rejected)
	for _, sec := range []struct {
		title string
		m     map[string]int
	}{{"comparisons", t.counts}, {"documented gomatrixserverlib exceptions", t.exceptions}, {"unexplained disagreements", t.fails}} {
		fmt.Fprintf(&b, "  %s:\n", sec.title)
		keys := make([]string, 0, len(sec.m))
		for k := range sec.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "    %-45s %7d\n", k, sec.m[k])
		}
	}
	tb.Log(b.String())
}

// maxReported bounds the disagreements printed per graph; the rest are
// only counted.
const maxReported = 4

// plexus is the code under test. Tests of the harness itself swap in
// broken versions to show that the comparisons catch them.
type plexus struct {
	allowed    func(*pdu.Event, auth.StateGetter) error
	selectAuth func(*pdu.Version, string, *string, pdu.UserID, cjson.Value) []pdu.StateTuple
	resolve    func(stateres.Input) (stateres.StateMap, error)
}

var realPlexus = plexus{allowed: auth.Allowed, selectAuth: auth.SelectAuthTuples, resolve: stateres.Resolve}

// checker watches one graph being generated, compares Plexus with
// gomatrixserverlib at every step and answers the generator's questions.
type checker struct {
	t      testing.TB
	plexus plexus
	seed   uint64
	gv     gmsl.IRoomVersion
	// rng picks which variants to try; it is separate from the
	// generator's so that the graph does not depend on the checks.
	rng  *rand.Rand
	pdus map[pdu.EventID]gmsl.PDU
	// chains memoises auth chains (event IDs, excluding the event).
	chains map[pdu.EventID]map[pdu.EventID]bool
	// standIns are join rules events made up by staleJoinRule.
	standIns map[string]pdu.EventID

	events     int
	counts     map[string]int
	exceptions map[string]int
	fails      map[string]int
	reported   int
}

func newChecker(t testing.TB, seed uint64, v *pdu.Version) *checker {
	return &checker{
		t:          t,
		plexus:     realPlexus,
		seed:       seed,
		gv:         gmsl.MustGetRoomVersion(gmsl.RoomVersion(v.ID)),
		rng:        rand.New(rand.NewPCG(seed, 0x636865636b)),
		pdus:       map[pdu.EventID]gmsl.PDU{},
		chains:     map[pdu.EventID]map[pdu.EventID]bool{},
		standIns:   map[string]pdu.EventID{},
		counts:     map[string]int{},
		exceptions: map[string]int{},
		fails:      map[string]int{},
	}
}

// compared counts one comparison of the given kind.
func (c *checker) compared(kind string) { c.counts[kind]++ }

// excused records a disagreement explained by a documented exception.
func (c *checker) excused(name string) { c.exceptions[name]++ }

// fail records an unexplained disagreement: the seed, the event and what
// each side said.
func (c *checker) fail(kind string, e *pdu.Event, plexus, other string) {
	c.fails[kind]++
	if c.reported >= maxReported {
		return
	}
	c.reported++
	var ev string
	if e != nil {
		ev = fmt.Sprintf("\n  event %s: %s", e.ID(), e.JSON())
	}
	c.t.Errorf("seed %d, %s disagreement%s\n  plexus: %s\n  gomatrixserverlib: %s", c.seed, kind, ev, plexus, other)
}

// check compares two values of a kind and reports a difference.
func (c *checker) check(kind string, e *pdu.Event, plexus, other string) bool {
	c.compared(kind)
	if plexus == other {
		return true
	}
	c.fail(kind, e, plexus, other)
	return false
}

// checkSpec compares Plexus with a verdict the spec fixes for a
// constructed case (not with gomatrixserverlib).
func (c *checker) checkSpec(kind string, e *pdu.Event, plexus, spec string) {
	kind = "spec/" + kind
	c.compared(kind)
	if plexus == spec {
		return
	}
	c.fails[kind]++
	if c.reported >= maxReported {
		return
	}
	c.reported++
	c.t.Errorf("seed %d, %s: Plexus departs from the spec\n  event %s: %s\n  plexus: %s\n  spec: %s", c.seed, kind, e.ID(), e.JSON(), plexus, spec)
}

// gp returns gomatrixserverlib's view of a Plexus event, parsed from its
// bytes as a receiving server would (NewEventFromUntrustedJSON).
func (c *checker) gp(e *pdu.Event) gmsl.PDU {
	if p, ok := c.pdus[e.ID()]; ok {
		return p
	}
	p, err := c.gv.NewEventFromUntrustedJSON(e.JSON())
	if err != nil {
		c.fail("parse", e, "valid event", "error: "+err.Error())
		return nil
	}
	c.pdus[e.ID()] = p
	return p
}

func verdict(err error) string {
	if err == nil {
		return "allow"
	}
	return "reject: " + err.Error()
}
