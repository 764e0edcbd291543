//lint:file-ignore SA1019 LiveKit clients still read and write the deprecated DataPacket.kind and UserPacket sender and destination fields, so the relay keeps them in step with the new ones.

package data

import (
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// fakeSender is an in-memory recipient. Its buffered amounts and
// openness are set by the test to play a slow or unconnected peer.
type fakeSender struct {
	buffered [2]atomic.Uint64
	closed   atomic.Bool  // SendData answers io.ErrClosedPipe, as pion does before open
	refused  atomic.Int64 // SendData calls answered so
	polled   atomic.Int64 // Buffered calls
	notify   chan struct{}

	mu sync.Mutex
	// mu guards the following fields.
	got []received
}

type received struct {
	kind Kind
	dp   *livekit.DataPacket
}

func newFake() *fakeSender { return &fakeSender{notify: make(chan struct{}, 1)} }

func (f *fakeSender) SendData(kind Kind, b []byte) error {
	if f.closed.Load() {
		f.refused.Add(1)
		return io.ErrClosedPipe
	}
	dp := new(livekit.DataPacket)
	if err := proto.Unmarshal(b, dp); err != nil {
		panic("relayed bytes do not parse: " + err.Error())
	}
	f.mu.Lock()
	f.got = append(f.got, received{kind, dp})
	f.mu.Unlock()
	select {
	case f.notify <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeSender) Buffered(kind Kind) uint64 {
	f.polled.Add(1)
	return f.buffered[kind].Load()
}

func (f *fakeSender) packets() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.got...)
}

// topics lists the user topics received, "" for other packets.
func (f *fakeSender) topics() []string {
	var ts []string
	for _, r := range f.packets() {
		ts = append(ts, r.dp.GetUser().GetTopic())
	}
	return ts
}

