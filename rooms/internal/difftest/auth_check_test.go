package difftest

import (
	"os"
	"slices"
	"sort"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

var createTuple = pdu.StateTuple{Type: pdu.TypeCreate}

// authTuples implements hooks: Plexus's auth events selection, compared
// with gomatrixserverlib's.
func (c *checker) authTuples(g *graph, typ string, stateKey *string, sender pdu.UserID, content cjson.Value) []pdu.StateTuple {
	mine := c.plexus.selectAuth(g.v, typ, stateKey, sender, content)
	pe := gmsl.ProtoEvent{Type: typ, StateKey: stateKey, SenderID: string(sender), Content: cjson.Marshal(content)}
	var theirs []pdu.StateTuple
	kind := "auth-selection"
	if need, err := gmsl.StateNeededForProtoEvent(&pe); err == nil {
		for _, t := range need.Tuples() {
			theirs = append(theirs, pdu.StateTuple{Type: t.EventType, StateKey: t.StateKey})
		}
	} else {
		// gomatrixserverlib cannot read a membership that is not a
		// string. The spec's selection (server-server API, "Auth events
		// selection") still applies: create, power levels, sender's and
		// target's member events; join rules only for join, invite or
		// knock, which a non-string membership is not.
		kind = "auth-selection/unreadable-membership"
		theirs = []pdu.StateTuple{createTuple, {Type: pdu.TypePowerLevels}, {Type: pdu.TypeMember, StateKey: string(sender)}}
		if stateKey != nil {
			theirs = append(theirs, pdu.StateTuple{Type: pdu.TypeMember, StateKey: *stateKey})
		}
	}
	if c.check(kind, nil, tupleSet(mine), tupleSet(theirs)) {
		return mine
	}
	return theirs
}

func tupleSet(ts []pdu.StateTuple) string {
	var s []string
	for _, t := range ts {
		k := t.Type + "|" + t.StateKey
		if !slices.Contains(s, k) {
			s = append(s, k)
		}
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// getter serves Plexus's auth functions from a state map.
func getter(g *graph, s stateMap) auth.StateGetter {
	return func(t pdu.StateTuple) *pdu.Event {
		id, ok := s[t]
		if !ok {
			return nil
		}
		return g.events[id]
	}
}

// listGetter serves them from an auth_events list; the first event for a
// tuple wins.
func listGetter(evs []*pdu.Event) auth.StateGetter {
	return func(t pdu.StateTuple) *pdu.Event {
		for _, e := range evs {
			if e.IsState() && e.Tuple() == t {
				return e
			}
		}
		return nil
	}
}

// provider is gomatrixserverlib's view of a set of events.
func (c *checker) provider(evs []*pdu.Event) *gmsl.AuthEvents {
	ae := gmsl.NewAuthEvents(nil)
	for _, e := range evs {
		if p := c.gp(e); p != nil {
			_ = ae.AddEvent(p)
		}
	}
	return &ae
}

func stateEvents(g *graph, s stateMap) []*pdu.Event {
	ids := make([]pdu.EventID, 0, len(s))
	for _, id := range s {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	evs := make([]*pdu.Event, len(ids))
	for i, id := range ids {
		evs[i] = g.events[id]
	}
	return evs
}

// admit implements hooks: it runs every comparison on a new event and
// returns whether the event is accepted. The verdict is Plexus's when the
// two agree or a documented exception shows Plexus follows the spec, and
// gomatrixserverlib's otherwise (the failure is already recorded), so one
// bug does not derail the rest of the graph.
func (c *checker) admit(g *graph, e *pdu.Event, before stateMap) bool {
	c.events++
	c.checkEvent(g, e)
	gp := c.gp(e)
	if gp == nil {
		return false
	}

	// Against the state before the event (server-server API, "Checks
	// performed on receipt of a PDU", step 5).
	perr := c.plexus.allowed(e, getter(g, before))
	gerr := gmsl.Allowed(gp, c.provider(stateEvents(g, before)), userIDForSender)
	ok := c.judgeAuth(g, e, before, "auth/state-before", perr, gerr)

	// Against its own auth events (step 4), including the auth_events
	// rules (rule 2) on Plexus's side.
	authEvs := c.authEvents(g, e)
	perr2 := c.plexusAgainstAuthEvents(g, e, authEvs, before)
	gerr2 := gmsl.Allowed(gp, c.provider(authEvs), userIDForSender)
	c.judgeAuth(g, e, before, "auth/auth-events", perr2, gerr2)

	if e.Type() != pdu.TypeCreate && c.rng.IntN(6) == 0 {
		c.checkAuthEventVariants(g, e, before)
	}
	return ok
}

func (c *checker) authEvents(g *graph, e *pdu.Event) []*pdu.Event {
	var evs []*pdu.Event
	for _, id := range e.AuthEvents() {
		if a := g.events[id]; a != nil {
			evs = append(evs, a)
		}
	}
	return evs
}

func (c *checker) plexusAgainstAuthEvents(g *graph, e *pdu.Event, authEvs []*pdu.Event, before stateMap) error {
	create := g.events[before[createTuple]]
	if err := auth.CheckAuthEvents(e, authEvs, create, func(id pdu.EventID) bool { return g.rejected[id] }); err != nil {
		return err
	}
	return c.plexus.allowed(e, listGetter(authEvs))
}

// judgeAuth compares two auth verdicts.
func (c *checker) judgeAuth(g *graph, e *pdu.Event, before stateMap, kind string, perr, gerr error) bool {
	c.compared(kind)
	pOK, gOK := perr == nil, gerr == nil
	if pOK == gOK {
		return pOK
	}
	if name, ok := authException(g, e, before, pOK, gOK); ok {
		c.excused(name)
		if os.Getenv("DIFFTEST_EXPLAIN") != "" && c.exceptions[name] == 1 {
			c.t.Logf("seed %d: %s: %s\n  plexus: %v\n  gomatrixserverlib: %v", c.seed, name, e.JSON(), perr, gerr)
		}
		return pOK
	}
	c.fail(kind, e, verdict(perr), verdict(gerr))
	return gOK
}

// checkAuthEventVariants rebuilds the event with auth_events that break
// rule 2 of the authorisation rules and compares the verdicts.
func (c *checker) checkAuthEventVariants(g *graph, e *pdu.Event, before stateMap) {
	auths := slices.Clone(e.AuthEvents())
	var name string
	switch c.rng.IntN(4) {
	case 0:
		// 2.2: an entry the selection algorithm would not pick.
		name = "extra"
		for _, id := range c.shuffledState(before) {
			a := g.events[id]
			if !slices.Contains(auths, id) && a.Type() != pdu.TypeCreate && !isSelected(e, a.Tuple()) {
				auths = append(auths, id)
				break
			}
		}
	case 1:
		// 2.1: two entries for one (type, state_key).
		name = "duplicate"
		for _, x := range g.all {
			if x.IsState() && !g.rejected[x.ID()] && !slices.Contains(auths, x.ID()) && slices.ContainsFunc(auths, func(id pdu.EventID) bool { return g.events[id].Tuple() == x.Tuple() }) {
				auths = append(auths, x.ID())
				break
			}
		}
	case 2:
		// 2.4: no m.room.create among the entries.
		name = "missing-create"
		auths = slices.DeleteFunc(auths, func(id pdu.EventID) bool { return id == before[createTuple] })
	default:
		// 2.3: an entry that was itself rejected.
		name = "rejected-entry"
		for _, x := range g.all {
			if g.rejected[x.ID()] && x.IsState() && isSelected(e, x.Tuple()) {
				auths = slices.DeleteFunc(auths, func(id pdu.EventID) bool { return g.events[id].Tuple() == x.Tuple() })
				auths = append(auths, x.ID())
				break
			}
		}
	}
	if slices.Equal(auths, e.AuthEvents()) {
		return
	}
	kind := "auth/auth-events-" + name
	s := evSpec{typ: e.Type(), stateKey: e.StateKey(), sender: e.Sender(), content: e.Content(), redacts: e.Redacts()}
	v := g.buildAt(e.PrevEvents(), auths, e.Depth(), e.OriginServerTS(), s)
	gp := c.gp(v)
	if gp == nil {
		return
	}
	var evs []*pdu.Event
	for _, id := range auths {
		evs = append(evs, g.events[id])
	}
	perr := c.plexusAgainstAuthEvents(g, v, evs, before)
	gerr := gmsl.Allowed(gp, c.provider(evs), userIDForSender)
	// Each variant breaks rule 2.1, 2.2, 2.3 or 2.4, so the spec rejects
	// it whatever gomatrixserverlib says.
	c.checkSpec(kind, v, okOrNot(perr), "invalid")
	c.compared(kind)
	if (perr == nil) == (gerr == nil) {
		return
	}
	if perr != nil && gerr == nil && name != "missing-create" {
		// Rule 2.1-2.3 reject, whatever the rest of the rules say.
		c.excused(exceptionAuthEventsRule2)
		return
	}
	c.fail(kind, v, verdict(perr), verdict(gerr))
}

func (c *checker) shuffledState(s stateMap) []pdu.EventID {
	ids := make([]pdu.EventID, 0, len(s))
	for _, id := range s {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	c.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids
}

// isSelected reports whether the spec's auth events selection picks tuple
// t for e (server-server API, "Auth events selection").
func isSelected(e *pdu.Event, t pdu.StateTuple) bool {
	switch t {
	case createTuple, pdu.StateTuple{Type: pdu.TypePowerLevels}, pdu.StateTuple{Type: pdu.TypeMember, StateKey: string(e.Sender())}:
		return true
	}
	if e.Type() != pdu.TypeMember || e.StateKey() == nil {
		return false
	}
	m := e.Membership()
	switch {
	case t == (pdu.StateTuple{Type: pdu.TypeMember, StateKey: *e.StateKey()}):
		return true
	case t.Type == pdu.TypeJoinRules && t.StateKey == "":
		return m == "join" || m == "invite" || m == "knock"
	case t.Type == pdu.TypeMember && m == "join":
		via, _ := e.Content().GetStr("join_authorised_via_users_server")
		return via == t.StateKey
	case t.Type == pdu.TypeThirdPartyInvite && m == "invite":
		tok, _ := e.Content().Path("third_party_invite", "signed", "token")
		return mustStr(tok) == t.StateKey
	}
	return false
}
