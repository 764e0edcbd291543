//lint:file-ignore SA1019 LiveKit clients still read and write the deprecated DataPacket.kind and UserPacket sender and destination fields, so the relay keeps them in step with the new ones.

package data

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-chat/plexus/internal/latency"
)

func TestPendingPut(t *testing.T) {
	d := pending{}
	steps := []struct {
		c              change
		replaced, kept bool
		want           string // the pending change's value after the step
	}{
		{change{value: json.RawMessage(`1`), ts: 10, by: "b"}, false, true, "1"},
		{change{value: json.RawMessage(`2`), ts: 9, by: "z"}, false, false, "1"},  // older: dropped though queued later
		{change{value: json.RawMessage(`3`), ts: 10, by: "a"}, false, false, "1"}, // tie: the greater identity wins
		{change{value: json.RawMessage(`4`), ts: 10, by: "c"}, true, true, "4"},
		{change{value: json.RawMessage(`5`), ts: 10, by: "c"}, true, true, "5"}, // equal in both: the later one
		{change{ts: 11, by: "a", deleted: true}, true, true, ""},
	}
	for i, st := range steps {
		replaced, kept := d.put("k", st.c)
		if replaced != st.replaced || kept != st.kept || string(d["k"].value) != st.want || len(d) != 1 {
			t.Errorf("step %d: replaced %v kept %v, pending %+v", i, replaced, kept, d["k"])
		}
	}
}

// TestDeltaBatch: while a recipient's channels are backed up, the changes
// of every sender merge per key, last writer wins; once they drain it
// gets one delta per channel with the latest of each key, not a backlog.
func TestDeltaBatch(t *testing.T) {
	r := newTestRoom(t, Config{}, "a", "c")
	b := newFake()
	b.buffered[Reliable].Store(2 << 20)
	b.buffered[Lossy].Store(2 << 20)
	r.fakes["b"] = b
	r.Join("Pb", "b", b)
	send := func(from string, kind Kind, payload string) {
		t.Helper()
		if err := r.Receive(sidOf(from), kind, userPkt(t, "plexus.world", payload), true); err != nil {
			t.Fatal(err)
		}
	}
	send("a", Lossy, `{"ts":10,"set":{"pose/a":1,"door":"open"}}`)
	send("c", Lossy, `{"ts":11,"set":{"pose/c":1}}`)
	send("a", Lossy, `{"ts":12,"set":{"pose/a":2}}`)
	send("c", Lossy, `{"ts":12,"set":{"pose/a":3}}`)  // same stamp: "c" > "a" wins
	send("a", Reliable, `{"ts":13,"del":["door"]}`)   // retires the pending lossy "open"
	send("c", Reliable, `{"ts":14,"set":{"lamp":1}}`) // reliable ...
	send("a", Lossy, `{"ts":15,"set":{"lamp":2}}`)    // ... stays though a newer lossy change follows
	send("c", Lossy, `{"ts":16,"set":{"pose/c":2}}`)
	if n := len(b.packets()); n != 0 {
		t.Fatalf("backed-up recipient written to: %d", n)
	}
	b.buffered[Reliable].Store(0)
	b.buffered[Lossy].Store(0)
	waitFor(t, "b gets two deltas", func() bool { return len(b.packets()) == 2 }, b)
	got := b.packets()
	want := []struct {
		kind  Kind
		delta string
	}{
		{Reliable, `{"entries":{"door":{"by":"a","deleted":true,"ts":13},"lamp":{"by":"c","ts":14,"value":1}},"v":1}`},
		{Lossy, `{"entries":{"lamp":{"by":"a","ts":15,"value":2},"pose/a":{"by":"c","ts":12,"value":3},"pose/c":{"by":"c","ts":16,"value":2}},"v":1}`},
	}
	for i, w := range want {
		if u := got[i].dp.GetUser(); got[i].kind != w.kind || u.GetTopic() != "plexus.world.delta" || string(u.Payload) != w.delta {
			t.Errorf("packet %d on %v, topic %q:\n%s\nwant on %v:\n%s", i, got[i].kind, u.GetTopic(), u.Payload, w.kind, w.delta)
		}
	}
	if snap, _ := r.Snapshot(); string(b.world(t)) != string(snap) {
		t.Errorf("b's world\n%s\nroom's\n%s", b.world(t), snap)
	}
	// a and c, never backed up, got each other's changes; b's batch
	// coalesced pose/a twice, pose/c, door and (for a and c) nothing.
	if st := r.Stats(); st.Coalesced < 4 || st.DeltaEntries < 5 {
		t.Errorf("stats %+v", st)
	}
}

