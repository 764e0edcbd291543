//lint:file-ignore SA1019 LiveKit clients still read and write the deprecated DataPacket.kind and UserPacket sender and destination fields, so the relay keeps them in step with the new ones.

package data

import (
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
)

func TestRouting(t *testing.T) {
	tests := []struct {
		name string
		pkt  func(t *testing.T) []byte
		want []string // identities that receive it
	}{
		{"broadcast excludes the sender", func(t *testing.T) []byte { return userPkt(t, "t", "hi") }, []string{"b", "c"}},
		{"destination identities", func(t *testing.T) []byte { return userPkt(t, "t", "hi", withDest("c")) }, []string{"c"}},
		{"destination naming the sender only", func(t *testing.T) []byte { return userPkt(t, "t", "hi", withDest("a")) }, nil},
		{"deprecated user destinations", func(t *testing.T) []byte {
			return userPkt(t, "t", "hi", func(dp *livekit.DataPacket) { dp.GetUser().DestinationIdentities = []string{"b"} })
		}, []string{"b"}},
		{"deprecated destination sids", func(t *testing.T) []byte {
			return userPkt(t, "t", "hi", func(dp *livekit.DataPacket) { dp.GetUser().DestinationSids = []string{"Pc"} })
		}, []string{"c"}},
		{"chat message", func(t *testing.T) []byte {
			return encode(t, &livekit.DataPacket{Value: &livekit.DataPacket_ChatMessage{ChatMessage: &livekit.ChatMessage{Id: "1", Message: "hi"}}})
		}, []string{"b", "c"}},
		{"rpc request to one", func(t *testing.T) []byte {
			return encode(t, &livekit.DataPacket{DestinationIdentities: []string{"b"}, Value: &livekit.DataPacket_RpcRequest{RpcRequest: &livekit.RpcRequest{Id: "r", Method: "m"}}})
		}, []string{"b"}},
		{"stream chunk", func(t *testing.T) []byte {
			return encode(t, &livekit.DataPacket{Value: &livekit.DataPacket_StreamChunk{StreamChunk: &livekit.DataStream_Chunk{StreamId: "s", Content: []byte("x")}}})
		}, []string{"b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRoom(t, Config{}, "a", "b", "c")
			if err := r.Receive("Pa", Reliable, tt.pkt(t), true); err != nil {
				t.Fatal(err)
			}
			r.barrier(t, "a")
			var got []string
			for _, id := range []string{"a", "b", "c"} {
				for _, p := range r.fakes[id].payload() {
					got = append(got, id)
					if p.dp.ParticipantIdentity != "a" || p.dp.ParticipantSid != "Pa" {
						t.Errorf("%s got sender %q/%q, want a/Pa", id, p.dp.ParticipantIdentity, p.dp.ParticipantSid)
					}
					if u := p.dp.GetUser(); u != nil && (u.ParticipantIdentity != "a" || u.ParticipantSid != "Pa") {
						t.Errorf("%s got user sender %q/%q, want a/Pa", id, u.ParticipantIdentity, u.ParticipantSid)
					}
					if p.dp.Kind != livekit.DataPacket_RELIABLE || p.kind != Reliable {
						t.Errorf("%s got kind %v on %v", id, p.dp.Kind, p.kind)
					}
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("delivered to %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name       string
		raw        func(t *testing.T) []byte
		canPublish bool
		want       error
		count      func(Dropped) uint64
	}{
		{"no publish grant", func(t *testing.T) []byte { return userPkt(t, "t", "x") }, false, ErrNotAllowed,
			func(d Dropped) uint64 { return d.NotAllowed }},
		{"too large", func(t *testing.T) []byte { return userPkt(t, "t", strings.Repeat("x", 15*1024)) }, true, ErrTooLarge,
			func(d Dropped) uint64 { return d.TooLarge }},
		{"not protobuf", func(*testing.T) []byte { return []byte{0xff, 0xff, 0xff, 0x01} }, true, ErrMalformed,
			func(d Dropped) uint64 { return d.Malformed }},
		{"empty packet", func(*testing.T) []byte { return nil }, true, ErrMalformed,
			func(d Dropped) uint64 { return d.Malformed }},
		{"speaker update", func(t *testing.T) []byte {
			return encode(t, &livekit.DataPacket{Value: &livekit.DataPacket_Speaker{Speaker: &livekit.ActiveSpeakerUpdate{}}})
		}, true, ErrNotAllowed, func(d Dropped) uint64 { return d.NotAllowed }},
		{"transcription", func(t *testing.T) []byte {
			return encode(t, &livekit.DataPacket{Value: &livekit.DataPacket_Transcription{Transcription: &livekit.Transcription{}}})
		}, true, ErrNotAllowed, func(d Dropped) uint64 { return d.NotAllowed }},
		{"forged snapshot", func(t *testing.T) []byte { return userPkt(t, "plexus.world.snapshot", `{"entries":{},"v":1}`) }, true, ErrNotAllowed,
			func(d Dropped) uint64 { return d.NotAllowed }},
		{"forged delta", func(t *testing.T) []byte { return userPkt(t, "plexus.world.delta", `{"entries":{},"v":1}`) }, true, ErrNotAllowed,
			func(d Dropped) uint64 { return d.NotAllowed }},
		{"bad world message", func(t *testing.T) []byte { return userPkt(t, "plexus.world", `{"set":`) }, true, ErrMalformed,
			func(d Dropped) uint64 { return d.Malformed }},
		{"metrics are for the server", func(t *testing.T) []byte {
			return encode(t, &livekit.DataPacket{Value: &livekit.DataPacket_Metrics{Metrics: &livekit.MetricsBatch{}}})
		}, true, nil, func(d Dropped) uint64 { return d.Ignored }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRoom(t, Config{}, "a", "b")
			err := r.Receive("Pa", Reliable, tt.raw(t), tt.canPublish)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Receive = %v, want %v", err, tt.want)
			}
			if n := tt.count(r.Stats().Dropped); n != 1 {
				t.Errorf("counted %d, want 1", n)
			}
			// Nothing forwarded, and the sender and the room still work.
			r.barrier(t, "a")
			r.barrier(t, "b")
			if got := r.fakes["b"].payload(); len(got) != 0 {
				t.Errorf("b received %v", got)
			}
		})
	}
	t.Run("unknown sender", func(t *testing.T) {
		r := newTestRoom(t, Config{}, "a")
		if err := r.Receive("Pz", Reliable, userPkt(t, "t", "x"), true); !errors.Is(err, ErrUnknownSender) {
			t.Fatalf("Receive = %v", err)
		}
	})
}

func TestRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newTestRoom(t, Config{Rate: 10, Burst: 3, Now: func() time.Time { return now }}, "a", "b")
	pkt := userPkt(t, "t", "x")
	for i := range 3 {
		if err := r.Receive("Pa", Reliable, pkt, true); err != nil {
			t.Fatalf("packet %d within the burst: %v", i, err)
		}
	}
	if err := r.Receive("Pa", Reliable, pkt, true); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("over the burst: %v", err)
	}
	if err := r.Receive("Pb", Reliable, pkt, true); err != nil {
		t.Fatalf("another sender is limited too: %v", err)
	}
	now = now.Add(100 * time.Millisecond) // one token at 10/s
	if err := r.Receive("Pa", Reliable, pkt, true); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	if err := r.Receive("Pa", Reliable, pkt, true); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("second after refill: %v", err)
	}
	if d := r.Stats().Dropped.RateLimited; d != 2 {
		t.Errorf("counted %d, want 2", d)
	}
	f := r.fakes["b"]
	waitFor(t, "b gets a's 4 packets", func() bool { return len(f.packets()) == 4 }, f)
}

