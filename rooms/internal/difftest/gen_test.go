package difftest

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// stateMap is a room state: (type, state_key) to event ID.
type stateMap map[pdu.StateTuple]pdu.EventID

func (s stateMap) clone() stateMap {
	c := make(stateMap, len(s)+1)
	for k, v := range s {
		c[k] = v
	}
	return c
}

// hooks is what the generator asks of whoever watches it: which auth
// events to cite, whether an event is accepted, and what a merge resolves
// to. The checker answers with both implementations and compares them.
type hooks interface {
	authTuples(g *graph, typ string, stateKey *string, sender pdu.UserID, content cjson.Value) []pdu.StateTuple
	admit(g *graph, e *pdu.Event, before stateMap) bool
	resolve(g *graph, states []stateMap) stateMap
}

// graph is one generated room: its servers, users and every event made,
// accepted or not.
type graph struct {
	seed    uint64
	v       *pdu.Version
	rng     *rand.Rand
	servers []*server
	keys    *keyRing
	users   []pdu.UserID
	roomID  pdu.RoomID
	creator pdu.UserID
	ts      int64
	events  map[pdu.EventID]*pdu.Event
	// all lists every event made, in order; rejected holds the IDs of
	// those that failed auth (they are never cited as prev_events: server
	// API, "Rejection").
	all      []*pdu.Event
	rejected map[pdu.EventID]bool
	h        hooks
}

// branch is one server's view while the graph is forked: its forward
// extremities and the state before the next event it sends.
type branch struct {
	prev  []pdu.EventID
	depth int64
	state stateMap
}

func (b *branch) clone() *branch {
	return &branch{prev: slices.Clone(b.prev), depth: b.depth, state: b.state.clone()}
}

// evSpec is an event about to be built.
type evSpec struct {
	typ      string
	stateKey *string
	sender   pdu.UserID
	content  cjson.Value
	redacts  pdu.EventID
}

func strp(s string) *string { return &s }

func newGraph(seed uint64, v *pdu.Version, h hooks) *graph {
	rng := rand.New(rand.NewPCG(seed, 0x706c65787573))
	g := &graph{
		seed:     seed,
		v:        v,
		rng:      rng,
		events:   map[pdu.EventID]*pdu.Event{},
		rejected: map[pdu.EventID]bool{},
		h:        h,
		ts:       baseTS,
	}
	for i, name := range []string{"a.example", "b.example", "c.example"} {
		s := newServer(rng, name)
		g.servers = append(g.servers, s)
		for j := 0; j < 3; j++ {
			g.users = append(g.users, pdu.UserID(fmt.Sprintf("@u%d%d:%s", i, j, name)))
		}
	}
	g.keys = newKeyRing(g.servers)
	g.creator = g.users[0]
	g.roomID = pdu.RoomID(fmt.Sprintf("!r%d:a.example", seed))
	return g
}

func (g *graph) server(name pdu.ServerName) *server {
	for _, s := range g.servers {
		if s.name == name {
			return s
		}
	}
	return nil
}

// tick advances the clock. Ties are frequent on purpose: state resolution
// breaks them by event ID.
func (g *graph) tick() int64 {
	if g.rng.IntN(4) != 0 {
		g.ts += int64(1 + g.rng.IntN(5000))
	}
	return g.ts
}

// build hashes and signs an event on branch b, citing the auth events the
// hooks select from b's state. Invites to another server's user and
// restricted joins authorised by another server's user are co-signed by
// that server, as the /invite and /make_join flows do.
func (g *graph) build(b *branch, s evSpec) *pdu.Event {
	var auth []pdu.EventID
	for _, t := range g.h.authTuples(g, s.typ, s.stateKey, s.sender, s.content) {
		if id, ok := b.state[t]; ok && !slices.Contains(auth, id) {
			auth = append(auth, id)
		}
	}
	return g.buildAt(b.prev, auth, b.depth+1, g.tick(), s)
}

