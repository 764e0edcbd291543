package stateres

import (
	"errors"
	"maps"
	"testing"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// TestResolveUnconflicted: when every state agrees, the result is that
// state, and no event needs to be looked up.
func TestResolveUnconflicted(t *testing.T) {
	for _, vid := range versions {
		r, f := start(t, vid, map[pdu.UserID]int{bob: 50}, nil, bob, carol)
		f.topic(bob, "hello", 0)
		for _, n := range []int{0, 1, 2, 3} {
			t.Run(vid+"/states="+string(rune('0'+n)), func(t *testing.T) {
				states := make([]StateMap, n)
				for i := range states {
					states[i] = maps.Clone(f.state)
				}
				lookups := 0
				got, err := Resolve(Input{Version: r.v, States: states, Events: func(id pdu.EventID) *pdu.Event {
					lookups++
					return r.lookup(id)
				}})
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				want := f.state
				if n == 0 {
					want = StateMap{}
				}
				if !maps.Equal(got, want) {
					t.Errorf("got %v, want %v", got, want)
				}
				if lookups != 0 {
					t.Errorf("looked up %d events, want none", lookups)
				}
			})
		}
	}
}

// TestResolveConflictingPowerLevels: two admins change the power levels at
// once on two forks.
func TestResolveConflictingPowerLevels(t *testing.T) {
	cases := []struct {
		name string
		// build returns the forks and the event that must win.
		build func(t *testing.T, vid string) (*room, []*fork, *pdu.Event)
	}{{
		// Bob and Carol both have 100 according to their auth events, so
		// the reverse topological power ordering falls back to
		// origin_server_ts: Carol's earlier change is applied first, then
		// Bob's (still allowed: he has 100 under Carol's levels and only
		// touches Charlie and Dave, who are below him). The last applied
		// wins. (Alice is left out: in v12 she is a creator, whose power
		// is infinite, and her change would sort first.)
		name: "equal power, later timestamp wins",
		build: func(t *testing.T, vid string) (*room, []*fork, *pdu.Event) {
			admins := map[pdu.UserID]int{bob: 100, carol: 100}
			r, f := start(t, vid, admins, nil, bob, carol)
			a, b := f, f.branch()
			pc := b.powerLevels(carol, map[pdu.UserID]int{bob: 100, carol: 100, dave: 50}, nil)
			pb := a.powerLevels(bob, map[pdu.UserID]int{bob: 100, carol: 100, charlie: 50}, nil)
			if pc.OriginServerTS() >= pb.OriginServerTS() {
				t.Fatal("fixture: Carol's change must be the earlier one")
			}
			return r, []*fork{a, b}, pb
		},
	}, {
		// In v12 the creator's power is infinite and sorts before any
		// admin's, even a later event: Alice's change is applied first,
		// then Bob's (allowed under Alice's levels) wins. Before v12 Alice
		// has 100 like Bob, the timestamp decides, and Alice's later
		// change wins.
		name: "creator against admin",
		build: func(t *testing.T, vid string) (*room, []*fork, *pdu.Event) {
			r, f := start(t, vid, map[pdu.UserID]int{bob: 100}, nil, bob, carol, dave)
			a, b := f, f.branch()
			pb := b.powerLevels(bob, map[pdu.UserID]int{bob: 100, dave: 50}, nil)
			pa := a.powerLevels(alice, map[pdu.UserID]int{bob: 100, carol: 50}, nil)
			if r.v.PrivilegedCreators {
				return r, []*fork{a, b}, pb
			}
			return r, []*fork{a, b}, pa
		},
	}, {
		// Bob (90) promotes Carol first; Alice (100) demotes Bob later.
		// The ordering puts the greater sender power first whatever the
		// timestamps, so Alice's demotion is applied first and Bob's
		// change then fails: under Alice's levels Bob has 0.
		name: "higher power first, demoted admin loses",
		build: func(t *testing.T, vid string) (*room, []*fork, *pdu.Event) {
			extra := map[string]any{"events": map[string]any{pdu.TypePowerLevels: 90}}
			r, f := start(t, vid, map[pdu.UserID]int{bob: 90}, extra, bob, carol)
			a, b := f, f.branch()
			b.powerLevels(bob, map[pdu.UserID]int{bob: 90, carol: 50}, extra)
			pa := a.powerLevels(alice, map[pdu.UserID]int{}, extra)
			return r, []*fork{a, b}, pa
		},
	}, {
		// As above with the forks' timestamps swapped: Alice's demotion is
		// the earlier event and still wins, and Bob's later change is
		// still rejected. Timestamps only break ties of power.
		name: "higher power first regardless of time",
		build: func(t *testing.T, vid string) (*room, []*fork, *pdu.Event) {
			extra := map[string]any{"events": map[string]any{pdu.TypePowerLevels: 90}}
			r, f := start(t, vid, map[pdu.UserID]int{bob: 90}, extra, bob, carol)
			a, b := f, f.branch()
			pa := a.powerLevels(alice, map[pdu.UserID]int{}, extra)
			b.powerLevels(bob, map[pdu.UserID]int{bob: 90, carol: 50}, extra)
			return r, []*fork{a, b}, pa
		},
	}}
	for _, c := range cases {
		for _, vid := range versions {
			t.Run(c.name+"/v"+vid, func(t *testing.T) {
				r, forks, want := c.build(t, vid)
				got := r.mustResolve(forks...)
				if got[plKey] != want.ID() {
					t.Errorf("power levels = %s, want %s", got[plKey], want.ID())
				}
			})
		}
	}
}

// TestResolveBanRacesJoin: Alice bans Bob on one fork while, on another,
// Bob joins and sets state of his own. The ban is a power event, so it is
// resolved in step 1, before Bob's events are even ordered (step 3); his
// join and his state then fail the auth checks against the ban. The ban
// carries the latest timestamp to show that time does not matter here.
func TestResolveBanRacesJoin(t *testing.T) {
	status := pdu.StateTuple{Type: "org.example.status", StateKey: string(bob)}
	for _, vid := range versions {
		t.Run("v"+vid, func(t *testing.T) {
			extra := map[string]any{"events": map[string]any{status.Type: 0}}
			r, f := start(t, vid, nil, extra, carol)
			a, b := f, f.branch()
			b.join(bob)
			b.send(ev{sender: bob, typ: status.Type, stateKey: status.StateKey, content: map[string]any{"status": "here"}})
			ban := a.member(alice, bob, "ban")

			got := r.mustResolve(a, b)
			if got[memberKey(bob)] != ban.ID() {
				t.Errorf("Bob's membership = %s, want the ban %s", got[memberKey(bob)], ban.ID())
			}
			if id, ok := got[status]; ok {
				t.Errorf("Bob's state survived the ban: %s", id)
			}
			if got[memberKey(carol)] != f.state[memberKey(carol)] {
				t.Errorf("unconflicted state changed")
			}
		})
	}
}

// TestResolveTopicRace: Bob and Carol (equal power) set the topic on two
// forks. Topics are not power events, so the mainline ordering decides:
// mainline position, then origin_server_ts, then event ID. The event
// applied last wins.
func TestResolveTopicRace(t *testing.T) {
	users := map[pdu.UserID]int{bob: 50, carol: 50}
	cases := []struct {
		name  string
		build func(t *testing.T, vid string) (*room, []*fork, *pdu.Event)
	}{{
		// Same mainline position (both cite the same power levels): the
		// later timestamp is applied last.
		name: "timestamp",
		build: func(t *testing.T, vid string) (*room, []*fork, *pdu.Event) {
			r, f := start(t, vid, users, nil, bob, carol)
			a, b := f, f.branch()
			late := a.topic(bob, "late", 5_000_000)
			b.topic(carol, "early", 4_000_000)
			return r, []*fork{a, b}, late
		},
	}, {
		// Same position and timestamp: the greater event ID is last.
		name: "event ID",
		build: func(t *testing.T, vid string) (*room, []*fork, *pdu.Event) {
			r, f := start(t, vid, users, nil, bob, carol)
			a, b := f, f.branch()
			x := a.topic(bob, "x", 5_000_000)
			y := b.topic(carol, "y", 5_000_000)
			if x.ID() > y.ID() {
				return r, []*fork{a, b}, x
			}
			return r, []*fork{a, b}, y
		},
	}, {
		// Fork A first raises Carol to 60 (PL2), and Bob's topic cites
		// PL2; Carol's topic on fork B cites the older PL1 and is much
		// later. Step 2 resolves the power levels to PL2, whose mainline
		// is [PL2, PL1]: Bob's topic has position 0, Carol's position 1.
		// Greater position sorts first, so Carol's topic is applied
		// before Bob's and Bob's wins despite its earlier timestamp.
		name: "mainline position",
		build: func(t *testing.T, vid string) (*room, []*fork, *pdu.Event) {
			r, f := start(t, vid, users, nil, bob, carol)
			a, b := f, f.branch()
			a.powerLevels(alice, map[pdu.UserID]int{bob: 50, carol: 60}, nil)
			bobs := a.topic(bob, "bob", 1_000_000)
			b.topic(carol, "carol", 9_000_000)
			return r, []*fork{a, b}, bobs
		},
	}}
	for _, c := range cases {
		for _, vid := range versions {
			t.Run(c.name+"/v"+vid, func(t *testing.T) {
				r, forks, want := c.build(t, vid)
				got := r.mustResolve(forks...)
				if got[topicKey] != want.ID() {
					t.Errorf("topic = %s, want %s", got[topicKey], want.ID())
				}
			})
		}
	}
}

// TestResolveMissingEvent: an event that cannot be found, whether a
// state's value, an event deep in an auth chain or (v12) the create event,
// fails resolution with a *MissingEventError naming it.
func TestResolveMissingEvent(t *testing.T) {
	type scenario struct {
		r       *room
		a, b    *fork
		create  pdu.EventID
		deep    pdu.EventID // Alice's join: in every auth chain
		stateID pdu.EventID // a conflicted state value
	}
	build := func(t *testing.T, vid string) scenario {
		r, f := newRoom(t, vid)
		create := f.last
		aj := f.join(alice)
		f.powerLevels(alice, map[pdu.UserID]int{bob: 50}, nil)
		f.joinRules(alice, "public")
		f.join(bob)
		a, b := f, f.branch()
		a.topic(bob, "a", 0)
		tb := b.topic(alice, "b", 0)
		return scenario{r: r, a: a, b: b, create: create, deep: aj.ID(), stateID: tb.ID()}
	}
	for _, vid := range versions {
		for _, missing := range []string{"state value", "auth chain", "create"} {
			t.Run("v"+vid+"/"+missing, func(t *testing.T) {
				s := build(t, vid)
				var gone pdu.EventID
				switch missing {
				case "state value":
					gone = s.stateID
				case "auth chain":
					gone = s.deep
				case "create":
					gone = s.create
				}
				_, err := Resolve(Input{Version: s.r.v, States: []StateMap{s.a.state, s.b.state}, Events: func(id pdu.EventID) *pdu.Event {
					if id == gone {
						return nil
					}
					return s.r.lookup(id)
				}})
				var me *MissingEventError
				if !errors.As(err, &me) {
					t.Fatalf("err = %v, want *MissingEventError", err)
				}
				if me.ID != gone {
					t.Errorf("missing %s, want %s", me.ID, gone)
				}
			})
		}
	}
}

// TestResolveBadInput: malformed inputs are errors, never panics.
func TestResolveBadInput(t *testing.T) {
	r, f := start(t, "11", map[pdu.UserID]int{bob: 50}, nil, bob)
	a, b := f, f.branch()
	ta := a.topic(bob, "a", 0)
	b.topic(alice, "b", 0)
	_, of := newRoomWithID(t, "11", "!other:example.org")
	ofTopic := of.send(ev{sender: alice, typ: "m.room.topic", content: map[string]any{"topic": "elsewhere"}, auth: []pdu.EventID{}})
	r.events[ofTopic.ID()] = ofTopic

	cases := []struct {
		name string
		in   Input
	}{
		{"no version", Input{States: []StateMap{a.state, b.state}, Events: r.lookup}},
		{"no lookup", Input{Version: r.v, States: []StateMap{a.state, b.state}}},
		{"wrong key", Input{Version: r.v, States: []StateMap{a.state, {topicKey: ta.ID(), plKey: ta.ID()}}, Events: r.lookup}},
		{"other room", Input{Version: r.v, States: []StateMap{a.state, {topicKey: ofTopic.ID()}}, Events: r.lookup}},
		{"wrong version", Input{Version: pdu.MustVersion("10"), States: []StateMap{a.state, b.state}, Events: r.lookup}},
		{"lookup returns another event", Input{Version: r.v, States: []StateMap{a.state, b.state}, Events: func(pdu.EventID) *pdu.Event { return ta }}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Resolve(c.in); err == nil {
				t.Error("Resolve succeeded, want an error")
			}
		})
	}
}
