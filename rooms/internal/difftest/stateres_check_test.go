package difftest

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
	"github.com/plexus-chat/plexus/rooms/internal/stateres"
)

// resolve implements hooks: Plexus's state resolution compared with
// gomatrixserverlib's. The result used to go on is Plexus's when they
// agree and gomatrixserverlib's otherwise (the failure is recorded).
func (c *checker) resolve(g *graph, states []stateMap) stateMap {
	in := stateres.Input{
		Version:  g.v,
		Events:   func(id pdu.EventID) *pdu.Event { return g.events[id] },
		Rejected: func(id pdu.EventID) bool { return g.rejected[id] },
	}
	for _, s := range states {
		in.States = append(in.States, stateres.StateMap(s))
	}
	mine, err := c.plexus.resolve(in)
	theirs := c.gmslResolve(g, states)
	if err != nil {
		c.fail("stateres", nil, "error: "+err.Error(), describeState(g, theirs))
		return theirs
	}
	if !maps.Equal(stateMap(mine), theirs) {
		if name, ok := c.stateresException(g, states, stateMap(mine), theirs); ok {
			c.compared("stateres")
			c.excused(name)
			return stateMap(mine)
		}
	}
	if !c.check("stateres", nil, describeDiff(g, stateMap(mine), theirs, true), describeDiff(g, stateMap(mine), theirs, false)) {
		_, conflicted := partition(states)
		c.t.Logf("seed %d: conflicted state set:%s\n  all states:\n%s", c.seed, describeIDs(g, conflicted), describeStates(g, states))
		return theirs
	}
	return stateMap(mine)
}

// describeDiff prints the tuples on which two states differ, as seen from
// the first (mine) or the second.
func describeDiff(g *graph, mine, theirs stateMap, first bool) string {
	d := stateMap{}
	for k, id := range mine {
		if theirs[k] != id {
			d[k] = id
		}
	}
	for k, id := range theirs {
		if mine[k] != id {
			d[k] = id
		}
	}
	side := theirs
	if first {
		side = mine
	}
	out := stateMap{}
	for k := range d {
		if id, ok := side[k]; ok {
			out[k] = id
		} else {
			out[k] = "(absent)"
		}
	}
	return describeState(g, out)
}

func describeIDs(g *graph, ids []pdu.EventID) string {
	s := stateMap{}
	for _, id := range ids {
		e := g.events[id]
		s[pdu.StateTuple{Type: e.Type(), StateKey: *e.StateKey() + " " + string(id)}] = id
	}
	return describeState(g, s)
}

// stateresException explains a state resolution difference by running
// the spec's algorithm (specResolve) twice: with the spec's auth verdicts
// it must give Plexus's result, and with gomatrixserverlib's auth verdicts
// (and, where named, its documented ordering departures) it must give
// gomatrixserverlib's result.
func (c *checker) stateresException(g *graph, states []stateMap, mine, theirs stateMap) (string, bool) {
	uncertain := false
	specAllowed := func(e *pdu.Event, s stateMap) bool {
		perr := c.plexus.allowed(e, getter(g, s))
		gerr := c.gmslAllowed(g, e, s)
		if (perr == nil) == (gerr == nil) {
			return perr == nil
		}
		if _, ok := authException(g, e, s, perr == nil, gerr == nil); !ok {
			uncertain = true
		}
		return perr == nil
	}
	spec := c.specResolve(g, states, specAllowed)
	if uncertain || !maps.Equal(spec, mine) {
		c.t.Logf("seed %d: the spec's algorithm (uncertain=%v) gives:%s", c.seed, uncertain, describeDiff(g, spec, mine, true))
		return "", false
	}
	gmslAuth := func(e *pdu.Event, s stateMap) bool { return c.gmslAllowed(g, e, s) == nil }
	// Try every set of emulated departures, smallest first; the first
	// that yields gomatrixserverlib's result names the exception.
	var sets []quirks
	for n := 0; n < 32; n++ {
		sets = append(sets, quirks{order: n&1 != 0, mainline: n&2 != 0, fallback: n&4 != 0, joinRuleCache: n&8 != 0, controlSet: n&16 != 0})
	}
	slices.SortStableFunc(sets, func(a, b quirks) int { return cmp.Compare(a.size(), b.size()) })
	for _, q := range sets {
		if maps.Equal(c.resolveVariant(g, states, gmslAuth, q), theirs) {
			if q == (quirks{}) {
				return exceptionStateresAuth, true
			}
			return exceptionStateresPrefix + q.String(), true
		}
	}
	withGmslAuth := c.specResolve(g, states, gmslAuth)
	c.t.Logf("seed %d: Plexus follows the spec; the spec's algorithm with gomatrixserverlib's auth verdicts gives:%s", c.seed, describeDiff(g, withGmslAuth, theirs, true))
	if dir := os.Getenv("DIFFTEST_DUMP"); dir != "" {
		c.dump(g, states, dir)
	}
	return "", false
}

func (c *checker) gmslAllowed(g *graph, e *pdu.Event, s stateMap) error {
	gp := c.gp(e)
	if gp == nil {
		return errors.New("unparseable")
	}
	return gmsl.Allowed(gp, c.provider(stateEvents(g, s)), userIDForSender)
}

