package difftest

import (
	"cmp"
	"slices"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// specResolve is a direct transcription of state resolution v2 (rooms v2
// state resolution, "Algorithm"), written for clarity, not speed. It is
// not compared with anything on its own: it only adjudicates when Plexus
// and gomatrixserverlib disagree (stateresException). allowed is the auth
// verdict to use in the iterative auth checks, given the event and the
// state to check it against.
//
// Where the spec's words admit two readings this follows the literal one:
// X takes every event of a power event's auth chain that is in the full
// conflicted set, and the ordering respects the whole auth DAG, not only
// its edges between members of X.
func (c *checker) specResolve(g *graph, states []stateMap, allowed func(e *pdu.Event, s stateMap) bool) stateMap {
	return c.resolveVariant(g, states, allowed, quirks{})
}

// quirks switch on emulations of gomatrixserverlib's documented
// departures from the algorithm, so that a disagreement can be shown to
// be exactly their effect. Each is described, with the spec text it
// departs from, at exceptionStateresPrefix in exceptions_test.go.
type quirks struct {
	order         bool // its power ordering
	mainline      bool // its mainline ordering
	fallback      bool // its auth events fallback in the iterative auth checks
	joinRuleCache bool // its stale join rule between iterative auth checks
	controlSet    bool // its way of following auth events into X
}

func (q quirks) size() int {
	n := 0
	for _, b := range []bool{q.order, q.mainline, q.fallback, q.joinRuleCache, q.controlSet} {
		if b {
			n++
		}
	}
	return n
}

func (q quirks) String() string {
	var s []string
	if q.order {
		s = append(s, "order")
	}
	if q.mainline {
		s = append(s, "mainline")
	}
	if q.fallback {
		s = append(s, "fallback")
	}
	if q.joinRuleCache {
		s = append(s, "joinrule-cache")
	}
	if q.controlSet {
		s = append(s, "control-set")
	}
	return strings.Join(s, "+")
}

// resolveVariant is specResolve with the given quirks emulated.
func (c *checker) resolveVariant(g *graph, states []stateMap, allowed func(e *pdu.Event, s stateMap) bool, q quirks) stateMap {
	unconflicted, conflicted := partition(states)
	full := c.fullConflictedSet(g, states, conflicted)
	inFull := map[pdu.EventID]bool{}
	for _, id := range full {
		inFull[id] = true
	}

	// Step 1: X is the power events of the full conflicted set and the
	// events of their auth chains in the full conflicted set.
	inX := map[pdu.EventID]bool{}
	for _, id := range full {
		if isPowerEvent(g.events[id]) {
			inX[id] = true
			if q.controlSet {
				addThroughFull(g, id, inFull, inX)
				continue
			}
			for a := range c.authChain(g, id) {
				if inFull[a] {
					inX[a] = true
				}
			}
		}
	}
	x := make([]pdu.EventID, 0, len(inX))
	for id := range inX {
		x = append(x, id)
	}
	if q.order {
		x = gmslPowerOrder(g, x, gmslMultiplicity(g, full, inFull, c.authUnion(g, states)))
	} else {
		x = c.powerOrder(g, x)
	}

	// Step 2: iterative auth checks from the unconflicted state map.
	partial := unconflicted.clone()
	jr := &jrCache{}
	c.iterativeAuth(g, partial, x, allowed, q, jr)

	// Step 3: the rest, in mainline order based on the resolved power
	// levels.
	var rest []pdu.EventID
	for _, id := range full {
		if !inX[id] {
			rest = append(rest, id)
		}
	}
	if q.mainline {
		rest = gmslMainlineOrder(g, rest, partial[pdu.StateTuple{Type: pdu.TypePowerLevels}])
	} else {
		rest = mainlineOrder(g, rest, partial[pdu.StateTuple{Type: pdu.TypePowerLevels}])
	}

	// Step 4.
	c.iterativeAuth(g, partial, rest, allowed, q, jr)

	// Step 5: the unconflicted state map wins.
	for k, id := range unconflicted {
		partial[k] = id
	}
	return partial
}

// fullConflictedSet is the conflicted state set and the auth difference
// ("Auth difference", "Full conflicted set").
func (c *checker) fullConflictedSet(g *graph, states []stateMap, conflicted []pdu.EventID) []pdu.EventID {
	count := map[pdu.EventID]int{}
	for _, s := range states {
		full := map[pdu.EventID]bool{}
		for _, id := range s {
			for a := range c.authChain(g, id) {
				full[a] = true
			}
		}
		for a := range full {
			count[a]++
		}
	}
	out := slices.Clone(conflicted)
	for a, n := range count {
		if n < len(states) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// isPowerEvent is the spec's "Power events", with the empty state key
// that every implementation requires of power levels and join rules.
func isPowerEvent(e *pdu.Event) bool {
	switch e.Type() {
	case pdu.TypePowerLevels, pdu.TypeJoinRules:
		return e.StateKeyIs("")
	case pdu.TypeMember:
		if e.StateKey() == nil || *e.StateKey() == string(e.Sender()) {
			return false
		}
		m := e.Membership()
		return m == "leave" || m == "ban"
	}
	return false
}

// senderLevel is the sender's power level "when looking at their
// respective auth_events": the power levels among them, or else 100 for
// the room creator named by the create event among them, else 0.
func senderLevel(g *graph, e *pdu.Event) int64 {
	var create *pdu.Event
	for _, id := range e.AuthEvents() {
		a := g.events[id]
		switch {
		case a.Type() == pdu.TypePowerLevels && a.StateKeyIs(""):
			if n, ok := a.Content().Path("users", string(e.Sender())); ok {
				l, _ := n.Int()
				return l
			}
			d, _ := a.Content().GetInt("users_default")
			return d
		case a.Type() == pdu.TypeCreate:
			create = a
		}
	}
	if create != nil {
		creator := create.Sender()
		if !g.v.CreatorIsSender {
			s, _ := create.Content().GetStr("creator")
			creator = pdu.UserID(s)
		}
		if creator == e.Sender() {
			return 100
		}
	}
	return 0
}

// powerOrder is the reverse topological power ordering: Kahn's algorithm
// over the auth DAG, taking at each step the smallest candidate by
// (greater sender power level, smaller origin_server_ts, smaller ID).
func (c *checker) powerOrder(g *graph, ids []pdu.EventID) []pdu.EventID {
	type key struct {
		level int64
		ts    int64
		id    pdu.EventID
	}
	keys := map[pdu.EventID]key{}
	deps := map[pdu.EventID]int{}
	for _, id := range ids {
		e := g.events[id]
		keys[id] = key{senderLevel(g, e), e.OriginServerTS(), id}
		for _, other := range ids {
			if c.authChain(g, id)[other] {
				deps[id]++
			}
		}
	}
	less := func(a, b key) int {
		if a.level != b.level {
			return cmp.Compare(b.level, a.level)
		}
		if a.ts != b.ts {
			return cmp.Compare(a.ts, b.ts)
		}
		return cmp.Compare(a.id, b.id)
	}
	var out []pdu.EventID
	done := map[pdu.EventID]bool{}
	for len(out) < len(ids) {
		var best pdu.EventID
		for _, id := range ids {
			if done[id] || deps[id] > 0 {
				continue
			}
			if best == "" || less(keys[id], keys[best]) < 0 {
				best = id
			}
		}
		done[best] = true
		out = append(out, best)
		for _, id := range ids {
			if c.authChain(g, id)[best] {
				deps[id]--
			}
		}
	}
	return out
}

// plOf returns the m.room.power_levels event among e's auth events.
func plOf(g *graph, e *pdu.Event) *pdu.Event {
	for _, id := range e.AuthEvents() {
		if a := g.events[id]; a.Type() == pdu.TypePowerLevels && a.StateKeyIs("") {
			return a
		}
	}
	return nil
}

// mainlineOrder sorts events by mainline position based on the power
// levels event pl, then origin_server_ts, then ID ("Mainline ordering").
func mainlineOrder(g *graph, ids []pdu.EventID, pl pdu.EventID) []pdu.EventID {
	const infinity = int(^uint(0) >> 1)
	mainline := map[pdu.EventID]int{}
	for i, p := 0, g.events[pl]; p != nil; i, p = i+1, plOf(g, p) {
		mainline[p.ID()] = i
	}
	pos := map[pdu.EventID]int{}
	for _, id := range ids {
		pos[id] = infinity
		for p := plOf(g, g.events[id]); p != nil; p = plOf(g, p) {
			if i, ok := mainline[p.ID()]; ok {
				pos[id] = i
				break
			}
		}
	}
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b pdu.EventID) int {
		if pos[a] != pos[b] {
			return cmp.Compare(pos[b], pos[a])
		}
		ea, eb := g.events[a], g.events[b]
		if ea.OriginServerTS() != eb.OriginServerTS() {
			return cmp.Compare(ea.OriginServerTS(), eb.OriginServerTS())
		}
		return cmp.Compare(a, b)
	})
	return out
}

// iterativeAuth is "Iterative auth checks": each event is checked against
// the partial state, with any tuple the partial state lacks taken from
// the event's own (non-rejected) auth events, and applied if allowed.
func (c *checker) iterativeAuth(g *graph, partial stateMap, ids []pdu.EventID, allowed func(*pdu.Event, stateMap) bool, q quirks, jr *jrCache) {
	for _, id := range ids {
		e := g.events[id]
		s := partial.clone()
		for _, a := range e.AuthEvents() {
			ae := g.events[a]
			if q.fallback && ae.Type() != pdu.TypeMember {
				continue
			}
			if _, ok := s[ae.Tuple()]; !ok && !g.rejected[a] {
				s[ae.Tuple()] = a
			}
		}
		if q.joinRuleCache {
			c.staleJoinRule(g, e, s, jr)
		}
		if allowed(e, s) {
			partial[e.Tuple()] = id
		}
	}
}

// The emulations below describe gomatrixserverlib's behaviour in our own
// words; they exist only to show that a disagreement is its effect.

// addThroughFull adds to x the auth events of id that are in the full
// conflicted set, following auth events only through that set (as
// gomatrixserverlib's fullControlSet does).
func addThroughFull(g *graph, id pdu.EventID, inFull, x map[pdu.EventID]bool) {
	for _, a := range g.events[id].AuthEvents() {
		if inFull[a] && !x[a] {
			x[a] = true
			addThroughFull(g, a, inFull, x)
		}
	}
}

// gmslLevel is the sender's level from the power levels among the auth
// events, 0 without one (no creator rule).
func gmslLevel(g *graph, e *pdu.Event) int64 {
	if pl := plOf(g, e); pl != nil {
		if n, ok := pl.Content().Path("users", string(e.Sender())); ok {
			l, _ := n.Int()
			return l
		}
		d, _ := pl.Content().GetInt("users_default")
		return d
	}
	return 0
}

// authUnion is every event of every state's full auth chain: the auth
// events gmslResolve hands gomatrixserverlib.
func (c *checker) authUnion(g *graph, states []stateMap) map[pdu.EventID]bool {
	u := map[pdu.EventID]bool{}
	for _, s := range states {
		for _, id := range s {
			for a := range c.authChain(g, id) {
				u[a] = true
			}
		}
	}
	return u
}

// gmslMultiplicity counts how often gomatrixserverlib lists each event of
// X before ordering it: once for each time it appears as a power event
// in its full conflicted set (which repeats every conflicted event that
// is also among the auth events given), plus once if it is reached as an
// auth event of a power event.
func gmslMultiplicity(g *graph, full []pdu.EventID, inFull, authEvents map[pdu.EventID]bool) map[pdu.EventID]int {
	mult := map[pdu.EventID]int{}
	for _, id := range full {
		e := g.events[id]
		if !isPowerEvent(e) {
			continue
		}
		mult[id]++
		if authEvents[id] && slices.ContainsFunc(e.AuthEvents(), func(a pdu.EventID) bool { return authEvents[a] }) {
			mult[id]++
		}
	}
	reached := map[pdu.EventID]bool{}
	for _, id := range full {
		if isPowerEvent(g.events[id]) {
			addThroughFull(g, id, inFull, reached)
		}
	}
	for id := range reached {
		mult[id]++
	}
	return mult
}

// gmslPowerOrder orders from the latest events back: among the events no
// remaining event cites directly, it takes the one with the highest
// sender level, then the latest origin_server_ts, then the greatest ID,
// and the result is that sequence reversed. An event listed more than
// once (mult) counts as that many citations of its auth events but frees
// them only once, so those auth events and everything below them are
// never released; they go first, sorted by lowest level, then earliest
// timestamp, then smallest ID. The spec instead takes, from the earliest
// events forward, the highest level, then the earliest timestamp, then
// the smallest ID.
func gmslPowerOrder(g *graph, ids []pdu.EventID, mult map[pdu.EventID]int) []pdu.EventID {
	in := map[pdu.EventID]bool{}
	for _, id := range ids {
		in[id] = true
	}
	cited := map[pdu.EventID]int{}
	for _, id := range ids {
		for _, a := range g.events[id].AuthEvents() {
			if in[a] {
				cited[a] += max(mult[id], 1)
			}
		}
	}
	greater := func(a, b pdu.EventID) bool {
		ea, eb := g.events[a], g.events[b]
		if la, lb := gmslLevel(g, ea), gmslLevel(g, eb); la != lb {
			return la > lb
		}
		if ea.OriginServerTS() != eb.OriginServerTS() {
			return ea.OriginServerTS() > eb.OriginServerTS()
		}
		return a > b
	}
	var out []pdu.EventID
	done := map[pdu.EventID]bool{}
	for {
		var best pdu.EventID
		for _, id := range ids {
			if !done[id] && cited[id] == 0 && (best == "" || greater(id, best)) {
				best = id
			}
		}
		if best == "" {
			break
		}
		done[best] = true
		out = append(out, best)
		for _, a := range g.events[best].AuthEvents() {
			if in[a] {
				cited[a]--
			}
		}
	}
	slices.Reverse(out)
	var stray []pdu.EventID
	for _, id := range ids {
		if !done[id] {
			stray = append(stray, id)
		}
	}
	slices.SortFunc(stray, func(a, b pdu.EventID) int {
		switch {
		case a == b:
			return 0
		case greater(b, a):
			return -1
		}
		return 1
	})
	return append(stray, out...)
}

// gmslMainlineOrder numbers the mainline from its oldest event (0)
// upwards, gives an event whose power levels chain never meets the
// mainline position 0 as well, and sorts by position, then by the number
// of power levels events walked to reach the mainline, then timestamp,
// then ID. The spec gives such an event position infinity (it sorts
// first, before every event based on the mainline) and has no step count.
func gmslMainlineOrder(g *graph, ids []pdu.EventID, pl pdu.EventID) []pdu.EventID {
	var line []pdu.EventID
	for p := g.events[pl]; p != nil; p = plOf(g, p) {
		line = append(line, p.ID())
	}
	slices.Reverse(line)
	mainline := map[pdu.EventID]int{}
	for i, id := range line {
		mainline[id] = i
	}
	type key struct{ pos, steps int }
	keys := map[pdu.EventID]key{}
	for _, id := range ids {
		k := key{}
		for p := plOf(g, g.events[id]); p != nil; p = plOf(g, p) {
			if i, ok := mainline[p.ID()]; ok {
				k.pos = i
				break
			}
			k.steps++
		}
		keys[id] = k
	}
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b pdu.EventID) int {
		ka, kb := keys[a], keys[b]
		if ka.pos != kb.pos {
			return cmp.Compare(ka.pos, kb.pos)
		}
		if ka.steps != kb.steps {
			return cmp.Compare(ka.steps, kb.steps)
		}
		ea, eb := g.events[a], g.events[b]
		if ea.OriginServerTS() != eb.OriginServerTS() {
			return cmp.Compare(ea.OriginServerTS(), eb.OriginServerTS())
		}
		return cmp.Compare(a, b)
	})
	return out
}

