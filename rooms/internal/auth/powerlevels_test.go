package auth

import (
	"maps"
	"slices"
	"testing"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// withStringyLevels is v10 as if it accepted string power levels, as
// rooms v1-9 do, to show the lenient reader follows the version property.
func withStringyLevels() *pdu.Version {
	v := *pdu.MustVersion("10")
	v.IntegerPowerLevels = false
	return &v
}

func TestParsePowerLevelsDefaults(t *testing.T) {
	for _, ver := range allVersions {
		t.Run("v"+ver, func(t *testing.T) {
			r := newBareRoom(t, pdu.MustVersion(ver), nil)
			p, err := ParsePowerLevels(nil, r.create)
			if err != nil {
				t.Fatal(err)
			}
			got := [...]int64{p.UsersDefault, p.EventsDefault, p.StateDefault, p.Ban, p.Kick, p.Redact, p.Invite, p.Notifications["room"]}
			if want := [...]int64{0, 0, 50, 50, 50, 50, 0, 50}; got != want {
				t.Errorf("defaults %v, want %v", got, want)
			}
			wantAlice := int64(100)
			if ver == "12" {
				wantAlice = InfinitePowerLevel
			}
			if got := p.UserLevel(alice); got != wantAlice {
				t.Errorf("creator level %d, want %d", got, wantAlice)
			}
			if got := p.UserLevel(bob); got != 0 {
				t.Errorf("other user level %d, want 0", got)
			}
			if got, want := p.EventLevel("m.room.name", true), int64(50); got != want {
				t.Errorf("state level %d, want %d", got, want)
			}
			if got := p.EventLevel("m.room.message", false); got != 0 {
				t.Errorf("message level %d, want 0", got)
			}
		})
	}
}

func TestParsePowerLevels(t *testing.T) {
	content := map[string]any{
		"users":         map[string]any{string(bob): 50, "not a user": 70, string(carol): "60", string(alice): 1},
		"users_default": 5, "events_default": 6, "state_default": 7,
		"ban": 8, "kick": 9, "redact": 10, "invite": " 11 ",
		"events":        map[string]any{"m.room.name": 12, "m.bad": true},
		"notifications": map[string]any{"room": 13, "other": 14},
	}
	cases := []struct {
		name string
		v    func() *pdu.Version
		// wants
		invite, carol, alice int64
		creators             []pdu.UserID
	}{
		{name: "v10", v: func() *pdu.Version { return pdu.MustVersion("10") }, invite: 0, carol: 5, alice: 1, creators: []pdu.UserID{alice}},
		{name: "v11", v: func() *pdu.Version { return pdu.MustVersion("11") }, invite: 0, carol: 5, alice: 1, creators: []pdu.UserID{alice}},
		// v12 creators are infinite even if (leniently) listed.
		{name: "v12", v: func() *pdu.Version { return pdu.MustVersion("12") }, invite: 0, carol: 5, alice: InfinitePowerLevel,
			creators: []pdu.UserID{alice, dave}},
		{name: "string levels", v: withStringyLevels, invite: 11, carol: 60, alice: 1, creators: []pdu.UserID{alice}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newBareRoom(t, tc.v(), map[string]any{"additional_creators": []any{string(dave), "junk", string(alice)}})
			r.setPL(content)
			pl := r.state[powerLevelsTuple]
			p, err := ParsePowerLevels(pl, r.create)
			if err != nil {
				t.Fatal(err)
			}
			if p.Invite != tc.invite || p.UserLevel(carol) != tc.carol || p.UserLevel(alice) != tc.alice {
				t.Errorf("invite %d carol %d alice %d, want %d %d %d", p.Invite, p.UserLevel(carol), p.UserLevel(alice), tc.invite, tc.carol, tc.alice)
			}
			if !slices.Equal(p.Creators, tc.creators) {
				t.Errorf("creators %v, want %v", p.Creators, tc.creators)
			}
			if got := [...]int64{p.UsersDefault, p.EventsDefault, p.StateDefault, p.Ban, p.Kick, p.Redact}; got != [...]int64{5, 6, 7, 8, 9, 10} {
				t.Errorf("levels %v", got)
			}
			if _, ok := p.Users["not a user"]; ok {
				t.Error("invalid user ID kept")
			}
			if got, want := p.Events, map[string]int64{"m.room.name": 12}; !maps.Equal(got, want) {
				t.Errorf("events %v, want %v", got, want)
			}
			if got, want := p.Notifications, map[string]int64{"room": 13, "other": 14}; !maps.Equal(got, want) {
				t.Errorf("notifications %v, want %v", got, want)
			}
			if got := p.EventLevel("m.room.name", true); got != 12 {
				t.Errorf("m.room.name level %d, want 12", got)
			}
			if got := p.EventLevel("m.room.topic", true); got != 7 {
				t.Errorf("m.room.topic level %d, want 7", got)
			}
			if got := p.EventLevel("m.room.message", false); got != 6 {
				t.Errorf("m.room.message level %d, want 6", got)
			}
			// The auth rules' in-place reader agrees with the parsed form.
			l := newLevels(pl, r.create)
			for _, u := range []pdu.UserID{alice, bob, carol, dave, erin} {
				if p.UserLevel(u) != l.user(u) {
					t.Errorf("%s: PowerLevels %d, levels %d", u, p.UserLevel(u), l.user(u))
				}
			}
			for _, typ := range []string{"m.room.name", "m.bad", "m.room.message"} {
				for _, state := range []bool{true, false} {
					if p.EventLevel(typ, state) != l.event(typ, state) {
						t.Errorf("%s state=%v: PowerLevels %d, levels %d", typ, state, p.EventLevel(typ, state), l.event(typ, state))
					}
				}
			}
		})
	}
}

