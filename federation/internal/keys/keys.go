package keys

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/servername"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"

	"github.com/plexus-chat/plexus/internal/flight"
)

// DefaultValidity is how far into the future our published valid_until_ts
// points when Config.Validity is zero.
//
// One day, as Synapse's default key_refresh_interval. The spec (Server
// Keys, valid_until_ts) has receivers cap validity at 7 days; notaries
// cache a response for half its lifetime and originating servers "should
// avoid returning responses that expire in less than an hour". A day keeps
// key fetches rare while a rotated or compromised key stops being trusted
// within a day of our dropping it. The response is signed afresh on every
// request, so it is always valid a full day from when it was fetched.
const DefaultValidity = 24 * time.Hour

// MaxValidity caps a remote key's valid_until_ts after we fetched it: "Servers
// MUST use the lesser of this field and 7 days into the future" (Server
// Keys, valid_until_ts).
const MaxValidity = 7 * 24 * time.Hour

const (
	// negativeTTL is how long a key that could not be found is not looked
	// for again.
	negativeTTL = time.Minute
	// fetchBudget bounds one fetch, the server and every notary included.
	fetchBudget = 60 * time.Second
	// finderTimeout bounds a lookup by the room service.
	finderTimeout = 15 * time.Second
)

// ErrUnknownKey is returned by VerifyKey for a key that no one could give
// us, or that is not valid at the time asked about.
var ErrUnknownKey = errors.New("keys: unknown or expired key")

// Config configures Keys.
type Config struct {
	// ServerName, KeyID and Key are this server's name and signing key.
	ServerName string
	KeyID      string
	Key        ed25519.PrivateKey
	// TrustedServers are the notaries asked for keys a server does not
	// give us itself; none by default.
	TrustedServers []string
	// Validity is how long our published keys stay valid; zero means
	// DefaultValidity.
	Validity time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// keyRecord is a remote key as we use it.
type keyRecord struct {
	key ed25519.PublicKey
	// validUntil is the last timestamp (ms) the key is valid at: for a
	// key from verify_keys the lesser of valid_until_ts and 7 days after
	// the fetch, for one from old_verify_keys expired_ts-1.
	validUntil int64
	// old is set for a key from old_verify_keys: fetching again will not
	// make it valid for later timestamps.
	old bool
}

func (r keyRecord) validAt(ts int64) bool { return ts <= r.validUntil }

// Keys finds and publishes server keys.
type Keys struct {
	cfg    Config
	pub    ed25519.PublicKey
	db     *storage.DB
	client *transport.Client
	log    *slog.Logger

	flight flight.Group[struct{}]
	// life bounds fetches, which outlive the lookups that started them;
	// Close cancels it.
	life      context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once

	mu sync.Mutex // guards servers and negative
	// servers holds the keys of each server whose rows have been read
	// from the database (an empty map when it has none).
	servers map[string]map[string]keyRecord
	// negative holds, per server and key ID, until when not to fetch.
	negative map[string]time.Time
}

// New returns Keys. client fetches remote keys; db stores them.
func New(cfg Config, db *storage.DB, client *transport.Client, log *slog.Logger) (*Keys, error) {
	if err := servername.CheckOwn(cfg.ServerName); err != nil {
		return nil, fmt.Errorf("keys: server name: %w", err)
	}
	if cfg.KeyID == "" || len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("keys: signing key not set")
	}
	if db == nil || client == nil {
		return nil, errors.New("keys: database and client are required")
	}
	for _, n := range cfg.TrustedServers {
		if err := servername.Check(n); err != nil {
			return nil, fmt.Errorf("keys: trusted key server %q: %w", n, err)
		}
	}
	if cfg.Validity <= 0 {
		cfg.Validity = DefaultValidity
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Keys{
		cfg:      cfg,
		pub:      cfg.Key.Public().(ed25519.PublicKey),
		db:       db,
		client:   client,
		log:      log,
		servers:  map[string]map[string]keyRecord{},
		negative: map[string]time.Time{},
	}
	k.life, k.cancel = context.WithCancel(context.Background())
	return k, nil
}

// Close cancels fetches in progress and waits for them. It is idempotent.
func (k *Keys) Close() error {
	k.closeOnce.Do(func() {
		k.cancel()
		k.flight.Wait()
	})
	return nil
}

func (k *Keys) nowMS() int64 { return k.cfg.Now().UnixMilli() }

// VerifyKey returns server's key keyID if it is valid at atTS (ms; 0 means
// now). It implements transport.KeySource.
func (k *Keys) VerifyKey(ctx context.Context, server, keyID string, atTS int64) (ed25519.PublicKey, error) {
	if atTS == 0 {
		atTS = k.nowMS()
	}
	rec, ok := k.get(ctx, server, keyID, atTS, false)
	if !ok || !rec.validAt(atTS) {
		return nil, fmt.Errorf("%w: %s of %s at %d", ErrUnknownKey, keyID, server, atTS)
	}
	return rec.key, nil
}

// Finder returns the room service's key lookup: it blocks (for at most 15
// seconds) while a key is fetched and returns the key with its validity,
// which the room service checks against each event's origin_server_ts.
func (k *Keys) Finder() rooms.KeyFinder {
	return func(server rooms.ServerName, keyID string) (rooms.VerifyKey, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), finderTimeout)
		defer cancel()
		rec, ok := k.get(ctx, string(server), keyID, k.nowMS(), false)
		if !ok {
			return rooms.VerifyKey{}, false
		}
		return rooms.VerifyKey{Key: rec.key, ValidUntilTS: rec.validUntil}, true
	}
}

