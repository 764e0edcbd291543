package federation_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/fedtest"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// TestPartialStateJoin: bob on hs2 joins a room of 50 members hosted on
// hs1 (five of them on hs3) with a partial state (send_join with
// omit_members), and with --federation-partial-joins=off the full way.
// Either way bob sends and receives at once, /members ends up equal to
// hs1's, a message an hs3 member sends right after the join is neither
// lost nor rejected, and the three copies converge.
func TestPartialStateJoin(t *testing.T) {
	for _, backend := range storagetest.Backends {
		for _, mode := range []string{"partial", "full"} {
			t.Run(backend+"/"+mode, func(t *testing.T) {
				partialJoin(t, backend, mode == "partial")
			})
		}
	}
}

func partialJoin(t *testing.T, backend string, partial bool) {
	ctx := context.Background()
	opts := fedtest.Options{Args: []string{"--federation-partial-joins=off"}}
	if partial {
		opts.Args = nil // on by default
	}
	if backend == storagetest.Postgres {
		opts.Postgres = func(string) string {
			dsn, _ := storagetest.Fresh(t, backend)
			return dsn
		}
	}
	f := fedtest.New(t, opts, "hs1", "hs2", "hs3")
	f.Start(t)
	hs1, hs2, hs3 := f.Servers["hs1"], f.Servers["hs2"], f.Servers["hs3"]
	alice := register(t, hs1, "alice")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Fifty"})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID

	// 45 members on hs1 (alice included) and 5 on hs3, who join
	// through hs1 (hs3's first join is itself partial by default).
	joinAll := func(s *fedtest.Server, prefix string, n int) []*mautrix.Client {
		var out []*mautrix.Client
		for i := range n {
			c := register(t, s, fmt.Sprintf("%s%d", prefix, i))
			if _, err := c.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1"}}); err != nil {
				t.Fatalf("%s joining: %v", c.UserID, err)
			}
			out = append(out, c)
		}
		return out
	}
	joinAll(hs1, "member", 44)
	hs3Members := joinAll(hs3, "far", 5)
	charlie := hs3Members[0]
	// hs1 and hs3 know all 50 before bob comes, so hs3's message during
	// bob's join goes to hs2 as soon as hs3 hears of bob.
	var want map[string]bool
	fedtest.Eventually(t, 60*time.Second, "hs1 and hs3 to know every member", func() (bool, error) {
		want = joinedOn(t, alice, room)
		got := joinedOn(t, charlie, room)
		return len(want) == 50 && maps.Equal(got, want), fmt.Errorf("hs1 knows %d members, hs3 %d", len(want), len(got))
	})

	bob := register(t, hs2, "bob")
	if _, err := bob.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1"}}); err != nil {
		t.Fatalf("bob joining through hs1: %v", err)
	}
	// hs1 relays bob's join to hs3 as it takes it, before it answers
	// hs2; an event of hs3's from before would not be sent to hs2 (hs2
	// would fetch it only when a later event cites it).
	fedtest.Eventually(t, 30*time.Second, "hs3 to know bob's join", func() (bool, error) {
		var m event.MemberEventContent
		err := charlie.StateEvent(ctx, room, event.StateMember, bob.UserID.String(), &m)
		return err == nil && m.Membership == event.MembershipJoin, err
	})
	// Right after the join: hs2 is probably still fetching the members.
	wasPartial := hs2.PartialState(t, string(room))
	var wg sync.WaitGroup
	var during string
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := charlie.SendText(ctx, room, "from hs3 during bob's join")
		if err != nil {
			t.Errorf("charlie sending: %v", err)
			return
		}
		during = resp.EventID.String()
	}()
	fromBob := send(t, bob, room, "bob, at once")
	fromAlice := send(t, alice, room, "welcome bob")
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("partial-state join: %v; hs2 partial right after the join: %v", partial, wasPartial)
	if !partial && wasPartial {
		t.Fatal("a full-state join left the room partial")
	}

	// Everyone gets everything; hs2 rejects nothing.
	graphs := converged(t, f, room, []string{fromBob, fromAlice, during}, 60*time.Second)
	for name, g := range graphs {
		for _, ev := range []string{fromBob, fromAlice, during} {
			if r, bad := g.Rejected[ev]; bad || g.SoftFailed[ev] {
				t.Errorf("%s: %s rejected (%q) or soft-failed", name, ev, r)
			}
		}
	}
	if !slices.Equal(eventIDsSeen(t, bob, room), sortedOf(fromBob, fromAlice, during)) {
		t.Errorf("bob's timeline lacks messages")
	}

	// /members and /joined_members on hs2 end up as hs1's (they wait for
	// the members while the state is partial).
	want[bob.UserID.String()] = true
	fedtest.Eventually(t, 60*time.Second, "hs2's member list to equal hs1's", func() (bool, error) {
		got := joinedOn(t, bob, room)
		if !maps.Equal(got, want) {
			return false, fmt.Errorf("hs2 lists %d joined members, hs1 %d", len(got), len(want))
		}
		resp, err := bob.Members(ctx, room)
		if err != nil {
			return false, err
		}
		members := map[string]bool{}
		for _, ev := range resp.Chunk {
			if ev.Content.AsMember().Membership == event.MembershipJoin {
				members[*ev.StateKey] = true
			}
		}
		return maps.Equal(members, want), fmt.Errorf("/members lists %d joined", len(members))
	})
	if hs2.PartialState(t, string(room)) {
		t.Fatal("hs2's copy is still partial with its members known")
	}
	if got := hs2.HasLog("partial-state room completed"); got != partial {
		t.Errorf("hs2 logged a partial-state completion: %v, want %v", got, partial)
	}
	// After completion hs2 takes part as any server: a member of hs1
	// who never spoke before is accepted there.
	quiet := register(t, hs1, "quiet")
	if _, err := quiet.JoinRoom(ctx, room.String(), nil); err != nil {
		t.Fatal(err)
	}
	last := send(t, quiet, room, "first words")
	converged(t, f, room, []string{last}, 60*time.Second)
}

// joinedOn lists a room's joined members as a client's server knows them.
func joinedOn(t *testing.T, c *mautrix.Client, room id.RoomID) map[string]bool {
	t.Helper()
	resp, err := c.JoinedMembers(context.Background(), room)
	if err != nil {
		t.Fatalf("%s: joined_members: %v", c.UserID, err)
	}
	out := map[string]bool{}
	for u := range resp.Joined {
		out[u.String()] = true
	}
	return out
}

// eventIDsSeen lists the m.room.message events a client's /messages
// returns for the room, newest first up to 100, sorted.
func eventIDsSeen(t *testing.T, c *mautrix.Client, room id.RoomID) []string {
	t.Helper()
	resp, err := c.Messages(context.Background(), room, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		t.Fatalf("%s: messages: %v", c.UserID, err)
	}
	var out []string
	for _, ev := range resp.Chunk {
		if ev.Type == event.EventMessage {
			out = append(out, ev.ID.String())
		}
	}
	slices.Sort(out)
	return out
}

func sortedOf(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}