// authChain returns the auth chain of an event (rooms v2 state
// resolution, "Auth chain"): its auth events, theirs, and so on.
func (c *checker) authChain(g *graph, id pdu.EventID) map[pdu.EventID]bool {
	if ch, ok := c.chains[id]; ok {
		return ch
	}
	ch := map[pdu.EventID]bool{}
	for _, a := range g.events[id].AuthEvents() {
		ch[a] = true
		for x := range c.authChain(g, a) {
			ch[x] = true
		}
	}
	c.chains[id] = ch
	return ch
}

// gmslResolve runs gomatrixserverlib's state resolution v2 on the states.
//
// Its convenience entry point ResolveConflicts takes a flat list of
// events and calls a tuple conflicted only when two different events
// share it, whereas the spec ("Unconflicted state map and conflicted state
// set") calls it conflicted unless every state has it with the same
// event; and ResolveStateConflictsV2 derives the auth difference from the
// auth chains of the conflicted events alone rather than of each whole
// state ("Auth difference"). So this computes the unconflicted state map
// and the full conflicted set as the spec defines them and hands them to
// ResolveStateConflictsV2, with every event of every auth chain as the
// auth events it may look up.
func (c *checker) gmslResolve(g *graph, states []stateMap) stateMap {
	unconflicted, conflicted := partition(states)
	full := c.fullConflictedSet(g, states, conflicted)
	var authEvents, unconf []pdu.EventID
	for a := range c.authUnion(g, states) {
		authEvents = append(authEvents, a)
	}
	for _, id := range unconflicted {
		unconf = append(unconf, id)
	}
	slices.Sort(authEvents)
	slices.Sort(unconf)
	res := gmsl.ResolveStateConflictsV2(c.pduList(g, full), c.pduList(g, unconf), c.pduList(g, authEvents),
		userIDForSender, func(id string) bool { return g.rejected[pdu.EventID(id)] })
	out := stateMap{}
	for _, p := range res {
		out[pdu.StateTuple{Type: p.Type(), StateKey: *p.StateKey()}] = pdu.EventID(p.EventID())
	}
	return out
}

func (c *checker) pduList(g *graph, ids []pdu.EventID) []gmsl.PDU {
	out := make([]gmsl.PDU, 0, len(ids))
	for _, id := range ids {
		if p := c.gp(g.events[id]); p != nil {
			out = append(out, p)
		}
	}
	return out
}

// partition splits states into the unconflicted state map and the
// conflicted state set (rooms v2 state resolution, "Unconflicted state
// map and conflicted state set").
func partition(states []stateMap) (stateMap, []pdu.EventID) {
	unconflicted := stateMap{}
	var conflicted []pdu.EventID
	keys := map[pdu.StateTuple]bool{}
	for _, s := range states {
		for k := range s {
			keys[k] = true
		}
	}
	for k := range keys {
		id, same := states[0][k]
		for _, s := range states[1:] {
			if other, ok := s[k]; !ok || other != id {
				same = false
			}
		}
		if same {
			unconflicted[k] = id
			continue
		}
		for _, s := range states {
			if id, ok := s[k]; ok && !slices.Contains(conflicted, id) {
				conflicted = append(conflicted, id)
			}
		}
	}
	slices.Sort(conflicted)
	return unconflicted, conflicted
}

// describeState prints a state map one tuple per line, sorted, with a
// summary of each event.
func describeState(g *graph, s stateMap) string {
	lines := make([]string, 0, len(s))
	for k, id := range s {
		lines = append(lines, fmt.Sprintf("    (%s, %q) = %s", k.Type, k.StateKey, summary(g, id)))
	}
	sort.Strings(lines)
	return "\n" + strings.Join(lines, "\n")
}

func describeStates(g *graph, states []stateMap) string {
	var b strings.Builder
	for i, s := range states {
		fmt.Fprintf(&b, "  state %d:%s\n", i, describeState(g, s))
	}
	return b.String()
}

func summary(g *graph, id pdu.EventID) string {
	e := g.events[id]
	if e == nil {
		return string(id) + " (unknown)"
	}
	return fmt.Sprintf("%s %s by %s ts=%d auth=%v %s", id, e.Type(), e.Sender(), e.OriginServerTS(), e.AuthEvents(), e.Content())
}

// dump writes a failing resolution's input for offline study.
func (c *checker) dump(g *graph, states []stateMap, dir string) {
	unconflicted, conflicted := partition(states)
	full := c.fullConflictedSet(g, states, conflicted)
	var unconf []pdu.EventID
	for _, id := range unconflicted {
		unconf = append(unconf, id)
	}
	auth := c.authUnion(g, states)
	var authIDs []pdu.EventID
	for a := range auth {
		authIDs = append(authIDs, a)
	}
	slices.Sort(authIDs)
	slices.Sort(unconf)
	evs := map[pdu.EventID]json.RawMessage{}
	for id, e := range g.events {
		evs[id] = e.JSON()
	}
	b, _ := json.Marshal(map[string]any{"version": g.v.ID, "full": full, "unconflicted": unconf, "auth": authIDs, "events": evs})
	_ = os.WriteFile(fmt.Sprintf("%s/v%s-seed%d-%d.json", dir, g.v.ID, c.seed, len(g.all)), b, 0o644)
}