// TestWorldRelay: each applied change reaches everyone but its sender
// as a delta from the server, reduced to the part that won and stamped;
// a stale one reaches no one.
func TestWorldRelay(t *testing.T) {
	now := time.UnixMilli(50_000)
	r := newTestRoom(t, Config{Now: func() time.Time { return now }}, "a", "b", "c")
	steps := []struct {
		from, payload string
		opts          []pktOpt
		delta         string // "" for nothing
	}{
		{"a", `{"ts":100, "set":{"x":1}}`, nil, `{"entries":{"x":{"by":"a","ts":100,"value":1}},"v":1}`},
		{"b", `{"ts":90,"set":{"x":2,"y":{"b":2, "a":1}}}`, nil, `{"entries":{"y":{"by":"b","ts":90,"value":{"a":1,"b":2}}},"v":1}`}, // reduced, canonical
		{"b", `{"ts":80,"set":{"x":3}}`, nil, ""},                                                                              // stale: nothing
		{"c", `{"set":{"z":1}}`, nil, `{"entries":{"z":{"by":"c","ts":50000,"value":1}},"v":1}`},                               // stamped by the server
		{"c", `{"ts":99999999,"set":{"z":2}}`, nil, `{"entries":{"z":{"by":"c","ts":50000,"value":2}},"v":1}`},                 // clamped
		{"a", `{"ts":200,"del":["y"]}`, []pktOpt{withDest("c")}, `{"entries":{"y":{"by":"a","deleted":true,"ts":200}},"v":1}`}, // to all
		{"b", `{"ts":300,"set":{"k":1},"del":["x"],"at":{"x":250}}`, nil, `{"entries":{"k":{"by":"b","ts":300,"value":1},"x":{"by":"b","deleted":true,"ts":250}},"v":1}`},
	}
	seen := map[string]int{}
	for i, st := range steps {
		if err := r.Receive(sidOf(st.from), Reliable, userPkt(t, "plexus.world", st.payload, st.opts...), true); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		// A delta is written before any packet queued after its change.
		r.barrier(t, st.from)
		for _, id := range []string{"a", "b", "c"} {
			got := r.fakes[id].deltas(t)[seen[id]:]
			seen[id] += len(got)
			var want []string
			if st.delta != "" && id != st.from {
				want = []string{st.delta}
			}
			if !slices.Equal(got, want) {
				t.Errorf("step %d: %s received\n%q\nwant\n%q", i, id, got, want)
			}
		}
	}
	snap, ver := r.Snapshot()
	if wantSnap := `{"entries":{"k":{"by":"b","ts":300,"value":1},"z":{"by":"c","ts":50000,"value":2}},"v":1}`; string(snap) != wantSnap || ver != 6 {
		t.Errorf("snapshot %s v%d, want %s v6", snap, ver, wantSnap)
	}
	if st := r.Stats(); st.Dropped.Stale != 1 || st.WorldVersion != 6 || st.WorldEntries != 2 || st.WorldBytes != len(snap) ||
		st.Deltas != 12 || st.DeltaEntries != 14 {
		t.Errorf("stats %+v", st)
	}
}

