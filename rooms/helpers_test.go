package rooms

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// testNet is a set of servers that know each other's keys, as federation
// would after fetching them.
type testNet struct {
	backend string // storagetest.SQLite or storagetest.Postgres
	keys    map[ServerName]ed25519.PublicKey
}

func newTestNet() *testNet { return newTestNetOn(storagetest.SQLite) }

func newTestNetOn(backend string) *testNet {
	return &testNet{backend: backend, keys: map[ServerName]ed25519.PublicKey{}}
}

// onBackends runs f once per storage backend (PostgreSQL skips unless
// PLEXUS_TEST_POSTGRES is set, and fails under PLEXUS_REQUIRE_POSTGRES=1).
func onBackends(t *testing.T, f func(t *testing.T, net func() *testNet)) {
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { f(t, func() *testNet { return newTestNetOn(b) }) })
	}
}

func (n *testNet) finder(server ServerName, keyID string) (VerifyKey, bool) {
	k, ok := n.keys[server]
	if !ok || keyID != "ed25519:test" {
		return VerifyKey{}, false
	}
	return VerifyKey{Key: k, ValidUntilTS: 1<<53 - 1}, true
}

type testServer struct {
	name  ServerName
	svc   *Service
	store *storage.DB
	dir   string
}

// clock is a deterministic, advancing clock so event timestamps are
// reproducible across runs.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (n *testNet) server(t testing.TB, name string) *testServer {
	t.Helper()
	return n.serverWith(t, name, nil)
}

// serverWith is server with a Listener (nil: none).
func (n *testNet) serverWith(t testing.TB, name string, l Listener) *testServer {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	key := ed25519.NewKeyFromSeed(seed[:])
	n.keys[ServerName(name)] = key.Public().(ed25519.PublicKey)
	dsn, dir := storagetest.Fresh(t, n.backend)
	store, err := storage.Open(context.Background(), dsn, dir)
	if err != nil {
		t.Fatalf("open storage: %v", err)
	}
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	svc, err := New(Config{Signer: Signer{Server: ServerName(name), KeyID: "ed25519:test", Key: key}},
		Deps{Store: store, Keys: n.finder, Now: c.now, Listener: l})
	if err != nil {
		t.Fatalf("new service: %v", err)
	}
	t.Cleanup(func() {
		svc.Close()
		store.Close()
	})
	return &testServer{name: ServerName(name), svc: svc, store: store, dir: dir}
}

func str(s string) *string { return &s }

func mustContent(t testing.TB, x any) cjson.Value {
	t.Helper()
	v, err := cjson.FromGo(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (s *testServer) send(t testing.TB, room RoomID, sender UserID, typ string, stateKey *string, content any) *Stored {
	t.Helper()
	st, err := s.svc.Append(context.Background(), room, LocalEvent{Type: typ, StateKey: stateKey, Sender: sender, Content: mustContent(t, content)})
	if err != nil {
		t.Fatalf("%s: append %s as %s: %v", s.name, typ, sender, err)
	}
	return st
}

func (s *testServer) current(t testing.TB, room RoomID) storage.StateMap {
	t.Helper()
	info, err := s.store.Room(context.Background(), string(room))
	if err != nil {
		t.Fatal(err)
	}
	return info.Current
}

func (s *testServer) extremities(t testing.TB, room RoomID) []string {
	t.Helper()
	info, err := s.store.Room(context.Background(), string(room))
	if err != nil {
		t.Fatal(err)
	}
	return info.Extremities
}

// admitAll admits events in order and fails on any error.
func (s *testServer) admitAll(t testing.TB, room RoomID, evs ...*Event) {
	t.Helper()
	for _, e := range evs {
		if _, err := s.svc.Admit(context.Background(), room, e.JSON()); err != nil {
			t.Fatalf("%s: admit %s (%s): %v", s.name, e.ID(), e.Type(), err)
		}
	}
}

func stateKey(typ, sk string) storage.StateKey { return storage.StateKey{Type: typ, StateKey: sk} }

var _ = pdu.TypeCreate
