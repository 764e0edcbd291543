package auth

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"maps"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/signing"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// The cast. Alice creates every room; in rooms v10/v11 she has level 100,
// in v12 she is a creator with infinite power. Bob is a moderator (50),
// carol an ordinary joined member, dave (on alice's server) and erin are
// not in the room unless a case puts them there.
const (
	alice pdu.UserID = "@alice:a.test"
	bob   pdu.UserID = "@bob:b.test"
	carol pdu.UserID = "@carol:c.test"
	dave  pdu.UserID = "@dave:a.test"
	erin  pdu.UserID = "@erin:b.test"
)

var allVersions = []string{"10", "11", "12"}

const testKeyID = "ed25519:test"

// testKey derives a deterministic ed25519 key for a name.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("plexus auth test key: " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func signerFor(server pdu.ServerName) pdu.Signer {
	return pdu.Signer{Server: server, KeyID: testKeyID, Key: testKey(string(server))}
}

func sk(s string) *string { return &s }

// room is a room being built for a test: a create event and a state map.
// Events are built with real signatures; their auth_events are left empty
// because Allowed reads state from the getter, not from auth_events.
type room struct {
	t      testing.TB
	v      *pdu.Version
	id     pdu.RoomID
	create *pdu.Event
	state  map[pdu.StateTuple]*pdu.Event
	last   pdu.EventID
	depth  int64
}

// newBareRoom returns a room holding only its create event, sent by alice
// with extra merged into the content.
func newBareRoom(t testing.TB, v *pdu.Version, extra map[string]any) *room {
	t.Helper()
	return newBareRoomIn(t, v, "!room:a.test", extra)
}

// newBareRoomIn is newBareRoom with the room ID id before v12; from v12
// the room ID is the create event's, so extra must differ between rooms.
func newBareRoomIn(t testing.TB, v *pdu.Version, id pdu.RoomID, extra map[string]any) *room {
	t.Helper()
	content := map[string]any{"room_version": v.ID}
	if !v.CreatorIsSender {
		content["creator"] = string(alice)
	}
	maps.Copy(content, extra)
	for k, val := range content {
		if val == nil {
			delete(content, k)
		}
	}
	p := pdu.Proto{
		Type: pdu.TypeCreate, StateKey: sk(""), Sender: alice,
		Content: cjson.MustFromGo(content), Depth: 1, OriginServerTS: 1000,
	}
	if !v.RoomIDIsCreateHash {
		p.RoomID = id
	}
	create, err := p.Build(v, signerFor(alice.Domain()))
	if err != nil {
		t.Fatalf("build create: %v", err)
	}
	r := &room{t: t, v: v, id: create.RoomID(), create: create, state: map[pdu.StateTuple]*pdu.Event{}, depth: 1}
	r.put(create)
	return r
}

// newRoom returns the standard room: alice joined, power levels giving
// bob 50 (and alice 100 before v12), a public join rule, bob and carol
// joined.
func newRoom(t testing.TB, ver string) *room {
	return newRoomWith(t, pdu.MustVersion(ver), nil)
}

func newRoomWith(t testing.TB, v *pdu.Version, createExtra map[string]any) *room {
	r := newBareRoom(t, v, createExtra)
	r.setMember(alice, alice, "join", nil)
	r.setPL(map[string]any{"users": r.users(map[string]any{string(bob): 50})})
	r.setJoinRule("public")
	r.setMember(bob, bob, "join", nil)
	r.setMember(carol, carol, "join", nil)
	return r
}

// users adds alice's 100 to a users map before v12, where she is not a
// creator with infinite power and must be listed.
func (r *room) users(m map[string]any) map[string]any {
	if !r.v.PrivilegedCreators {
		m[string(alice)] = 100
	}
	return m
}

func (r *room) get(t pdu.StateTuple) *pdu.Event { return r.state[t] }

func (r *room) put(e *pdu.Event) {
	r.state[e.Tuple()] = e
	r.last = e.ID()
}

// build makes a signed event following the last event put in the state.
func (r *room) build(typ string, sender pdu.UserID, stateKey *string, content any, opts ...func(*pdu.Proto)) *pdu.Event {
	r.t.Helper()
	c, err := cjson.FromGo(content)
	if err != nil {
		r.t.Fatalf("content: %v", err)
	}
	r.depth++
	p := pdu.Proto{
		Type: typ, StateKey: stateKey, Sender: sender, RoomID: r.id, Content: c,
		PrevEvents: []pdu.EventID{r.last}, Depth: r.depth, OriginServerTS: 1000 + r.depth,
	}
	for _, o := range opts {
		o(&p)
	}
	e, err := p.Build(r.v, signerFor(sender.Domain()))
	if err != nil {
		r.t.Fatalf("build %s: %v", typ, err)
	}
	return e
}

