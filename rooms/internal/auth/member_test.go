package auth

import (
	"crypto/ed25519"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// Case names start with the rule's number in v10/v11 (v12's is one higher
// at the top level: 4.3.3 is v12's 5.3.3); cases run on v12 only use v12's
// number.

func only(vs ...string) []string { return vs }

// withoutKnockRestricted is v10 as if it lacked the knock_restricted join
// rule, to show the rules follow the version property.
func withoutKnockRestricted() *pdu.Version {
	v := *pdu.MustVersion("10")
	v.KnockRestricted = false
	return &v
}

func setPLWith(extra map[string]any) func(r *room) {
	return func(r *room) {
		c := map[string]any{"users": r.users(map[string]any{string(bob): 50})}
		for k, v := range extra {
			c[k] = v
		}
		r.setPL(c)
	}
}

func steps(fs ...func(r *room)) func(r *room) {
	return func(r *room) {
		for _, f := range fs {
			f(r)
		}
	}
}

func withJoinRule(jr string) func(r *room) { return func(r *room) { r.setJoinRule(jr) } }

func setMember(sender, target pdu.UserID, membership string) func(r *room) {
	return func(r *room) { r.setMember(sender, target, membership, nil) }
}

// viaJoin is dave's join naming via as the authorising user, signed by
// the servers given besides dave's own.
func viaJoin(via any, cosigners ...pdu.ServerName) func(r *room) *pdu.Event {
	return func(r *room) *pdu.Event {
		e := r.member(dave, dave, "join", map[string]any{keyAuthorisedVia: via})
		for _, s := range cosigners {
			e = r.cosign(e, s)
		}
		return e
	}
}

func TestAllowedMemberBasics(t *testing.T) {
	runAuthCases(t, []authCase{
		{name: "4.1 ok well-formed", event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }},
		{name: "4.1 no membership", event: func(r *room) *pdu.Event {
			return r.build(pdu.TypeMember, dave, sk(string(dave)), map[string]any{"displayname": "D"})
		}, rule: "4.1", rule12: "5.1"},
		{name: "4.1 no state_key", event: func(r *room) *pdu.Event {
			return r.build(pdu.TypeMember, dave, nil, map[string]any{"membership": "join"})
		}, rule: "4.1", rule12: "5.1"},
		{name: "4.2.1 ok authorising server signed", setup: withJoinRule("restricted"),
			event: viaJoin(string(bob), "b.test")},
		{name: "4.2.1 authorising server did not sign", setup: withJoinRule("restricted"),
			event: viaJoin(string(bob)), rule: "4.2.1", rule12: "5.2.1"},
		{name: "4.2.1 authorising user not a user ID", setup: withJoinRule("restricted"),
			event: viaJoin("bob"), rule: "4.2.1", rule12: "5.2.1"},
		{name: "4.2.1 authorising user null", setup: withJoinRule("restricted"),
			event: viaJoin(nil), rule: "4.2.1", rule12: "5.2.1"},
		{name: "4.2.1 ok any membership, signed", event: func(r *room) *pdu.Event {
			return r.cosign(r.member(carol, carol, "leave", map[string]any{keyAuthorisedVia: string(bob)}), "b.test")
		}},
		{name: "4.2.1 any membership, unsigned", event: func(r *room) *pdu.Event {
			return r.member(carol, carol, "leave", map[string]any{keyAuthorisedVia: string(bob)})
		}, rule: "4.2.1", rule12: "5.2.1"},
		{name: "4.8 unknown membership", event: func(r *room) *pdu.Event { return r.member(carol, carol, "dance", nil) },
			rule: "4.8", rule12: "5.8"},
		{name: "4.8 membership not a string", event: func(r *room) *pdu.Event {
			return r.build(pdu.TypeMember, carol, sk(string(carol)), map[string]any{"membership": 1})
		}, rule: "4.8", rule12: "5.8"},
	})
}