// TestDeltaSplit: a batch larger than the packet size goes out as
// several deltas, each within it, that hold every change once; an entry
// too large for a delta of its own size still goes, alone.
func TestDeltaSplit(t *testing.T) {
	const max = 400
	r := newTestRoom(t, Config{MaxPacketBytes: max}, "a")
	b := r.join("b")
	b.buffered[Lossy].Store(2 << 20)
	const n = 30
	for i := range n {
		w := `{"ts":` + itoa(i+1) + `,"set":{"key/` + itoa(i) + `":"` + strings.Repeat("v", 40) + `"}}`
		if err := r.Receive("Pa", Lossy, userPkt(t, "plexus.world", w), true); err != nil {
			t.Fatal(err)
		}
	}
	big := `{"ts":1,"set":{"big":"` + strings.Repeat("x", max-80) + `"}}`
	if err := r.Receive("Pa", Lossy, userPkt(t, "plexus.world", big), true); err != nil {
		t.Fatal(err)
	}
	b.buffered[Lossy].Store(0)
	r.barrier(t, "a")
	keys := map[string]int{}
	var sizes []int
	for _, p := range b.packets() {
		u := p.dp.GetUser()
		if u.GetTopic() != "plexus.world.delta" {
			continue
		}
		raw, err := proto.Marshal(p.dp)
		if err != nil {
			t.Fatal(err)
		}
		var d wireDelta
		if err := json.Unmarshal(u.Payload, &d); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(raw))
		if _, ok := d.Entries["big"]; ok {
			if len(d.Entries) != 1 {
				t.Errorf("the oversized entry shares a delta with %d others", len(d.Entries)-1)
			}
		} else if len(raw) > max {
			t.Errorf("delta of %d bytes, over %d", len(raw), max)
		}
		for k := range d.Entries {
			keys[k]++
		}
	}
	if len(keys) != n+1 || len(sizes) < 5 {
		t.Errorf("%d keys in %d deltas (sizes %v)", len(keys), len(sizes), sizes)
	}
	for k, c := range keys {
		if c != 1 {
			t.Errorf("key %q in %d deltas", k, c)
		}
	}
	if snap, _ := r.Snapshot(); string(b.world(t)) != string(snap) {
		t.Errorf("b's world differs from the room's")
	}
}