func (r *room) member(sender, target pdu.UserID, membership string, extra map[string]any, opts ...func(*pdu.Proto)) *pdu.Event {
	r.t.Helper()
	content := map[string]any{"membership": membership}
	maps.Copy(content, extra)
	return r.build(pdu.TypeMember, sender, sk(string(target)), content, opts...)
}

func (r *room) setMember(sender, target pdu.UserID, membership string, extra map[string]any) {
	r.t.Helper()
	r.put(r.member(sender, target, membership, extra))
}

func (r *room) setState(typ, stateKey string, sender pdu.UserID, content any) {
	r.t.Helper()
	r.put(r.build(typ, sender, sk(stateKey), content))
}

func (r *room) setPL(content map[string]any) { r.setState(pdu.TypePowerLevels, "", alice, content) }

func (r *room) setJoinRule(jr string) {
	r.setState(pdu.TypeJoinRules, "", alice, map[string]any{"join_rule": jr})
}

func (r *room) message(sender pdu.UserID) *pdu.Event {
	return r.build("m.room.message", sender, nil, map[string]any{"body": "hi", "msgtype": "m.text"})
}

// cosign adds server's signature to e, as a resident server authorising a
// restricted join does.
func (r *room) cosign(e *pdu.Event, server pdu.ServerName) *pdu.Event {
	r.t.Helper()
	s := signerFor(server)
	obj, err := pdu.SignEvent(r.v, e.Object(), server, s.KeyID, s.Key)
	if err != nil {
		r.t.Fatal(err)
	}
	out, err := pdu.NewEvent(obj, r.v)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

func prevs(ids ...pdu.EventID) func(*pdu.Proto) {
	return func(p *pdu.Proto) { p.PrevEvents = ids }
}

// authCase is one row of the Allowed tables: an event checked against the
// state of a room. An allowed case has empty rule and rule12; a rejected
// one names the rule that must fail as the spec numbers it in v10/v11
// (rule) and in v12 (rule12).
type authCase struct {
	name     string
	versions []string // nil: all of allVersions
	// v, when set, replaces the version looked up from versions; for
	// cases about a version property no supported version lacks.
	v      func() *pdu.Version
	room   func(t testing.TB, v *pdu.Version) *room // nil: newRoomWith(t, v, nil)
	setup  func(r *room)
	event  func(r *room) *pdu.Event
	rule   string
	rule12 string
}

func runAuthCases(t *testing.T, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		vers := tc.versions
		if vers == nil {
			vers = allVersions
		}
		for _, ver := range vers {
			t.Run(tc.name+"/v"+ver, func(t *testing.T) {
				v := pdu.MustVersion(ver)
				if tc.v != nil {
					v = tc.v()
				}
				var r *room
				if tc.room != nil {
					r = tc.room(t, v)
				} else {
					r = newRoomWith(t, v, nil)
				}
				if tc.setup != nil {
					tc.setup(r)
				}
				e := tc.event(r)
				want := tc.rule
				if ver == "12" {
					want = tc.rule12
				}
				checkVerdict(t, e, Allowed(e, r.get), want)
			})
		}
	}
}

// seenRules records, per numbering, the rule numbers some test saw
// rejected; TestMain checks that every rule was.
var seenRules = [2]map[string]bool{{}, {}}

func checkVerdict(t *testing.T, e *pdu.Event, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("want allowed, got %v", err)
		}
		return
	}
	var na *NotAllowedError
	if !errors.As(err, &na) {
		t.Fatalf("want rejection by rule %s, got %v", want, err)
	}
	if na.Rule != want || na.EventID != e.ID() || na.Reason == "" {
		t.Fatalf("want rejection of %s by rule %s, got %s by rule %s: %s", e.ID(), want, na.EventID, na.Rule, na.Reason)
	}
	t.Logf("rejected as expected: %s", na.Reason)
	seenRules[numbering(e.Version())][na.Rule] = true
}

// identity is the identity server of the third-party invite tests.
var identityKey = testKey("identity server")

// signThirdParty returns a signed object for third_party_invite.
func signThirdParty(t testing.TB, mxid pdu.UserID, token string, key ed25519.PrivateKey) cjson.Value {
	t.Helper()
	signed := cjson.MustFromGo(map[string]any{"mxid": string(mxid), "token": token})
	out, err := signing.Sign(signed, "id.test", "ed25519:0", key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func publicKeyB64(key ed25519.PrivateKey) string {
	return signing.Base64.EncodeToString(key.Public().(ed25519.PublicKey))
}

func urlBase64(b []byte) string { return signing.URLBase64.EncodeToString(b) }
