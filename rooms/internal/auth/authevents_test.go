package auth

import (
	"errors"
	"slices"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

func TestSelectAuthTuples(t *testing.T) {
	mem := func(u pdu.UserID) pdu.StateTuple { return memberTuple(u) }
	tpi := pdu.StateTuple{Type: pdu.TypeThirdPartyInvite, StateKey: "tok"}
	member := func(membership string, extra map[string]any) cjson.Value {
		c := map[string]any{"membership": membership}
		for k, v := range extra {
			c[k] = v
		}
		return cjson.MustFromGo(c)
	}
	cases := []struct {
		name     string
		typ      string
		stateKey *string
		sender   pdu.UserID
		content  cjson.Value
		// want is the v12 selection; v10/v11 put m.room.create first.
		want []pdu.StateTuple
	}{
		{name: "message", typ: "m.room.message", sender: carol, content: cjson.Obj(),
			want: []pdu.StateTuple{powerLevelsTuple, mem(carol)}},
		{name: "state event", typ: "m.room.name", stateKey: sk(""), sender: bob, content: cjson.Obj(),
			want: []pdu.StateTuple{powerLevelsTuple, mem(bob)}},
		{name: "power levels", typ: pdu.TypePowerLevels, stateKey: sk(""), sender: bob, content: cjson.Obj(),
			want: []pdu.StateTuple{powerLevelsTuple, mem(bob)}},
		{name: "own join", typ: pdu.TypeMember, stateKey: sk(string(dave)), sender: dave, content: member("join", nil),
			want: []pdu.StateTuple{powerLevelsTuple, mem(dave), joinRulesTuple}},
		{name: "restricted join", typ: pdu.TypeMember, stateKey: sk(string(dave)), sender: dave,
			content: member("join", map[string]any{keyAuthorisedVia: string(bob)}),
			want:    []pdu.StateTuple{powerLevelsTuple, mem(dave), joinRulesTuple, mem(bob)}},
		{name: "invite", typ: pdu.TypeMember, stateKey: sk(string(dave)), sender: bob, content: member("invite", nil),
			want: []pdu.StateTuple{powerLevelsTuple, mem(bob), mem(dave), joinRulesTuple}},
		{name: "third-party invite", typ: pdu.TypeMember, stateKey: sk(string(dave)), sender: bob,
			content: member("invite", map[string]any{keyThirdPartyInvite: map[string]any{"signed": map[string]any{"token": "tok"}}}),
			want:    []pdu.StateTuple{powerLevelsTuple, mem(bob), mem(dave), joinRulesTuple, tpi}},
		{name: "third-party invite without token", typ: pdu.TypeMember, stateKey: sk(string(dave)), sender: bob,
			content: member("invite", map[string]any{keyThirdPartyInvite: map[string]any{}}),
			want:    []pdu.StateTuple{powerLevelsTuple, mem(bob), mem(dave), joinRulesTuple}},
		{name: "knock", typ: pdu.TypeMember, stateKey: sk(string(dave)), sender: dave, content: member("knock", nil),
			want: []pdu.StateTuple{powerLevelsTuple, mem(dave), joinRulesTuple}},
		{name: "leave has no join rules", typ: pdu.TypeMember, stateKey: sk(string(carol)), sender: carol,
			content: member("leave", map[string]any{keyAuthorisedVia: string(bob)}),
			want:    []pdu.StateTuple{powerLevelsTuple, mem(carol)}},
		{name: "kick", typ: pdu.TypeMember, stateKey: sk(string(carol)), sender: bob, content: member("leave", nil),
			want: []pdu.StateTuple{powerLevelsTuple, mem(bob), mem(carol)}},
		{name: "ban", typ: pdu.TypeMember, stateKey: sk(string(carol)), sender: bob, content: member("ban", nil),
			want: []pdu.StateTuple{powerLevelsTuple, mem(bob), mem(carol)}},
		{name: "member without state_key", typ: pdu.TypeMember, sender: bob, content: member("join", nil),
			want: []pdu.StateTuple{powerLevelsTuple, mem(bob), joinRulesTuple}},
		{name: "create", typ: pdu.TypeCreate, stateKey: sk(""), sender: alice, content: cjson.Obj()},
	}
	for _, tc := range cases {
		for _, ver := range allVersions {
			t.Run(tc.name+"/v"+ver, func(t *testing.T) {
				v := pdu.MustVersion(ver)
				want := tc.want
				if !v.RoomIDIsCreateHash && tc.typ != pdu.TypeCreate {
					want = append([]pdu.StateTuple{createTuple}, want...)
				}
				got := SelectAuthTuples(v, tc.typ, tc.stateKey, tc.sender, tc.content)
				if !slices.Equal(got, want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			})
		}
	}
}

// chain is a room built the way a server builds one: every event's
// auth_events chosen by SelectAuthTuples from the state before it.
type chain struct {
	*room
	events map[pdu.EventID]*pdu.Event
}

func newChain(t testing.TB, v *pdu.Version) *chain {
	return newChainIn(t, v, "!room:a.test", nil)
}

// newChainIn is newChain for another room: room ID id before v12, create
// content extended by createExtra (which must differ) from v12.
func newChainIn(t testing.TB, v *pdu.Version, id pdu.RoomID, createExtra map[string]any) *chain {
	c := &chain{room: newBareRoomIn(t, v, id, createExtra), events: map[pdu.EventID]*pdu.Event{}}
	c.events[c.create.ID()] = c.create
	c.add(pdu.TypeMember, alice, sk(string(alice)), map[string]any{"membership": "join"})
	c.add(pdu.TypePowerLevels, alice, sk(""), map[string]any{"users": c.users(map[string]any{})})
	c.add(pdu.TypeJoinRules, alice, sk(""), map[string]any{"join_rule": "public"})
	c.add(pdu.TypeMember, bob, sk(string(bob)), map[string]any{"membership": "join"})
	c.add(pdu.TypeMember, carol, sk(string(carol)), map[string]any{"membership": "join"})
	return c
}

// build makes an event with the auth_events the selection algorithm picks.
func (c *chain) build(typ string, sender pdu.UserID, stateKey *string, content map[string]any, opts ...func(*pdu.Proto)) *pdu.Event {
	var auth []pdu.EventID
	for _, tup := range SelectAuthTuples(c.v, typ, stateKey, sender, cjson.MustFromGo(content)) {
		if ev := c.state[tup]; ev != nil {
			auth = append(auth, ev.ID())
		}
	}
	opts = append([]func(*pdu.Proto){func(p *pdu.Proto) { p.AuthEvents = auth }}, opts...)
	e := c.room.build(typ, sender, stateKey, content, opts...)
	c.events[e.ID()] = e
	return e
}

// add builds a state event, checks it as receipt step 4 would (against
// its auth events), and makes it current state.
func (c *chain) add(typ string, sender pdu.UserID, stateKey *string, content map[string]any) *pdu.Event {
	c.t.Helper()
	e := c.build(typ, sender, stateKey, content)
	if err := c.check(e, nil); err != nil {
		c.t.Fatalf("chain event %s: %v", typ, err)
	}
	c.put(e)
	return e
}

// check runs CheckAuthEvents and then Allowed against the auth events.
func (c *chain) check(e *pdu.Event, isRejected func(pdu.EventID) bool) error {
	authEvents := c.authEvents(e)
	if err := CheckAuthEvents(e, authEvents, c.create, isRejected); err != nil {
		return err
	}
	return Allowed(e, authState(authEvents, c.create))
}

func (c *chain) authEvents(e *pdu.Event) []*pdu.Event {
	var out []*pdu.Event
	for _, id := range e.AuthEvents() {
		if a := c.events[id]; a != nil {
			out = append(out, a)
		}
	}
	return out
}

// authState is the state getter of receipt step 4: the auth events, plus
// the create event that v12 does not list.
func authState(authEvents []*pdu.Event, create *pdu.Event) StateGetter {
	m := map[pdu.StateTuple]*pdu.Event{createTuple: create}
	for _, a := range authEvents {
		m[a.Tuple()] = a
	}
	return func(t pdu.StateTuple) *pdu.Event { return m[t] }
}

func withAuth(ids ...pdu.EventID) func(*pdu.Proto) {
	return func(p *pdu.Proto) { p.AuthEvents = ids }
}

func TestCheckAuthEvents(t *testing.T) {
	type ctx struct {
		c        *chain
		pl       *pdu.Event // the current power levels
		oldPL    *pdu.Event // the power levels before it
		rejected map[pdu.EventID]bool
		create   *pdu.Event // passed to CheckAuthEvents
		omit     pdu.EventID
	}
	msg := func(x *ctx, auth ...pdu.EventID) *pdu.Event {
		return x.c.build("m.room.message", carol, nil, map[string]any{"body": "hi"}, withAuth(auth...))
	}
	// std is the message's correct auth_events, with the given extras.
	std := func(x *ctx, extra ...pdu.EventID) []pdu.EventID {
		ids := []pdu.EventID{x.pl.ID(), x.c.state[memberTuple(carol)].ID()}
		if !x.c.v.RoomIDIsCreateHash {
			ids = append([]pdu.EventID{x.c.create.ID()}, ids...)
		}
		return append(ids, extra...)
	}
	cases := []struct {
		name     string
		versions []string
		event    func(x *ctx) *pdu.Event
		rule     string
		rule12   string
		missing  bool
	}{
		{name: "ok message", event: func(x *ctx) *pdu.Event { return msg(x, std(x)...) }},
		{name: "ok join", event: func(x *ctx) *pdu.Event {
			return x.c.build(pdu.TypeMember, dave, sk(string(dave)), map[string]any{"membership": "join"})
		}},
		{name: "ok create event", event: func(x *ctx) *pdu.Event { return x.c.create }},
		{name: "ok fewer than selected", event: func(x *ctx) *pdu.Event {
			ids := std(x)
			return msg(x, slices.DeleteFunc(ids, func(id pdu.EventID) bool { return id == x.pl.ID() })...)
		}},
		{name: "2.1 two power_levels events", event: func(x *ctx) *pdu.Event { return msg(x, std(x, x.oldPL.ID())...) },
			rule: "2.1", rule12: "3.1"},
		{name: "2.1 one event listed twice", event: func(x *ctx) *pdu.Event { return msg(x, std(x, x.pl.ID())...) },
			rule: "2.1", rule12: "3.1"},
		{name: "2.2 join_rules for a message", event: func(x *ctx) *pdu.Event {
			return msg(x, std(x, x.c.state[joinRulesTuple].ID())...)
		}, rule: "2.2", rule12: "3.2"},
		{name: "2.2 another user's membership for a message", event: func(x *ctx) *pdu.Event {
			return msg(x, std(x, x.c.state[memberTuple(bob)].ID())...)
		}, rule: "2.2", rule12: "3.2"},
		{name: "2.2 a message event", event: func(x *ctx) *pdu.Event {
			m := msg(x, std(x)...)
			return msg(x, std(x, m.ID())...)
		}, rule: "2.2", rule12: "3.2"},
		{name: "v12 3.2 create event listed", versions: only("12"), event: func(x *ctx) *pdu.Event {
			return msg(x, std(x, x.c.create.ID())...)
		}, rule12: "3.2"},
		{name: "2.3 rejected auth event", event: func(x *ctx) *pdu.Event {
			x.rejected[x.pl.ID()] = true
			return msg(x, std(x)...)
		}, rule: "2.3", rule12: "3.3"},
		{name: "2.4 no create event", versions: only("10", "11"), event: func(x *ctx) *pdu.Event {
			return msg(x, std(x)[1:]...)
		}, rule: "2.4"},
		{name: "2.5 auth event of another room", event: func(x *ctx) *pdu.Event {
			other := newChainIn(x.c.t, x.c.v, "!other:a.test", map[string]any{"x": 1})
			otherPL := other.state[powerLevelsTuple]
			x.c.events[otherPL.ID()] = otherPL
			ids := std(x)
			ids[slices.Index(ids, x.pl.ID())] = otherPL.ID()
			return msg(x, ids...)
		}, rule: "2.5", rule12: "3.4"},
		{name: "v12 2 create event of another room", versions: only("12"), event: func(x *ctx) *pdu.Event {
			x.create = newBareRoom(x.c.t, x.c.v, map[string]any{"x": 1}).create
			return msg(x, std(x)...)
		}, rule12: "2"},
		{name: "v12 2 rejected create event", versions: only("12"), event: func(x *ctx) *pdu.Event {
			x.rejected[x.c.create.ID()] = true
			return msg(x, std(x)...)
		}, rule12: "2"},
		{name: "v12 2 no create event", versions: only("12"), event: func(x *ctx) *pdu.Event {
			x.create = nil
			return msg(x, std(x)...)
		}, rule12: "2"},
		{name: "auth event not provided", event: func(x *ctx) *pdu.Event {
			x.omit = x.pl.ID()
			return msg(x, std(x)...)
		}, missing: true},
	}
	for _, tc := range cases {
		vers := tc.versions
		if vers == nil {
			vers = allVersions
		}
		for _, ver := range vers {
			t.Run(tc.name+"/v"+ver, func(t *testing.T) {
				c := newChain(t, pdu.MustVersion(ver))
				x := &ctx{c: c, oldPL: c.state[powerLevelsTuple], rejected: map[pdu.EventID]bool{}, create: c.create}
				x.pl = c.add(pdu.TypePowerLevels, alice, sk(""), map[string]any{"users": c.users(map[string]any{string(bob): 50})})
				e := tc.event(x)
				var authEvents []*pdu.Event
				for _, a := range c.authEvents(e) {
					if a.ID() != x.omit {
						authEvents = append(authEvents, a)
					}
				}
				// An extra, unlisted event is ignored.
				authEvents = append(authEvents, c.state[memberTuple(bob)])
				err := CheckAuthEvents(e, authEvents, x.create, func(id pdu.EventID) bool { return x.rejected[id] })
				if tc.missing {
					if !errors.Is(err, ErrMissingAuthEvent) {
						t.Fatalf("want ErrMissingAuthEvent, got %v", err)
					}
					return
				}
				want := tc.rule
				if ver == "12" {
					want = tc.rule12
				}
				checkVerdict(t, e, err, want)
				if want == "" {
					// What passes the list checks also passes the rules
					// against its auth events.
					if err := Allowed(e, authState(c.authEvents(e), c.create)); err != nil {
						t.Fatalf("Allowed against auth events: %v", err)
					}
				}
			})
		}
	}
}
