package interop

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"github.com/plexus-chat/plexus/internal/keyring"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
)

// TestMain silences gomatrixserverlib's logger, which warns through
// logrus on every signature it cannot check.
func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// baseTS is the first timestamp of every world: a fixed time in the past,
// so that timestamps are reproducible and every key is valid at them.
const baseTS = 1_700_000_000_000

// keyValidUntil is the valid_until_ts of every key in a world.
const keyValidUntil = baseTS + 10*365*24*3600*1000

// clock is a deterministic, advancing clock shared by the servers of a
// world, so that event timestamps increase in the order events are made.
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

// publicKey is a server's published verify key.
type publicKey struct {
	keyID string
	key   ed25519.PublicKey
}

// world is a small federation in one process: Plexus servers and
// gomatrixserverlib-driven foreign servers that know each other's keys, as
// they would after fetching them from /_matrix/key/v2/server.
type world struct {
	backend string
	clock   *clock
	mu      sync.Mutex // guards keys
	keys    map[string]publicKey
}

func newWorld(backend string) *world {
	return &world{backend: backend, clock: &clock{t: time.UnixMilli(baseTS)}, keys: map[string]publicKey{}}
}

func (w *world) publish(server, keyID string, key ed25519.PublicKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.keys[server] = publicKey{keyID: keyID, key: key}
}

func (w *world) lookup(server, keyID string) (ed25519.PublicKey, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k, ok := w.keys[server]
	if !ok || k.keyID != keyID {
		return nil, false
	}
	return k.key, true
}

// find is Plexus's KeyFinder over the world's keys.
func (w *world) find(server rooms.ServerName, keyID string) (rooms.VerifyKey, bool) {
	k, ok := w.lookup(string(server), keyID)
	if !ok {
		return rooms.VerifyKey{}, false
	}
	return rooms.VerifyKey{Key: k, ValidUntilTS: keyValidUntil}, true
}

// FetchKeys implements gmsl.KeyFetcher over the same keys as find, so the
// two implementations verify against the same keys and validity.
func (w *world) FetchKeys(_ context.Context, reqs map[gmsl.PublicKeyLookupRequest]spec.Timestamp) (map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult, error) {
	out := map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult{}
	for req := range reqs {
		if k, ok := w.lookup(string(req.ServerName), string(req.KeyID)); ok {
			out[req] = gmsl.PublicKeyLookupResult{
				VerifyKey:    gmsl.VerifyKey{Key: spec.Base64Bytes(k)},
				ExpiredTS:    gmsl.PublicKeyNotExpired,
				ValidUntilTS: keyValidUntil,
			}
		}
	}
	return out, nil
}

// FetcherName implements gmsl.KeyFetcher.
func (w *world) FetcherName() string { return "interop" }

// StoreKeys implements gmsl.KeyDatabase; the world's keys are fixed.
func (w *world) StoreKeys(context.Context, map[gmsl.PublicKeyLookupRequest]gmsl.PublicKeyLookupResult) error {
	return nil
}

// verifier is gomatrixserverlib's own KeyRing over the world's keys.
func (w *world) verifier() *gmsl.KeyRing {
	return &gmsl.KeyRing{KeyDatabase: w}
}

// userIDForSender maps a sender to its user ID as every room version
// before pseudo IDs does: they are the same string.
func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// plexusServer is one Plexus homeserver: a signing key from
// internal/keyring, as in production, and a rooms.Service over real
// storage.
type plexusServer struct {
	name  rooms.ServerName
	keys  *keyring.Keyring
	svc   *rooms.Service
	store *storage.DB
	// mu guards currentAtAdmit and serialises admissions.
	mu sync.Mutex
	// currentAtAdmit is the room's current state just before each remote
	// event was admitted, for the soft-fail check (server-server API,
	// "Checks performed on receipt of a PDU", step 6).
	currentAtAdmit map[string]storage.StateMap
}

func (w *world) plexus(t testing.TB, name string) *plexusServer {
	t.Helper()
	kr, err := keyring.Load(t.TempDir())
	if err != nil {
		t.Fatalf("%s: keyring: %v", name, err)
	}
	w.publish(name, kr.KeyID(), kr.PublicKey())
	dsn, dir := storagetest.Fresh(t, w.backend)
	store, err := storage.Open(context.Background(), dsn, dir)
	if err != nil {
		t.Fatalf("%s: open storage: %v", name, err)
	}
	svc, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: rooms.ServerName(name), KeyID: kr.KeyID(), Key: kr.PrivateKey()}},
		rooms.Deps{Store: store, Keys: w.find, Now: w.clock.now})
	if err != nil {
		t.Fatalf("%s: rooms: %v", name, err)
	}
	t.Cleanup(func() {
		if err := svc.Close(); err != nil {
			t.Errorf("%s: close rooms: %v", name, err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("%s: close storage: %v", name, err)
		}
	})
	return &plexusServer{name: rooms.ServerName(name), keys: kr, svc: svc, store: store, currentAtAdmit: map[string]storage.StateMap{}}
}

// foreignServer is a homeserver whose events gomatrixserverlib builds and
// signs.
type foreignServer struct {
	name  spec.ServerName
	keyID gmsl.KeyID
	priv  ed25519.PrivateKey
}

func (w *world) foreign(name string) *foreignServer {
	seed := sha256.Sum256([]byte("interop " + name))
	f := &foreignServer{name: spec.ServerName(name), keyID: "ed25519:gmsl", priv: ed25519.NewKeyFromSeed(seed[:])}
	w.publish(name, string(f.keyID), f.priv.Public().(ed25519.PublicKey))
	return f
}