// TestDeltaBeforeOpen: changes for a recipient whose channels are not
// open yet (and who joined an empty world, so has no snapshot to wait
// behind) are kept, merged, and delivered when they open.
func TestDeltaBeforeOpen(t *testing.T) {
	r := newTestRoom(t, Config{}, "a")
	b := newFake()
	b.closed.Store(true)
	r.fakes["b"] = b
	r.Join("Pb", "b", b)
	for i, kind := range []Kind{Reliable, Lossy, Reliable, Lossy} {
		w := `{"ts":` + itoa(i+1) + `,"set":{"k` + itoa(i%2) + `":` + itoa(i) + `}}`
		if err := r.Receive("Pa", kind, userPkt(t, "plexus.world", w), true); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a send is tried", func() bool { return b.refused.Load() > 0 })
	b.closed.Store(false)
	snap, _ := r.Snapshot()
	waitFor(t, "b converges", func() bool { return string(b.world(t)) == string(snap) }, b)
	if d := b.deltas(t); len(d) != 2 {
		t.Errorf("b received %q, want one delta per channel", d)
	}
}

// TestDeltaEncodeAllocs: a lossy batch is encoded into the writer's
// reused buffers, allocating nothing once they have grown.
func TestDeltaEncodeAllocs(t *testing.T) {
	d := pending{}
	for i := range 49 {
		d["avatar/"+itoa(i)] = change{value: json.RawMessage(`{"p":[1250,500,-3750],"q":[0,7071,0,7071]}`), ts: int64(i), by: "@peer" + itoa(i)}
	}
	e := newDeltaEncoder("plexus.world.delta", 15*1024)
	var last []byte
	send := func(b []byte, _ int) error { last = b; return nil }
	allocs := testing.AllocsPerRun(100, func() {
		if err := e.encode(Lossy, d, false, send); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("%.1f allocations per lossy batch of 49", allocs)
	}
	dp := new(livekit.DataPacket)
	if err := proto.Unmarshal(last, dp); err != nil || dp.Kind != livekit.DataPacket_LOSSY || dp.GetUser().GetTopic() != "plexus.world.delta" {
		t.Fatalf("encoded %v: %v", dp, err)
	}
	var w wireDelta
	if err := json.Unmarshal(dp.GetUser().Payload, &w); err != nil || len(w.Entries) != 49 {
		t.Fatalf("payload %s: %v", dp.GetUser().Payload, err)
	}
}

// chainSender answers each delta it gets by having a send another world
// change, as a stream of changes faster than the writer would.
type chainSender struct {
	*fakeSender
	r    *testRoom
	t    testing.TB
	left int // only the writer goroutine touches it
}

func (c *chainSender) SendData(kind Kind, b []byte) error {
	if err := c.fakeSender.SendData(kind, b); err != nil {
		return err
	}
	if c.left > 0 && bytes.Contains(b, []byte("plexus.world.delta")) {
		c.left--
		w := `{"ts":` + itoa(100-c.left) + `,"set":{"pose":` + itoa(c.left) + `}}`
		if err := c.r.Receive("Pa", Lossy, userPkt(c.t, "plexus.world", w), true); err != nil {
			c.t.Error(err)
		}
	}
	return nil
}

// TestDeltaNoStarvation: a packet queued while changes keep coming goes
// out right after the delta taken before it, not after the stream ends.
func TestDeltaNoStarvation(t *testing.T) {
	r := newTestRoom(t, Config{}, "a")
	f := newFake()
	f.buffered[Lossy].Store(2 << 20)
	c := &chainSender{fakeSender: f, r: r, t: t, left: 20}
	r.fakes["b"] = f
	r.Join("Pb", "b", c)
	if err := r.Receive("Pa", Lossy, userPkt(t, "plexus.world", `{"ts":1,"set":{"pose":-1}}`), true); err != nil {
		t.Fatal(err)
	}
	if err := r.Receive("Pa", Lossy, userPkt(t, "cursor", "1"), true); err != nil {
		t.Fatal(err)
	}
	f.buffered[Lossy].Store(0)
	waitFor(t, "the chain ends", func() bool { return len(f.deltas(t)) == 21 }, f)
	if ts := f.topics(); len(ts) != 22 || ts[0] != "plexus.world.delta" || ts[1] != "cursor" {
		t.Errorf("b received %q", ts)
	}
}

// TestDeltaOverflow: a stalled recipient's pending changes are bounded
// even when a sender churns through new keys: past the bound lossy
// changes are dropped and a reliable one reports the recipient.
func TestDeltaOverflow(t *testing.T) {
	overflowed := make(chan string, 1)
	// At most 4 tombstones + 64/16 live keys pending per channel.
	r := newTestRoom(t, Config{MaxTombstones: 4, MaxWorldBytes: 64, OnReliableOverflow: func(sid string) { overflowed <- sid }}, "a")
	b := r.join("b")
	b.buffered[Reliable].Store(2 << 20)
	b.buffered[Lossy].Store(2 << 20)
	for i := range 20 {
		for _, kind := range []Kind{Lossy, Reliable} {
			w := `{"ts":` + itoa(i+1) + `,"del":["k` + itoa(i) + "/" + kind.String() + `"]}`
			if err := r.Receive("Pa", kind, userPkt(t, "plexus.world", w), true); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case sid := <-overflowed:
		if sid != "Pb" {
			t.Errorf("overflow reported for %q", sid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no overflow callback")
	}
	if d := r.Stats().Dropped; d.LossyOverflow != 12 || d.ReliableOverflow != 12 {
		t.Errorf("dropped %+v, want 12 of each kind", d)
	}
	b.buffered[Reliable].Store(0)
	b.buffered[Lossy].Store(0)
	r.barrier(t, "a")
	n := 0
	for _, d := range b.deltas(t) {
		var w wireDelta
		if err := json.Unmarshal([]byte(d), &w); err != nil {
			t.Fatal(err)
		}
		n += len(w.Entries)
	}
	if n != 16 {
		t.Errorf("b got %d changes, want the 8 per channel that fitted", n)
	}
}

// notifySender is a fakeSender that reports drains as pion's
// OnBufferedAmountLow does.
type notifySender struct {
	*fakeSender
	mu sync.Mutex
	// mu guards the following fields.
	thresholds [2]uint64
	fns        [2]func()
}

func (n *notifySender) OnDrained(kind Kind, threshold uint64, fn func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.thresholds[kind], n.fns[kind] = threshold, fn
}

// drain empties kind's buffer and reports it.
func (n *notifySender) drain(kind Kind) {
	n.buffered[kind].Store(0)
	n.mu.Lock()
	fn := n.fns[kind]
	n.mu.Unlock()
	fn()
}

// TestDrainNotifier: a writer held back by a slow channel resumes when
// the Sender reports it drained, not at its next Tick (an hour here).
func TestDrainNotifier(t *testing.T) {
	r := newTestRoom(t, Config{Tick: time.Hour, LossySlowBytes: 1000}, "a")
	n := &notifySender{fakeSender: newFake()}
	n.buffered[Lossy].Store(2000)
	r.fakes["b"] = n.fakeSender
	r.Join("Pb", "b", n)
	n.mu.Lock()
	th := n.thresholds
	n.mu.Unlock()
	if th != [2]uint64{Reliable: 1 << 20, Lossy: 1000} {
		t.Errorf("thresholds %v, want the slow limits", th)
	}
	for i := range 2 {
		w := `{"ts":` + itoa(i+1) + `,"set":{"pose":` + itoa(i) + `}}`
		if err := r.Receive("Pa", Lossy, userPkt(t, "plexus.world", w), true); err != nil {
			t.Fatal(err)
		}
		// The writer finds the channel slow and waits.
		waitFor(t, "the writer to look", func() bool { return n.polled.Load() > 0 })
	}
	n.drain(Lossy)
	waitFor(t, "the delta after the drain", func() bool { return len(n.deltas(t)) == 1 }, n.fakeSender)
	if d := n.deltas(t); d[0] != `{"entries":{"pose":{"by":"a","ts":2,"value":1}},"v":1}` {
		t.Errorf("delta %s", d[0])
	}
}

// TestRelayLatency: every world change written is timed from its arrival
// to the write of its delta, the time it waited for a slow channel
// included; changes merged away are not.
func TestRelayLatency(t *testing.T) {
	var h latency.Histogram
	r := newTestRoom(t, Config{Tick: time.Hour, LossySlowBytes: 1000, RelayLatency: &h}, "a")
	n := &notifySender{fakeSender: newFake()}
	n.buffered[Lossy].Store(2000)
	r.fakes["b"] = n.fakeSender
	r.Join("Pb", "b", n)
	start := time.Now()
	for _, w := range []string{`{"ts":1,"set":{"x":1}}`, `{"ts":2,"set":{"x":2,"y":1}}`} {
		if err := r.Receive("Pa", Lossy, userPkt(t, "plexus.world", w), true); err != nil {
			t.Fatal(err)
		}
		// The writer finds the channel slow and waits for the drain.
		waitFor(t, "the writer to look", func() bool { return n.polled.Load() > 0 })
	}
	arrived := time.Now()       // both changes written arrived before this
	held := time.Since(arrived) // both waited at least this long
	n.drain(Lossy)
	waitFor(t, "the delta after the drain", func() bool { return len(n.deltas(t)) == 1 }, n.fakeSender)
	// The writer times the changes once SendData has returned, which
	// may be after the fake has the delta.
	waitFor(t, "the changes timed", func() bool { d := h.Snapshot(); return d.Count() >= 2 })
	total := time.Since(start)
	d := h.Snapshot()
	if d.Count() != 2 {
		t.Fatalf("%d changes timed, want 2 (x's first value was merged away)", d.Count())
	}
	// Quantiles are bucket upper bounds: never below the true value, at
	// most a sixteenth above it.
	if lo, hi := d.Quantile(0.01), d.Quantile(1); lo < held || hi > total+total/16 {
		t.Errorf("latencies %v..%v, want at least %v (held) and at most %v", lo, hi, held, total)
	}
}

// TestLossyDeltaInterval: a lossy world change after a quiet spell goes
// out at once; those that follow within Config.LossyDeltaInterval wait,
// merged into one delta, with the lossy packets queued after them, while
// reliable messages still pass.
func TestLossyDeltaInterval(t *testing.T) {
	send := func(t *testing.T, r *testRoom, kind Kind, topic, payload string) {
		t.Helper()
		if err := r.Receive("Pa", kind, userPkt(t, topic, payload), true); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("held", func(t *testing.T) {
		r := newTestRoom(t, Config{LossyDeltaInterval: time.Hour}, "a", "b")
		b := r.fakes["b"]
		send(t, r, Lossy, "plexus.world", `{"ts":1,"set":{"x":1}}`)
		waitFor(t, "the first delta", func() bool { return len(b.deltas(t)) == 1 }, b)
		send(t, r, Lossy, "plexus.world", `{"ts":2,"set":{"x":2}}`)
		send(t, r, Lossy, "pose", "after the change")
		send(t, r, Reliable, "chat", "hello")
		// The writer took the reliable message after the lossy ones
		// were queued, and held the lossy channel.
		waitFor(t, "the reliable message", func() bool { return slices.Contains(b.topics(), "chat") }, b)
		if d := b.deltas(t); len(d) != 1 {
			t.Errorf("deltas %q, want the first alone within the interval", d)
		}
		if slices.Contains(b.topics(), "pose") {
			t.Error("a lossy packet queued after a held change went out before it")
		}
	})
	t.Run("released", func(t *testing.T) {
		r := newTestRoom(t, Config{LossyDeltaInterval: time.Second}, "a", "b")
		b := r.fakes["b"]
		send(t, r, Lossy, "plexus.world", `{"ts":1,"set":{"x":1}}`)
		waitFor(t, "the first delta", func() bool { return len(b.deltas(t)) == 1 }, b)
		send(t, r, Lossy, "plexus.world", `{"ts":2,"set":{"x":2}}`)
		send(t, r, Lossy, "plexus.world", `{"ts":3,"set":{"y":1}}`)
		send(t, r, Lossy, "pose", "after the changes")
		waitFor(t, "the held changes", func() bool { return slices.Contains(b.topics(), "pose") }, b)
		want := `{"entries":{"x":{"by":"a","ts":2,"value":2},"y":{"by":"a","ts":3,"value":1}},"v":1}`
		if d := b.deltas(t); len(d) != 2 || d[1] != want {
			t.Errorf("deltas %q, want the first then %s", d, want)
		}
		if ts := b.topics(); ts[len(ts)-1] != "pose" {
			t.Errorf("topics %q: the lossy packet queued after the changes should follow their delta", ts)
		}
	})
}

// TestChangeSize: the size a pending change counts for is the length of
// its entry in a delta, and its comma.
func TestChangeSize(t *testing.T) {
	for _, c := range []struct {
		key string
		ch  change
	}{
		{"pose", change{value: []byte(`{"x":1}`), ts: 1735000000000, by: "alice"}},
		{"quote\"d\\key\n", change{value: []byte(`"v"`), ts: 0, by: "b\u00e9"}},
		{"gone", change{ts: 42, by: "carol", deleted: true}},
		{"neg", change{value: []byte(`null`), ts: -7, by: "d"}},
	} {
		want := len(appendChange(nil, c.key, &c.ch)) + 1
		if got := changeSize(c.key, &c.ch); got != want {
			t.Errorf("changeSize(%q, %+v) = %d, want %d", c.key, c.ch, got, want)
		}
	}
}

// TestDeltaFill: within the interval a lossy delta goes out once the
// next entry of its size would take it past Config.DeltaFillBytes, not
// at the interval's end.
func TestDeltaFill(t *testing.T) {
	value := `"` + strings.Repeat("x", 100) + `"`
	e := changeSize("k1", &change{value: []byte(value), ts: 2, by: "a"})
	envelope := deltaEnvelope + len("plexus.world.delta") + len(deltaHead) + len(deltaTail)
	r := newTestRoom(t, Config{LossyDeltaInterval: time.Hour, DeltaFillBytes: envelope + 2*e + e/2}, "a", "b")
	if r.fillBytes != 2*e+e/2 {
		t.Fatalf("fill bytes %d, want %d", r.fillBytes, 2*e+e/2)
	}
	b := r.fakes["b"]
	send := func(kind Kind, topic, payload string) {
		t.Helper()
		if err := r.Receive("Pa", kind, userPkt(t, topic, payload), true); err != nil {
			t.Fatal(err)
		}
	}
	send(Lossy, "plexus.world", `{"ts":1,"set":{"k0":0}}`)
	waitFor(t, "the first delta", func() bool { return len(b.deltas(t)) == 1 }, b)
	send(Lossy, "plexus.world", `{"ts":2,"set":{"k1":`+value+`}}`)
	send(Reliable, "chat", "one")
	waitFor(t, "the reliable message", func() bool { return slices.Contains(b.topics(), "chat") }, b)
	if d := b.deltas(t); len(d) != 1 {
		t.Fatalf("deltas %q: one entry of %d bytes went out before the interval's end", d, e)
	}
	send(Lossy, "plexus.world", `{"ts":2,"set":{"k2":`+value+`}}`)
	waitFor(t, "the full delta", func() bool { return len(b.deltas(t)) == 2 }, b)
	want := `{"entries":{"k1":{"by":"a","ts":2,"value":` + value + `},"k2":{"by":"a","ts":2,"value":` + value + `}},"v":1}`
	if d := b.deltas(t); d[1] != want {
		t.Errorf("delta %s, want %s", d[1], want)
	}
}