func TestAllowedJoin(t *testing.T) {
	bare := func(t testing.TB, v *pdu.Version) *room { return newBareRoom(t, v, nil) }
	daveCreator := func(t testing.TB, v *pdu.Version) *room {
		return newBareRoom(t, v, map[string]any{"creator": string(dave), "additional_creators": []any{string(bob)}})
	}
	firstJoin := func(u pdu.UserID) func(r *room) *pdu.Event {
		return func(r *room) *pdu.Event { return r.member(u, u, "join", nil, prevs(r.create.ID())) }
	}
	runAuthCases(t, []authCase{
		// 4.3.1: the creator's first join.
		{name: "4.3.1 ok creator joins after create", room: bare, event: firstJoin(alice)},
		{name: "4.3.1 creator, other prev_events too", room: bare, event: func(r *room) *pdu.Event {
			return r.member(alice, alice, "join", nil, prevs(r.create.ID(), "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
		}, rule: "4.3.7", rule12: "5.3.7"},
		{name: "4.3.1 not the creator", room: bare, event: firstJoin(dave), rule: "4.3.7", rule12: "5.3.7"},
		{name: "v10 4.3.1 ok creator is content.creator", versions: only("10"), room: daveCreator, event: firstJoin(dave)},
		{name: "v10 4.3.1 create sender is not the creator", versions: only("10"), room: daveCreator,
			event: firstJoin(alice), rule: "4.3.7"},
		{name: "v11+ 4.3.1 ok creator is the create sender", versions: only("11", "12"), room: daveCreator, event: firstJoin(alice)},
		{name: "v11+ 4.3.1 content.creator means nothing", versions: only("11", "12"), room: daveCreator,
			event: firstJoin(dave), rule: "4.3.7", rule12: "5.3.7"},
		{name: "v12 5.3.1 additional creator is not the create sender", versions: only("12"), room: daveCreator,
			event: firstJoin(bob), rule12: "5.3.7"},

		{name: "4.3.2 ok own join", event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }},
		{name: "4.3.2 join for another user", event: func(r *room) *pdu.Event { return r.member(carol, dave, "join", nil) },
			rule: "4.3.2", rule12: "5.3.2"},
		{name: "4.3.3 ok unbanned", setup: steps(setMember(bob, dave, "ban"), setMember(bob, dave, "leave")),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }},
		{name: "4.3.3 banned", setup: setMember(bob, dave, "ban"),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }, rule: "4.3.3", rule12: "5.3.3"},

		{name: "4.3.4 ok invite rule, invited", setup: steps(withJoinRule("invite"), setMember(bob, dave, "invite")),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }},
		{name: "4.3.4 ok invite rule, already joined", setup: withJoinRule("invite"),
			event: func(r *room) *pdu.Event { return r.member(carol, carol, "join", map[string]any{"displayname": "C"}) }},
		{name: "4.3.4 invite rule, not invited", setup: withJoinRule("invite"),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }, rule: "4.3.7", rule12: "5.3.7"},
		{name: "4.3.4 ok knock rule, invited", setup: steps(withJoinRule("knock"), setMember(dave, dave, "knock"), setMember(bob, dave, "invite")),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }},
		{name: "4.3.4 knock rule, knocked only", setup: steps(withJoinRule("knock"), setMember(dave, dave, "knock")),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }, rule: "4.3.7", rule12: "5.3.7"},

		{name: "4.3.5.1 ok restricted, invited", setup: steps(withJoinRule("restricted"), setMember(bob, dave, "invite")),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }},
		{name: "4.3.5.3 ok restricted, authorised", setup: withJoinRule("restricted"), event: viaJoin(string(bob), "b.test")},
		{name: "4.3.5.2 restricted, no authorising user", setup: withJoinRule("restricted"),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }, rule: "4.3.5.2", rule12: "5.3.5.2"},
		{name: "4.3.5.2 restricted, authorising user not joined", setup: withJoinRule("restricted"),
			event: viaJoin(string(erin), "b.test"), rule: "4.3.5.2", rule12: "5.3.5.2"},
		{name: "4.3.5.2 restricted, authorising user below invite level",
			setup: steps(withJoinRule("restricted"), setPLWith(map[string]any{"invite": 10})),
			event: viaJoin(string(carol), "c.test"), rule: "4.3.5.2", rule12: "5.3.5.2"},
		{name: "4.3.5.2 v10/v11 creator at 100 below invite level 101", versions: only("10", "11"),
			setup: steps(withJoinRule("restricted"), setPLWith(map[string]any{"invite": 101})),
			event: viaJoin(string(alice)), rule: "4.3.5.2"},
		{name: "v12 5.3.5.3 ok creator's infinite power authorises", versions: only("12"),
			setup: steps(withJoinRule("restricted"), setPLWith(map[string]any{"invite": 101})),
			event: viaJoin(string(alice))},
		{name: "4.3.5.3 ok knock_restricted, authorised", setup: withJoinRule("knock_restricted"), event: viaJoin(string(bob), "b.test")},
		{name: "4.3.5.2 knock_restricted, no authorising user", setup: withJoinRule("knock_restricted"),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }, rule: "4.3.5.2", rule12: "5.3.5.2"},
		{name: "4.3.5 knock_restricted unknown to the version", versions: only("10"), v: withoutKnockRestricted,
			setup: withJoinRule("knock_restricted"), event: viaJoin(string(bob), "b.test"), rule: "4.3.7"},

		{name: "4.3.6 ok public", event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }},
		{name: "4.3.7 private rule, even invited", setup: steps(withJoinRule("private"), setMember(bob, dave, "invite")),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }, rule: "4.3.7", rule12: "5.3.7"},
		{name: "4.3.7 unknown join rule", setup: withJoinRule("anyone"),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }, rule: "4.3.7", rule12: "5.3.7"},
		{name: "4.3.7 ok no join_rules event means invite, invited",
			setup: steps(setMember(bob, dave, "invite"), func(r *room) { delete(r.state, joinRulesTuple) }),
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }},
		{name: "4.3.7 no join_rules event means invite, not invited",
			setup: func(r *room) { delete(r.state, joinRulesTuple) },
			event: func(r *room) *pdu.Event { return r.member(dave, dave, "join", nil) }, rule: "4.3.7", rule12: "5.3.7"},
	})
}