// waitFor waits for cond, re-checking whenever one of the fakes receives
// something and every few milliseconds (for conditions on Stats).
func waitFor(t testing.TB, what string, cond func() bool, fakes ...*fakeSender) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	any := make(chan struct{}, 1)
	for !cond() {
		var n <-chan struct{} = any
		if len(fakes) == 1 {
			n = fakes[0].notify
		}
		select {
		case <-n:
		case <-poll.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

type pktOpt func(*livekit.DataPacket)

func withDest(ids ...string) pktOpt {
	return func(dp *livekit.DataPacket) { dp.DestinationIdentities = ids }
}

// userPkt encodes a user packet claiming to come from "mallory": the room
// must overwrite that.
func userPkt(t testing.TB, topic string, payload string, opts ...pktOpt) []byte {
	t.Helper()
	dp := &livekit.DataPacket{
		ParticipantIdentity: "mallory",
		ParticipantSid:      "PA_mallory",
		Value: &livekit.DataPacket_User{User: &livekit.UserPacket{
			ParticipantIdentity: "mallory",
			Payload:             []byte(payload),
			Topic:               &topic,
		}},
	}
	for _, o := range opts {
		o(dp)
	}
	return encode(t, dp)
}

func encode(t testing.TB, dp *livekit.DataPacket) []byte {
	t.Helper()
	b, err := proto.Marshal(dp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testRoom is a room with peers a, b, c (sids PA, PB, PC) on fakes.
type testRoom struct {
	*Room
	fakes map[string]*fakeSender // by identity
	nbar  int                    // barriers sent
}

func newTestRoom(t testing.TB, cfg Config, identities ...string) *testRoom {
	t.Helper()
	if cfg.Rate == 0 {
		cfg.Rate = 1e6
	}
	r := &testRoom{Room: NewRoom(cfg, nil), fakes: map[string]*fakeSender{}}
	t.Cleanup(r.Close)
	for _, id := range identities {
		r.join(id)
	}
	return r
}

func (r *testRoom) join(identity string) *fakeSender {
	f := newFake()
	r.fakes[identity] = f
	r.Join(sidOf(identity), identity, f)
	return f
}

func sidOf(identity string) string { return "P" + identity }

// barrier sends a marker from identity to everyone else on both
// channels and waits until all have both: anything sent before it that
// has not arrived never will (each queue is FIFO).
func (r *testRoom) barrier(t testing.TB, from string) {
	t.Helper()
	r.nbar++
	mark := strconv.Itoa(r.nbar)
	for _, k := range []Kind{Reliable, Lossy} {
		if err := r.Receive(sidOf(from), k, userPkt(t, "barrier", mark), true); err != nil {
			t.Fatalf("barrier: %v", err)
		}
	}
	for id, f := range r.fakes {
		if id == from {
			continue
		}
		waitFor(t, "barrier at "+id, func() bool {
			n := 0
			for _, p := range f.packets() {
				if u := p.dp.GetUser(); u.GetTopic() == "barrier" && string(u.Payload) == mark {
					n++
				}
			}
			return n == 2
		}, f)
	}
}

// payload returns what f received other than barriers.
func (f *fakeSender) payload() []received {
	var out []received
	for _, p := range f.packets() {
		if p.dp.GetUser().GetTopic() != "barrier" {
			out = append(out, p)
		}
	}
	return out
}

// appendWorldMsg encodes m as a client would send it deterministically: keys sorted, "at" only for
// keys whose stamp differs from ts.
func appendWorldMsg(dst []byte, m *worldMsg) []byte {
	dst = append(dst, `{"ts":`...)
	dst = strconv.AppendInt(dst, m.ts, 10)
	if len(m.set) > 0 {
		dst = append(dst, `,"set":{`...)
		for i, k := range sortedKeys(m.set) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = cjson.AppendString(dst, k)
			dst = append(dst, ':')
			dst = append(dst, m.set[k]...)
		}
		dst = append(dst, '}')
	}
	if len(m.del) > 0 {
		dst = append(dst, `,"del":[`...)
		for i, k := range m.del {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = cjson.AppendString(dst, k)
		}
		dst = append(dst, ']')
	}
	first := true
	for _, k := range sortedKeys(m.at) {
		if m.at[k] == m.ts {
			continue
		}
		if first {
			dst = append(dst, `,"at":{`...)
			first = false
		} else {
			dst = append(dst, ',')
		}
		dst = cjson.AppendString(dst, k)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, m.at[k], 10)
	}
	if !first {
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// wireDelta is the JSON shape of a world delta (doc.go, "Deltas").
type wireDelta struct {
	V       int `json:"v"`
	Entries map[string]struct {
		By      string          `json:"by"`
		TS      int64           `json:"ts"`
		Value   json.RawMessage `json:"value"`
		Deleted bool            `json:"deleted"`
	} `json:"entries"`
}

// deltas returns the world delta payloads f received, checking that
// each comes from the server on the right topic.
func (f *fakeSender) deltas(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, p := range f.packets() {
		u := p.dp.GetUser()
		if u.GetTopic() != "plexus.world.delta" {
			continue
		}
		if p.dp.ParticipantIdentity != "" || u.ParticipantIdentity != "" || p.dp.Kind != livekitKind(p.kind) {
			t.Errorf("delta from %q/%q, kind %v on %v", p.dp.ParticipantIdentity, u.ParticipantIdentity, p.dp.Kind, p.kind)
		}
		out = append(out, string(u.Payload))
	}
	return out
}

// applyDelta applies a delta to s as a client does: per key
// last-writer-wins by (ts, by), deletes as tombstones.
func applyDelta(t testing.TB, s *state, b []byte) {
	t.Helper()
	var d wireDelta
	if err := json.Unmarshal(b, &d); err != nil || d.V != 1 || len(d.Entries) == 0 {
		t.Fatalf("delta %s: %v", b, err)
	}
	for k, e := range d.Entries {
		m := &worldMsg{ts: e.TS}
		if e.Deleted {
			m.del = []string{k}
		} else {
			m.set = map[string]json.RawMessage{k: e.Value}
		}
		if _, err := s.apply(m, e.By, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// world is the world f sees: the snapshots and deltas it received,
// applied in order.
func (f *fakeSender) world(t testing.TB) []byte {
	t.Helper()
	s := newState(1 << 20)
	for _, p := range f.packets() {
		u := p.dp.GetUser()
		switch u.GetTopic() {
		case "plexus.world.snapshot":
			if err := s.load(u.Payload); err != nil {
				t.Fatal(err)
			}
		case "plexus.world.delta":
			applyDelta(t, s, u.Payload)
		case "plexus.world":
			t.Fatalf("a world message relayed as sent: %s", u.Payload)
		}
	}
	return s.snapshot()
}
