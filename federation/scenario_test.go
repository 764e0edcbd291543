package federation_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/fedtest"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// newFederation starts servers hs1..hsN on the backend.
func newFederation(t *testing.T, backend string, names ...string) *fedtest.Federation {
	t.Helper()
	var opts fedtest.Options
	if backend == storagetest.Postgres {
		opts.Postgres = func(string) string {
			dsn, _ := storagetest.Fresh(t, backend)
			return dsn
		}
	}
	f := fedtest.New(t, opts, names...)
	f.Start(t)
	return f
}

// register makes an account on s; send sends a text message.
func register(t *testing.T, s *fedtest.Server, name string) *mautrix.Client {
	t.Helper()
	return s.Register(t, name)
}

func send(t *testing.T, c *mautrix.Client, room id.RoomID, text string) string {
	t.Helper()
	return fedtest.Send(t, c, room, text)
}

// converged waits until every server has placed every event in ids and
// all servers agree on the room's forward extremities and current state.
func converged(t *testing.T, f *fedtest.Federation, room id.RoomID, ids []string, d time.Duration) map[string]*fedtest.Graph {
	t.Helper()
	var graphs map[string]*fedtest.Graph
	fedtest.Eventually(t, d, "the servers to converge", func() (bool, error) {
		graphs = map[string]*fedtest.Graph{}
		var ref *fedtest.Graph
		var refName string
		for name, s := range f.Servers {
			g := s.Graph(t, string(room))
			graphs[name] = g
			for _, id := range ids {
				if _, ok := g.Prevs[id]; !ok {
					return false, fmt.Errorf("%s has not placed %s", name, id)
				}
			}
			if ref == nil {
				ref, refName = g, name
				continue
			}
			if !slices.Equal(g.Extremities, ref.Extremities) {
				return false, fmt.Errorf("extremities: %s %v, %s %v", name, g.Extremities, refName, ref.Extremities)
			}
			if !mapsEqual(g.State, ref.State) {
				return false, fmt.Errorf("current state differs between %s and %s", name, refName)
			}
		}
		return true, nil
	})
	return graphs
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestScenario is issue 4's scenario: a room hosted on hs1 that users of
// hs2 and hs3 join; a race forks the graph and the next messages merge
// it; hs3 goes offline while hundreds of events are sent and catches up
// when it returns; a server restarted in the middle of its sending
// backlog loses nothing.
func TestScenario(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			scenario(t, backend)
		})
	}
}