// buildAt builds an event with everything given; it does not touch the
// generator's clock or random source, so variants of an event can be
// built without changing the rest of the graph.
func (g *graph) buildAt(prev, auth []pdu.EventID, depth, ts int64, s evSpec) *pdu.Event {
	p := pdu.Proto{
		Type:           s.typ,
		StateKey:       s.stateKey,
		Sender:         s.sender,
		RoomID:         g.roomID,
		Content:        s.content,
		PrevEvents:     prev,
		AuthEvents:     auth,
		Depth:          depth,
		OriginServerTS: ts,
		Redacts:        s.redacts,
	}
	e, err := p.Build(g.v, g.server(s.sender.Domain()).signer())
	if err != nil {
		panic(fmt.Sprintf("seed %d: build %s: %v", g.seed, s.typ, err))
	}
	for _, co := range coSigners(e) {
		srv := g.server(co)
		obj, err := pdu.SignEvent(g.v, e.Object(), srv.name, srv.keyID, srv.priv)
		if err == nil {
			e, err = pdu.NewEvent(obj, g.v)
		}
		if err != nil {
			panic(fmt.Sprintf("seed %d: co-sign: %v", g.seed, err))
		}
	}
	return e
}

// coSigners are the servers other than the sender's that sign e.
func coSigners(e *pdu.Event) []pdu.ServerName {
	if e.Type() != pdu.TypeMember || e.StateKey() == nil {
		return nil
	}
	var other pdu.UserID
	switch e.Membership() {
	case "invite":
		other = pdu.UserID(*e.StateKey())
	case "join":
		via, _ := e.Content().GetStr("join_authorised_via_users_server")
		other = pdu.UserID(via)
	}
	if d := other.Domain(); d != "" && d != e.Sender().Domain() {
		return []pdu.ServerName{d}
	}
	return nil
}

// emit builds an event on b, has it judged against b's state, and if it
// is accepted makes it b's only extremity.
func (g *graph) emit(b *branch, s evSpec) (*pdu.Event, bool) {
	e := g.build(b, s)
	g.events[e.ID()] = e
	g.all = append(g.all, e)
	if !g.h.admit(g, e, b.state) {
		g.rejected[e.ID()] = true
		return e, false
	}
	b.prev = []pdu.EventID{e.ID()}
	b.depth = e.Depth()
	if e.IsState() {
		b.state = b.state.clone()
		b.state[e.Tuple()] = e.ID()
	}
	return e, true
}

// merge joins branches: the next event cites all their extremities and
// the state before it is the resolution of their states.
func (g *graph) merge(bs []*branch) *branch {
	m := &branch{}
	var states []stateMap
	for _, b := range bs {
		for _, id := range b.prev {
			if !slices.Contains(m.prev, id) {
				m.prev = append(m.prev, id)
			}
		}
		m.depth = max(m.depth, b.depth)
		states = append(states, b.state)
	}
	if len(m.prev) == 1 {
		// Nothing happened on any branch: no fork to resolve.
		m.state = bs[0].state
		return m
	}
	m.state = g.h.resolve(g, states)
	return m
}

// generate makes one room of about n events.
func generate(seed uint64, v *pdu.Version, h hooks, n int) *graph {
	g := newGraph(seed, v, h)
	main := g.bootstrap()
	for len(g.all) < n {
		if g.rng.IntN(5) == 0 {
			main = g.fork(main, 0)
		} else {
			g.step(main)
		}
	}
	return g
}