func TestWorldFull(t *testing.T) {
	r := newTestRoom(t, Config{MaxWorldBytes: 100}, "a", "b")
	err := r.Receive("Pa", Reliable, userPkt(t, "plexus.world", `{"ts":1,"set":{"k":"`+strings.Repeat("x", 100)+`"}}`), true)
	if !errors.Is(err, ErrWorldFull) {
		t.Fatalf("Receive = %v, want ErrWorldFull", err)
	}
	if err := r.Receive("Pa", Reliable, userPkt(t, "plexus.world", `{"ts":1,"set":{"k":1}}`), true); err != nil {
		t.Fatalf("a small set after a refused one: %v", err)
	}
	r.barrier(t, "a")
	if got := r.fakes["b"].deltas(t); len(got) != 1 {
		t.Errorf("b received %q", got)
	}
	if d := r.Stats().Dropped.WorldFull; d != 1 {
		t.Errorf("counted %d", d)
	}
}

func TestLateJoinerGetsSnapshotFirst(t *testing.T) {
	r := newTestRoom(t, Config{}, "a", "b")
	if err := r.Receive("Pa", Reliable, userPkt(t, "plexus.world", `{"ts":1,"set":{"door":"open"}}`), true); err != nil {
		t.Fatal(err)
	}
	r.barrier(t, "a")
	if ts := r.fakes["b"].topics(); ts[0] != "plexus.world.delta" {
		t.Errorf("b, present from the start, got %q: a snapshot of an empty world?", ts)
	}
	snap, _ := r.Snapshot()

	// c's channels are not open yet: the snapshot waits at the head of its
	// queue and everything else waits behind it.
	c := newFake()
	c.closed.Store(true)
	r.fakes["c"] = c
	r.Join("Pc", "c", c)
	if err := r.Receive("Pa", Lossy, userPkt(t, "plexus.world", `{"ts":2,"set":{"door":"shut"}}`), true); err != nil {
		t.Fatal(err)
	}
	if err := r.Receive("Pa", Reliable, userPkt(t, "chat", "hello"), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b gets both", func() bool { return len(r.fakes["b"].payload()) == 3 }, r.fakes["b"])
	if n := len(c.packets()); n != 0 {
		t.Fatalf("c received %d before its channels opened", n)
	}
	c.closed.Store(false)
	waitFor(t, "c gets three", func() bool { return len(c.packets()) == 3 }, c)
	got := c.packets()
	first := got[0]
	if u := first.dp.GetUser(); first.kind != Reliable || u.GetTopic() != "plexus.world.snapshot" || string(u.Payload) != string(snap) ||
		first.dp.ParticipantIdentity != "" || u.ParticipantIdentity != "" {
		t.Errorf("first packet to c: %v %v", first.kind, first.dp)
	}
	if ts := c.topics(); !slices.Equal(ts, []string{"plexus.world.snapshot", "chat", "plexus.world.delta"}) {
		t.Errorf("c received %q", ts)
	}
	if d := c.deltas(t); got[2].kind != Lossy || len(d) != 1 || d[0] != `{"entries":{"door":{"by":"a","ts":2,"value":"shut"}},"v":1}` {
		t.Errorf("live update on %v: %q", got[2].kind, d)
	}
	if w, _ := r.Snapshot(); string(c.world(t)) != string(w) {
		t.Errorf("c's world %s, room's %s", c.world(t), w)
	}
}

// TestSlowRecipient: a recipient whose channels are backed up gets its
// lossy stream coalesced and bounded while the others get everything
// promptly; once it drains it converges on the same world.
func TestSlowRecipient(t *testing.T) {
	const n = 500
	r := newTestRoom(t, Config{QueueLen: 16}, "a", "fast")
	slow := newFake()
	slow.buffered[Lossy].Store(2 << 20)
	r.fakes["slow"] = slow
	r.Join("Pslow", "slow", slow)

	fast := r.fakes["fast"]
	for i := range n {
		// Three streams: world poses, a user topic, and distinct topics
		// (nothing to coalesce with: those overflow and drop).
		w := `{"ts":` + itoa(i+1) + `,"set":{"pose/` + itoa(i%3) + `":` + itoa(i) + `}}`
		if err := r.Receive("Pa", Lossy, userPkt(t, "plexus.world", w), true); err != nil {
			t.Fatal(err)
		}
		if err := r.Receive("Pa", Lossy, userPkt(t, "cursor", itoa(i)), true); err != nil {
			t.Fatal(err)
		}
		if err := r.Receive("Pa", Lossy, userPkt(t, "t"+itoa(i), "x"), true); err != nil {
			t.Fatal(err)
		}
		// In step with the fast peer, so that it has nothing to coalesce:
		// it gets every message, however far behind the slow one is.
		waitFor(t, "fast gets every message", func() bool { return len(fast.packets()) == 3*(i+1) }, fast)
	}
	if got := len(slow.packets()); got != 0 {
		t.Fatalf("slow peer written to while backed up: %d", got)
	}
	st := r.Stats()
	if st.Coalesced < n || st.Dropped.LossyOverflow == 0 {
		t.Errorf("coalesced %d, overflowed %d", st.Coalesced, st.Dropped.LossyOverflow)
	}

	slow.buffered[Lossy].Store(0)
	waitFor(t, "slow drains", func() bool {
		ts := slow.topics()
		return len(ts) > 0 && slices.Contains(ts, "plexus.world.delta") && slices.Contains(ts, "cursor")
	}, slow)
	r.barrier(t, "a")
	if got := len(slow.payload()); got > 16+1 {
		t.Errorf("slow peer got %d messages, more than its queue and one delta", got)
	}
	// The newest cursor survived coalescing.
	var cursor string
	for _, p := range slow.packets() {
		if p.dp.GetUser().GetTopic() == "cursor" {
			cursor = string(p.dp.GetUser().Payload)
		}
	}
	if cursor != itoa(n-1) {
		t.Errorf("slow peer's last cursor %q, want %d", cursor, n-1)
	}
	// The world came as one delta holding the latest of each key, not
	// a backlog; it gives the room's world.
	want := `{"entries":{"pose/0":{"by":"a","ts":499,"value":498},"pose/1":{"by":"a","ts":500,"value":499},"pose/2":{"by":"a","ts":498,"value":497}},"v":1}`
	if d := slow.deltas(t); len(d) != 1 || d[0] != want {
		t.Errorf("slow peer's deltas %q, want [%s]", d, want)
	}
	if snap, _ := r.Snapshot(); string(slow.world(t)) != string(snap) {
		t.Errorf("slow peer's world\n%s\nroom's\n%s", slow.world(t), snap)
	}
}

func TestReliableOverflow(t *testing.T) {
	overflowed := make(chan string, 4)
	var r *testRoom
	r = newTestRoom(t, Config{QueueLen: 4, OnReliableOverflow: func(sid string) {
		r.Leave(sid) // the core disconnects a hopeless peer; must not deadlock
		overflowed <- sid
	}}, "a", "fast")
	slow := newFake()
	slow.buffered[Reliable].Store(2 << 20)
	r.fakes["slow"] = slow
	r.Join("Pslow", "slow", slow)
	for i := range 10 {
		if err := r.Receive("Pa", Reliable, userPkt(t, "chat", itoa(i)), true); err != nil {
			t.Fatal(err)
		}
		fast := r.fakes["fast"]
		waitFor(t, "fast gets every message", func() bool { return len(fast.packets()) == i+1 }, fast)
	}
	select {
	case sid := <-overflowed:
		if sid != "Pslow" {
			t.Errorf("overflow reported for %q", sid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no overflow callback")
	}
	if d := r.Stats().Dropped.ReliableOverflow; d != 6 {
		t.Errorf("dropped %d, want 6", d)
	}
	delete(r.fakes, "slow")
	r.barrier(t, "a")
	if n := len(r.fakes["fast"].payload()); n != 10 {
		t.Errorf("fast got %d, want 10", n)
	}
	if n := r.Stats().Recipients; n != 2 {
		t.Errorf("%d recipients after Leave", n)
	}
}

func TestLeaveJoinClose(t *testing.T) {
	before := runtime.NumGoroutine()
	r := NewRoom(Config{}, nil)
	a, b := newFake(), newFake()
	r.Join("Pa", "a", a)
	r.Join("Pb", "b", b)
	b2 := newFake()
	r.Join("Pb", "b", b2) // a rejoin replaces
	if err := r.Receive("Pa", Reliable, userPkt(t, "t", "1"), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b2 gets it", func() bool { return len(b2.packets()) == 1 }, b2)
	if len(b.packets()) != 0 || r.Stats().Recipients != 2 {
		t.Error("the replaced recipient still receives")
	}
	r.Leave("Pb")
	r.Leave("Pb")
	if err := r.Receive("Pb", Reliable, userPkt(t, "t", "1"), true); !errors.Is(err, ErrUnknownSender) {
		t.Errorf("Receive from a departed sender: %v", err)
	}
	// A writer polling a backed-up channel stops on Close.
	a.buffered[Reliable].Store(2 << 20)
	r.Join("Pc", "c", newFake())
	if err := r.Receive("Pc", Reliable, userPkt(t, "t", "1"), true); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r.Close()
	r.Join("Pd", "d", newFake())
	if err := r.Receive("Pa", Reliable, userPkt(t, "t", "1"), true); !errors.Is(err, ErrClosed) {
		t.Errorf("Receive after Close: %v", err)
	}
	waitFor(t, "writers gone", func() bool { return runtime.NumGoroutine() <= before })
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestReceiveAllocs: relaying allocates per packet, not per recipient
// (the packet is encoded once, queued entries share its bytes, and a
// superseded pose update is replaced in place).
func TestReceiveAllocs(t *testing.T) {
	allocs := func(recipients int) float64 {
		r := newTestRoom(t, Config{}, "a")
		for i := range recipients {
			f := r.join("r" + itoa(i))
			f.buffered[Lossy].Store(2 << 20) // backed up: entries stay queued
		}
		raw := userPkt(t, "plexus.world", `{"ts":5,"set":{"avatar/a":{"p":[1,2,3]}}}`)
		return testing.AllocsPerRun(200, func() {
			if err := r.Receive("Pa", Lossy, raw, true); err != nil {
				t.Fatal(err)
			}
		})
	}
	few, many := allocs(2), allocs(49)
	if many > few+2 {
		t.Errorf("%.0f allocations per packet to 49 recipients, %.0f to 2", many, few)
	}
	t.Logf("%.0f allocations per packet to 49 recipients, %.0f to 2", many, few)
}

// TestJoinDuringUpdates: whenever a peer joins, its snapshot plus the
// live changes after it add up to the room's world, with none missed.
func TestJoinDuringUpdates(t *testing.T) {
	r := newTestRoom(t, Config{}, "a")
	done := make(chan error, 1)
	go func() {
		for i := range 300 {
			kind := Reliable
			if i%2 == 1 {
				kind = Lossy
			}
			w := `{"ts":` + itoa(i+1) + `,"set":{"k` + itoa(i%40) + `":` + itoa(i) + `}}`
			if err := r.Receive("Pa", kind, userPkt(t, "plexus.world", w), true); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var joiners []*fakeSender
	for i := range 20 {
		f := newFake()
		joiners = append(joiners, f)
		r.Join("Pj"+itoa(i), "j"+itoa(i), f)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, f := range joiners {
		r.fakes["j"+itoa(i)] = f
	}
	r.barrier(t, "a")
	want, _ := r.Snapshot()
	for i, f := range joiners {
		if got := f.world(t); string(got) != string(want) {
			t.Errorf("joiner %d ends with\n%s\nroom has\n%s", i, got, want)
		}
	}
}
