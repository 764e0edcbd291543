package stateres

import (
	"testing"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// TestResolveRejectedAuthEvents: an auth event that was rejected is never
// used as the fallback for a key missing from the partial state (v2 state
// resolution, "Iterative auth checks" and "Rejected events").
//
// Bob (50, enough to ban) bans Carol on one fork; Alice sets the topic on
// the other, where Carol is still joined. The ban is a power event and is
// checked in step 2. Bob's join is unconflicted, so in v2.1, which starts
// from an empty state, the auth rules find Bob's membership only through
// the ban's auth events; in v2 it is in the unconflicted state too, where
// a rejected event is likewise treated as absent. When Bob's join is
// reported rejected, Bob is not a member as far as the check can tell and
// the ban fails; Carol's join, replayed in step 4, stands. Otherwise the
// ban passes and Carol's join then fails against it.
func TestResolveRejectedAuthEvents(t *testing.T) {
	for _, vid := range versions {
		for _, rejectBob := range []bool{false, true} {
			name := "v" + vid + "/accepted"
			if rejectBob {
				name = "v" + vid + "/rejected"
			}
			t.Run(name, func(t *testing.T) {
				r, f := start(t, vid, map[pdu.UserID]int{bob: 50}, nil, bob, carol)
				bobJoin := f.state[memberKey(bob)]
				carolJoin := f.state[memberKey(carol)]
				a, b := f, f.branch()
				ban := a.member(bob, carol, "ban")
				b.topic(alice, "still here", 0)

				in := Input{Version: r.v, States: []StateMap{a.state, b.state}, Events: r.lookup}
				asked := false
				if rejectBob {
					in.Rejected = func(id pdu.EventID) bool {
						asked = asked || id == bobJoin
						return id == bobJoin
					}
				}
				got, err := Resolve(in)
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				want := ban.ID()
				if rejectBob {
					want = carolJoin
					if !asked {
						t.Error("Rejected was never asked about Bob's join")
					}
				}
				if got[memberKey(carol)] != want {
					t.Errorf("Carol's membership = %s, want %s", got[memberKey(carol)], want)
				}
				// Step 5 still puts the unconflicted state back as it was.
				if got[memberKey(bob)] != bobJoin {
					t.Errorf("Bob's membership = %s, want his (unconflicted) join", got[memberKey(bob)])
				}
			})
		}
	}
}

// TestResolveSkipsRejectedReplays: an event of the full conflicted set
// that Input.Rejected reports never enters the state, even where the auth
// rules would allow it now.
func TestResolveSkipsRejectedReplays(t *testing.T) {
	for _, vid := range versions {
		t.Run("v"+vid, func(t *testing.T) {
			r, f := start(t, vid, map[pdu.UserID]int{bob: 50}, nil, bob)
			a, b := f, f.branch()
			// Both cite the same power levels; the rejected topic is the
			// later, so it would be applied last and win if it were used.
			good := b.topic(alice, "fine", 0)
			bad := a.topic(bob, "rejected", 0)
			if bad.OriginServerTS() < good.OriginServerTS() {
				t.Fatal("fixture: the rejected topic must sort last")
			}
			got, err := Resolve(Input{Version: r.v, States: []StateMap{a.state, b.state}, Events: r.lookup,
				Rejected: func(id pdu.EventID) bool { return id == bad.ID() }})
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got[topicKey] != good.ID() {
				t.Errorf("topic = %s, want %s", got[topicKey], good.ID())
			}
		})
	}
}