// bootstrap creates the room the way a client's createRoom does, then
// lets a few users in.
func (g *graph) bootstrap() *branch {
	b := &branch{state: stateMap{}}
	create := cjson.Obj(cjson.M("room_version", cjson.Str(g.v.ID)))
	if !g.v.CreatorIsSender {
		create = create.With("creator", cjson.Str(string(g.creator)))
	}
	if g.rng.IntN(4) == 0 {
		create = create.With("m.federate", cjson.Boolean(g.rng.IntN(2) == 0))
	}
	g.mustEmit(b, evSpec{typ: pdu.TypeCreate, stateKey: strp(""), sender: g.creator, content: create})
	g.mustEmit(b, evSpec{typ: pdu.TypeMember, stateKey: strp(string(g.creator)), sender: g.creator, content: member("join")})

	users := cjson.Obj(cjson.M(string(g.creator), cjson.Integer(100)))
	if g.rng.IntN(2) == 0 {
		users = users.With(string(g.pickUser()), cjson.Integer(50))
	}
	pl := cjson.Obj(
		cjson.M("users", users),
		cjson.M("users_default", cjson.Integer(0)),
		cjson.M("events", cjson.Obj(
			cjson.M("m.room.name", cjson.Integer(50)),
			cjson.M("m.room.power_levels", cjson.Integer(100)),
			cjson.M("m.room.history_visibility", cjson.Integer(100)),
		)),
		cjson.M("events_default", cjson.Integer(0)),
		cjson.M("state_default", cjson.Integer(50)),
		cjson.M("ban", cjson.Integer(50)),
		cjson.M("kick", cjson.Integer(50)),
		cjson.M("redact", cjson.Integer(50)),
		cjson.M("invite", cjson.Integer(int64(g.rng.IntN(2)*50))),
	)
	g.mustEmit(b, evSpec{typ: pdu.TypePowerLevels, stateKey: strp(""), sender: g.creator, content: pl})
	g.mustEmit(b, evSpec{typ: pdu.TypeJoinRules, stateKey: strp(""), sender: g.creator, content: joinRule("public")})
	for i, n := 0, 2+g.rng.IntN(4); i < n; i++ {
		u := g.pickUser()
		g.emit(b, evSpec{typ: pdu.TypeMember, stateKey: strp(string(u)), sender: u, content: member("join")})
	}
	if g.rng.IntN(2) == 0 {
		g.emit(b, g.actJoinRules(b))
	}
	return b
}

func (g *graph) mustEmit(b *branch, s evSpec) {
	if e, ok := g.emit(b, s); !ok {
		panic(fmt.Sprintf("seed %d: bootstrap event %s %s rejected", g.seed, e.Type(), e.ID()))
	}
}

// fork lets two or three servers extend the graph from the same point
// without seeing each other, sometimes forking again inside a branch,
// and returns the merged branch.
func (g *graph) fork(from *branch, nesting int) *branch {
	k := 2
	if g.rng.IntN(5) == 0 {
		k = 3
	}
	bs := make([]*branch, k)
	for i := range bs {
		bs[i] = from.clone()
	}
	for i, n := 0, 3+g.rng.IntN(10); i < n; i++ {
		j := g.rng.IntN(k)
		if nesting < 1 && g.rng.IntN(12) == 0 {
			bs[j] = g.fork(bs[j], nesting+1)
			continue
		}
		g.step(bs[j])
	}
	return g.merge(bs)
}

// step emits one random event on b.
func (g *graph) step(b *branch) {
	type action struct {
		weight int
		make   func(*branch) evSpec
	}
	actions := []action{
		{18, g.actMessage},
		{8, g.actTopic},
		{12, g.actSelfJoin},
		{6, g.actSelfLeave},
		{8, g.actInvite},
		{5, g.actKick},
		{4, g.actBan},
		{3, g.actUnban},
		{5, g.actKnock},
		{5, g.actRestrictedJoin},
		{6, g.actJoinRules},
		{10, g.actPowerLevels},
		{2, g.actThirdPartyInvite},
		{3, g.actRedaction},
		{3, g.actCustomState},
		{2, g.actHistoryVisibility},
		{1, g.actOddMembership},
	}
	total := 0
	for _, a := range actions {
		total += a.weight
	}
	r := g.rng.IntN(total)
	for _, a := range actions {
		if r < a.weight {
			g.emit(b, a.make(b))
			return
		}
		r -= a.weight
	}
}

// --- reading a branch's state ---

func (g *graph) stateContent(b *branch, typ, key string) (cjson.Value, bool) {
	id, ok := b.state[pdu.StateTuple{Type: typ, StateKey: key}]
	if !ok {
		return cjson.Value{}, false
	}
	return g.events[id].Content(), true
}

func (g *graph) membership(b *branch, u pdu.UserID) string {
	c, ok := g.stateContent(b, pdu.TypeMember, string(u))
	if !ok {
		return "leave"
	}
	m, _ := c.GetStr("membership")
	return m
}

func (g *graph) withMembership(b *branch, ms ...string) []pdu.UserID {
	var out []pdu.UserID
	for _, u := range g.users {
		if slices.Contains(ms, g.membership(b, u)) {
			out = append(out, u)
		}
	}
	return out
}