// jrCache is the join rule gomatrixserverlib's state resolution keeps
// between auth checks: the join rules event it last read and the rule it
// holds for it, which a restricted join check overwrites.
type jrCache struct {
	id   pdu.EventID
	rule string
}

// staleJoinRule emulates that cache for the check of e against s: while
// consecutive checks need the same join rules event, the rule held is
// the one left by the previous check, not the event's; a check of a
// restricted (or knock_restricted) join leaves "invite" (joiner already
// joined or invited, or no join_authorised_via_users_server) or
// "public" (the authorising user is joined and may invite) behind.
// s's join rules entry is replaced by a stand-in event carrying the rule
// held, so the auth check sees what gomatrixserverlib sees.
func (c *checker) staleJoinRule(g *graph, e *pdu.Event, s stateMap, jr *jrCache) {
	jrTuple := pdu.StateTuple{Type: pdu.TypeJoinRules}
	m := e.Membership()
	if e.Type() != pdu.TypeMember || (m != "join" && m != "invite" && m != "knock") {
		*jr = jrCache{}
		return
	}
	id, ok := s[jrTuple]
	if !ok {
		*jr = jrCache{}
		return
	}
	if jr.id != id {
		rule, _ := g.events[id].Content().GetStr("join_rule")
		*jr = jrCache{id: id, rule: rule}
	}
	if rule, _ := g.events[id].Content().GetStr("join_rule"); rule != jr.rule {
		s[jrTuple] = c.standIn(g, g.events[id], jr.rule)
	}
	st := specState{g: g, s: s}
	target := pdu.UserID(*e.StateKey())
	creator := g.events[s[createTuple]].Sender()
	if m != "join" || target != e.Sender() || (jr.rule != "restricted" && jr.rule != "knock_restricted") ||
		!st.federationAllowed(e.Sender()) || st.membership(target) == "ban" ||
		(target == creator && len(e.PrevEvents()) == 1 && e.PrevEvents()[0] == s[createTuple]) {
		return
	}
	via, _ := e.Content().GetStr("join_authorised_via_users_server")
	switch old := st.membership(target); {
	case old == "join" || old == "invite" || via == "":
		jr.rule = "invite"
	case st.membership(pdu.UserID(via)) == "join" && st.level(pdu.UserID(via)) >= st.named("invite", 0):
		if _, ok := s[pdu.StateTuple{Type: pdu.TypeMember, StateKey: via}]; ok {
			jr.rule = "public"
		}
	}
}

// standIn returns a copy of a join rules event with another rule, made
// once and kept with the graph's events.
func (c *checker) standIn(g *graph, base *pdu.Event, rule string) pdu.EventID {
	key := string(base.ID()) + "/" + rule
	if id, ok := c.standIns[key]; ok {
		return id
	}
	s := evSpec{typ: pdu.TypeJoinRules, stateKey: strp(""), sender: base.Sender(), content: base.Content().With("join_rule", cjson.Str(rule))}
	e := g.buildAt(base.PrevEvents(), base.AuthEvents(), base.Depth(), base.OriginServerTS(), s)
	g.events[e.ID()] = e
	c.standIns[key] = e.ID()
	return e.ID()
}
