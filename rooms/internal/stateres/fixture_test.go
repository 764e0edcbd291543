package stateres

import (
	"crypto/ed25519"
	"crypto/sha256"
	"maps"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/auth"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// Users of the test rooms. Alice creates every room.
const (
	alice   pdu.UserID = "@alice:example.org"
	bob     pdu.UserID = "@bob:example.org"
	carol   pdu.UserID = "@carol:example.org"
	charlie pdu.UserID = "@charlie:example.org"
	dave    pdu.UserID = "@dave:example.org"
)

// testSigner signs every test event; keys are derived from a fixed seed so
// event IDs are stable from run to run.
var testSigner = func() pdu.Signer {
	seed := sha256.Sum256([]byte("plexus stateres test key"))
	return pdu.Signer{Server: "example.org", KeyID: "ed25519:test", Key: ed25519.NewKeyFromSeed(seed[:])}
}()

// room holds every event built for one test room, for Input.Events.
type room struct {
	tb     testing.TB
	v      *pdu.Version
	id     pdu.RoomID
	events map[pdu.EventID]*pdu.Event
	ts     int64
}

// fork is one branch of the room's history: its current state and its
// latest event. Events sent on a fork cite auth events chosen from the
// fork's state by the auth events selection algorithm.
type fork struct {
	r     *room
	state StateMap
	last  pdu.EventID
	depth int64
}

// newRoom creates a room of version vid with Alice as creator, and returns
// the fork holding the create event.
func newRoom(tb testing.TB, vid string) (*room, *fork) {
	tb.Helper()
	return newRoomWithID(tb, vid, "!room:example.org")
}

// newRoomWithID is newRoom with the room ID of versions before 12.
func newRoomWithID(tb testing.TB, vid string, id pdu.RoomID) (*room, *fork) {
	tb.Helper()
	r := &room{tb: tb, v: pdu.MustVersion(vid), events: make(map[pdu.EventID]*pdu.Event)}
	content := map[string]any{"room_version": vid}
	if !r.v.CreatorIsSender {
		content["creator"] = string(alice)
	}
	p := &pdu.Proto{
		Type: pdu.TypeCreate, StateKey: ptr(""), Sender: alice,
		Content: cjson.MustFromGo(content), PrevEvents: []pdu.EventID{}, AuthEvents: []pdu.EventID{},
		Depth: 1, OriginServerTS: r.nextTS(),
	}
	if !r.v.RoomIDIsCreateHash {
		p.RoomID = id
	}
	ev, err := p.Build(r.v, testSigner)
	if err != nil {
		tb.Fatalf("build create: %v", err)
	}
	r.id = ev.RoomID()
	r.events[ev.ID()] = ev
	f := &fork{r: r, state: StateMap{ev.Tuple(): ev.ID()}, last: ev.ID(), depth: 1}
	return r, f
}

func ptr[T any](v T) *T { return &v }

func (r *room) nextTS() int64 {
	r.ts += 1000
	return r.ts
}

// lookup is Input.Events for the room.
func (r *room) lookup(id pdu.EventID) *pdu.Event { return r.events[id] }

// branch starts a new fork from f's current point.
func (f *fork) branch() *fork {
	return &fork{r: f.r, state: maps.Clone(f.state), last: f.last, depth: f.depth}
}

// ev describes an event to send; zero TS means the room's next timestamp.
type ev struct {
	sender   pdu.UserID
	typ      string
	stateKey string
	content  map[string]any
	ts       int64
	// auth, when set, replaces the auth events selected from the state.
	auth []pdu.EventID
}

// send builds the event on the fork and applies it to the fork's state
// (the fork trusts its own events: the tests build only events that the
// auth rules allow at the time, unless they say otherwise).
func (f *fork) send(e ev) *pdu.Event {
	f.r.tb.Helper()
	content := cjson.MustFromGo(e.content)
	sk := e.stateKey
	authIDs := e.auth
	if authIDs == nil {
		authIDs = []pdu.EventID{}
		for _, t := range auth.SelectAuthTuples(f.r.v, e.typ, &sk, e.sender, content) {
			if id, ok := f.state[t]; ok {
				authIDs = append(authIDs, id)
			}
		}
	}
	ts := e.ts
	if ts == 0 {
		ts = f.r.nextTS()
	}
	f.depth++
	p := &pdu.Proto{
		Type: e.typ, StateKey: &sk, Sender: e.sender, Content: content,
		PrevEvents: []pdu.EventID{f.last}, AuthEvents: authIDs,
		Depth: f.depth, OriginServerTS: ts,
	}
	if !(f.r.v.RoomIDIsCreateHash && e.typ == pdu.TypeCreate) {
		p.RoomID = f.r.id
	}
	built, err := p.Build(f.r.v, testSigner)
	if err != nil {
		f.r.tb.Fatalf("build %s: %v", e.typ, err)
	}
	f.r.events[built.ID()] = built
	f.state[built.Tuple()] = built.ID()
	f.last = built.ID()
	return built
}

// Shorthands for the events the tests send most.

func (f *fork) member(sender, target pdu.UserID, membership string) *pdu.Event {
	return f.send(ev{sender: sender, typ: pdu.TypeMember, stateKey: string(target), content: map[string]any{"membership": membership}})
}

func (f *fork) join(u pdu.UserID) *pdu.Event { return f.member(u, u, "join") }

func (f *fork) joinRules(sender pdu.UserID, rule string) *pdu.Event {
	return f.send(ev{sender: sender, typ: pdu.TypeJoinRules, content: map[string]any{"join_rule": rule}})
}

func (f *fork) topic(sender pdu.UserID, topic string, ts int64) *pdu.Event {
	return f.send(ev{sender: sender, typ: "m.room.topic", content: map[string]any{"topic": topic}, ts: ts})
}

// powerLevels sends m.room.power_levels giving users their levels. In room
// version 12 the creator may not be listed (creators have infinite power),
// so Alice is left out there; before v12 she is given 100.
func (f *fork) powerLevels(sender pdu.UserID, users map[pdu.UserID]int, extra map[string]any) *pdu.Event {
	u := map[string]any{}
	if !f.r.v.PrivilegedCreators {
		u[string(alice)] = 100
	}
	for k, v := range users {
		u[string(k)] = v
	}
	content := map[string]any{"users": u}
	for k, v := range extra {
		content[k] = v
	}
	return f.send(ev{sender: sender, typ: pdu.TypePowerLevels, content: content})
}

// start makes the usual room: Alice joins, sets power levels with users,
// and a public join rule; then each of joiners joins.
func start(tb testing.TB, vid string, users map[pdu.UserID]int, extra map[string]any, joiners ...pdu.UserID) (*room, *fork) {
	r, f := newRoom(tb, vid)
	f.join(alice)
	f.powerLevels(alice, users, extra)
	f.joinRules(alice, "public")
	for _, u := range joiners {
		f.join(u)
	}
	return r, f
}

// resolve runs Resolve over the forks' states.
func (r *room) resolve(forks ...*fork) (StateMap, error) {
	states := make([]StateMap, len(forks))
	for i, f := range forks {
		states[i] = f.state
	}
	return Resolve(Input{Version: r.v, States: states, Events: r.lookup})
}

// mustResolve is resolve for tests that expect success.
func (r *room) mustResolve(forks ...*fork) StateMap {
	r.tb.Helper()
	got, err := r.resolve(forks...)
	if err != nil {
		r.tb.Fatalf("Resolve: %v", err)
	}
	return got
}

func memberKey(u pdu.UserID) pdu.StateTuple {
	return pdu.StateTuple{Type: pdu.TypeMember, StateKey: string(u)}
}

var (
	topicKey = pdu.StateTuple{Type: "m.room.topic"}
	jrKey    = pdu.StateTuple{Type: pdu.TypeJoinRules}
	plKey    = pdu.StateTuple{Type: pdu.TypePowerLevels}
)

// versions are the room versions every behaviour test runs under: one per
// algorithm, plus v10 for the pre-v11 creator field.
var versions = []string{"10", "11", "12"}