func (g *graph) level(b *branch, u pdu.UserID) int64 {
	pl, ok := g.stateContent(b, pdu.TypePowerLevels, "")
	if !ok {
		if u == g.creator {
			return 100
		}
		return 0
	}
	if n, ok := pl.Path("users", string(u)); ok {
		l, _ := n.Int()
		return l
	}
	d, _ := pl.GetInt("users_default")
	return d
}

// --- choosing people ---

func (g *graph) pickUser() pdu.UserID { return g.users[g.rng.IntN(len(g.users))] }

func (g *graph) pickFrom(us []pdu.UserID) pdu.UserID {
	if len(us) == 0 {
		return g.pickUser()
	}
	return us[g.rng.IntN(len(us))]
}

// pickMember is usually a joined user, sometimes anyone (so that
// non-members' events are exercised and rejected).
func (g *graph) pickMember(b *branch) pdu.UserID {
	if g.rng.IntN(7) == 0 {
		return g.pickUser()
	}
	return g.pickFrom(g.withMembership(b, "join"))
}

// pickPowerful is usually the most powerful joined user.
func (g *graph) pickPowerful(b *branch) pdu.UserID {
	if g.rng.IntN(4) == 0 {
		return g.pickMember(b)
	}
	joined := g.withMembership(b, "join")
	if len(joined) == 0 {
		return g.pickUser()
	}
	best := joined[0]
	for _, u := range joined[1:] {
		if g.level(b, u) > g.level(b, best) || (g.level(b, u) == g.level(b, best) && g.rng.IntN(2) == 0) {
			best = u
		}
	}
	return best
}

var levels = []int64{0, 10, 25, 50, 75, 99, 100}

func (g *graph) pickLevel() int64 { return levels[g.rng.IntN(len(levels))] }

// --- content helpers ---

// objOf returns the object member key of o, or an empty object.
func objOf(o cjson.Value, key string) cjson.Value {
	v, _ := o.Get(key)
	if v.Kind() != cjson.Object {
		return cjson.Obj()
	}
	return v
}

func member(m string) cjson.Value { return cjson.Obj(cjson.M("membership", cjson.Str(m))) }

func joinRule(r string) cjson.Value {
	c := cjson.Obj(cjson.M("join_rule", cjson.Str(r)))
	if r == "restricted" || r == "knock_restricted" {
		c = c.With("allow", cjson.Arr(cjson.Obj(
			cjson.M("type", cjson.Str("m.room_membership")),
			cjson.M("room_id", cjson.Str("!space:a.example")),
		)))
	}
	return c
}

func (g *graph) memberEv(sender, target pdu.UserID, m string) evSpec {
	c := member(m)
	if g.rng.IntN(3) == 0 {
		c = c.With("displayname", cjson.Str("User "+target.Localpart()))
	}
	if m == "leave" || m == "ban" {
		if g.rng.IntN(2) == 0 {
			c = c.With("reason", cjson.Str("because"))
		}
	}
	return evSpec{typ: pdu.TypeMember, stateKey: strp(string(target)), sender: sender, content: c}
}

// --- actions ---

func (g *graph) actMessage(b *branch) evSpec {
	return evSpec{typ: "m.room.message", sender: g.pickMember(b), content: cjson.Obj(
		cjson.M("msgtype", cjson.Str("m.text")),
		cjson.M("body", cjson.Str(fmt.Sprintf("hello <%d> \"ü\" \u2028 \n", g.rng.IntN(1000)))),
	)}
}

func (g *graph) actTopic(b *branch) evSpec {
	if g.rng.IntN(2) == 0 {
		return evSpec{typ: "m.room.name", stateKey: strp(""), sender: g.pickMember(b),
			content: cjson.Obj(cjson.M("name", cjson.Str(fmt.Sprintf("room %d", g.rng.IntN(100)))))}
	}
	return evSpec{typ: "m.room.topic", stateKey: strp(""), sender: g.pickMember(b),
		content: cjson.Obj(cjson.M("topic", cjson.Str(fmt.Sprintf("topic %d", g.rng.IntN(100)))))}
}