func TestAllowedInvite(t *testing.T) {
	invite := func(sender, target pdu.UserID) func(r *room) *pdu.Event {
		return func(r *room) *pdu.Event { return r.member(sender, target, "invite", nil) }
	}
	runAuthCases(t, []authCase{
		{name: "4.4.2 ok joined sender", event: invite(bob, dave)},
		{name: "4.4.2 ok ordinary member at invite level 0", event: invite(carol, dave)},
		{name: "4.4.2 sender not in room", event: invite(erin, dave), rule: "4.4.2", rule12: "5.4.2"},
		{name: "4.4.2 sender only invited", setup: setMember(bob, erin, "invite"),
			event: invite(erin, dave), rule: "4.4.2", rule12: "5.4.2"},
		{name: "4.4.3 target joined", event: invite(bob, carol), rule: "4.4.3", rule12: "5.4.3"},
		{name: "4.4.3 target banned", setup: setMember(bob, dave, "ban"), event: invite(bob, dave), rule: "4.4.3", rule12: "5.4.3"},
		{name: "4.4.3 ok target left", setup: steps(setMember(dave, dave, "join"), setMember(dave, dave, "leave")), event: invite(bob, dave)},
		{name: "4.4.4 ok at invite level", setup: setPLWith(map[string]any{"invite": 50}), event: invite(bob, dave)},
		{name: "4.4.5 below invite level", setup: setPLWith(map[string]any{"invite": 60}), event: invite(bob, dave),
			rule: "4.4.5", rule12: "5.4.5"},
		{name: "4.4.5 v10/v11 creator at 100 below 101", versions: only("10", "11"),
			setup: setPLWith(map[string]any{"invite": 101}), event: invite(alice, dave), rule: "4.4.5"},
		{name: "v12 5.4.4 ok creator's infinite power", versions: only("12"),
			setup: setPLWith(map[string]any{"invite": 101}), event: invite(alice, dave)},
	})
}