// get returns what is known of a key, fetching it when it is unknown or
// not valid at ts, unless a fetch failed within negativeTTL. directOnly
// asks the server alone, not the notaries (for a notary's own keys, which
// must not depend on notaries).
func (k *Keys) get(ctx context.Context, server, keyID string, ts int64, directOnly bool) (keyRecord, bool) {
	if server == k.cfg.ServerName {
		if keyID == k.cfg.KeyID {
			return keyRecord{key: k.pub, validUntil: cjson.MaxSafeInt}, true
		}
		return keyRecord{}, false
	}
	rec, ok := k.cached(ctx, server, keyID)
	if ok && (rec.validAt(ts) || rec.old) {
		return rec, true
	}
	if k.recentlyMissed(server, keyID) {
		return rec, ok
	}
	k.fetch(ctx, server, keyID, ts, directOnly)
	rec, ok = k.cached(ctx, server, keyID)
	if !ok || !rec.validAt(ts) {
		k.mu.Lock()
		k.negative[server+"\x00"+keyID] = k.cfg.Now().Add(negativeTTL)
		k.mu.Unlock()
	}
	return rec, ok
}

func (k *Keys) recentlyMissed(server, keyID string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.cfg.Now()
	until, ok := k.negative[server+"\x00"+keyID]
	if ok && !now.Before(until) {
		delete(k.negative, server+"\x00"+keyID)
		ok = false
	}
	if len(k.negative) > 1024 {
		for key, t := range k.negative {
			if !now.Before(t) {
				delete(k.negative, key)
			}
		}
	}
	return ok
}

// cached looks in memory, reading the server's rows from the database on
// first use.
func (k *Keys) cached(ctx context.Context, server, keyID string) (keyRecord, bool) {
	k.mu.Lock()
	ks, loaded := k.servers[server]
	rec, ok := ks[keyID]
	k.mu.Unlock()
	if loaded {
		return rec, ok
	}
	ks, err := k.load(ctx, server)
	if err != nil {
		k.log.Warn("reading server keys", "server", server, "err", err)
		return keyRecord{}, false
	}
	// Only servers we hold keys of are remembered, so that requests
	// naming made-up origins cannot grow the map; the negative cache
	// keeps them from costing fetches.
	if len(ks) > 0 {
		k.mu.Lock()
		k.servers[server] = ks
		k.mu.Unlock()
	}
	rec, ok = ks[keyID]
	return rec, ok
}

// fetch asks the server, then (unless directOnly) each notary, until the
// key is valid at ts. Concurrent fetches of one key share one run.
func (k *Keys) fetch(ctx context.Context, server, keyID string, ts int64, directOnly bool) {
	flightKey := server + "\x00" + keyID
	if directOnly {
		flightKey += "\x00direct"
	}
	_, _ = k.flight.Do(ctx, flightKey, func() (struct{}, error) {
		ctx, cancel := context.WithTimeout(k.life, fetchBudget)
		defer cancel()
		// A caller that missed the cache just before a shared fetch
		// stored the key, and arrived just after that fetch ended,
		// finds the key here instead of fetching it again.
		if rec, ok := k.cached(ctx, server, keyID); ok && rec.validAt(ts) {
			return struct{}{}, nil
		}
		if err := k.fetchDirect(ctx, server); err != nil {
			k.log.Info("fetching keys from the server itself failed", "server", server, "err", err)
		}
		if directOnly {
			return struct{}{}, nil
		}
		for _, notary := range k.cfg.TrustedServers {
			if rec, ok := k.cached(ctx, server, keyID); ok && rec.validAt(ts) {
				break
			}
			if notary == server || notary == k.cfg.ServerName {
				continue
			}
			if err := k.fetchFromNotary(ctx, notary, server, keyID, ts); err != nil {
				k.log.Info("fetching keys through a notary failed", "server", server, "notary", notary, "err", err)
			}
		}
		return struct{}{}, nil
	})
}