func (g *graph) actSelfJoin(b *branch) evSpec {
	u := g.pickUser()
	if g.rng.IntN(5) != 0 {
		u = g.pickFrom(g.withMembership(b, "leave", "invite", "knock"))
	}
	s := g.memberEv(u, u, "join")
	if g.rng.IntN(30) == 0 {
		// Someone else joining on u's behalf: rule 4.3.2 rejects it.
		s.sender = g.pickMember(b)
	}
	return s
}

func (g *graph) actSelfLeave(b *branch) evSpec {
	u := g.pickFrom(g.withMembership(b, "join", "invite", "knock"))
	if g.rng.IntN(5) == 0 {
		u = g.pickUser()
	}
	return g.memberEv(u, u, "leave")
}

func (g *graph) actInvite(b *branch) evSpec {
	target := g.pickFrom(g.withMembership(b, "leave", "knock"))
	if g.rng.IntN(5) == 0 {
		target = g.pickUser()
	}
	return g.memberEv(g.pickMember(b), target, "invite")
}

func (g *graph) actKick(b *branch) evSpec {
	return g.memberEv(g.pickPowerful(b), g.pickFrom(g.withMembership(b, "join", "invite", "knock")), "leave")
}

func (g *graph) actBan(b *branch) evSpec {
	target := g.pickUser()
	if g.rng.IntN(2) == 0 {
		target = g.pickFrom(g.withMembership(b, "join"))
	}
	return g.memberEv(g.pickPowerful(b), target, "ban")
}

func (g *graph) actUnban(b *branch) evSpec {
	return g.memberEv(g.pickPowerful(b), g.pickFrom(g.withMembership(b, "ban")), "leave")
}

func (g *graph) actKnock(b *branch) evSpec {
	u := g.pickUser()
	if g.rng.IntN(4) != 0 {
		u = g.pickFrom(g.withMembership(b, "leave", "knock"))
	}
	s := g.memberEv(u, u, "knock")
	if g.rng.IntN(20) == 0 {
		s.sender = g.pickMember(b) // knocking for someone else: rule 4.7.2
	}
	return s
}

// actRestrictedJoin joins via join_authorised_via_users_server, naming a
// joined user (usually one who may invite) or, sometimes, anyone.
func (g *graph) actRestrictedJoin(b *branch) evSpec {
	u := g.pickFrom(g.withMembership(b, "leave", "knock", "invite"))
	var via pdu.UserID
	if g.rng.IntN(4) == 0 {
		via = g.pickUser()
	} else {
		via = g.pickPowerful(b)
	}
	s := g.memberEv(u, u, "join")
	s.content = s.content.With("join_authorised_via_users_server", cjson.Str(string(via)))
	return s
}

func (g *graph) actJoinRules(b *branch) evSpec {
	rules := []string{"public", "invite", "knock", "restricted", "knock_restricted", "private"}
	return evSpec{typ: pdu.TypeJoinRules, stateKey: strp(""), sender: g.pickPowerful(b),
		content: joinRule(rules[g.rng.IntN(len(rules))])}
}

func (g *graph) actHistoryVisibility(b *branch) evSpec {
	hv := []string{"shared", "invited", "joined", "world_readable"}
	return evSpec{typ: pdu.TypeHistoryVisibility, stateKey: strp(""), sender: g.pickPowerful(b),
		content: cjson.Obj(cjson.M("history_visibility", cjson.Str(hv[g.rng.IntN(len(hv))])))}
}

func (g *graph) actThirdPartyInvite(b *branch) evSpec {
	return evSpec{typ: pdu.TypeThirdPartyInvite, stateKey: strp(fmt.Sprintf("tok%d", g.rng.IntN(5))), sender: g.pickMember(b),
		content: cjson.Obj(
			cjson.M("display_name", cjson.Str("a...@example.org")),
			cjson.M("key_validity_url", cjson.Str("https://id.example/_matrix/identity/v2/pubkey/isvalid")),
			cjson.M("public_key", cjson.Str("dGhpcyBpcyBub3QgYSByZWFsIGtleQ")),
		)}
}