func TestAllowedThirdPartyInvite(t *testing.T) {
	const token = "tok"
	otherKey := testKey("another identity server")
	// setup puts alice's m.room.third_party_invite with the identity
	// server's key in the state.
	setup := func(r *room) {
		r.setState(pdu.TypeThirdPartyInvite, token, alice, map[string]any{
			"display_name": "d...@e...", "key_validity_url": "https://id.test/isvalid",
			"public_key": publicKeyB64(identityKey),
		})
	}
	setupKeyList := func(r *room) {
		pub := identityKey.Public().(ed25519.PublicKey)
		r.setState(pdu.TypeThirdPartyInvite, token, alice, map[string]any{
			"display_name": "d...@e...", "key_validity_url": "https://id.test/isvalid",
			"public_key": publicKeyB64(otherKey),
			"public_keys": []any{
				map[string]any{"public_key": "not base64!"},
				map[string]any{"public_key": urlBase64(pub)},
			},
		})
	}
	// inv is sender's invite of dave with third_party_invite.signed.
	inv := func(sender pdu.UserID, signed any) func(r *room) *pdu.Event {
		return func(r *room) *pdu.Event {
			return r.member(sender, dave, "invite", map[string]any{
				keyThirdPartyInvite: map[string]any{"display_name": "d...@e...", "signed": signed},
			})
		}
	}
	good := func(r *room) *pdu.Event { return inv(alice, signThirdParty(r.t, dave, token, identityKey))(r) }
	withSigned := func(mod func(t testing.TB) any) func(r *room) *pdu.Event {
		return func(r *room) *pdu.Event { return inv(alice, mod(r.t))(r) }
	}
	runAuthCases(t, []authCase{
		{name: "4.4.1.7 ok signed with public_key", setup: setup, event: good},
		{name: "4.4.1.7 ok signed with a public_keys entry", setup: setupKeyList, event: good},
		{name: "4.4.1.1 target banned", setup: steps(setup, setMember(bob, dave, "ban")), event: good,
			rule: "4.4.1.1", rule12: "5.4.1.1"},
		{name: "4.4.1.2 no signed", setup: setup, event: func(r *room) *pdu.Event {
			return r.member(alice, dave, "invite", map[string]any{keyThirdPartyInvite: map[string]any{"display_name": "d"}})
		}, rule: "4.4.1.2", rule12: "5.4.1.2"},
		{name: "4.4.1.2 signed not an object", setup: setup, event: inv(alice, "signed"),
			rule: "4.4.1.2", rule12: "5.4.1.2"},
		{name: "4.4.1.3 no token", setup: setup, event: inv(alice, map[string]any{"mxid": string(dave)}),
			rule: "4.4.1.3", rule12: "5.4.1.3"},
		{name: "4.4.1.3 mxid not a string", setup: setup, event: inv(alice, map[string]any{"mxid": 1, "token": token}),
			rule: "4.4.1.3", rule12: "5.4.1.3"},
		{name: "4.4.1.4 mxid is not the state_key", setup: setup,
			event: withSigned(func(t testing.TB) any { return signThirdParty(t, carol, token, identityKey) }),
			rule:  "4.4.1.4", rule12: "5.4.1.4"},
		{name: "4.4.1.5 no third-party invite for the token", setup: setup,
			event: withSigned(func(t testing.TB) any { return signThirdParty(t, dave, "other", identityKey) }),
			rule:  "4.4.1.5", rule12: "5.4.1.5"},
		{name: "4.4.1.6 sender did not send the third-party invite", setup: setup,
			event: func(r *room) *pdu.Event { return inv(bob, signThirdParty(r.t, dave, token, identityKey))(r) },
			rule:  "4.4.1.6", rule12: "5.4.1.6"},
		{name: "4.4.1.8 signed with an unknown key", setup: setup,
			event: withSigned(func(t testing.TB) any { return signThirdParty(t, dave, token, otherKey) }),
			rule:  "4.4.1.8", rule12: "5.4.1.8"},
		{name: "4.4.1.8 signed object altered after signing", setup: setup,
			event: withSigned(func(t testing.TB) any {
				return signThirdParty(t, dave, token, identityKey).With("extra", cjson.Str("x"))
			}), rule: "4.4.1.8", rule12: "5.4.1.8"},
		{name: "4.4.1.8 no signatures", setup: setup,
			event: inv(alice, map[string]any{"mxid": string(dave), "token": token}), rule: "4.4.1.8", rule12: "5.4.1.8"},
	})
}