func scenario(t *testing.T, backend string) {
	ctx := context.Background()
	f := newFederation(t, backend, "hs1", "hs2", "hs3")
	hs1, hs2, hs3 := f.Servers["hs1"], f.Servers["hs2"], f.Servers["hs3"]
	alice := register(t, hs1, "alice")
	bob := register(t, hs2, "bob")
	charlie := register(t, hs3, "charlie")

	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Federated"})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID
	for _, c := range []*mautrix.Client{bob, charlie} {
		if _, err := c.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1"}}); err != nil {
			t.Fatalf("%s joining through hs1: %v", c.UserID, err)
		}
		var member event.MemberEventContent
		if err := c.StateEvent(ctx, room, event.StateMember, c.UserID.String(), &member); err != nil || member.Membership != event.MembershipJoin {
			t.Fatalf("%s has no membership in its own copy: %v", c.UserID, err)
		}
	}
	hello := send(t, alice, room, "hello from hs1")
	converged(t, f, room, []string{hello}, 30*time.Second)

	// The race: bob and charlie reply at once. Each server stores its
	// own user's reply on top of hello before the other's arrives, so
	// the graph forks. A reply can occasionally arrive first; then the
	// replies are a chain, and the race runs again.
	var forkB, forkC string
	for attempt := 0; attempt < 5 && forkB == ""; attempt++ {
		var wg sync.WaitGroup
		var b, c string
		start := make(chan struct{})
		wg.Go(func() { <-start; b = send(t, bob, room, fmt.Sprint("bob races ", attempt)) })
		wg.Go(func() { <-start; c = send(t, charlie, room, fmt.Sprint("charlie races ", attempt)) })
		close(start)
		wg.Wait()
		graphs := converged(t, f, room, []string{b, c}, 30*time.Second)
		g := graphs["hs3"]
		if slices.Equal(g.Prevs[b], g.Prevs[c]) {
			forkB, forkC = b, c
		}
	}
	if forkB == "" {
		t.Fatal("five races in a row produced no fork")
	}
	// Every copy holds both branches as forward extremities.
	for name, s := range f.Servers {
		g := s.Graph(t, string(room))
		want := []string{forkB, forkC}
		sort.Strings(want)
		if !slices.Equal(g.Extremities, want) {
			t.Fatalf("%s: extremities after the race %v, want both branches %v", name, g.Extremities, want)
		}
	}
	// The next message on each server merges the branches.
	merge := send(t, alice, room, "merging")
	graphs := converged(t, f, room, []string{merge}, 30*time.Second)
	if prevs := graphs["hs1"].Prevs[merge]; !slices.Contains(prevs, forkB) || !slices.Contains(prevs, forkC) {
		t.Fatalf("the merge event's prev_events %v do not reference both branches %s and %s", prevs, forkB, forkC)
	}
	nb := send(t, bob, room, "bob after the merge")
	converged(t, f, room, []string{nb}, 30*time.Second)
	nc := send(t, charlie, room, "charlie after the merge")
	graphs = converged(t, f, room, []string{nc}, 30*time.Second)
	if len(graphs["hs1"].Extremities) != 1 {
		t.Fatalf("after a message on each server there are still %d extremities", len(graphs["hs1"].Extremities))
	}

	// Charlie's server goes offline; alice and bob carry on.
	sinceBefore := syncToken(t, charlie)
	hs3.Stop(t)
	const missed = 300
	var sent []string
	var bodies []string
	for i := range missed {
		c, who := alice, "alice"
		if i%2 == 1 {
			c, who = bob, "bob"
		}
		body := fmt.Sprintf("%s while hs3 is down #%d", who, i)
		sent = append(sent, send(t, c, room, body))
		bodies = append(bodies, body)
	}
	// hs1 and hs2 agree without hs3.
	convergedAmong(t, []*fedtest.Server{hs1, hs2}, room, sent, 60*time.Second)

	start := time.Now()
	hs3.Start(t)
	// Charlie speaks as the server returns; hs1 and hs2 hear from hs3,
	// retry at once, and hs3 fetches what it missed.
	back := send(t, charlie, room, "charlie is back")
	converged(t, f, room, append(sent, back), 120*time.Second)
	t.Logf("hs3 caught up with %d missed events in %v", missed, time.Since(start))

	// Charlie sees the missed messages: an incremental /sync from before
	// the outage, then /messages back from its prev_batch.
	seen := syncAndPaginate(t, charlie, room, sinceBefore)
	for _, b := range bodies {
		if seen[b] != 1 {
			t.Fatalf("charlie saw %q %d times after catching up, want once", b, seen[b])
		}
	}

	// A restart in the middle of a sending backlog loses nothing: hs2 is
	// down while alice sends, hs1 is killed with the events still queued
	// for hs2, then both come back.
	hs2.Stop(t)
	var queued []string
	for i := range 60 {
		queued = append(queued, send(t, alice, room, fmt.Sprint("queued for hs2 #", i)))
	}
	convergedAmong(t, []*fedtest.Server{hs1, hs3}, room, queued, 60*time.Second)
	hs1.Kill(t)
	hs1.Start(t)
	hs2.Start(t)
	wake := send(t, bob, room, "bob is back")
	converged(t, f, room, append(queued, wake), 120*time.Second)
}

// convergedAmong is converged for a subset of the servers.
func convergedAmong(t *testing.T, servers []*fedtest.Server, room id.RoomID, ids []string, d time.Duration) {
	t.Helper()
	fedtest.Eventually(t, d, "the running servers to converge", func() (bool, error) {
		var ref *fedtest.Graph
		for _, s := range servers {
			g := s.Graph(t, string(room))
			for _, id := range ids {
				if _, ok := g.Prevs[id]; !ok {
					return false, fmt.Errorf("%s has not placed %s", s.Name, id)
				}
			}
			if ref != nil && (!slices.Equal(g.Extremities, ref.Extremities) || !mapsEqual(g.State, ref.State)) {
				return false, fmt.Errorf("%s disagrees", s.Name)
			}
			ref = g
		}
		return true, nil
	})
}

func syncToken(t *testing.T, c *mautrix.Client) string {
	t.Helper()
	resp, err := c.SyncRequest(context.Background(), 0, "", "", false, event.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	return resp.NextBatch
}

// syncAndPaginate syncs from since and pages back through the room's
// history to the start of the gap, counting each text body seen.
func syncAndPaginate(t *testing.T, c *mautrix.Client, room id.RoomID, since string) map[string]int {
	t.Helper()
	ctx := context.Background()
	resp, err := c.SyncRequest(ctx, 0, since, "", false, event.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	joined, ok := resp.Rooms.Join[room]
	if !ok {
		t.Fatalf("the sync after the outage has no entry for the room")
	}
	count := func(evs []*event.Event) {
		for _, ev := range evs {
			if ev.Type == event.EventMessage {
				if body, ok := ev.Content.Raw["body"].(string); ok {
					seen[body]++
				}
			}
		}
	}
	count(joined.Timeline.Events)
	if !joined.Timeline.Limited {
		return seen
	}
	from := joined.Timeline.PrevBatch
	for range 100 {
		msgs, err := c.Messages(ctx, room, from, "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		count(msgs.Chunk)
		reachedGap := false
		for _, ev := range msgs.Chunk {
			if body, ok := ev.Content.Raw["body"].(string); ok && strings.HasPrefix(body, "charlie after the merge") {
				reachedGap = true
			}
		}
		if reachedGap || msgs.End == "" || len(msgs.Chunk) == 0 {
			return seen
		}
		from = msgs.End
	}
	return seen
}
