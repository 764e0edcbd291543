package stateres

import (
	"slices"
	"testing"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// TestPowerSortWholeAuthChain: step 1 takes "the events in the auth chain
// of P which also belong to the full conflicted set", however they are
// reached, and orders them by the auth DAG itself.
//
// Bob joins (J1) and then changes the power levels (PL_B, citing J1). On
// one fork Alice kicks Carol (K, citing PL_B); on the other Bob changes his
// display name (J2). J1 is conflicted (J2 replaces it on one fork) and K
// reaches it only through PL_B, which is unconflicted and so not in the
// full conflicted set. J1 is still in X, and must come before K; Carol's
// join (CJ, cited by K) is there too. Bob (100 by PL0) outranks Carol, so
// the order is J1, CJ, K. An implementation that only follows edges
// between full conflicted set members would leave J1 out of X.
//
// In v2.1 PL_B lies on the path K -> PL_B -> J1 between two conflicted
// events, so the conflicted state subgraph adds it, and as a power event
// it is sorted too: J1, PL_B, CJ, K.
func TestPowerSortWholeAuthChain(t *testing.T) {
	for _, vid := range versions {
		t.Run("v"+vid, func(t *testing.T) {
			r, f := start(t, vid, map[pdu.UserID]int{bob: 100}, nil, carol)
			cj := f.state[memberKey(carol)]
			j1 := f.join(bob)
			plB := f.powerLevels(bob, map[pdu.UserID]int{bob: 100, dave: 10}, nil)
			a, b := f, f.branch()
			k := a.member(alice, carol, "leave")
			j2 := b.send(ev{sender: bob, typ: pdu.TypeMember, stateKey: string(bob), content: map[string]any{"membership": "join", "displayname": "Bob"}})

			states := []StateMap{a.state, b.state}
			in := &Input{Version: r.v, States: states, Events: r.lookup}
			res := newResolver(in, r.v.StateRes == pdu.StateResV2_1, 0)
			unconflicted, conflicted := separate(states)
			full, err := res.fullConflictedSet(unconflicted, conflicted)
			if err != nil {
				t.Fatal(err)
			}
			sorted, err := res.powerSort(full)
			if err != nil {
				t.Fatal(err)
			}
			want := []pdu.EventID{j1.ID(), cj, k.ID()}
			if res.v21 {
				want = []pdu.EventID{j1.ID(), plB.ID(), cj, k.ID()}
			}
			if got := idsOf(res, sorted); !slices.Equal(got, want) {
				t.Errorf("step 1 order = %v, want %v", got, want)
			}

			got := r.mustResolve(a, b)
			if got[memberKey(carol)] != k.ID() || got[memberKey(bob)] != j2.ID() {
				t.Errorf("Carol = %s, Bob = %s; want the kick and J2", got[memberKey(carol)], got[memberKey(bob)])
			}
		})
	}
}

// TestMainlineSort: mainline position first (greater first, ∞ greatest),
// then origin_server_ts, then event ID. The timestamps here run against
// the positions, so only a correct position puts the events in order.
func TestMainlineSort(t *testing.T) {
	for _, vid := range versions {
		t.Run("v"+vid, func(t *testing.T) {
			r, f := start(t, vid, map[pdu.UserID]int{bob: 50}, nil, bob)
			aliceJoin := f.state[memberKey(alice)]
			t1 := f.topic(bob, "1", 8_000_000) // cites PL1: position 3
			f.powerLevels(alice, map[pdu.UserID]int{bob: 51}, nil)
			x := f.branch()
			x.powerLevels(alice, map[pdu.UserID]int{bob: 52}, nil) // off the mainline
			tx := x.topic(bob, "x", 7_000_000)                     // PLx -> PL2: position 2
			f.powerLevels(alice, map[pdu.UserID]int{bob: 53}, nil)
			pl4 := f.powerLevels(alice, map[pdu.UserID]int{bob: 54}, nil)
			t4 := f.topic(bob, "4", 1_000_000) // cites PL4: position 0
			// No power levels in its auth events: position ∞.
			t0 := f.send(ev{sender: bob, typ: "m.room.topic", content: map[string]any{"topic": "0"}, ts: 9_000_000,
				auth: []pdu.EventID{aliceJoin}})
			// Same position as t4 and the same timestamp: the event ID
			// breaks the tie.
			t4b := f.topic(bob, "4b", 1_000_000)
			tie := []pdu.EventID{t4.ID(), t4b.ID()}
			slices.Sort(tie)

			res := newResolver(&Input{Version: r.v, Events: r.lookup}, false, 0)
			all := indexOf(t, res, t4, tx, t1, t0, t4b, pl4)
			for _, i := range all {
				if err := res.g.walk([]int32{i}, func(int32) bool { return true }); err != nil {
					t.Fatal(err)
				}
			}
			got := idsOf(res, res.mainlineSort(all[:5], all[5]))
			want := []pdu.EventID{t0.ID(), t1.ID(), tx.ID(), tie[0], tie[1]}
			if !slices.Equal(got, want) {
				t.Errorf("order = %v, want %v", got, want)
			}

			// Without a power levels event every position is ∞ and the
			// timestamps alone decide.
			got = idsOf(res, res.mainlineSort(all[:5], -1))
			want = []pdu.EventID{tie[0], tie[1], tx.ID(), t1.ID(), t0.ID()}
			if !slices.Equal(got, want) {
				t.Errorf("order without mainline = %v, want %v", got, want)
			}
		})
	}
}