func (g *graph) actRedaction(b *branch) evSpec {
	target := g.all[g.rng.IntN(len(g.all))].ID()
	return evSpec{typ: pdu.TypeRedaction, sender: g.pickMember(b), redacts: target,
		content: cjson.Obj(cjson.M("reason", cjson.Str("spam")))}
}

// actCustomState sends a custom state event; state keys that are another
// user's ID are rejected by rule 8.
func (g *graph) actCustomState(b *branch) evSpec {
	sender := g.pickMember(b)
	keys := []string{"", string(sender), string(g.pickUser()), "@not-a-user", "plain"}
	return evSpec{typ: "org.example.state", stateKey: strp(keys[g.rng.IntN(len(keys))]), sender: sender,
		content: cjson.Obj(cjson.M("n", cjson.Integer(int64(g.rng.IntN(100)))))}
}

// actOddMembership sends membership events that are malformed or unknown.
func (g *graph) actOddMembership(b *branch) evSpec {
	u := g.pickMember(b)
	switch g.rng.IntN(3) {
	case 0:
		return g.memberEv(u, u, "fly")
	case 1:
		return evSpec{typ: pdu.TypeMember, stateKey: strp(string(u)), sender: u, content: cjson.Obj(cjson.M("displayname", cjson.Str("no membership")))}
	default:
		return evSpec{typ: pdu.TypeMember, stateKey: strp(string(u)), sender: u, content: cjson.Obj(cjson.M("membership", cjson.Integer(1)))}
	}
}

// actPowerLevels changes the power levels: promotions, demotions, level
// changes, some beyond the sender's power (rejected), some malformed.
func (g *graph) actPowerLevels(b *branch) evSpec {
	sender := g.pickPowerful(b)
	pl, _ := g.stateContent(b, pdu.TypePowerLevels, "")
	if pl.Kind() != cjson.Object {
		pl = cjson.Obj()
	}
	for i, n := 0, 1+g.rng.IntN(3); i < n; i++ {
		switch g.rng.IntN(12) {
		case 0, 1, 2:
			users := objOf(pl, "users")
			target := g.pickUser()
			if g.rng.IntN(4) == 0 {
				target = sender
			}
			if g.rng.IntN(5) == 0 {
				users = users.Without(string(target))
			} else {
				users = users.With(string(target), cjson.Integer(g.pickLevel()))
			}
			pl = pl.With("users", users)
		case 3, 4, 5:
			keys := []string{"ban", "kick", "invite", "redact", "state_default", "events_default", "users_default"}
			k := keys[g.rng.IntN(len(keys))]
			if g.rng.IntN(6) == 0 {
				pl = pl.Without(k)
			} else {
				pl = pl.With(k, cjson.Integer(g.pickLevel()))
			}
		case 6, 7, 8:
			types := []string{"m.room.name", "m.room.topic", "m.room.power_levels", "m.room.message",
				"m.room.join_rules", "m.room.history_visibility", "m.room.third_party_invite", "m.room.redaction", "org.example.state"}
			ev := objOf(pl, "events")
			t := types[g.rng.IntN(len(types))]
			if g.rng.IntN(4) == 0 {
				ev = ev.Without(t)
			} else {
				ev = ev.With(t, cjson.Integer(g.pickLevel()))
			}
			pl = pl.With("events", ev)
		case 9:
			n := objOf(pl, "notifications")
			if g.rng.IntN(4) == 0 {
				n = n.Without("room")
			} else {
				n = n.With("room", cjson.Integer(g.pickLevel()))
			}
			pl = pl.With("notifications", n)
		case 10:
			// Malformed: power levels must be integers from v10 on
			// (rule 9.1, 9.2, 9.3).
			switch g.rng.IntN(3) {
			case 0:
				pl = pl.With("ban", cjson.Str("50"))
			case 1:
				pl = pl.With("events", objOf(pl, "events").With("m.room.topic", cjson.Str("10")))
			default:
				pl = pl.With("users", objOf(pl, "users").With("not-a-user", cjson.Integer(10)))
			}
		default:
			// Resend unchanged: always allowed to the right sender.
		}
	}
	return evSpec{typ: pdu.TypePowerLevels, stateKey: strp(""), sender: sender, content: pl}
}