func TestAllowedLeave(t *testing.T) {
	leave := func(sender, target pdu.UserID) func(r *room) *pdu.Event {
		return func(r *room) *pdu.Event { return r.member(sender, target, "leave", nil) }
	}
	coCreator := func(t testing.TB, v *pdu.Version) *room {
		return newRoomWith(t, v, map[string]any{"additional_creators": []any{string(erin)}})
	}
	runAuthCases(t, []authCase{
		{name: "4.5.1 ok joined user leaves", event: leave(carol, carol)},
		{name: "4.5.1 ok invitee rejects", setup: setMember(bob, dave, "invite"), event: leave(dave, dave)},
		{name: "4.5.1 ok knock withdrawn", setup: steps(withJoinRule("knock"), setMember(dave, dave, "knock")), event: leave(dave, dave)},
		{name: "4.5.1 never in the room", event: leave(dave, dave), rule: "4.5.1", rule12: "5.5.1"},
		{name: "4.5.1 banned user cannot leave", setup: setMember(bob, dave, "ban"), event: leave(dave, dave),
			rule: "4.5.1", rule12: "5.5.1"},
		{name: "4.5.1 already left", setup: steps(setMember(dave, dave, "join"), setMember(dave, dave, "leave")),
			event: leave(dave, dave), rule: "4.5.1", rule12: "5.5.1"},
		{name: "4.5.2 kicker not joined", event: leave(erin, carol), rule: "4.5.2", rule12: "5.5.2"},
		{name: "4.5.3 ok unban at ban level", setup: setMember(bob, dave, "ban"), event: leave(bob, dave)},
		{name: "4.5.3 unban below ban level", setup: steps(setPLWith(map[string]any{"ban": 60}), setMember(alice, dave, "ban")),
			event: leave(bob, dave), rule: "4.5.3", rule12: "5.5.3"},
		{name: "4.5.4 ok kick", event: leave(bob, carol)},
		{name: "4.5.5 kick below kick level", event: leave(carol, bob), rule: "4.5.5", rule12: "5.5.5"},
		{name: "4.5.5 kick an equal",
			setup: func(r *room) {
				r.setPL(map[string]any{"users": r.users(map[string]any{string(bob): 50, string(erin): 50})})
				r.setMember(erin, erin, "join", nil)
			},
			event: leave(bob, erin), rule: "4.5.5", rule12: "5.5.5"},
		{name: "4.5.5 kick the creator", event: leave(bob, alice), rule: "4.5.5", rule12: "5.5.5"},
		{name: "4.5.5 v10/v11 creator at 100 cannot kick 100", versions: only("10", "11"),
			setup: func(r *room) {
				r.setPL(map[string]any{"users": r.users(map[string]any{string(erin): 100})})
				r.setMember(erin, erin, "join", nil)
			}, event: leave(alice, erin), rule: "4.5.5"},
		{name: "v12 5.5.4 ok creator's infinite power kicks 100", versions: only("12"),
			setup: func(r *room) {
				r.setPL(map[string]any{"users": r.users(map[string]any{string(erin): 100})})
				r.setMember(erin, erin, "join", nil)
			}, event: leave(alice, erin)},
		{name: "v12 5.5.5 additional creator cannot be kicked", versions: only("12"), room: coCreator,
			setup: setMember(erin, erin, "join"), event: leave(bob, erin), rule12: "5.5.5"},
		{name: "v10/v11 4.5.4 ok additional_creators means nothing", versions: only("10", "11"), room: coCreator,
			setup: setMember(erin, erin, "join"), event: leave(bob, erin)},
		{name: "v12 5.5.4 ok additional creator kicks", versions: only("12"), room: coCreator,
			setup: setMember(erin, erin, "join"), event: leave(erin, bob)},
		{name: "v10/v11 4.5.5 additional creator has no power", versions: only("10", "11"), room: coCreator,
			setup: setMember(erin, erin, "join"), event: leave(erin, bob), rule: "4.5.5"},
	})
}

