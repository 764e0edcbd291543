package sfu_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/plexus-chat/plexus/sfu"
	"github.com/plexus-chat/plexus/sfu/internal/sfutest"
)

// worldTopic is the data relay's default world topic (sfu/internal/data);
// the server sends snapshots and deltas on worldTopic+".snapshot" and
// worldTopic+".delta".
const worldTopic = "plexus.world"

// memWorld is a real, in-memory sfu.WorldStore: what the Matrix room state
// is to the production one. It keeps the last snapshot per room.
type memWorld struct {
	// mu guards the fields below.
	mu         sync.Mutex
	snapshots  map[string][]byte
	identities map[string][]string
	saves      map[string]int
	loads      map[string]int
}

func newMemWorld() *memWorld {
	return &memWorld{snapshots: map[string][]byte{}, identities: map[string][]string{}, saves: map[string]int{}, loads: map[string]int{}}
}

func (m *memWorld) LoadWorld(ctx context.Context, room string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads[room]++
	return m.snapshots[room], nil
}

func (m *memWorld) SaveWorld(ctx context.Context, room string, snapshot []byte, identities []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snapshots[room] = slices.Clone(snapshot)
	m.identities[room] = slices.Clone(identities)
	m.saves[room]++
	return nil
}

func (m *memWorld) saved(room string) (snapshot []byte, identities []string, saves, loads int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snapshots[room], m.identities[room], m.saves[room], m.loads[room]
}

// worldSnapshot is the snapshot format of sfu/internal/data (its doc.go).
type worldSnapshot struct {
	V       int `json:"v"`
	Entries map[string]struct {
		Value json.RawMessage `json:"value"`
		TS    int64           `json:"ts"`
		By    string          `json:"by"`
	} `json:"entries"`
}

// setWorld sends a world update setting keys (values as JSON) on the
// reliable channel.
func setWorld(t *testing.T, c *client, set map[string]any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"ts": time.Now().UnixMilli(), "set": set})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.room.LocalParticipant.PublishDataPacket(lksdk.UserData(b),
		lksdk.WithDataPublishTopic(worldTopic), lksdk.WithDataPublishReliable(true)); err != nil {
		t.Fatal(err)
	}
}

// checkSnapshot parses a snapshot or a delta (the same shape, doc.go of
// sfu/internal/data) and checks it holds want (key -> JSON value), each
// written by identity by.
func checkSnapshot(t *testing.T, raw []byte, by string, want map[string]string) {
	t.Helper()
	var s worldSnapshot
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("snapshot %q: %v", raw, err)
	}
	if s.V != 1 {
		t.Errorf("snapshot version %d, want 1", s.V)
	}
	for k, v := range want {
		e, ok := s.Entries[k]
		if !ok {
			t.Errorf("snapshot lacks %q: %s", k, raw)
			continue
		}
		if string(e.Value) != v || e.By != by || e.TS == 0 {
			t.Errorf("snapshot[%q] = %s by %q at %d, want %s by %q", k, e.Value, e.By, e.TS, v, by)
		}
	}
}

// TestWorldSnapshot: alice sets keys of the room's world; bob, joining
// later, gets the snapshot (from the server, before any live update) with
// alice's values; live changes follow as deltas; when the room ends the WorldStore
// gets the snapshot, and the next call in the room starts from it.
func TestWorldSnapshot(t *testing.T) {
	store := newMemWorld()
	h := newHarness(t, sfu.Config{EmptyTimeout: 200 * time.Millisecond}, sfu.Deps{World: store})

	alice := h.connect("world", "alice", nil)
	watcher := h.connect("world", "watcher", nil) // to know alice's updates were applied
	setWorld(t, alice, map[string]any{"door": "open", "lamp": map[string]any{"on": true, "rgb": []int{255, 200, 0}}})
	sfutest.Await(t, 5*time.Second, "watcher gets alice's world update", func() bool {
		for _, d := range watcher.received() {
			if d.topic == worldTopic+".delta" {
				return true
			}
		}
		return false
	})

	bob := h.connect("world", "bob", nil)
	setWorld(t, alice, map[string]any{"score": 3})
	sfutest.Await(t, 5*time.Second, "bob gets the snapshot and alice's next update", func() bool {
		return len(bob.received()) >= 2
	})
	got := bob.received()
	if got[0].topic != worldTopic+".snapshot" || got[0].from != "" {
		t.Fatalf("bob's first data packet: topic %q from %q, want %q from the server", got[0].topic, got[0].from, worldTopic+".snapshot")
	}
	checkSnapshot(t, got[0].payload, "alice", map[string]string{"door": `"open"`, "lamp": `{"on":true,"rgb":[255,200,0]}`})
	// Live changes come as deltas from the server, each entry naming
	// its writer.
	if got[1].topic != worldTopic+".delta" || got[1].from != "" {
		t.Fatalf("bob's second packet: topic %q from %q, want a delta from the server", got[1].topic, got[1].from)
	}
	checkSnapshot(t, got[1].payload, "alice", map[string]string{"score": "3"})
	if _, _, _, loads := store.saved("world"); loads != 1 {
		t.Errorf("LoadWorld called %d times for the room's start, want 1", loads)
	}

	// The call ends: everyone leaves, the room closes after EmptyTimeout
	// and the world is saved.
	for _, c := range []*client{alice, watcher, bob} {
		c.room.Disconnect()
	}
	var snap []byte
	var ids []string
	sfutest.Await(t, 10*time.Second, "the world is saved when the room closes", func() bool {
		snap, ids, _, _ = store.saved("world")
		var s worldSnapshot
		return json.Unmarshal(snap, &s) == nil && len(s.Entries) == 3
	})
	checkSnapshot(t, snap, "alice", map[string]string{"door": `"open"`, "score": "3"})
	if !slices.Contains(ids, "alice") {
		t.Errorf("SaveWorld identities %v lack alice", ids)
	}
	sfutest.Await(t, 10*time.Second, "the room is gone", func() bool { return len(h.srv.Rooms()) == 0 })

	// The next call in the room starts from the saved world.
	carol := h.connect("world", "carol", nil)
	sfutest.Await(t, 5*time.Second, "carol gets the saved world", func() bool { return len(carol.received()) >= 1 })
	first := carol.received()[0]
	if first.topic != worldTopic+".snapshot" {
		t.Fatalf("carol's first packet is on %q", first.topic)
	}
	checkSnapshot(t, first.payload, "alice", map[string]string{"door": `"open"`, "score": "3"})
	if _, _, _, loads := store.saved("world"); loads != 2 {
		t.Errorf("LoadWorld called %d times over two room starts, want 2", loads)
	}
}