func TestParsePowerLevelsWrongEvent(t *testing.T) {
	r := newRoom(t, "11")
	if _, err := ParsePowerLevels(r.state[joinRulesTuple], r.create); err == nil {
		t.Error("join rules parsed as power levels")
	}
	if _, err := ParsePowerLevels(r.state[powerLevelsTuple], r.state[joinRulesTuple]); err == nil {
		t.Error("join rules taken as the create event")
	}
}

func TestCreators(t *testing.T) {
	extra := map[string]any{"creator": string(dave), "additional_creators": []any{string(bob), "junk", string(bob), 7}}
	cases := []struct {
		ver  string
		want []pdu.UserID
	}{
		{"10", []pdu.UserID{dave}},
		{"11", []pdu.UserID{alice}},
		{"12", []pdu.UserID{alice, bob}},
	}
	for _, tc := range cases {
		t.Run("v"+tc.ver, func(t *testing.T) {
			r := newBareRoom(t, pdu.MustVersion(tc.ver), extra)
			if got := Creators(r.create); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			for _, u := range []pdu.UserID{alice, bob, dave, "junk"} {
				if got, want := isCreator(r.create, u), slices.Contains(tc.want, u); got != want {
					t.Errorf("isCreator(%s) = %v, want %v", u, got, want)
				}
			}
		})
	}
	t.Run("v10 without creator", func(t *testing.T) {
		r := newBareRoom(t, pdu.MustVersion("10"), map[string]any{"creator": nil})
		if got := Creators(r.create); got != nil {
			t.Errorf("got %v", got)
		}
	})
	if Creators(nil) != nil {
		t.Error("Creators(nil) not nil")
	}
}

func TestSenderPowerLevel(t *testing.T) {
	for _, ver := range allVersions {
		t.Run("v"+ver, func(t *testing.T) {
			r := newRoom(t, ver)
			infinite := ver == "12"
			creator := int64(100)
			if infinite {
				creator = InfinitePowerLevel
			}
			empty := func(pdu.StateTuple) *pdu.Event { return nil }
			for _, tc := range []struct {
				name  string
				e     *pdu.Event
				state StateGetter
				want  int64
			}{
				{"moderator", r.message(bob), r.get, 50},
				{"member", r.message(carol), r.get, 0},
				{"creator", r.message(alice), r.get, creator},
				{"create event, empty state", r.create, empty, creator},
				{"no power levels, creator", r.message(alice), func(t pdu.StateTuple) *pdu.Event {
					if t == powerLevelsTuple {
						return nil
					}
					return r.get(t)
				}, creator},
			} {
				if got := SenderPowerLevel(tc.e, tc.state); got != tc.want {
					t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
				}
			}
		})
	}
}

func TestParseStringyLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"100", 100, true}, {"000100", 100, true}, {"+100", 100, true}, {"-100", -100, true},
		{" 100 ", 100, true}, {" 00100 ", 100, true}, {" +100 ", 100, true}, {" -100 ", -100, true},
		{"0", 0, true}, {"-0", 0, true}, {"9007199254740991", 9007199254740991, true},
		{"9007199254740992", 0, false}, {"", 0, false}, {" ", 0, false}, {"+", 0, false},
		{"1.5", 0, false}, {"1e3", 0, false}, {"0x10", 0, false}, {"--1", 0, false}, {"1 0", 0, false},
	} {
		if got, ok := parseStringyLevel(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("parseStringyLevel(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestRuleNumbers checks the numbering table's shape: every rule has a
// number in some version, and no number names two rules.
func TestRuleNumbers(t *testing.T) {
	for col := range 2 {
		seen := map[string]rule{}
		for r := rule(0); r < numRules; r++ {
			if ruleNumbers[r] == [2]string{} {
				t.Errorf("rule %d has no number", r)
			}
			n := ruleNumbers[r][col]
			if n == "" {
				continue
			}
			if other, dup := seen[n]; dup {
				t.Errorf("numbering %d: %s names rules %d and %d", col, n, other, r)
			}
			seen[n] = r
		}
	}
	e := &NotAllowedError{EventID: "$x", Rule: "5.3.3", Reason: "sender is banned"}
	if got, want := e.Error(), "event $x not allowed by auth rule 5.3.3: sender is banned"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