func TestAllowedBan(t *testing.T) {
	ban := func(sender, target pdu.UserID) func(r *room) *pdu.Event {
		return func(r *room) *pdu.Event { return r.member(sender, target, "ban", nil) }
	}
	plErin100 := func(r *room) {
		r.setPL(map[string]any{"users": r.users(map[string]any{string(bob): 50, string(erin): 100})})
		r.setMember(erin, erin, "join", nil)
	}
	runAuthCases(t, []authCase{
		{name: "4.6.1 banner not joined", event: ban(erin, carol), rule: "4.6.1", rule12: "5.6.1"},
		{name: "4.6.1 banner only invited", setup: setMember(bob, erin, "invite"), event: ban(erin, carol),
			rule: "4.6.1", rule12: "5.6.1"},
		{name: "4.6.2 ok ban member", event: ban(bob, carol)},
		{name: "4.6.2 ok ban non-member", event: ban(bob, dave)},
		{name: "4.6.3 below ban level", event: ban(carol, dave), rule: "4.6.3", rule12: "5.6.3"},
		{name: "4.6.3 raised ban level", setup: setPLWith(map[string]any{"ban": 60}), event: ban(bob, dave),
			rule: "4.6.3", rule12: "5.6.3"},
		{name: "4.6.3 target above sender", event: ban(bob, alice), rule: "4.6.3", rule12: "5.6.3"},
		{name: "4.6.3 v10/v11 creator at 100 cannot ban 100", versions: only("10", "11"), setup: plErin100,
			event: ban(alice, erin), rule: "4.6.3"},
		{name: "v12 5.6.2 ok creator's infinite power bans 100", versions: only("12"), setup: plErin100,
			event: ban(alice, erin)},
	})
}

func TestAllowedKnock(t *testing.T) {
	knock := func(sender, target pdu.UserID) func(r *room) *pdu.Event {
		return func(r *room) *pdu.Event { return r.member(sender, target, "knock", nil) }
	}
	runAuthCases(t, []authCase{
		{name: "4.7.1 ok knock rule", setup: withJoinRule("knock"), event: knock(dave, dave)},
		{name: "4.7.1 ok knock_restricted rule", setup: withJoinRule("knock_restricted"), event: knock(dave, dave)},
		{name: "4.7.1 public rule", event: knock(dave, dave), rule: "4.7.1", rule12: "5.7.1"},
		{name: "4.7.1 invite rule", setup: withJoinRule("invite"), event: knock(dave, dave), rule: "4.7.1", rule12: "5.7.1"},
		{name: "4.7.1 restricted rule", setup: withJoinRule("restricted"), event: knock(dave, dave), rule: "4.7.1", rule12: "5.7.1"},
		{name: "4.7.1 knock_restricted unknown to the version", versions: only("10"), v: withoutKnockRestricted,
			setup: withJoinRule("knock_restricted"), event: knock(dave, dave), rule: "4.7.1"},
		{name: "4.7.2 knock for another user", setup: withJoinRule("knock"), event: knock(carol, dave), rule: "4.7.2", rule12: "5.7.2"},
		{name: "4.7.3 ok after leaving", setup: steps(withJoinRule("knock"), setMember(dave, dave, "knock"), setMember(dave, dave, "leave")),
			event: knock(dave, dave)},
		{name: "4.7.4 already invited", setup: steps(withJoinRule("knock"), setMember(bob, dave, "invite")),
			event: knock(dave, dave), rule: "4.7.4", rule12: "5.7.4"},
		{name: "4.7.4 banned", setup: steps(withJoinRule("knock"), setMember(bob, dave, "ban")),
			event: knock(dave, dave), rule: "4.7.4", rule12: "5.7.4"},
		{name: "4.7.4 already joined", setup: withJoinRule("knock"), event: knock(carol, carol), rule: "4.7.4", rule12: "5.7.4"},
	})
}
